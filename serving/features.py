"""FeatureServer: Feast-compatible online feature serving over the cache shards, on Ray Serve.

Routes (Feast feature server wire format, ``fabric_ray.features.wire``):
    POST /get-online-features   column-major features for entity rows, by feature list or service
    POST /push                  rows for the views a push source feeds (into the cache shards)
    POST /write-to-online-store rows for one view (what Feast's ``remote`` online store sends)
    GET  /health                liveness: every cache shard answers (never needs a token)
    GET  /openapi.json, /docs   the OpenAPI document and its browser UI

The hot path is hand-validated (``json.loads`` and the wire module's checks, one read per cache
shard and view, over the shard's same-node socket or a Ray call (``fabric_ray.features.local_reads``),
``json.dumps``); the pydantic models below only describe the API in the OpenAPI document. Bearer
tokens are checked by :class:`fabric_ray.features.access.Access`. The deployment is a shell:
parsing, planning, access and shard transport live in ``fabric_ray.features``.

Deploy with ``serve deploy cluster/serve_features.yaml`` or let the fabric deploy it on
``fabric up`` (``build_app`` with the catalog and serving settings).

No ``from __future__ import annotations`` here: FastAPI must see the real ``Request`` type.
"""


import json
from typing import Any, Dict, List, Optional, Union

import ray
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from ray import serve

from actors.cache import cache_shard_name
from fabric_ray.features.access import Access
from fabric_ray.features.catalog import Catalog
from fabric_ray.features.client import assemble, check_push_target, plan_online, plan_push
from fabric_ray.features.local_reads import ShardReader, ShardsUnavailable
from fabric_ray.features.wire import MAX_ENTITIES, RequestError, error_content, parse_push, parse_request, parse_write

CALL_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_ONGOING_REQUESTS = 256


# -- the API as the OpenAPI document shows it (the handlers validate by hand, faster) -------------
Key = Union[int, float, str, bool]


class GetOnlineFeaturesRequest(BaseModel):
    """Feast's ``/get-online-features`` request: features by list or by feature service."""

    entities: Dict[str, List[Key]] = Field(
        description="Join key -> one key per entity row; every join key of the requested views, all of one length.",
        examples=[{"user_id": [1001, 1002]}],
    )
    features: List[str] = Field(default=[], description="'view:feature' references (or give feature_service).")
    feature_service: Optional[str] = Field(default=None, description="Name of a feature service (instead of features).")
    full_feature_names: bool = Field(default=False, description="Name features 'view__feature'.")
    include_feature_view_version_metadata: bool = Field(default=False, description="Accepted and ignored.")


class FeatureVector(BaseModel):
    """One response column: a value, status and event time per entity row."""

    values: List[Any]
    statuses: List[str] = Field(description="PRESENT, NULL_VALUE, NOT_FOUND or OUTSIDE_MAX_AGE per row.")
    event_timestamps: List[str] = Field(description="ISO 8601 UTC event time per row (the epoch when not found).")


class OnlineFeaturesMetadata(BaseModel):
    feature_names: List[str] = Field(description="Column names: the join keys first, then the features.")


class OnlineFeaturesResponse(BaseModel):
    """Column-major features: ``results[i]`` is the column named ``metadata.feature_names[i]``."""

    metadata: OnlineFeaturesMetadata
    results: List[FeatureVector]


class PushFeaturesRequest(BaseModel):
    """Feast's ``/push`` request."""

    push_source_name: str
    df: Dict[str, List[Any]] = Field(
        description="Columns, one value per row: the fed views' join key and features, and the event timestamp "
        "(ISO 8601 strings or epoch numbers).",
        examples=[{"user_id": [1001], "txn_count": [3], "amount_sum": [42.5], "txn_count_1m": [1],
                   "amount_sum_1m": [12.5], "event_ts": ["2026-11-26T10:00:00Z"]}],
    )
    to: str = Field(default="online", description="'online' ('offline' and 'online_and_offline' are refused for now).")
    allow_registry_cache: bool = True
    transform_on_write: bool = True


class WriteToOnlineStoreRequest(BaseModel):
    """Feast's ``/write-to-online-store`` request (what its ``remote`` online store sends)."""

    feature_view_name: str
    df: Dict[str, List[Any]]
    allow_registry_cache: bool = True
    transform_on_write: bool = True


