"""The demo's check of the batch features: what the Parquet files say against what the server answers.

:func:`expected_batch_features` reads the ``user_daily`` and ``merchant_daily`` files the demo
wrote (:mod:`fabric_ray.demo.batch_features`) and keeps each entity's latest row, as
materialization does. :func:`check_feature_service` asks the HTTP endpoint for the
``fraud_model`` feature service, one ``(user, merchant)`` pair per request, and lists every value
that differs.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"user_id": [1, 1], "n": [3, 4], "event_ts": pa.array([1, 2], pa.timestamp("us", tz="UTC"))})
    >>> latest_by_key(t, "user_id", ["n"])[1]["n"]
    4
"""

from __future__ import annotations

import io
import math
import time
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fabric_ray.config import FabricConfig
from fabric_ray.demo.batch_features import features_location
from fabric_ray.features.catalog import Catalog

__all__ = ["check_feature_service", "expected_batch_features", "latest_by_key"]


def latest_by_key(table: pa.Table, key: str, features: Sequence[str]) -> dict[Any, dict[str, Any]]:
    """``{key: {feature: value, "event_ts": datetime}}`` of each key's latest row by ``event_ts`` (then ``created_ts``)."""
    order = [("event_ts", "ascending")]
    if "created_ts" in table.column_names:
        order.append(("created_ts", "ascending"))
    table = table.take(pc.sort_indices(table, sort_keys=order))
    columns = {name: table[name].to_pylist() for name in (key, *features, "event_ts")}
    return {k: {f: columns[f][i] for f in (*features, "event_ts")} for i, k in enumerate(columns[key])}


def expected_batch_features(cfg: FabricConfig, catalog: Catalog, views: Sequence[str]) -> dict[str, dict[Any, dict[str, Any]]]:
    """Each view's latest feature values per entity, from its Parquet files under the storage root."""
    expected: dict[str, dict[Any, dict[str, Any]]] = {}
    for name in views:
        view = catalog.view(name)
        loc = features_location(cfg, name)
        tables = [pq.read_table(io.BytesIO(loc.read_bytes(f))) for f in sorted(loc.list()) if f.endswith(".parquet")]
        if not tables:
            expected[name] = {}
            continue
        expected[name] = latest_by_key(pa.concat_tables(tables, promote_options="default"), view.entity.join_key, view.feature_names)
    return expected


def _same(have: Any, want: Any) -> bool:
    if have is None or want is None:
        return have is want
    if isinstance(want, float) or isinstance(have, float):
        return math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-6)
    return bool(have == want)


def check_feature_service(
    url: str,
    service: str,
    catalog: Catalog,
    expected: Mapping[str, Mapping[Any, Mapping[str, Any]]],
    entity_rows: Sequence[Mapping[str, Any]],
    headers: Mapping[str, str] | None = None,
) -> tuple[list[str], list[float], int]:
    """Request ``service`` for each entity row; compare the views in ``expected``.

    Returns:
        ``(mismatches, latencies_ms, values_checked)``.
    """
    refs = [ref for ref in catalog.services[service].refs if ref[0] in expected]
    now = datetime.now(timezone.utc)
    mismatches: list[str] = []
    latencies: list[float] = []
    checked = 0
    with httpx.Client(base_url=url, timeout=10, headers=dict(headers or {})) as http:
        for row in entity_rows:
            body = {"feature_service": service, "entities": {k: [v] for k, v in row.items()}, "full_feature_names": True}
            t0 = time.perf_counter()
            r = http.post("/get-online-features", json=body)
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                mismatches.append(f"{row}: HTTP {r.status_code} {r.text[:200]}")
                continue
            answer = r.json()
            got = {n: (res["values"][0], res["statuses"][0]) for n, res in zip(answer["metadata"]["feature_names"], answer["results"])}
            for view, feature in refs:
                key = row[catalog.view(view).entity.join_key]
                held = expected[view].get(key, {})
                want = held.get(feature)
                have, status = got.get(f"{view}__{feature}", (None, "MISSING"))
                ttl_s = catalog.view(view).ttl_s
                stale = ttl_s is not None and want is not None and (now - held["event_ts"]).total_seconds() > ttl_s
                want_status = "NOT_FOUND" if not held else "NULL_VALUE" if want is None else "OUTSIDE_MAX_AGE" if stale else "PRESENT"
                checked += 1
                if status != want_status:
                    mismatches.append(f"{row}: {view}:{feature} has status {status}, expected {want_status}")
                elif not _same(have, want):
                    mismatches.append(f"{row}: {view}:{feature} served {have!r}, expected {want!r}")
    return mismatches, latencies, checked
