"""A straightforward reference for fabric_ray.streams.windows: one event at a time, then pandas.

``simulate`` walks the events in arrival order with the documented rules (watermark = greatest
event time before the event minus the allowed lateness; late when the end of the event's last
window is at or before it; an event counts in the windows that contain it and are still open)
and lists, per on-time event, the windows it counts in. ``reference_rows`` aggregates those
memberships with pandas. The tests of the operator compare against these; the tests in this
module check the reference itself on hand-computed cases.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from fabric_ray.streams.windows import Hopping, Session, Tumbling

AGG_COLUMNS = ("key", "window_start_ms", "window_end_ms")


def tiles_of(window) -> tuple[int, int]:
    """(tile_ms, tiles per window) of a tile window."""
    if isinstance(window, Tumbling):
        return window.size_ms, 1
    if isinstance(window, Hopping):
        return window.hop_ms, window.size_ms // window.hop_ms
    return window.tile_ms, window.size_ms // window.tile_ms


def simulate(keys: list, times: list[int], window, lateness_ms: int) -> tuple[list[int], list[tuple[int, object, int, int]]]:
    """Late event positions, and (event position, key, window start, window end) memberships."""
    late: list[int] = []
    members: list[tuple[int, object, int, int]] = []
    accepted: list[int] = []
    mx = None
    for i, (key, t) in enumerate(zip(keys, times)):
        wm = None if mx is None else mx - lateness_ms
        if isinstance(window, Session):
            if wm is not None and t + window.gap_ms <= wm:
                late.append(i)
            else:
                accepted.append(i)
        else:
            tile, n = tiles_of(window)
            j = t // tile
            if wm is not None and (j + n) * tile <= wm:
                late.append(i)
            else:
                for k in range(j, j + n):
                    if wm is None or (k + 1) * tile > wm:
                        members.append((i, key, (k - n + 1) * tile, (k + 1) * tile))
        mx = t if mx is None else max(mx, t)
    if isinstance(window, Session):
        by_key: dict = {}
        for i in accepted:
            by_key.setdefault(keys[i], []).append(i)
        for key, idx in by_key.items():
            idx.sort(key=lambda i: times[i])
            group = [idx[0]]
            for i in idx[1:]:
                if times[i] - max(times[g] for g in group) >= window.gap_ms:
                    members += [(g, key, times[group[0]], max(times[x] for x in group) + window.gap_ms) for g in group]
                    group = []
                group.append(i)
            members += [(g, key, times[group[0]], max(times[x] for x in group) + window.gap_ms) for g in group]
    return late, members


def reference_rows(events: pd.DataFrame, members: list[tuple[int, object, int, int]], aggs: dict) -> pd.DataFrame:
    """Aggregates per (key, window) with pandas. ``events`` has the value columns and ``ts``."""
    cols = ["pos", "key", "window_start_ms", "window_end_ms"]
    m = pd.DataFrame(members, columns=cols)
    if m.empty:
        return pd.DataFrame(columns=[*AGG_COLUMNS, *aggs])
    m = m.join(events.reset_index(drop=True), on="pos")
    m = m.sort_values(["ts", "pos"], kind="stable")
    g = m.groupby(list(AGG_COLUMNS), sort=True)
    out = pd.DataFrame(index=g.size().index)
    for name, (op, col) in aggs.items():
        if op == "count":
            out[name] = g.size() if col is None else g[col].count()
        elif op == "sum":
            out[name] = g[col].sum()
        elif op == "mean":
            out[name] = g[col].mean()
        elif op == "min":
            out[name] = g[col].min()
        elif op == "max":
            out[name] = g[col].max()
        elif op == "std":
            out[name] = g[col].std(ddof=1)
        elif op == "last":
            out[name] = g[col].last()
        elif op == "approx_distinct":
            out[name] = g[col].nunique()
    return out.reset_index()


def frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame, aggs: dict, distinct_rel: float = 0.0) -> None:
    """Same (key, window) rows and values: exact counts, close floats, distinct within ``distinct_rel``."""
    got = got.sort_values(list(AGG_COLUMNS)).reset_index(drop=True)
    want = want.sort_values(list(AGG_COLUMNS)).reset_index(drop=True)
    g_idx = list(map(tuple, got[list(AGG_COLUMNS)].itertuples(index=False)))
    w_idx = list(map(tuple, want[list(AGG_COLUMNS)].itertuples(index=False)))
    assert g_idx == w_idx, f"windows differ: extra {sorted(set(g_idx) - set(w_idx))[:5]}, missing {sorted(set(w_idx) - set(g_idx))[:5]}"
    for name, (op, _col) in aggs.items():
        a = got[name].to_numpy(dtype=float, na_value=np.nan)
        b = want[name].to_numpy(dtype=float, na_value=np.nan)
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: nulls differ"
        ok = ~np.isnan(a)
        if op == "count":
            assert np.array_equal(a[ok], b[ok]), name
        elif op == "approx_distinct":
            assert np.all(np.abs(a[ok] - b[ok]) <= np.maximum(1.0, distinct_rel * b[ok])), (name, a[ok], b[ok])
        else:
            np.testing.assert_allclose(a[ok], b[ok], rtol=1e-9, atol=1e-9, err_msg=name)


# -- the reference itself -------------------------------------------------------------------


def test_reference_tumbling_late_and_members() -> None:
    late, members = simulate(["a", "a", "b"], [5, 25, 3], Tumbling(10), lateness_ms=0)
    assert late == [2]  # 3 is in [0, 10), closed once the watermark reached 25
    assert members == [(0, "a", 0, 10), (1, "a", 20, 30)]


def test_reference_hopping_counts_only_open_windows() -> None:
    # windows of 20 every 10; after t=35 (watermark 35), [10, 30) and earlier are closed
    late, members = simulate(["a", "a"], [35, 25], Hopping(20, 10), lateness_ms=0)
    assert late == []
    assert (1, "a", 20, 40) in members and (1, "a", 10, 30) not in members


def test_reference_sessions_merge_when_bridged() -> None:
    late, members = simulate(["a", "a", "a"], [0, 14, 7], Session(10), lateness_ms=0)
    assert late == []
    assert {m[2:] for m in members} == {(0, 24)}