class PushResponse(BaseModel):
    push_source_name: str
    rows: int
    views: List[str]


class ErrorDetail(BaseModel):
    detail: str = Field(description="What was wrong, naming the field or value.")


class HealthResponse(BaseModel):
    status: str
    cache_shards: int
    local_reads: int = Field(description="Cache shards this replica reads over their same-node socket (the rest by Ray calls).")
    feature_views: List[str]


_FEAST_ERROR = (
    "Refusals Feast reports with an exception class (unknown feature view, feature service or push source, "
    "colliding names, missing scopes) come as Feast does: a JSON string holding module, class and message."
)
_ERRORS: Dict[Union[int, str], Dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "Malformed request: the detail names the field and value."},
    401: {"model": ErrorDetail, "description": "Tokens are configured and no valid bearer token was sent."},
    403: {"description": "The token's scopes do not cover the feature views. " + _FEAST_ERROR},
    404: {"description": "Unknown feature view, feature or feature service. " + _FEAST_ERROR},
    413: {"model": ErrorDetail, "description": "Too many entity rows (serving.max_entities) or too large a body."},
    503: {"model": ErrorDetail, "description": "The cache shards do not answer."},
}


def _body_schema(model: type) -> Dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


class _FeatureAPI(FastAPI):
    """FastAPI whose OpenAPI document also declares the bearer scheme, on every route but ``/health``."""

    def openapi(self) -> Dict[str, Any]:
        if self.openapi_schema is None:
            doc = super().openapi()
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A secret of serving.tokens (when any is set)."}
            }
            for path, ops in doc.get("paths", {}).items():
                if path != "/health":
                    for op in ops.values():
                        op["security"] = [{"bearer": []}, {}]  # {}: none needed when no tokens are configured
            self.openapi_schema = doc
        return self.openapi_schema


api = _FeatureAPI(
    title="fabric_ray features",
    description="Feast-compatible online feature server over fabric_ray's cache shards.",
    version="1",
)


