"""Online reads and pushes over the cache shards: the plan both the HTTP server and Python handles run.

:func:`plan_online` turns a validated :class:`~fabric_ray.features.wire.OnlineRequest` into one
:class:`ReadCall` per cache shard and view (keys routed by the stable hash that every writer
uses), and :func:`assemble` puts the shards' answers back into Feast's response body.
:func:`plan_push` splits pushed rows by shard the same way. None of this touches Ray: the HTTP
server (``serving/features.py``) awaits the shard calls, :class:`FeatureClient` blocks on them.

Agents get a :class:`FeatureClient` as ``fabric.features``::

    fabric = fabric_ray.connect("auto", namespace="fabric")
    body = fabric.features.get_online(feature_service="fraud_model",
                                      entities={"user_id": [7], "merchant_id": [42]})
    fabric.features.push("user_payments_push", {"user_id": [7], "txn_count": [3], ...,
                                                 "event_ts": ["2026-11-26T10:00:00Z"]})

Same request, same body and statuses as ``POST /get-online-features``; the same
:class:`~fabric_ray.features.wire.RequestError` (with its HTTP ``status``) for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pyarrow as pa

from fabric_ray.features.cache import Lookup
from fabric_ray.features.catalog import Catalog
from fabric_ray.features.online import merge_lookups, plan_reads
from fabric_ray.features.routing import shard_of, split_by_shard
from fabric_ray.features.wire import (
    MAX_ENTITIES,
    OnlineRequest,
    PushRequest,
    RequestError,
    build_response,
    parse_push,
    parse_request,
)

__all__ = ["FeatureClient", "ReadCall", "assemble", "check_push_target", "online_body", "plan_online", "plan_push"]


@dataclass(frozen=True)
class ReadCall:
    """One ``CacheShard.get(view, keys, features)`` call of a read.

    Attributes:
        shard: index of the cache shard.
        view: feature view read.
        keys: the keys asked of that shard.
        features: features of ``view`` asked for.
        positions: the request rows ``keys`` stand for (``None``: all rows, in order).
    """

    shard: int
    view: str
    keys: list
    features: list[str]
    positions: list[int] | None


def plan_online(request: OnlineRequest, shards: int) -> list[ReadCall]:
    """The shard calls that answer ``request``: one per shard owning some keys, per view.

    Example:
        >>> from fabric_ray.demo.payments import USER_PAYMENTS
        >>> req = parse_request({"features": ["user_payments:txn_count"], "entities": {"user_id": [5]}},
        ...                     {"user_payments": USER_PAYMENTS})
        >>> [(c.view, c.keys, c.positions) for c in plan_online(req, 4)]
        [('user_payments', [5], None)]
    """
    plans: dict[str, dict[int, list[int]]] = {}
    calls = []
    for view, features in request.by_view().items():
        key = request.join_keys[view]
        keys = request.entities[key]
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = _plan(keys, shards)
        if len(plan) == 1:
            (shard,) = plan
            calls.append(ReadCall(shard, view, keys, features, None))
            continue
        for shard, positions in plan.items():
            calls.append(ReadCall(shard, view, [keys[i] for i in positions], features, positions))
    return calls


def _plan(keys: list, shards: int) -> dict[int, list[int]]:
    """``{shard: positions}``, as :func:`~fabric_ray.features.online.plan_reads` (the same hash), faster for one key."""
    if shards == 1:
        return {0: list(range(len(keys)))}
    if len(keys) == 1:
        return {shard_of(keys[0], shards): [0]}
    return plan_reads(keys, shards)


def assemble(request: OnlineRequest, calls: Sequence[ReadCall], lookups: Sequence[Lookup]) -> dict[str, Any]:
    """Feast's response body from the answers to ``calls`` (``lookups[i]`` answers ``calls[i]``)."""
    parts: dict[str, list[tuple[ReadCall, Lookup]]] = {}
    for call, lookup in zip(calls, lookups):
        parts.setdefault(call.view, []).append((call, lookup))
    merged = {}
    for view, answers in parts.items():
        if len(answers) == 1 and answers[0][0].positions is None:
            merged[view] = answers[0][1]
        else:
            features = answers[0][0].features
            merged[view] = merge_lookups(request.rows, features, {i: (c.positions, lk) for i, (c, lk) in enumerate(answers)})
    return build_response(request, merged)


def check_push_target(push: PushRequest, catalog: Catalog) -> None:
    """Refuse what the fabric cannot do yet: pushes to the offline store.

    Raises:
        RequestError: 422 for ``to`` ``offline`` or ``online_and_offline``, saying where batch
            rows go instead.
    """
    if push.to == "online":
        return
    where = {v: catalog.batch_sources[v].path for v in push.tables if v in catalog.batch_sources}
    hint = f"; write offline rows as Parquet files under {where} instead" if where else ""
    raise RequestError(
        f"push to {push.to!r} is not supported yet: the fabric pushes to the online store only (send 'to': 'online'){hint}",
        422,
    )


