"""Feast feature server's HTTP wire format: parse ``/get-online-features`` and ``/push``, build responses.

Read request (by a list of features, or by a feature service)::

    {"features": ["user_payments:txn_count", ...], "entities": {"user_id": [1, 2]},
     "full_feature_names": false}
    {"feature_service": "fraud_model", "entities": {"user_id": [1, 2], "merchant_id": [7, 9]}}

Response (column-major; the join key columns come first, in the request's order, as Feast does)::

    {"metadata": {"feature_names": ["user_id", "txn_count"]},
     "results": [{"values": [1, 2], "statuses": ["PRESENT", "PRESENT"], "event_timestamps": [...]},
                 {"values": [5, null], "statuses": ["PRESENT", "NOT_FOUND"], "event_timestamps": [...]}]}

Push request (Feast's ``PushFeaturesRequest``)::

    {"push_source_name": "user_payments_push", "to": "online",
     "df": {"user_id": [1], "txn_count": [3], ..., "event_ts": ["2026-11-26T10:00:00Z"]}}

Every refusal is a :class:`RequestError` with a 4xx status and a message naming the culprit;
:func:`error_content` renders it: refusals Feast reports with one of its exception classes
(unknown feature view, feature service or push source, colliding feature names, permission)
come in Feast's body, a JSON string holding ``module``, ``class`` and ``message``, so Feast's
Python client raises the same exception; all others are ``{"detail": "<message>"}``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

import pyarrow as pa

from fabric_ray.features.cache import Lookup
from fabric_ray.features.catalog import Catalog
from fabric_ray.features.definitions import FeatureView

__all__ = [
    "MAX_ENTITIES",
    "OnlineRequest",
    "PushRequest",
    "RequestError",
    "build_response",
    "error_content",
    "parse_push",
    "parse_request",
    "parse_write",
]

MAX_ENTITIES = 10_000
# Fields Feast 0.67's clients send. include_feature_view_version_metadata is accepted and ignored:
# feature views have no versions here yet.
_REQUEST_FIELDS = frozenset(
    {"features", "feature_service", "entities", "full_feature_names", "include_feature_view_version_metadata"}
)
# Feast's PushFeaturesRequest; allow_registry_cache and transform_on_write are accepted and ignored
# (the catalog is fixed while the server runs; there are no on-write transformations).
_PUSH_FIELDS = frozenset({"push_source_name", "df", "to", "allow_registry_cache", "transform_on_write"})
_WRITE_FIELDS = frozenset({"feature_view_name", "df", "allow_registry_cache", "transform_on_write"})
PUSH_TARGETS = ("online", "offline", "online_and_offline")
_EPOCH = "1970-01-01T00:00:00Z"
_EPOCH_DT, _ONE_MS = datetime(1970, 1, 1, tzinfo=timezone.utc), timedelta(milliseconds=1)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Event-timestamp columns tried, in order, when the push source's batch source names none.
_TIMESTAMP_COLUMNS = ("event_timestamp", "event_ts", "timestamp", "event_ts_ms")


class RequestError(ValueError):
    """A request the server refuses.

    Attributes:
        status: the HTTP status (4xx) to answer with.
        feast_class: the Feast exception class (``feast.errors``) Feast's own server raises for
            the same refusal, if any; its clients map the error body back to that class.

    Example:
        >>> RequestError("unknown feature view 'x'", 404, "FeatureViewNotFoundException").status
        404
    """

    def __init__(self, message: str, status: int = 400, feast_class: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.feast_class = feast_class


def error_content(exc: RequestError) -> Any:
    """The JSON content of the error response for ``exc`` (see the module docstring).

    Example:
        >>> error_content(RequestError("'entities' must be an object"))
        {'detail': "'entities' must be an object"}
        >>> json.loads(error_content(RequestError("no view 'x'", 404, "FeatureViewNotFoundException")))["class"]
        'FeatureViewNotFoundException'
    """
    if exc.feast_class is None:
        return {"detail": str(exc)}
    return json.dumps({"module": "feast.errors", "class": exc.feast_class, "message": str(exc)})


def _catalog(views: Catalog | Mapping[str, FeatureView]) -> Catalog:
    return views if isinstance(views, Catalog) else Catalog(dict(views))


# -- /get-online-features ----------------------------------------------------------------------
@dataclass(frozen=True)
class OnlineRequest:
    """A validated ``/get-online-features`` request.

    Attributes:
        entities: join key -> key values (one per row), in the request's order of join keys.
        refs: ``(view, feature)`` pairs, in request order (a service's order for a service).
        join_keys: view -> its join key, for the views in ``refs``.
        full_feature_names: whether to name results ``view__feature``.
    """

    entities: dict[str, list]
    refs: list[tuple[str, str]]
    join_keys: dict[str, str] = field(default_factory=dict)
    full_feature_names: bool = False

    @property
    def rows(self) -> int:
        """Number of entity rows asked for."""
        return len(next(iter(self.entities.values())))

    def keys_of(self, view: str) -> list:
        """The key values ``view`` is read with (its own join key's column)."""
        return self.entities[self.join_keys[view]]

    def by_view(self) -> dict[str, list[str]]:
        """Requested features grouped by view, order kept."""
        out: dict[str, list[str]] = {}
        for view, feature in self.refs:
            out.setdefault(view, []).append(feature)
        return out

    def feature_names(self) -> list[str]:
        """Response column names of the features (without the join keys)."""
        if self.full_feature_names:
            return [f"{v}__{f}" for v, f in self.refs]
        return [f for _, f in self.refs]


def _check_body(body: Any, fields: frozenset[str]) -> None:
    """Refuse a body that is not a JSON object, or that has fields outside ``fields`` (400)."""
    if type(body) is not dict:
        raise RequestError(f"request body must be a JSON object, got {type(body).__name__}")
    if not fields.issuperset(body):
        unknown = sorted(set(body) - fields)
        raise RequestError(f"unknown request fields {unknown}; expected some of {sorted(fields)}")


def parse_request(
    body: Any, catalog: Catalog | Mapping[str, FeatureView], *, max_entities: int = MAX_ENTITIES
) -> OnlineRequest:
    """Validate a ``/get-online-features`` body against the catalog.

    Args:
        body: the decoded JSON body.
        catalog: what is served (a plain ``{name: FeatureView}`` mapping works too).
        max_entities: most entity rows a request may carry (more: 413).

    Raises:
        RequestError: 400 for a malformed body, 404 for unknown views, features or services,
            413 for too many entities; the message names the offending field and value.

    Example:
        >>> from fabric_ray.demo.payments import USER_PAYMENTS
        >>> r = parse_request({"features": ["user_payments:txn_count"], "entities": {"user_id": [1]}},
        ...                   {"user_payments": USER_PAYMENTS})
        >>> r.refs, r.entities
        ([('user_payments', 'txn_count')], {'user_id': [1]})
    """
    cat = _catalog(catalog)
    _check_body(body, _REQUEST_FIELDS)
    refs = _refs(body, cat)
    full = body.get("full_feature_names", False)
    if type(full) is not bool:
        raise RequestError(f"'full_feature_names' must be true or false, got {full!r}")
    meta = body.get("include_feature_view_version_metadata", False)
    if type(meta) is not bool:
        raise RequestError(f"'include_feature_view_version_metadata' must be true or false, got {meta!r}")
    _check_collisions(refs, full)
    views = {v: cat.views[v] for v, _ in refs}
    join_keys = {name: view.entity.join_key for name, view in views.items()}
    dtypes = {view.entity.join_key: view.entity.dtype for view in views.values()}
    entities = _entities(body.get("entities"), dtypes, max_entities)
    return OnlineRequest(entities=entities, refs=refs, join_keys=join_keys, full_feature_names=full)


def _refs(body: dict, cat: Catalog) -> list[tuple[str, str]]:
    service = body.get("feature_service")
    features = body.get("features")
    if service is not None:
        if type(service) is not str or not service:
            raise RequestError(f"'feature_service' must be the name of a feature service, got {service!r}")
        if features:  # Feast's clients send features=[] beside a service
            raise RequestError("give either 'features' (a list of 'view:feature') or 'feature_service', not both")
        svc = cat.services.get(service)
        if svc is None:
            raise RequestError(
                f"unknown feature service {service!r}; known services: {sorted(cat.services)}",
                404,
                "FeatureServiceNotFoundException",
            )
        return list(svc.refs)
    if type(features) is not list or not features:
        raise RequestError("'features' must be a non-empty list of 'view:feature' strings (or give 'feature_service')")
    refs: list[tuple[str, str]] = []
    for ref in features:
        if type(ref) is not str or ref.count(":") != 1:
            raise RequestError(f"feature reference {ref!r} must look like 'view:feature'")
        view_name, feature = ref.split(":")
        view = cat.views.get(view_name)
        if view is None:
            raise RequestError(
                f"unknown feature view {view_name!r} in {ref!r}; known views: {sorted(cat.views)}",
                404,
                "FeatureViewNotFoundException",
            )
        if feature not in view.feature_names:
            raise RequestError(f"feature view {view_name!r} has no feature {feature!r}; it has {list(view.feature_names)}", 404)
        refs.append((view_name, feature))
    return refs


def _check_collisions(refs: list[tuple[str, str]], full: bool) -> None:
    names = [f"{v}__{f}" for v, f in refs] if full else [f for _, f in refs]
    if len(set(names)) == len(names):
        return
    dupes = sorted({n for n in names if names.count(n) > 1})
    hint = "" if full else "; ask with 'full_feature_names': true, or ask for each feature once"
    raise RequestError(f"duplicate feature names {dupes} in the response{hint}", 400, "FeatureNameCollisionError")


def _entities(entities: Any, dtypes: Mapping[str, str], max_entities: int) -> dict[str, list]:
    example = "{" + ", ".join(f"{k!r}: [values]" for k in dtypes) + "}"
    if type(entities) is not dict or not entities:
        raise RequestError(f"'entities' must be an object like {example}")
    missing = [k for k in dtypes if k not in entities]
    if missing:
        raise RequestError(
            f"'entities' lacks the join key(s) {missing} of the requested features; got {sorted(entities)}; send {example}"
        )
    if len(entities) != len(dtypes):
        extra = sorted(k for k in entities if k not in dtypes)
        raise RequestError(f"'entities' holds {extra}, not join key(s) of the requested features {sorted(dtypes)}")
    rows = None
    for key, values in entities.items():
        if type(values) is not list or not values:
            raise RequestError(f"entities.{key} must be a non-empty list")
        if len(values) > max_entities:
            raise RequestError(f"entities.{key} has {len(values)} values; at most {max_entities} per request", 413)
        if rows is None:
            rows = (key, len(values))
        elif len(values) != rows[1]:
            raise RequestError(
                f"entities.{key} has {len(values)} values but entities.{rows[0]} has {rows[1]}; "
                "every join key needs one value per entity row"
            )
        _check_keys(key, dtypes[key], values)
    return entities


def _check_keys(join_key: str, dtype: str, values: list) -> None:
    """Raise naming the first value of ``values`` that is not a ``dtype`` key (fast path: all fine)."""
    if dtype == "int64":
        if all(type(v) is int for v in values) and _INT64_MIN <= min(values) and max(values) <= _INT64_MAX:
            return
    elif dtype == "string":
        if all(type(v) is str for v in values):
            return
    elif dtype == "float64":
        if all(type(v) is float or type(v) is int for v in values):
            return
    elif all(type(v) is bool for v in values):
        return
    for i, v in enumerate(values):
        if not _is_value(dtype, v):
            raise RequestError(f"entities.{join_key}[{i}]: expected {dtype}, got {v!r}")


def _is_value(dtype: str, v: Any) -> bool:
    if dtype == "int64":
        return type(v) is int and _INT64_MIN <= v <= _INT64_MAX
    if dtype == "float64":
        return type(v) is float or type(v) is int
    if dtype == "string":
        return type(v) is str
    return type(v) is bool


_ISO_CACHE: dict[int, str] = {}


def _iso(ms: int | None) -> str:
    if ms is None:
        return _EPOCH
    s = ms // 1000
    text = _ISO_CACHE.get(s)
    if text is None:
        if len(_ISO_CACHE) > 100_000:
            _ISO_CACHE.clear()
        text = _ISO_CACHE[s] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))
    return text