def _json(doc: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")).encode(), status, headers, media_type="application/json")


def _refuse(exc: RequestError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json(error_content(exc), exc.status, headers)


def _unavailable(exc: BaseException) -> Response:
    return _json({"detail": f"feature cache unavailable ({exc}); is the fabric up? try again shortly"}, 503)


async def _decode(request: Request) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise RequestError(f"request body is {length} bytes; at most {MAX_BODY_BYTES}", 413)
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"request body is {len(raw)} bytes; at most {MAX_BODY_BYTES}", 413)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError("request body is not valid JSON: nested too deeply") from None


# No per-request access log: writing it (a file stat and flush per request) cost more CPU than the
# whole read here; errors are still logged.
@serve.deployment(
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    logging_config={"enable_access_log": False},
)
@serve.ingress(api)
class FeatureServer:
    """Answers online feature reads and pushes from the fabric's cache shards.

    Args:
        namespace: Ray namespace of the fabric's actors.
        cache_shards: number of cache shards.
        catalog: what is served.
        serving: ``ServingConfig`` settings (``max_entities``, ``tokens``).
    """

    async def __init__(self, namespace: str, cache_shards: int, catalog: Catalog, serving: Dict[str, Any]) -> None:
        self._n_shards = cache_shards
        self._catalog = catalog
        self._max_entities = int(serving.get("max_entities", MAX_ENTITIES))
        self._access = Access(serving.get("tokens") or ())
        self._shards = ShardReader(
            lambda i: ray.get_actor(cache_shard_name(i), namespace=namespace),
            cache_shards,
            ray.get_runtime_context().get_node_id(),
            timeout_s=CALL_TIMEOUT_S,
        )
        await self._shards.start()  # same-node shards are read over their local socket from the first request

    @api.post(
        "/get-online-features",
        response_model=OnlineFeaturesResponse,
        responses=_ERRORS,
        openapi_extra=_body_schema(GetOnlineFeaturesRequest),
        summary="Online features of entity rows (Feast wire format)",
    )
    async def get_online_features(self, request: Request) -> Response:
        """Feast's ``/get-online-features``: see ``fabric_ray.features.wire``."""
        try:
            token = self._access.authenticate(request.headers.get("authorization"))
            req = parse_request(await _decode(request), self._catalog, max_entities=self._max_entities)
            self._access.permit(token, req.join_keys)
        except RequestError as exc:
            return _refuse(exc)
        calls = plan_online(req, self._n_shards)
        try:
            lookups = await self._shards.read(calls)
        except ShardsUnavailable as exc:
            return _unavailable(exc)
        return _json(assemble(req, calls, lookups))

    @api.post(
        "/push",
        response_model=PushResponse,
        responses={**_ERRORS, 422: {"description": "Unknown push source (as Feast answers), or a push to 'offline'."}},
        openapi_extra=_body_schema(PushFeaturesRequest),
        summary="Push rows to the views a push source feeds",
    )
    async def push(self, request: Request) -> Response:
        """Feast's ``/push``: rows go to the cache shards, which write them to the online store per ``features.write_mode``."""
        try:
            token = self._access.authenticate(request.headers.get("authorization"))
            push = parse_push(await _decode(request), self._catalog, max_rows=self._max_entities)
            self._access.permit(token, push.tables)
            check_push_target(push, self._catalog)
        except RequestError as exc:
            return _refuse(exc)
        return await self._put(push, {"push_source_name": push.push_source, "rows": push.rows, "views": sorted(push.tables)})

    @api.post(
        "/write-to-online-store",
        responses=_ERRORS,
        openapi_extra=_body_schema(WriteToOnlineStoreRequest),
        summary="Write rows of one view (Feast's remote online store uses this)",
    )
    async def write_to_online_store(self, request: Request) -> Response:
        """Feast's ``/write-to-online-store``: rows of one view, into the cache shards like a push."""
        try:
            token = self._access.authenticate(request.headers.get("authorization"))
            push = parse_write(await _decode(request), self._catalog, max_rows=self._max_entities)
            self._access.permit(token, push.tables)
        except RequestError as exc:
            return _refuse(exc)
        return await self._put(push, None)

    async def _put(self, push: Any, answer: Any) -> Response:
        parts = plan_push(push, self._catalog, self._n_shards)
        try:
            await self._shards.call("put", [(s, (view, table)) for s, view, table in parts])
        except ShardsUnavailable as exc:
            return _unavailable(exc)
        return _json(answer)

    @api.get("/health", response_model=HealthResponse, responses={503: {"model": ErrorDetail}}, summary="Liveness")
    async def health(self) -> Response:
        """``{"status": "ok", "cache_shards": n, "local_reads": k, "feature_views": [...]}`` when every shard answers
        (``k``: shards this replica reads over their local socket); open to all."""
        view = next(iter(sorted(self._catalog.views)), None)
        try:
            if view is not None:
                await self._shards.call("size", [(i, (view,)) for i in range(self._n_shards)])
        except ShardsUnavailable as exc:
            return _unavailable(exc)
        return _json(
            {
                "status": "ok",
                "cache_shards": self._n_shards,
                "local_reads": self._shards.local(),
                "feature_views": sorted(self._catalog.views),
            }
        )

    async def catalog(self) -> Catalog:
        """The catalog served (for Python handles that attach through Serve)."""
        return self._catalog


def build_app(args: Dict[str, Any]) -> serve.Application:
    """Serve application builder (``import_path: serving.features:build_app``).

    Args:
        args: ``namespace`` (default ``fabric``), ``cache_shards`` (default 2), ``catalog`` (a
            :class:`~fabric_ray.features.catalog.Catalog`) and ``serving`` (``ServingConfig``
            settings as a dict). From a Serve config file, give ``config`` (a fabric YAML path,
            optional) instead of ``catalog`` and ``serving``: they are loaded from it and the feature repo.
    """
    from fabric_ray.config import ServingConfig, load_config

    catalog = args.get("catalog")
    serving = args.get("serving")
    if catalog is None or serving is None:
        cfg = load_config(args.get("config"))
        if catalog is None:
            from fabric_ray.features.feast_repo import load_catalog

            catalog = load_catalog(cfg)
        serving = serving if serving is not None else cfg.serving.model_dump()
    settings = ServingConfig.model_validate(serving)
    options: Dict[str, Any] = {"ray_actor_options": {"num_cpus": float(args.get("num_cpus", 0.1))}}
    if settings.autoscaling is not None:
        options["autoscaling_config"] = settings.autoscaling
    else:
        options["num_replicas"] = settings.replicas
    return FeatureServer.options(**options).bind(
        str(args.get("namespace", "fabric")), int(args.get("cache_shards", 2)), catalog, settings.model_dump()
    )
