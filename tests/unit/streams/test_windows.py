"""fabric_ray.streams.windows: every window type and aggregate against a pandas reference,
emit modes, late events, snapshot/restore, validation and bounded state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fabric_ray.streams.windows import Hopping, Session, Sliding, Tumbling, WindowedAggregator
from tests.unit.streams.test_windows_reference import assert_same_rows, frame, reference_rows, simulate

ALL_AGGS = {
    "n": ("count", None),
    "n_v": ("count", "v"),
    "total": ("sum", "v"),
    "avg": ("mean", "v"),
    "lo": ("min", "v"),
    "hi": ("max", "v"),
    "sd": ("std", "v"),
    "last_v": ("last", "v"),
    "users": ("approx_distinct", "user"),
}
WINDOWS = [Tumbling(100), Hopping(200, 50), Sliding(200, 50), Session(30)]
LATENESS_MS = 40


def make_events(seed: int, n: int = 1200, n_keys: int = 9, string_keys: bool = False) -> pd.DataFrame:
    """Mostly increasing event times on a 5 ms grid (ties for ``last``), some out of order, some
    far behind (late), 10 % null values, a small set of users for the distinct count."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.integers(0, 8, n)) // 5 * 5
    back = np.where(rng.random(n) < 0.15, rng.integers(0, 30, n) * 5, 0)
    back = np.where(rng.random(n) < 0.03, rng.integers(30, 120, n) * 5, back)
    ts = np.maximum(base - back, 0)
    v = np.round(rng.normal(50, 20, n), 2)
    v = np.where(rng.random(n) < 0.1, np.nan, v)
    key = rng.integers(0, n_keys, n)
    return pd.DataFrame(
        {
            "k": [f"key-{k}" for k in key] if string_keys else key,
            "ts": ts.astype(np.int64),
            "v": v,
            "user": [f"u{u}" for u in rng.integers(0, 25, n)],
        }
    )


def batches_of(df: pd.DataFrame, seed: int, max_size: int = 150) -> list[pa.Table]:
    rng = np.random.default_rng(seed + 1)
    out, i = [], 0
    while i < len(df):
        size = int(rng.integers(1, max_size))
        out.append(pa.Table.from_pandas(df.iloc[i : i + size], preserve_index=False))
        i += size
    return out


def run(op: WindowedAggregator, tables: list[pa.Table]) -> tuple[list, list[int]]:
    updates, late, offset = [], [], 0
    for t in tables:
        u = op.update(t)
        updates.append(u)
        late += (u.late_rows + offset).tolist()
        offset += t.num_rows
    return updates, late


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: type(w).__name__)
def test_close_mode_every_aggregate_matches_pandas(window) -> None:
    df = make_events(seed=1)
    op = WindowedAggregator("k", "ts", window, ALL_AGGS, allowed_lateness_ms=LATENESS_MS, emit="close")
    updates, late = run(op, batches_of(df, seed=1))
    got = pd.concat([frame(u.rows) for u in updates] + [frame(op.flush())])

    want_late, members = simulate(df["k"].tolist(), df["ts"].tolist(), window, LATENESS_MS)
    assert late == want_late and len(late) > 0
    assert op.late_total == len(want_late)
    want = reference_rows(df.rename(columns={"k": "key_"}), members, ALL_AGGS)
    assert_same_rows(got, want, ALL_AGGS)
    # every window closed exactly once
    assert not got.duplicated(["key", "window_start_ms", "window_end_ms"]).any()