def build_response(request: OnlineRequest, lookups: Mapping[str, Lookup]) -> dict[str, Any]:
    """Assemble the Feast-format response from one :class:`Lookup` per view, rows in request order.

    Example:
        >>> from fabric_ray.demo.payments import USER_PAYMENTS
        >>> req = parse_request({"features": ["user_payments:txn_count"], "entities": {"user_id": [1]}},
        ...                     {"user_payments": USER_PAYMENTS})
        >>> doc = build_response(req, {"user_payments": Lookup({"txn_count": [4]}, {"txn_count": ["PRESENT"]}, [0])})
        >>> doc["metadata"]["feature_names"], doc["results"][1]["values"]
        (['user_id', 'txn_count'], [4])
    """
    n = request.rows
    names = list(request.entities)
    key_statuses, key_stamps = ["PRESENT"] * n, [_EPOCH] * n
    results: list[dict[str, Any]] = [
        {"values": values, "statuses": key_statuses, "event_timestamps": key_stamps} for values in request.entities.values()
    ]
    stamps = {view: [_iso(ms) for ms in lookup.event_ms] for view, lookup in lookups.items()}
    names += request.feature_names()
    for view, feature in request.refs:
        lookup = lookups[view]
        results.append({"values": lookup.values[feature], "statuses": lookup.statuses[feature], "event_timestamps": stamps[view]})
    return {"metadata": {"feature_names": names}, "results": results}


