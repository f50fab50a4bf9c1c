"""Feast feature server's HTTP wire format: parse ``/get-online-features`` requests, build responses.

Request::

    {"features": ["user_payments:txn_count", ...], "entities": {"user_id": [1, 2]},
     "full_feature_names": false}

Response (column-major; the join key comes first, as Feast does)::

    {"metadata": {"feature_names": ["user_id", "txn_count"]},
     "results": [{"values": [1, 2], "statuses": ["PRESENT", "PRESENT"], "event_timestamps": [...]},
                 {"values": [5, null], "statuses": ["PRESENT", "NOT_FOUND"], "event_timestamps": [...]}]}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from fabric_ray.features.cache import Lookup
from fabric_ray.features.definitions import FeatureView

__all__ = ["OnlineRequest", "RequestError", "build_response", "parse_request"]

MAX_ENTITIES = 10_000
# Fields Feast 0.67's clients send. include_feature_view_version_metadata is accepted and ignored:
# feature views have no versions here yet.
_REQUEST_FIELDS = frozenset(
    {"features", "feature_service", "entities", "full_feature_names", "include_feature_view_version_metadata"}
)
_EPOCH = "1970-01-01T00:00:00Z"


class RequestError(ValueError):
    """A request the server refuses; ``status`` is the HTTP status (4xx) to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OnlineRequest:
    """A validated ``/get-online-features`` request.

    Attributes:
        join_key: the entity column.
        keys: entity key values, in request order.
        refs: ``(view, feature)`` pairs, in request order.
        full_feature_names: whether to name results ``view__feature``.
    """

    join_key: str
    keys: list[Any]
    refs: list[tuple[str, str]]
    full_feature_names: bool = False

    def by_view(self) -> dict[str, list[str]]:
        """Requested features grouped by view, order kept."""
        out: dict[str, list[str]] = {}
        for view, feature in self.refs:
            out.setdefault(view, []).append(feature)
        return out


def _check_key(join_key: str, dtype: str, value: Any, i: int) -> Any:
    ok = {
        "int64": isinstance(value, int) and not isinstance(value, bool),
        "float64": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "bool": isinstance(value, bool),
    }[dtype]
    if not ok:
        raise RequestError(f"entities.{join_key}[{i}]: expected {dtype}, got {value!r}")
    return value


def parse_request(body: Any, views: Mapping[str, FeatureView]) -> OnlineRequest:
    """Validate a request body against the known feature views.

    Raises:
        RequestError: with status 400 for a malformed body, 404 for unknown views or features;
            the message names the offending field and value.

    Example:
        >>> from fabric_ray.demo.payments import USER_PAYMENTS
        >>> r = parse_request({"features": ["user_payments:txn_count"], "entities": {"user_id": [1]}},
        ...                   {"user_payments": USER_PAYMENTS})
        >>> r.refs, r.keys
        ([('user_payments', 'txn_count')], [1])
    """
    if not isinstance(body, dict):
        raise RequestError(f"request body must be a JSON object, got {type(body).__name__}")
    unknown_fields = sorted(set(body) - _REQUEST_FIELDS)
    if unknown_fields:
        raise RequestError(f"unknown request fields {unknown_fields}; expected some of {sorted(_REQUEST_FIELDS)}")
    if "feature_service" in body:
        raise RequestError(f"unknown feature service {body['feature_service']!r}: feature services are not defined yet", 404)
    features = body.get("features")
    if not isinstance(features, list) or not features:
        raise RequestError("'features' must be a non-empty list of 'view:feature' strings")
    refs: list[tuple[str, str]] = []
    for ref in features:
        if not isinstance(ref, str) or ref.count(":") != 1:
            raise RequestError(f"feature reference {ref!r} must look like 'view:feature'")
        view_name, feature = ref.split(":")
        view = views.get(view_name)
        if view is None:
            raise RequestError(f"unknown feature view {view_name!r} in {ref!r}; known views: {sorted(views)}", 404)
        if feature not in view.feature_names:
            raise RequestError(f"feature view {view_name!r} has no feature {feature!r}; it has {list(view.feature_names)}", 404)
        refs.append((view_name, feature))
    join_keys = {views[v].entity.join_key for v, _ in refs}
    if len(join_keys) != 1:
        raise RequestError(f"features must share one entity; these use join keys {sorted(join_keys)}")
    (join_key,) = join_keys
    dtype = next(views[v].entity.dtype for v, _ in refs)
    entities = body.get("entities")
    if not isinstance(entities, dict) or not entities:
        raise RequestError(f"'entities' must be an object like {{{join_key!r}: [values]}}")
    if set(entities) != {join_key}:
        raise RequestError(f"'entities' must hold exactly the join key {join_key!r}; got {sorted(entities)}")
    raw_keys = entities[join_key]
    if not isinstance(raw_keys, list) or not raw_keys:
        raise RequestError(f"entities.{join_key} must be a non-empty list")
    if len(raw_keys) > MAX_ENTITIES:
        raise RequestError(f"entities.{join_key} has {len(raw_keys)} values; at most {MAX_ENTITIES} per request", 413)
    keys = [_check_key(join_key, dtype, v, i) for i, v in enumerate(raw_keys)]
    full = body.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise RequestError(f"'full_feature_names' must be true or false, got {full!r}")
    return OnlineRequest(join_key=join_key, keys=keys, refs=refs, full_feature_names=full)


def _iso(ms: int | None) -> str:
    if ms is None:
        return _EPOCH
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_response(request: OnlineRequest, lookups: Mapping[str, Lookup]) -> dict[str, Any]:
    """Assemble the Feast-format response from one :class:`Lookup` per view, keys in request order."""
    n = len(request.keys)
    names = [request.join_key]
    results: list[dict[str, Sequence[Any]]] = [
        {"values": list(request.keys), "statuses": ["PRESENT"] * n, "event_timestamps": [_EPOCH] * n}
    ]
    stamps = {view: [_iso(ms) for ms in lookup.event_ms] for view, lookup in lookups.items()}
    for view, feature in request.refs:
        lookup = lookups[view]
        names.append(f"{view}__{feature}" if request.full_feature_names else feature)
        results.append(
            {"values": lookup.values[feature], "statuses": lookup.statuses[feature], "event_timestamps": stamps[view]}
        )
    return {"metadata": {"feature_names": names}, "results": results}