@pytest.mark.parametrize("window", [Tumbling(100), Hopping(200, 50), Session(30)], ids=lambda w: type(w).__name__)
def test_update_mode_last_row_of_each_window_is_its_final_value(window) -> None:
    df = make_events(seed=2, string_keys=True)
    op = WindowedAggregator("k", "ts", window, ALL_AGGS, allowed_lateness_ms=LATENESS_MS)
    updates, late = run(op, batches_of(df, seed=2))
    got = pd.concat([frame(u.rows) for u in updates]).drop_duplicates(["key", "window_start_ms", "window_end_ms"], keep="last")
    want_late, members = simulate(df["k"].tolist(), df["ts"].tolist(), window, LATENESS_MS)
    assert late == want_late
    want = reference_rows(df, members, ALL_AGGS)
    if isinstance(window, Session):
        # a session that later merged with another was emitted under its old bounds too
        bounds = set(map(tuple, want[["key", "window_start_ms", "window_end_ms"]].itertuples(index=False)))
        got = got[[b in bounds for b in map(tuple, got[["key", "window_start_ms", "window_end_ms"]].itertuples(index=False))]]
    assert_same_rows(got, want, ALL_AGGS)
    assert len(op.flush()) == 0


def test_sliding_update_emits_touched_keys_current_window() -> None:
    window = Sliding(200, 50)
    df = make_events(seed=3)
    op = WindowedAggregator("k", "ts", window, ALL_AGGS, allowed_lateness_ms=LATENESS_MS)
    want_late, members = simulate(df["k"].tolist(), df["ts"].tolist(), window, LATENESS_MS)
    done = 0
    for t in batches_of(df, seed=3)[:25]:
        rows = frame(op.update(t).rows)
        batch = range(done, done + t.num_rows)
        done += t.num_rows
        end = (op.max_event_ms // 50 + 1) * 50
        assert set(rows["window_end_ms"]) <= {end} and set(rows["window_start_ms"]) <= {end - 200}
        now = [m for m in members if m[0] < done and m[3] == end]
        want = reference_rows(df, now, ALL_AGGS)
        touched = {df["k"][i] for i in batch if i not in want_late}
        want = want[want["key"].isin(touched)]
        assert_same_rows(rows, want, ALL_AGGS)
        # reading at the latest event time serves the same window for every key
        assert_same_rows(frame(op.read()), reference_rows(df, now, ALL_AGGS), ALL_AGGS)


def test_read_sliding_at_an_earlier_open_time_and_closed_time() -> None:
    op = WindowedAggregator("k", "ts", Sliding(100, 10), {"n": ("count", None)}, allowed_lateness_ms=50)
    op.update(pa.table({"k": [1, 1, 1, 2], "ts": [5, 15, 95, 120]}))
    assert op.read(at_ms=95).to_pylist() == [{"key": 1, "window_start_ms": 0, "window_end_ms": 100, "n": 3}]
    assert op.read(keys=[2]).to_pylist() == [{"key": 2, "window_start_ms": 30, "window_end_ms": 130, "n": 1}]
    assert op.read(keys=[7]).num_rows == 0
    with pytest.raises(ValueError, match=r"read at_ms=40: window \[-50, 50\) has closed"):
        op.read(at_ms=40)


def test_read_hopping_returns_every_open_window_holding_the_time() -> None:
    op = WindowedAggregator("k", "ts", Hopping(30, 10), {"n": ("count", None)}, allowed_lateness_ms=100)
    op.update(pa.table({"k": ["a", "a"], "ts": [12, 25]}))
    got = [(r["window_start_ms"], r["n"]) for r in op.read(at_ms=12).to_pylist()]
    assert got == [(-10, 1), (0, 2), (10, 2)]


def test_emit_update_rows_and_late_drop_counter() -> None:
    op = WindowedAggregator("k", "ts", Tumbling(10), {"s": ("sum", "v")}, late="drop")
    out = op.update(pa.table({"k": [1, 2, 1], "ts": [1, 2, 11], "v": [1.0, 2.0, 4.0]}))
    assert out.rows.to_pylist() == [
        {"key": 1, "window_start_ms": 0, "window_end_ms": 10, "s": 1.0},
        {"key": 2, "window_start_ms": 0, "window_end_ms": 10, "s": 2.0},
        {"key": 1, "window_start_ms": 10, "window_end_ms": 20, "s": 4.0},
    ]
    out = op.update(pa.table({"k": [1, 1], "ts": [9, 12], "v": [8.0, 16.0]}))
    assert out.late_dropped == 1 and len(out.late_rows) == 0 and out.watermark_ms == 12
    assert out.rows.to_pylist() == [{"key": 1, "window_start_ms": 10, "window_end_ms": 20, "s": 20.0}]
    assert op.late_total == 1


def test_late_reason_names_times_watermark_and_lateness() -> None:
    op = WindowedAggregator("k", "ts", Session(1_000), {"n": ("count", None)}, allowed_lateness_ms=5_000)
    t0 = 1_795_737_600_000  # 2026-11-27T00:00:00Z
    op.update(pa.table({"k": [1], "ts": [t0 + 71_000]}))
    out = op.update(pa.table({"k": [1, 2], "ts": [t0 + 70_000, t0 + 1_000]}))
    assert out.late_rows.tolist() == [1]
    assert out.late_reasons.to_pylist() == [
        "late event: event time 2026-11-27T00:00:01.000Z is 65.000 s behind the watermark 2026-11-27T00:01:06.000Z "
        "(max event time seen minus allowed lateness 5 s); its session window, "
        "[2026-11-27T00:00:01.000Z, 2026-11-27T00:00:02.000Z), has closed"
    ]


def test_timestamp_time_column_and_chunked_input() -> None:
    op = WindowedAggregator("k", "ts", Tumbling(1_000), {"n": ("count", None), "m": ("max", "v")})
    table = pa.concat_tables(
        [
            pa.table({"k": ["a"], "ts": pa.array([1_500_000], pa.timestamp("us")), "v": pa.array([3], pa.int32())}),
            pa.table({"k": ["a"], "ts": pa.array([1_900_000], pa.timestamp("us")), "v": pa.array([None], pa.int32())}),
        ]
    )
    assert op.update(table).rows.to_pylist() == [{"key": "a", "window_start_ms": 1000, "window_end_ms": 2000, "n": 2, "m": 3.0}]


def test_sessions_merge_when_a_late_event_bridges_two() -> None:
    op = WindowedAggregator("k", "ts", Session(10), {"n": ("count", None), "s": ("sum", "v")}, allowed_lateness_ms=20, emit="close")
    assert op.update(pa.table({"k": [1, 1], "ts": [0, 15], "v": [1.0, 2.0]})).rows.num_rows == 0
    assert sorted(r["window_start_ms"] for r in op.read().to_pylist()) == [0, 15]
    op.update(pa.table({"k": [1], "ts": [8], "v": [4.0]}))  # bridges 0 and 15
    assert op.read().to_pylist() == [{"key": 1, "window_start_ms": 0, "window_end_ms": 25, "n": 3, "s": 7.0}]
    out = op.update(pa.table({"k": [2], "ts": [65]}).append_column("v", pa.array([0.0])))  # watermark 45 >= 15 + 2*10
    assert out.rows.to_pylist() == [{"key": 1, "window_start_ms": 0, "window_end_ms": 25, "n": 3, "s": 7.0}]


@pytest.mark.parametrize("emit", ["update", "close"])
@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: type(w).__name__)
def test_snapshot_restore_continues_exactly(window, emit) -> None:
    df = make_events(seed=4, n=900, string_keys=emit == "close")
    tables = batches_of(df, seed=4, max_size=90)
    split = int(np.random.default_rng(5).integers(1, len(tables) - 1))

    def make() -> WindowedAggregator:
        return WindowedAggregator("k", "ts", window, ALL_AGGS, allowed_lateness_ms=LATENESS_MS, emit=emit)

    straight = make()
    expected = [straight.update(t) for t in tables]
    first = make()
    for t in tables[:split]:
        first.update(t)
    sink = pa.BufferOutputStream()
    snap = first.snapshot()
    with pa.ipc.new_stream(sink, snap.schema) as w:
        w.write_table(snap)
    restored = WindowedAggregator.restore(pa.ipc.open_stream(sink.getvalue()).read_all())
    for t, want in zip(tables[split:], expected[split:]):
        got = restored.update(t)
        assert got.rows.equals(want.rows)
        assert got.late_rows.tolist() == want.late_rows.tolist()
        assert got.late_reasons.equals(want.late_reasons)
    assert restored.read().equals(straight.read()) if not isinstance(window, Session) else True
    assert restored.flush().equals(straight.flush())
    assert restored.late_total == straight.late_total