# -- /push -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushRequest:
    """A validated ``/push`` request.

    Attributes:
        push_source: the push source's name.
        to: ``online``, ``offline`` or ``online_and_offline``.
        tables: view -> its row table (join key, features, ``event_ts_ms``), one row per pushed row.
    """

    push_source: str
    to: str
    tables: dict[str, pa.Table]

    @property
    def rows(self) -> int:
        """Rows pushed."""
        return next(iter(self.tables.values())).num_rows if self.tables else 0


_ARROW = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}


def parse_push(body: Any, catalog: Catalog, *, max_rows: int = MAX_ENTITIES) -> PushRequest:
    """Validate a ``/push`` body and turn its ``df`` into one row table per view the source feeds.

    ``df`` holds one list per column, all of one length: each fed view's join key and features
    (``null`` for a missing value) and the event timestamp column (the push source's batch
    source's ``timestamp_field``; else ``event_timestamp``, ``event_ts``, ``timestamp`` or
    ``event_ts_ms``). Timestamps are ISO 8601 strings (UTC unless they carry an offset) or
    numbers since the epoch in seconds, milliseconds, microseconds or nanoseconds, told apart
    by magnitude (unambiguous for times between 1973 and 5138); ``event_ts_ms`` is always
    milliseconds. Other columns are ignored, as Feast does.

    Raises:
        RequestError: 400 for a malformed body, 413 for too many rows, 422 for an unknown push
            source (as Feast answers); the message names the field, column or row.

    Example:
        >>> from fabric_ray.demo.payments import USER_PAYMENTS
        >>> from fabric_ray.features.catalog import PushSource
        >>> cat = Catalog.of([USER_PAYMENTS], push_sources=[PushSource("p", ("user_payments",))])
        >>> df = {"user_id": [1], "txn_count": [2], "amount_sum": [3.0], "txn_count_1m": [1],
        ...       "amount_sum_1m": [3.0], "event_ts": ["1970-01-01T00:00:01Z"]}
        >>> parse_push({"push_source_name": "p", "df": df}, cat).tables["user_payments"]["event_ts_ms"].to_pylist()
        [1000]
    """
    _check_body(body, _PUSH_FIELDS)
    name = body.get("push_source_name")
    if type(name) is not str or not name:
        raise RequestError(f"'push_source_name' must be the name of a push source, got {name!r}")
    source = catalog.push_sources.get(name)
    if source is None:
        raise RequestError(
            f"unknown push source {name!r}; known push sources: {sorted(catalog.push_sources)}", 422, "PushSourceNotFoundException"
        )
    to = body.get("to", "online")
    if to not in PUSH_TARGETS:
        raise RequestError(f"'to' must be one of {list(PUSH_TARGETS)}, got {to!r}")
    for flag in ("allow_registry_cache", "transform_on_write"):
        if type(body.get(flag, True)) is not bool:
            raise RequestError(f"{flag!r} must be true or false, got {body[flag]!r}")
    df = _df(body.get("df"), max_rows)
    tables = _tables(catalog, source.views, df, f"fed by push source {name!r}")
    return PushRequest(push_source=name, to=to, tables=tables)


