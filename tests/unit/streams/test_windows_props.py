"""Property tests of fabric_ray.streams.windows: random events, keys, out-of-order times and batch
splits against the one-event-at-a-time reference (window assignment, late classification)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_ray.streams.windows import Hopping, Session, Sliding, Tumbling, WindowedAggregator
from tests.unit.streams.test_windows_reference import assert_same_rows, frame, reference_rows, simulate

AGGS = {
    "n": ("count", None),
    "total": ("sum", "v"),
    "lo": ("min", "v"),
    "hi": ("max", "v"),
    "sd": ("std", "v"),
    "last_v": ("last", "v"),
    "d": ("approx_distinct", "v"),
}
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

windows = st.one_of(
    st.builds(Tumbling, st.sampled_from([5, 10, 25])),
    st.sampled_from([5, 10]).flatmap(lambda hop: st.builds(Hopping, st.sampled_from([hop, 2 * hop, 4 * hop]), st.just(hop))),
    st.sampled_from([5, 10]).flatmap(lambda tile: st.builds(Sliding, st.sampled_from([tile, 3 * tile]), st.just(tile))),
    st.builds(Session, st.sampled_from([3, 8, 20])),
)


@st.composite
def streams(draw) -> tuple[pd.DataFrame, list[int]]:
    """Events with drifting, jittered times (some far behind), 1..60 of them, and batch cuts."""
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    jitter = draw(st.lists(st.integers(-40, 5), min_size=n, max_size=n))
    times = [max(0, int(s) + j) for s, j in zip(np.cumsum(steps), jitter)]
    keys = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    values = draw(st.lists(st.one_of(st.none(), st.integers(-5, 5).map(float)), min_size=n, max_size=n))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=6))))
    df = pd.DataFrame({"k": keys, "ts": pd.array(times, dtype="int64"), "v": pd.array(values, dtype="float64")})
    return df, cuts


def split(df: pd.DataFrame, cuts: list[int]) -> list[pa.Table]:
    bounds = [0, *[c for c in cuts if 0 < c < len(df)], len(df)]
    return [pa.Table.from_pandas(df.iloc[a:b], preserve_index=False) for a, b in zip(bounds, bounds[1:]) if b > a]


def run_close(df: pd.DataFrame, cuts: list[int], window, lateness: int) -> tuple[pd.DataFrame, list[int]]:
    op = WindowedAggregator("k", "ts", window, AGGS, allowed_lateness_ms=lateness, emit="close")
    rows, late, offset = [], [], 0
    for table in split(df, cuts):
        u = op.update(table)
        rows.append(frame(u.rows))
        late += (u.late_rows + offset).tolist()
        assert len(u.late_reasons) == len(u.late_rows)
        offset += table.num_rows
    rows.append(frame(op.flush()))
    return pd.concat(rows), late


@SETTINGS
@given(streams(), windows, st.integers(0, 30))
def test_late_events_and_closed_windows_match_the_reference(stream, window, lateness) -> None:
    df, cuts = stream
    got, late = run_close(df, cuts, window, lateness)
    want_late, members = simulate(df["k"].tolist(), df["ts"].tolist(), window, lateness)
    assert late == want_late
    assert_same_rows(got, reference_rows(df, members, AGGS), AGGS)


@SETTINGS
@given(streams(), st.lists(st.integers(1, 59), max_size=6), windows, st.integers(0, 30))
def test_results_do_not_depend_on_how_the_stream_is_batched(stream, other_cuts, window, lateness) -> None:
    df, cuts = stream
    a, late_a = run_close(df, cuts, window, lateness)
    b, late_b = run_close(df, sorted(set(other_cuts)), window, lateness)
    assert late_a == late_b
    assert_same_rows(a, b, AGGS)


@SETTINGS
@given(streams(), st.sampled_from([Tumbling(10), Hopping(20, 5), Session(6)]), st.integers(0, 30))
def test_update_mode_ends_with_each_window_final_value(stream, window, lateness) -> None:
    df, cuts = stream
    op = WindowedAggregator("k", "ts", window, AGGS, allowed_lateness_ms=lateness, late="drop")
    emitted = pd.concat([frame(op.update(t).rows) for t in split(df, cuts)])
    last = emitted.drop_duplicates(["key", "window_start_ms", "window_end_ms"], keep="last")
    want_late, members = simulate(df["k"].tolist(), df["ts"].tolist(), window, lateness)
    want = reference_rows(df, members, AGGS)
    assert op.late_total == len(want_late)
    if isinstance(window, Session):
        final = set(map(tuple, want[["key", "window_start_ms", "window_end_ms"]].itertuples(index=False)))
        last = last[[tuple(r) in final for r in last[["key", "window_start_ms", "window_end_ms"]].itertuples(index=False)]]
    assert_same_rows(last, want, AGGS)