def test_snapshot_of_a_fresh_operator_restores() -> None:
    op = WindowedAggregator("k", "ts", Tumbling(10), {"n": ("count", None)}, emit="close", late="drop")
    again = WindowedAggregator.restore(op.snapshot())
    assert (again.emit, again.late, again.window) == ("close", "drop", Tumbling(10))
    assert again.update(pa.table({"k": [1], "ts": [3]})).rows.num_rows == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Tumbling(-5), r"window Tumbling\(size_ms=-5\): size_ms must be a positive integer \(ms\); got -5"),
        (lambda: Hopping(100, 30), r"window Hopping\(size_ms=100, hop_ms=30\): hop_ms must divide size_ms; got 30"),
        (lambda: Sliding(100, 0), r"tile_ms must be a positive integer \(ms\); got 0"),
        (lambda: Session(1.5), r"window Session\(gap_ms=1.5\): gap_ms must be a positive integer"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {}), r"declare at least one aggregate"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"x": ("median", "v")}), r"aggregate 'x' has unknown op 'median'"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"x": ("sum", None)}), r"aggregate 'x' \(sum\) needs a column"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"key": ("count", None)}), r"'key' is reserved"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"x": ("sum", "ts")}), r"reads the 'ts' column"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"n": ("count", None)}, allowed_lateness_ms=-1), r"allowed_lateness_ms must be an integer >= 0; got -1"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"n": ("count", None)}, late="keep"), r"late must be 'dead_letter' or 'drop'; got 'keep'"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"n": ("count", None)}, emit="final"), r"emit must be 'update' or 'close'; got 'final'"),
        (lambda: WindowedAggregator("k", "ts", "1m", {"n": ("count", None)}), r"window must be Tumbling, Hopping, Sliding or Session; got '1m'"),
        (lambda: WindowedAggregator("k", "ts", Sliding(100_000, 10), {"d": ("approx_distinct", "u")}), r"approx_distinct keeps 10000 tiles per key"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"d": ("approx_distinct", "u")}, distinct_precision=20), r"window Tumbling\(size_ms=10\): distinct_precision must be in \[4, 16\]; got 20"),
        (lambda: WindowedAggregator("k", "ts", Tumbling(10), {"d": ("approx_distinct", "u")}, distinct_precision=8.5), r"distinct_precision must be an integer; got 8.5"),
    ],
)
def test_definitions_fail_early_naming_the_culprit(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_batches_with_bad_columns_are_refused_naming_the_column() -> None:
    op = WindowedAggregator("k", "ts", Tumbling(10), {"s": ("sum", "v")})
    with pytest.raises(KeyError, match=r"no column 'ts'"):
        op.update(pa.table({"k": [1], "v": [1.0]}))
    with pytest.raises(KeyError, match=r"no column 'v'"):
        op.update(pa.table({"k": [1], "ts": [1]}))
    with pytest.raises(ValueError, match=r"key column 'k' has 1 null"):
        op.update(pa.table({"k": [1, None], "ts": [1, 2], "v": [1.0, 2.0]}))
    with pytest.raises(ValueError, match=r"time column 'ts' has 1 null"):
        op.update(pa.table({"k": [1], "ts": pa.array([None], pa.int64()), "v": [1.0]}))
    with pytest.raises(TypeError, match=r"time column 'ts' must be int64 ms or a timestamp; got double"):
        op.update(pa.table({"k": [1], "ts": [1.5], "v": [1.0]}))
    with pytest.raises(TypeError, match=r"column 'v' has type string"):
        op.update(pa.table({"k": [1], "ts": [1], "v": ["x"]}))
    with pytest.raises(ValueError, match=r"not a window snapshot"):
        WindowedAggregator.restore(pa.table({"key": [1]}))


def test_session_read_at_ms_is_refused() -> None:
    op = WindowedAggregator("k", "ts", Session(5), {"n": ("count", None)})
    op.update(pa.table({"k": [1], "ts": [1]}))
    with pytest.raises(ValueError, match=r"read\(at_ms=...\) is not supported for sessions; got at_ms=3"):
        op.read(at_ms=3)


@pytest.mark.parametrize("window", [Sliding(1_000, 100), Hopping(1_000, 250), Tumbling(500), Session(200)], ids=lambda w: type(w).__name__)
def test_state_stays_bounded_on_a_long_stream(window) -> None:
    aggs = {"n": ("count", None), "avg": ("mean", "v"), "sd": ("std", "v"), "d": ("approx_distinct", "v")}
    op = WindowedAggregator("k", "ts", window, aggs, allowed_lateness_ms=300, emit="close")
    rng = np.random.default_rng(6)
    sizes = []
    for b in range(120):
        ts = b * 1_000 + np.sort(rng.integers(0, 1_000, 500))
        op.update(pa.table({"k": rng.integers(0, 100, 500), "ts": ts, "v": rng.random(500)}))
        sizes.append(op.state_bytes)
    assert max(sizes[30:]) <= max(sizes[:30]) * 1.1
    if not isinstance(window, Session):
        assert sizes[-1] == sizes[30]  # fixed arrays for a fixed key set


def test_churning_keys_are_forgotten_once_their_windows_close() -> None:
    op = WindowedAggregator("k", "ts", Tumbling(100), {"n": ("count", None)})
    sizes = []
    for b in range(200):
        keys = np.arange(b * 300, b * 300 + 300)  # every batch brings 300 new keys
        op.update(pa.table({"k": keys, "ts": np.full(300, b * 100)}))
        sizes.append(op.state_bytes)
    assert max(sizes[100:]) <= max(sizes[:100])
    assert op.read().num_rows == 300 and op.read(keys=[199 * 300])["n"].to_pylist() == [1]


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: type(w).__name__)
def test_flush_closes_everything_and_later_events_for_it_are_late(window) -> None:
    op = WindowedAggregator("k", "ts", window, {"n": ("count", None)}, allowed_lateness_ms=1_000, emit="close")
    assert op.update(pa.table({"k": [1, 2], "ts": [10, 20]})).rows.num_rows == 0
    flushed = op.flush()
    assert set(flushed["key"].to_pylist()) == {1, 2}
    assert op.read().num_rows == 0 and WindowedAggregator.restore(op.snapshot()).read().num_rows == 0
    after = op.update(pa.table({"k": [1], "ts": [20]}))
    assert after.late_rows.tolist() == [0] and after.rows.num_rows == 0


def test_keys_whose_state_closed_keep_their_identity_when_the_key_index_is_compacted():
    """Regression: a compaction forgot keys of the current batch whose earlier windows had all closed."""
    op = WindowedAggregator("k", "ts", Tumbling(1000), {"n": ("count", None)}, emit="close")
    op.update(pa.table({"k": list(range(2000)), "ts": [0] * 2000}))
    op.update(pa.table({"k": [5000], "ts": [10_000]}))  # closes every window of the first batch
    # the first keys again, with many new ones: the key index fills and compacts
    op.update(pa.table({"k": list(range(2000)) + list(range(6000, 10000)), "ts": [20_000] * 6000}))
    final = op.flush()
    assert sorted(final["key"].to_pylist()) == list(range(2000)) + list(range(6000, 10000))
    assert set(final["n"].to_pylist()) == {1}


def test_absurd_lateness_is_refused_before_allocating_state():
    with pytest.raises(ValueError, match=r"keeps 1,000,000,010 tiles per key .* use a coarser hop_ms or less lateness"):
        WindowedAggregator("k", "ts", Hopping(600_000, 60_000), {"n": ("count", None)}, allowed_lateness_ms=60_000 * 10**9)