def parse_write(body: Any, catalog: Catalog, *, max_rows: int = MAX_ENTITIES) -> PushRequest:
    """Validate a ``/write-to-online-store`` body (Feast's ``WriteToFeatureStoreRequest``).

    Feast's ``remote`` online store writes through this endpoint (``FeatureStore.push`` and
    ``write_to_online_store`` on a client whose online store is this server): ``{"feature_view_name",
    "df", "allow_registry_cache"?, "transform_on_write"?}``, ``df`` as in :func:`parse_push`
    (Feast sends ``event_timestamp`` as naive UTC ISO strings, and a ``created`` column, ignored).

    Raises:
        RequestError: 400 for a malformed body, 404 for an unknown view, 413 for too many rows.
    """
    _check_body(body, _WRITE_FIELDS)
    name = body.get("feature_view_name")
    if type(name) is not str or not name:
        raise RequestError(f"'feature_view_name' must be the name of a feature view, got {name!r}")
    if name not in catalog.views:
        raise RequestError(
            f"unknown feature view {name!r}; known views: {sorted(catalog.views)}", 404, "FeatureViewNotFoundException"
        )
    for flag in ("allow_registry_cache", "transform_on_write"):
        if type(body.get(flag, True)) is not bool:
            raise RequestError(f"{flag!r} must be true or false, got {body[flag]!r}")
    df = _df(body.get("df"), max_rows)
    return PushRequest(push_source="", to="online", tables=_tables(catalog, (name,), df, "written to it directly"))


