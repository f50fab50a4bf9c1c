"""Time-series functions against straightforward pandas references."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_ray.storage.timeseries import AGGREGATES, downsample, in_range, latest_per_key, time_ms

KEYS = ["a", "b", "c", None]


@st.composite
def tables(draw, null_keys: bool = True, max_rows: int = 60) -> pa.Table:
    n = draw(st.integers(0, max_rows))
    keys = draw(st.lists(st.sampled_from(KEYS if null_keys else KEYS[:-1]), min_size=n, max_size=n))
    ts = draw(st.lists(st.one_of(st.none(), st.integers(-5_000, 5_000)), min_size=n, max_size=n))
    v = draw(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)), min_size=n, max_size=n))
    i = draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n))
    return pa.table({"k": pa.array(keys, pa.string()), "ts": pa.array(ts, pa.int64()), "v": pa.array(v, pa.float64()), "i": pa.array(i, pa.int64())})


def _rows(table: pa.Table) -> list[tuple]:
    return [tuple(None if isinstance(x, float) and math.isnan(x) else x for x in row) for row in zip(*table.to_pydict().values())]


def _same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for p, q in zip(x, y):
            if isinstance(p, float) or isinstance(q, float):
                assert p is not None and q is not None and p == pytest.approx(q, rel=1e-9, abs=1e-6), (x, y)
            else:
                assert p == q, (x, y)


@settings(max_examples=60, deadline=None)
@given(tables())
def test_latest_per_key_matches_pandas(table):
    got = latest_per_key(table, "k", "ts")
    df = table.to_pandas()
    df["_pos"] = np.arange(len(df))
    df["_t"] = df["ts"].fillna(-(2**62))  # null times are the oldest
    ref = df.sort_values(["_t", "_pos"], kind="stable").drop_duplicates(subset=["k"], keep="last")
    ref = ref.drop(columns=["_pos", "_t"])
    want = {r[0]: r for r in _rows(pa.Table.from_pandas(ref, preserve_index=False, schema=table.schema))}
    rows = _rows(got)
    assert len(rows) == len(want)
    for row in rows:
        _same([row], [want[row[0]]])
    non_null = [r[0] for r in rows if r[0] is not None]
    assert non_null == sorted(non_null)


@settings(max_examples=60, deadline=None)
@given(tables(), st.integers(-6_000, 6_000), st.integers(0, 8_000), st.booleans(), st.booleans())
def test_in_range_matches_pandas(table, start, length, open_start, open_end):
    start_ms = None if open_start else start
    end_ms = None if open_end else start + length
    df = table.to_pandas()
    mask = df["ts"].notna()
    if start_ms is not None:
        mask &= df["ts"] >= start_ms
    if end_ms is not None:
        mask &= df["ts"] < end_ms
    got = in_range(table, "ts", start_ms, end_ms)
    assert got.num_rows == int(mask.sum())
    assert got["i"].to_pylist() == df.loc[mask, "i"].tolist()


def _pandas_downsample(table: pa.Table, interval_ms: int, aggs: dict[str, list[str]], key: str = "k", time: str = "ts") -> list[tuple]:
    """The reference: rows sorted by time (stable), pandas groupby on (key, floored interval)."""
    df = table.to_pandas()
    df = df[df[time].notna()].copy()
    df[time] = df[time].astype("int64")
    df["_pos"] = np.arange(len(df))
    df = df.sort_values([time, "_pos"], kind="stable")
    df["_b"] = (df[time] // interval_ms) * interval_ms
    g = df.groupby([key, "_b"], sort=True)
    out = pd.DataFrame(index=g.size().index)
    for col, names in aggs.items():
        for name in names:
            if name == "sum":
                out[f"{col}_{name}"] = g[col].sum(min_count=1)
            else:
                out[f"{col}_{name}"] = getattr(g[col], name)()
    out = out.reset_index()
    rows = []
    for rec in out.itertuples(index=False):
        rows.append(tuple(None if isinstance(x, float) and math.isnan(x) else (int(x) if isinstance(x, (np.integer,)) else x) for x in rec))
    return rows


@settings(max_examples=60, deadline=None)
@given(tables(null_keys=False), st.sampled_from([1, 7, 250, 1_000, 100_000]), st.data())
def test_downsample_matches_pandas(table, interval_ms, data):
    v_aggs = data.draw(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=7, unique=True))
    i_aggs = data.draw(st.lists(st.sampled_from(AGGREGATES), min_size=0, max_size=3, unique=True))
    aggs = {"v": v_aggs, **({"i": i_aggs} if i_aggs else {})}
    got = downsample(table, "k", "ts", interval_ms, aggs)
    want = _pandas_downsample(table, interval_ms, aggs)
    assert got.column_names == ["k", "ts", *[f"{c}_{n}" for c, ns in aggs.items() for n in ns]]
    _same(_rows(got), want)


def test_downsample_timestamps_keep_their_type_and_floor_before_1970():
    base = dt.datetime(1970, 1, 1)
    ts = pa.array([base - dt.timedelta(microseconds=1), base, base + dt.timedelta(seconds=1, microseconds=500)], pa.timestamp("us"))
    t = pa.table({"ts": ts, "v": [1, 2, 3]})
    assert time_ms(ts).to_pylist() == [-1, 0, 1000]
    out = downsample(t, [], "ts", 1000, {"v": ["sum", "first", "last"]})
    assert out.schema.field("ts").type == pa.timestamp("us")
    assert out["ts"].to_pylist() == [base - dt.timedelta(seconds=1), base, base + dt.timedelta(seconds=1)]
    assert out["v_sum"].to_pylist() == [1, 2, 3]


def test_first_last_follow_time_not_table_order():
    t = pa.table({"k": ["x", "x", "x"], "ts": [30, 10, 20], "v": [3.0, 1.0, 2.0]})
    out = downsample(t, "k", "ts", 100, {"v": ["first", "last", "min", "max"]})
    assert out.to_pydict() == {"k": ["x"], "ts": [0], "v_first": [1.0], "v_last": [3.0], "v_min": [1.0], "v_max": [3.0]}


def test_multi_column_keys_and_ties_prefer_the_later_row():
    t = pa.table({"a": [1, 1, 1, 2], "b": ["p", "q", "p", "p"], "ts": [5, 5, 5, 1], "v": ["first", "other", "second", "z"]})
    got = latest_per_key(t, ("a", "b"), "ts")
    assert got.to_pydict() == {"a": [1, 1, 2], "b": ["p", "q", "p"], "ts": [5, 5, 1], "v": ["second", "other", "z"]}
    assert latest_per_key(t, "a", None)["v"].to_pylist() == ["second", "z"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: downsample(t, "k", "ts", 0, {"v": ["sum"]}), "interval_ms must be > 0"),
        (lambda t: downsample(t, "k", "ts", 10, {"v": ["median"]}), "aggregate 'median' for column 'v'"),
        (lambda t: downsample(t, "k", "ts", 10, {"k": ["mean"]}), "needs a numeric column; 'k'"),
        (lambda t: downsample(t, "k", "ts", 10, {"nope": ["sum"]}), "'nope' is not in the table"),
        (lambda t: downsample(t, "k", "ts", 10, {}), "aggs"),
        (lambda t: in_range(t, "ts", 10, 5), "end_ms 5 is before start_ms 10"),
        (lambda t: latest_per_key(t, "missing", "ts"), "'missing' is not in the table"),
    ],
)
def test_bad_arguments_name_the_culprit(call, message):
    t = pa.table({"k": ["a"], "ts": [1], "v": [1.0]})
    with pytest.raises(ValueError, match=message):
        call(t)


def test_time_column_of_another_type_is_refused():
    with pytest.raises(ValueError, match="double"):
        in_range(pa.table({"ts": [1.5]}), "ts", 0, 2)