def plan_push(push: PushRequest, catalog: Catalog, shards: int) -> list[tuple[int, str, pa.Table]]:
    """``(shard, view, rows)`` for every shard that owns some of the pushed rows, per view."""
    out = []
    for view, table in push.tables.items():
        key = catalog.view(view).entity.join_key
        if shards == 1:
            out.append((0, view, table))
            continue
        for shard, part in split_by_shard(table, key, shards).items():
            out.append((shard, view, part))
    return out


def online_body(
    features: Sequence[str] | None, entities: Any, feature_service: str | None, full_feature_names: bool
) -> dict[str, Any]:
    """The HTTP request body for these arguments (what :meth:`FeatureClient.get_online` sends the parser)."""
    body: dict[str, Any] = {"entities": entities, "full_feature_names": full_feature_names}
    if features is not None:
        body["features"] = list(features) if isinstance(features, (list, tuple)) else features
    if feature_service is not None:
        body["feature_service"] = feature_service
    return body


def _columns(rows: Any, int_columns: frozenset[str] = frozenset()) -> dict[str, list]:
    """``{column: [values]}`` from a dict of columns, an Arrow table or a pandas DataFrame.

    pandas holds an integer column with missing values as floats with NaN: for a DataFrame,
    NaN becomes ``None`` and the ``int_columns`` get their integral floats back as ints.
    """
    if isinstance(rows, pa.Table):
        return rows.to_pydict()
    if isinstance(rows, Mapping):
        return {k: v if isinstance(v, list) else list(v) for k, v in rows.items()}
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas
        out = {}
        for k, values in rows.to_dict(orient="list").items():
            values = [None if isinstance(v, float) and v != v else v for v in values]
            if k in int_columns:
                values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
            out[k] = values
        return out
    raise RequestError(f"rows must be a dict of columns, a pyarrow Table or a pandas DataFrame; got {type(rows).__name__}")


class FeatureClient:
    """Python handle on the fabric's features, through cache shard actor handles (no HTTP).

    Get it as ``fabric.features`` (from :meth:`Fabric.start` or :func:`fabric_ray.connect`).

    Args:
        catalog: what the fabric serves.
        shards: handles of the cache shards, in shard order.
        max_entities: most entity rows (or pushed rows) per call, as ``serving.max_entities``.
        timeout_s: longest wait for the shards.
    """

    def __init__(self, catalog: Catalog, shards: Sequence[Any], *, max_entities: int = MAX_ENTITIES, timeout_s: float = 30) -> None:
        self.catalog = catalog
        self._shards = list(shards)
        self._max_entities = max_entities
        self._timeout_s = timeout_s

    def get_online(
        self,
        features: Sequence[str] | None = None,
        entities: Mapping[str, list] | None = None,
        feature_service: str | None = None,
        full_feature_names: bool = False,
    ) -> dict[str, Any]:
        """Online features: the body ``POST /get-online-features`` answers for the same request.

        Args:
            features: ``"view:feature"`` references; or
            feature_service: the name of a feature service.
            entities: join key -> key values, one per entity row (every join key the
                features need, all of one length).
            full_feature_names: name features ``view__feature``.

        Raises:
            RequestError: bad input (``status`` 400, 404 or 413, as over HTTP).

        Example (needs a running fabric)::

            fabric.features.get_online(["user_payments:txn_count"], {"user_id": [1, 2]})
        """
        import ray

        body = online_body(features, entities if entities is not None else {}, feature_service, full_feature_names)
        request = parse_request(body, self.catalog, max_entities=self._max_entities)
        calls = plan_online(request, len(self._shards))
        refs = [self._shards[c.shard].get.remote(c.view, c.keys, c.features) for c in calls]
        return assemble(request, calls, ray.get(refs, timeout=self._timeout_s))

    def push(self, push_source_name: str, rows: Any, to: str = "online") -> dict[str, Any]:
        """Push rows to the views a push source feeds, as ``POST /push`` does.

        The rows land in the cache shards at once (later reads see them) and reach the online
        store as ``features.write_mode`` says (through, behind or not at all).

        Args:
            push_source_name: a push source of the feature repo.
            rows: a dict of columns, a pyarrow Table or a pandas DataFrame: the views' join key
                and features, and the event timestamp (ISO strings, datetimes or epoch numbers).
            to: ``"online"`` (``"offline"`` and ``"online_and_offline"`` are refused for now).

        Returns:
            ``{"push_source_name": ..., "rows": n, "views": [...]}``.

        Raises:
            RequestError: bad input (400, 413, 422), as over HTTP.
        """
        import ray

        source = self.catalog.push_sources.get(push_source_name)
        views = [self.catalog.views[v] for v in source.views] if source is not None else []
        ints = frozenset(f.name for v in views for f in v.features if f.dtype == "int64") | {
            v.entity.join_key for v in views if v.entity.dtype == "int64"
        }
        body = {"push_source_name": push_source_name, "df": _columns(rows, ints), "to": to}
        push = parse_push(body, self.catalog, max_rows=self._max_entities)
        check_push_target(push, self.catalog)
        refs = [self._shards[s].put.remote(view, part) for s, view, part in plan_push(push, self.catalog, len(self._shards))]
        ray.get(refs, timeout=self._timeout_s)
        return {"push_source_name": push.push_source, "rows": push.rows, "views": sorted(push.tables)}