def _df(df: Any, max_rows: int) -> dict[str, list]:
    if type(df) is not dict or not df:
        raise RequestError("'df' must be an object of columns, like {'user_id': [1, 2], 'event_ts': [...], <feature>: [...]}")
    rows = None
    for column, values in df.items():
        if type(values) is not list or not values:
            raise RequestError(f"df.{column} must be a non-empty list (one value per row)")
        if rows is None:
            rows = (column, len(values))
        elif len(values) != rows[1]:
            raise RequestError(f"df.{column} has {len(values)} values but df.{rows[0]} has {rows[1]}; columns need one value per row")
    assert rows is not None
    if rows[1] > max_rows:
        raise RequestError(f"df has {rows[1]} rows; at most {max_rows} per request", 413)
    return df


def _tables(catalog: Catalog, views: Sequence[str], df: dict[str, list], fed_by: str) -> dict[str, pa.Table]:
    tables = {}
    stamps: dict[str, list[int]] = {}
    for view_name in views:
        view = catalog.view(view_name)
        ts_col = _timestamp_column(catalog, view_name, df)
        if ts_col not in stamps:
            stamps[ts_col] = _event_ms(ts_col, df[ts_col])
        tables[view_name] = _row_table(view, df, stamps[ts_col], fed_by)
    return tables


def _timestamp_column(catalog: Catalog, view: str, df: Mapping[str, list]) -> str:
    batch = catalog.batch_sources.get(view)
    candidates = ((batch.timestamp_field,) if batch is not None else ()) + _TIMESTAMP_COLUMNS
    for column in candidates:
        if column in df:
            return column
    want = repr(batch.timestamp_field) if batch is not None else f"one of {list(_TIMESTAMP_COLUMNS)}"
    raise RequestError(f"df lacks the event timestamp column of view {view!r}: {want}; got columns {sorted(df)}")


def _row_table(view: FeatureView, df: Mapping[str, list], event_ms: list[int], fed_by: str) -> pa.Table:
    key = view.entity.join_key
    needed = [key, *view.feature_names]
    missing = [c for c in needed if c not in df]
    if missing:
        raise RequestError(f"df lacks columns {missing} of feature view {view.name!r} ({fed_by})")
    keys = df[key]
    _check_column(key, view.entity.dtype, keys)
    columns = {key: pa.array(keys, _ARROW[view.entity.dtype])}
    for feat in view.features:
        values = df[feat.name]
        _check_column(feat.name, feat.dtype, values, nullable=True)
        columns[feat.name] = pa.array(values, _ARROW[feat.dtype])
    columns["event_ts_ms"] = pa.array(event_ms, pa.int64())
    return pa.table(columns)


def _check_column(column: str, dtype: str, values: list, nullable: bool = False) -> None:
    for i, v in enumerate(values):
        if not (_is_value(dtype, v) or (nullable and v is None)):
            raise RequestError(f"df.{column}[{i}]: expected {dtype}{' or null' if nullable else ''}, got {v!r}")


def _event_ms(column: str, values: list) -> list[int]:
    out = []
    for i, v in enumerate(values):
        try:
            out.append(_to_ms(v, unit_ms=column == "event_ts_ms"))
        except (TypeError, ValueError, OverflowError):
            raise RequestError(
                f"df.{column}[{i}]: expected an ISO 8601 time or a number since the epoch, got {v!r}"
            ) from None
    return out


def _to_ms(v: Any, *, unit_ms: bool = False) -> int:
    """Milliseconds since the epoch of an ISO string, a datetime, or a number (unit by magnitude)."""
    if type(v) is str:
        text = v.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        v = datetime.fromisoformat(text)
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        return (v - _EPOCH_DT) // _ONE_MS
    if type(v) is bool or not isinstance(v, (int, float)) or (type(v) is float and not math.isfinite(v)):
        raise TypeError(v)
    if unit_ms:
        return int(v)
    size = abs(v)
    if size < 1e11:  # seconds (up to the year 5138)
        return int(v * 1000)
    if size < 1e14:  # milliseconds
        return int(v)
    if size < 1e17:  # microseconds
        return int(v // 1000)
    return int(v // 1_000_000)  # nanoseconds

