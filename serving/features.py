"""FeatureServer: Feast-compatible online feature serving over the cache shards, on Ray Serve.

Routes (Feast feature server wire format):
    POST /get-online-features   column-major features for a list of entity keys
    GET  /health                liveness, with the number of cache shards answering

Deploy with ``serve run serving.features:build_app namespace=fabric cache_shards=2`` or the
Serve config in ``cluster/serve_features.yaml``; the fabric deploys it itself on ``fabric up``.
"""


import asyncio
import json
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from actors.cache import cache_shard_name, submit_reads
from fabric_ray.demo.payments import USER_PAYMENTS
from fabric_ray.features.definitions import FeatureView
from fabric_ray.features.online import merge_lookups
from fabric_ray.features.wire import RequestError, build_response, parse_request

READ_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 8 * 1024 * 1024
api = FastAPI(title="fabric_ray features", description="Feast-compatible online feature server")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message})


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class FeatureServer:
    """Answers online feature reads from the fabric's cache shards.

    Args:
        namespace: Ray namespace of the fabric's actors.
        cache_shards: number of cache shards.
        views: feature views served.
    """

    def __init__(self, namespace: str, cache_shards: int, views: "tuple[FeatureView, ...]" = (USER_PAYMENTS,)) -> None:
        self._namespace = namespace
        self._views = {v.name: v for v in views}
        self._n_shards = cache_shards
        self._shards: list[Any] | None = None

    def _get_shards(self) -> list[Any]:
        if self._shards is None:
            self._shards = [ray.get_actor(cache_shard_name(i), namespace=self._namespace) for i in range(self._n_shards)]
        return self._shards

    @api.post("/get-online-features")
    async def get_online_features(self, request: Request) -> JSONResponse:
        """Feast's ``/get-online-features``: see ``fabric_ray.features.wire``."""
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"request body is {len(raw)} bytes; at most {MAX_BODY_BYTES}")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"request body is not valid JSON: {exc}")
        except RecursionError:
            return _error(400, "request body is not valid JSON: nested too deeply")
        try:
            req = parse_request(body, self._views)
        except RequestError as exc:
            return _error(exc.status, str(exc))
        try:
            shards = self._get_shards()
            lookups = {}
            for view, features in req.by_view().items():
                refs = submit_reads(shards, view, req.keys, features)
                got = await asyncio.wait_for(asyncio.gather(*(ref for _, ref in refs.values())), READ_TIMEOUT_S)
                parts = {s: (pos, lookup) for (s, (pos, _)), lookup in zip(refs.items(), got)}
                lookups[view] = merge_lookups(len(req.keys), features, parts)
        except (ValueError, ray.exceptions.RayError, asyncio.TimeoutError) as exc:
            self._shards = None  # look the shards up again next time
            return _error(503, f"feature cache unavailable ({type(exc).__name__}); is the fabric up? try again shortly")
        return JSONResponse(build_response(req, lookups))

    @api.get("/health")
    async def health(self) -> JSONResponse:
        """``{"status": "ok", "cache_shards": n}`` when every shard answers."""
        try:
            shards = self._get_shards()
            await asyncio.wait_for(asyncio.gather(*(s.size.remote(v) for s in shards for v in self._views)), 5)
        except (ValueError, ray.exceptions.RayError, asyncio.TimeoutError) as exc:
            self._shards = None
            return _error(503, f"feature cache unavailable: {type(exc).__name__}")
        return JSONResponse({"status": "ok", "cache_shards": len(shards), "feature_views": sorted(self._views)})


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder (``import_path: serving.features:build_app``).

    Args:
        args: ``namespace`` (default ``fabric``), ``cache_shards`` (default 2),
            ``replicas`` (default 1).
    """
    return FeatureServer.options(num_replicas=int(args.get("replicas", 1))).bind(
        str(args.get("namespace", "fabric")), int(args.get("cache_shards", 2))
    )
