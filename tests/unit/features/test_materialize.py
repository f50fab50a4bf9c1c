"""The plain logic of materialization (no Ray): scan filtering, the latest-row fold, row-group planning."""

from __future__ import annotations

import datetime as dt
import doctest

import numpy as np
import pyarrow as pa
import pytest

from fabric_ray.features import materialize as m
from fabric_ray.features import online_store
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.features.online_store import entity_key_bytes

VIEW = FeatureView("v", Entity("user", "user_id", "int64"), (Feature("x", "float64"), Feature("n", "int64")))
MS = 1_000_000  # ns per ms


def plan(start_ms: int | None, end_ms: int, created: bool = True) -> m.ScanPlan:
    return m.ScanPlan(VIEW, "ts", "created" if created else None, None if start_ms is None else start_ms * MS, end_ms * MS, 3, None, "file")


@pytest.mark.parametrize("module", [m, online_store])
def test_doctests_pass(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_scan_keeps_the_interval_and_drops_null_keys_and_times():
    table = pa.table({
        "user_id": pa.array([1, 2, None, 4, 5], pa.int32()),  # cast to the view's int64
        "x": [1.0, 2.0, 3.0, 4.0, 5.0],
        "n": [1, 2, 3, 4, 5],
        "ts": pa.array([10, 20, 20, None, 30], pa.timestamp("ms", tz="UTC")),
        "created": pa.array([1, None, 1, 1, 1], pa.timestamp("ms")),
    })
    rows, in_range = m.scan_rows(plan(10, 30), table, 100, "f.parquet")
    assert in_range == 2  # 10 in (start inclusive), 20 in, null key out, null time out, 30 out (end exclusive)
    assert rows.column_names == ["user_id", "x", "n", m.TS, m.CREATED, m.ORDER]
    assert rows.schema.field("user_id").type == pa.int64()
    assert rows.to_pydict() == {"user_id": [1, 2], "x": [1.0, 2.0], "n": [1, 2], m.TS: [10 * MS, 20 * MS],
                                m.CREATED: [1 * MS, np.iinfo(np.int64).min], m.ORDER: [100, 101]}
    everything, n = m.scan_rows(plan(None, 10**15, created=False), table.drop_columns(["created"]), 0)
    assert n == 3 and m.CREATED not in everything.column_names  # null key and null time dropped


def test_scan_names_the_file_and_column_of_a_bad_type():
    table = pa.table({"user_id": [1], "x": ["not a float"], "n": [1], "ts": pa.array([1], pa.timestamp("ms"))})
    with pytest.raises(m.MaterializeError, match=r"f.parquet: column 'x' is string, the view has double"):
        m.scan_rows(plan(None, 10, created=False), table, 0, "f.parquet")


def reference(rows: list[dict]) -> dict:
    """The latest row per key by (ts, created, order), in plain Python."""
    best: dict = {}
    for r in rows:
        k = r["user_id"]
        rank = (r[m.TS], r[m.CREATED], r[m.ORDER])
        if k not in best or rank > best[k][0]:
            best[k] = (rank, r)
    return {k: (r["x"], r["n"], r[m.TS] // MS, None if r[m.CREATED] == np.iinfo(np.int64).min else r[m.CREATED] // MS)
            for k, (_, r) in best.items()}


@pytest.mark.parametrize("min_fold_rows", [1, 7, 10_000])
def test_latest_rows_over_many_pieces_equals_the_reference(min_fold_rows):
    rng = np.random.default_rng(min_fold_rows)
    pieces, all_rows, order = [], [], 0
    for _ in range(12):
        n = int(rng.integers(0, 40))
        created = rng.integers(0, 3, n) * MS
        created[rng.random(n) < 0.2] = np.iinfo(np.int64).min
        piece = pa.table({
            "user_id": rng.integers(-5, 15, n), "x": rng.random(n), "n": rng.integers(0, 100, n),
            m.TS: rng.integers(0, 4, n) * MS,  # many ties on time, and on created
            m.CREATED: created, m.ORDER: np.arange(order, order + n),
        })
        order += n
        pieces.append(piece)
        all_rows.extend(piece.to_pylist())
    reducer = m.LatestRows(VIEW, created=True, min_fold_rows=min_fold_rows)
    for piece in pieces:
        reducer.add(piece)
    want = reference(all_rows)
    assert reducer.count() == len(want)
    batches = list(reducer.batches(5))
    assert all(b.num_rows <= 5 for b in batches)
    got = pa.concat_tables(batches)
    assert got.column_names == ["user_id", "x", "n", "event_ts_ms", "created_ts_ms"]
    assert {r["user_id"]: (r["x"], r["n"], r["event_ts_ms"], r["created_ts_ms"]) for r in got.to_pylist()} == want
    keys = entity_key_bytes(VIEW, got["user_id"]).to_pylist()
    assert keys == sorted(keys)  # the online store's key order
    assert reducer.count() == 0  # handed over and released


def test_plan_ranges_skips_row_groups_outside_the_interval_and_packs_the_rest():
    footers = [
        ("a", [(0, 10, 100, 0 * MS, 5 * MS), (1, 10, 100, 5 * MS, 9 * MS)]),
        ("b", [(0, 10, 60, 10 * MS, 12 * MS), (1, 10, 60, None, None), (2, 10, 60, 20 * MS, 30 * MS)]),
    ]
    ranges, skipped = m.plan_ranges(footers, 6 * MS, 20 * MS, block_bytes=150)
    assert skipped == 2  # a/0 ends before the start, b/2 starts at the (excluded) end
    assert [r.pieces for r in ranges] == [(("a", (1,)),), (("b", (0, 1)),)]
    assert [r.rows for r in ranges] == [10, 20]
    everything, none_skipped = m.plan_ranges(footers, None, 10**18, block_bytes=10**9)
    assert none_skipped == 0 and len(everything) == 1 and everything[0].rows == 50


def test_times_and_view_selection():
    utc = dt.timezone.utc
    assert m._as_utc(dt.datetime(2026, 1, 1), "start") == dt.datetime(2026, 1, 1, tzinfo=utc)
    assert m._as_utc(1_000, "start") == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=utc)
    assert m._as_utc("2026-01-01T01:00:00+01:00", "end") == dt.datetime(2026, 1, 1, tzinfo=utc)
    with pytest.raises(m.MaterializeError, match="end: 'soon' is not an ISO 8601 time"):
        m._as_utc("soon", "end")
    assert m._ns(dt.datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=utc)) == 1_000_005_000
    assert m._source_uri("/data/x") == "file:///data/x" and m._source_uri("s3://b/x") == "s3://b/x"


def test_latest_rows_with_string_keys_come_out_in_serialized_key_order():
    view = FeatureView("s", Entity("merchant", "name", "string"), (Feature("x", "float64"),))
    reducer = m.LatestRows(view, created=False, min_fold_rows=2)
    for names, ts in ((["b", "a", "ccc"], [1, 1, 1]), (["a", "", "b"], [2, 0, 1]), (["ccc"], [0])):
        n = len(names)
        reducer.add(pa.table({"name": names, "x": [float(t) for t in ts], m.TS: [t * MS for t in ts], m.ORDER: list(range(n))}))
    got = pa.concat_tables(list(reducer.batches(100)))
    assert dict(zip(got["name"].to_pylist(), got["event_ts_ms"].to_pylist())) == {"a": 2, "b": 1, "ccc": 1, "": 0}
    keys = entity_key_bytes(view, got["name"]).to_pylist()
    assert keys == sorted(keys)
