"""Profiles: exact statistics against NumPy, the quantile sketch's documented error, merge
equivalence over any split into batches, and the JSON round trip."""

from __future__ import annotations

import datetime as dt
import doctest
import json
import math
import pickle

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_ray.etl import profile as profile_module
from fabric_ray.etl import quantiles as quantiles_module
from fabric_ray.etl.profile import QUANTILES, ColumnProfile, Histogram, Profile, ProfileBuilder, ProfileError, profile_table
from fabric_ray.etl.quantiles import DEFAULT_K, RANK_ERROR, QuantileSketch, grid_cdf
from fabric_ray.streams.sketches import relative_error

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("module", [profile_module, quantiles_module])
def test_doctests_pass(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- helpers ---------------------------------------------------------------------------------------


def split(table: pa.Table, cuts: list[int]) -> list[pa.Table]:
    bounds = [0, *sorted(c % (table.num_rows + 1) for c in cuts), table.num_rows]
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def merged(parts: list[pa.Table], order: list[int], **settings) -> ProfileBuilder:
    """One builder per part, merged in a tree whose shape ``order`` chooses."""
    builders = [ProfileBuilder(**settings).update(p) for p in parts]
    i = 0
    while len(builders) > 1:
        j = order[i % len(order)] % (len(builders) - 1) if order else 0
        a, b = builders.pop(j), builders.pop(j)
        builders.insert(j, a.merge(b))
        i += 1
    return builders[0]


def rank_error(data: np.ndarray, estimates: np.ndarray, qs: np.ndarray) -> float:
    """The largest distance between a requested rank and the estimate's true rank interval."""
    xs = np.sort(data)
    lo = np.searchsorted(xs, estimates, "left") / len(xs)
    hi = np.searchsorted(xs, estimates, "right") / len(xs)
    return float(np.max(np.maximum(lo - qs, 0) + np.maximum(qs - hi, 0)))


def without_moments(p: Profile) -> list[dict]:
    out = []
    for c in p.columns:
        d = c.to_dict()
        d.pop("mean"), d.pop("std")
        out.append(d)
    return out


# -- numeric statistics ----------------------------------------------------------------------------


def test_numeric_statistics_match_numpy():
    rng = np.random.default_rng(1)
    values = rng.normal(50, 10, 3000)
    arr = pa.array(np.where(rng.random(3000) < 0.1, None, values).tolist(), pa.float64())
    col = profile_table(pa.table({"x": arr})).column("x")
    present = np.array([v for v in arr.to_pylist() if v is not None])
    assert (col.kind, col.count, col.nulls, col.nans) == ("numeric", 3000, arr.null_count, 0)
    assert col.min == present.min() and col.max == present.max()
    assert col.mean == pytest.approx(present.mean(), rel=1e-12)
    assert col.std == pytest.approx(present.std(), rel=1e-9)
    assert col.distinct == len(np.unique(present)) and col.distinct_exact


def test_integer_min_max_stay_exact_integers():
    big = 2**62 + 1
    col = profile_table(pa.table({"x": pa.array([big, -big, 7], pa.int64())})).column("x")
    assert (col.min, col.max) == (-big, big) and isinstance(col.max, int)


def test_nan_and_infinity():
    col = profile_table(pa.table({"x": [1.0, math.nan, math.inf, None, -2.0]})).column("x")
    assert (col.count, col.nulls, col.nans, col.distinct) == (5, 1, 1, 3)
    assert (col.min, col.max) == (-2.0, math.inf)
    assert col.mean == pytest.approx(-0.5)  # finite values only
    assert col.quantile_grid[-1] == math.inf


def test_small_quantiles_are_exact_inverted_cdf():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 50, DEFAULT_K).astype(float)
    col = profile_table(pa.table({"x": x})).column("x")
    for name, q in QUANTILES.items():
        assert col.quantiles[name] == np.quantile(x, q, method="inverted_cdf"), name
    assert col.quantile_grid[0] == x.min() and col.quantile_grid[-1] == x.max()


@pytest.mark.parametrize("kind", ["normal", "lognormal", "ties", "sorted", "pareto"])
def test_quantiles_within_documented_rank_error(kind):
    rng = np.random.default_rng(hash(kind) % 2**32)
    n = 400_000
    x = {
        "normal": lambda: rng.normal(size=n),
        "lognormal": lambda: rng.lognormal(0, 2, n),
        "ties": lambda: rng.integers(0, 7, n).astype(float),
        "sorted": lambda: np.sort(rng.normal(size=n)),
        "pareto": lambda: rng.pareto(1.0, n),
    }[kind]()
    parts = np.array_split(x, rng.integers(1, 40))
    sketches = [QuantileSketch().update(p) for p in parts]
    total = sketches[0]
    for s in sketches[1:]:
        total.merge(s)
    qs = np.arange(201) / 200
    assert total.n == n
    assert rank_error(x, total.quantiles(qs), qs) <= RANK_ERROR
    assert total.size <= 3 * DEFAULT_K + 200  # bounded whatever n


def test_many_small_batches_stay_within_error_and_bounded():
    rng = np.random.default_rng(3)
    x = rng.exponential(size=300_000)
    s = QuantileSketch()
    for part in np.array_split(x, 3000):
        s.update(part)
    qs = np.arange(201) / 200
    assert rank_error(x, s.quantiles(qs), qs) <= RANK_ERROR
    assert s.size <= 3 * DEFAULT_K + 200


def test_sketch_rank_and_grid_cdf_agree_with_data():
    x = np.arange(1000, dtype=float)
    s = QuantileSketch().update(x)
    assert s.rank(499.0) == 0.5 and s.rank(499.0, strict=True) == 0.499
    grid = s.grid()
    true = np.searchsorted(x, np.linspace(-5, 1005, 300), "right") / 1000
    assert np.max(np.abs(grid_cdf(grid, np.linspace(-5, 1005, 300)) - true)) <= 0.5 / 200 + 1e-12


def test_sketch_rejects_bad_k_and_mismatched_merge():
    with pytest.raises(ValueError, match="k must be an integer"):
        QuantileSketch(3)
    with pytest.raises(ValueError, match="k=64 and k=128"):
        QuantileSketch(64).merge(QuantileSketch(128))


def test_sketch_is_deterministic_for_the_same_batches():
    x = np.random.default_rng(4).normal(size=50_000)
    a, b = QuantileSketch(), QuantileSketch()
    for part in np.array_split(x, 9):
        a.update(part)
        b.update(part)
    assert np.array_equal(a.grid(), b.grid())
    restored = pickle.loads(pickle.dumps(a))
    assert np.array_equal(restored.grid(), a.grid()) and restored.n == a.n


# -- distinct counts -------------------------------------------------------------------------------


def test_distinct_exact_up_to_threshold_then_hll_within_error():
    small = profile_table(pa.table({"x": np.arange(4096) % 4096}), exact_distinct=4096).column("x")
    assert (small.distinct, small.distinct_exact) == (4096, True)
    n = 50_000
    big = profile_table(pa.table({"x": np.arange(n)}), exact_distinct=4096).column("x")
    assert not big.distinct_exact
    assert abs(big.distinct - n) <= 4 * relative_error(14) * n


def test_distinct_is_the_same_for_any_split_even_past_the_threshold():
    t = pa.table({"x": np.random.default_rng(5).integers(0, 20_000, 60_000)})
    one = profile_table(t, exact_distinct=1000).column("x")
    many = merged(split(t, [7, 999, 30_000, 45_001]), [1, 0, 2], exact_distinct=1000).result().column("x")
    assert one.distinct == many.distinct and not one.distinct_exact


# -- strings, booleans, timestamps, other -----------------------------------------------------------


def test_string_statistics_and_frequencies():
    t = pa.table({"s": ["bb", "a", None, "ccc", "a", "é"]})
    col = profile_table(t).column("s")
    assert (col.kind, col.count, col.nulls, col.distinct) == ("string", 6, 1, 4)
    assert (col.min, col.max) == ("a", "é")
    assert (col.min_length, col.max_length, col.mean_length) == (1, 3, 8 / 5)
    assert col.frequencies == (("a", 2), ("bb", 1), ("ccc", 1), ("é", 1))
    assert col.quantiles is None and col.histogram is None


def test_string_frequencies_dropped_past_max_categories_in_any_split():
    t = pa.table({"s": [f"v{i % 10}" for i in range(100)]})
    assert profile_table(t, max_categories=10).column("s").frequencies is not None
    assert profile_table(t, max_categories=9).column("s").frequencies is None
    parts = split(t, [5, 50])  # each part alone has few values; together too many
    assert merged(parts, [0], max_categories=9).result().column("s").frequencies is None


def test_dictionary_strings_profile_as_strings():
    arr = pa.array(["x", "y", "x", None]).dictionary_encode()
    col = profile_table(pa.table({"s": arr})).column("s")
    assert (col.kind, col.distinct, col.frequencies) == ("string", 2, (("x", 2), ("y", 1)))


def test_bool_statistics():
    col = profile_table(pa.table({"b": [True, False, True, None, True]})).column("b")
    assert (col.kind, col.nulls, col.distinct, col.min, col.max) == ("bool", 1, 2, False, True)
    assert col.mean == 0.75 and col.frequencies == ((True, 3), (False, 1))
    only_true = profile_table(pa.table({"b": [True, None]})).column("b")
    assert (only_true.distinct, only_true.min, only_true.max) == (1, True, True)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamps_in_microseconds_whatever_the_unit(unit):
    moments = [dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 2), None]
    col = profile_table(pa.table({"t": pa.array(moments, pa.timestamp(unit, tz="UTC"))})).column("t")
    expect = [int((m.replace(tzinfo=dt.timezone.utc) - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 10**6
              for m in moments[:2]]
    assert (col.kind, col.min, col.max, col.nulls) == ("timestamp", expect[0], expect[1], 1)
    assert col.quantiles["p50"] == float(expect[0])


def test_dates_profile_as_timestamps():
    col = profile_table(pa.table({"d": [dt.date(1970, 1, 2), dt.date(1970, 1, 1)]})).column("d")
    assert (col.kind, col.min, col.max) == ("timestamp", 0, 86_400_000_000)


def test_other_types_keep_counts():
    t = pa.table({"l": pa.array([[1], None, [2, 3]]), "b": pa.array([b"x", b"y", b"x"])})
    p = profile_table(t)
    assert (p.column("l").kind, p.column("l").nulls, p.column("l").distinct) == ("other", 1, None)
    assert (p.column("b").kind, p.column("b").distinct) == ("other", 2)


# -- builder behaviour ------------------------------------------------------------------------------


def test_column_added_later_counts_earlier_rows_as_nulls():
    b = ProfileBuilder().update(pa.table({"a": [1, 2]})).update(pa.table({"a": [3], "b": ["x"]}))
    b.merge(ProfileBuilder().update(pa.table({"a": [4]})))
    p = b.result()
    assert p.rows == 4
    assert (p.column("b").count, p.column("b").nulls) == (4, 3)
    assert (p.column("a").count, p.column("a").nulls) == (4, 0)


def test_all_null_blocks_typed_null_take_the_real_type_later():
    nulls, real = pa.table({"a": pa.nulls(3)}), pa.table({"a": [1.5, 2.5]})
    for builder in (ProfileBuilder().update(nulls).update(real),
                    ProfileBuilder().update(nulls).merge(ProfileBuilder().update(real)),
                    ProfileBuilder().update(real).merge(ProfileBuilder().update(nulls))):
        col = builder.result().column("a")
        assert (col.kind, col.count, col.nulls, col.min, col.max) == ("numeric", 5, 3, 1.5, 2.5)


def test_kind_conflict_names_the_column():
    b = ProfileBuilder().update(pa.table({"a": [1]}))
    with pytest.raises(ProfileError, match="column 'a': type string"):
        b.update(pa.table({"a": ["x"]}))
    with pytest.raises(ProfileError, match="column 'a'"):
        b.merge(ProfileBuilder().update(pa.table({"a": ["x"]})))


def test_selected_columns_must_be_present():
    b = ProfileBuilder(["a"])
    assert b.update(pa.table({"a": [1], "z": [2]})).result().names == ("a",)
    with pytest.raises(ProfileError, match="column 'a' is not in the batch"):
        b.update(pa.table({"z": [1]}))


@pytest.mark.parametrize("kwargs,match", [({"bins": 1}, "bins"), ({"bins": 7}, "divide"), ({"hll_precision": 20}, "hll_precision"),
                                          ({"exact_distinct": -1}, "exact_distinct"), ({"sketch_k": 2}, "sketch_k")])
def test_builder_settings_are_validated(kwargs, match):
    with pytest.raises(ProfileError, match=match):
        ProfileBuilder(**kwargs)


def test_merge_refuses_different_settings():
    with pytest.raises(ProfileError, match="settings"):
        ProfileBuilder(bins=10).merge(ProfileBuilder(bins=20))


def test_builder_memory_is_bounded_whatever_the_rows():
    rng = np.random.default_rng(6)

    def size(n: int) -> int:
        b = ProfileBuilder()
        for _ in range(n // 50_000):
            b.update(pa.table({"x": rng.normal(size=50_000), "s": [f"u{i}" for i in rng.integers(0, 10**6, 50_000)]}))
        return len(pickle.dumps(b))

    small, large = size(100_000), size(400_000)
    assert large < 200_000 and large < 1.5 * small


def test_histogram_is_equal_frequency_and_counts_all_values():
    x = np.arange(1000, dtype=float)
    col = profile_table(pa.table({"x": x})).column("x")
    h = col.histogram
    assert h.edges == tuple(float(v) for v in range(100, 1000, 100))
    assert h.counts == (100,) * 10


def test_histogram_drops_duplicate_edges_for_ties():
    x = np.array([0.0] * 700 + [1.0] * 200 + [2.0] * 100)
    h = profile_table(pa.table({"x": x})).column("x").histogram
    assert h.edges == (1.0, 2.0) and h.counts == (700, 200, 100)
    with pytest.raises(ProfileError, match="need 3 counts"):
        Histogram((1.0, 2.0), (1, 2))


# -- merge equivalence and JSON ---------------------------------------------------------------------


@st.composite
def tables(draw) -> pa.Table:
    n = draw(st.integers(0, 120))
    ints = draw(st.lists(st.one_of(st.none(), st.integers(-50, 50)), min_size=n, max_size=n))
    floats = draw(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6), st.just(math.nan)), min_size=n, max_size=n))
    strs = draw(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "cc", "ddd", "é"]), st.text(max_size=4)), min_size=n, max_size=n))
    bools = draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n))
    ts = draw(st.lists(st.one_of(st.none(), st.integers(0, 10**12)), min_size=n, max_size=n))
    return pa.table({"i": pa.array(ints, pa.int64()), "f": pa.array(floats, pa.float64()), "s": pa.array(strs, pa.string()),
                     "b": pa.array(bools, pa.bool_()), "t": pa.array(ts, pa.timestamp("ms"))})


@SETTINGS
@given(tables(), st.lists(st.integers(0, 10**6), max_size=8), st.lists(st.integers(0, 50), max_size=8))
def test_any_split_and_merge_order_gives_the_same_profile(table, cuts, order):
    one = ProfileBuilder(max_categories=8, exact_distinct=40).update(table).result()
    many = merged(split(table, cuts), order, max_categories=8, exact_distinct=40).result()
    assert without_moments(one) == without_moments(many)
    for a, b in zip(one.columns, many.columns):
        for k in ("mean", "std"):
            x, y = getattr(a, k), getattr(b, k)
            assert (x is None) == (y is None) and (x is None or x == pytest.approx(y, rel=1e-9, abs=1e-9))


@SETTINGS
@given(tables())
def test_profile_json_round_trip(table):
    p = ProfileBuilder(max_categories=8).update(table).result()
    text = p.to_json()
    json.loads(text)  # standard JSON: no NaN / Infinity literals
    assert "NaN" not in text and "Infinity" not in text
    assert Profile.from_json(text) == p


def test_json_round_trip_of_non_finite_values():
    p = profile_table(pa.table({"x": [math.inf, -math.inf, 1.0]}))
    back = Profile.from_json(p.to_json())
    assert back == p and back.column("x").min == -math.inf


def test_from_dict_rejects_other_versions_and_non_profiles():
    d = profile_table(pa.table({"x": [1]})).to_dict()
    with pytest.raises(ProfileError, match="version 99"):
        Profile.from_dict({**d, "version": 99})
    with pytest.raises(ProfileError, match="not a profile"):
        Profile.from_dict({"x": 1})
    with pytest.raises(ProfileError, match="not valid JSON"):
        Profile.from_json("{")
    with pytest.raises(ProfileError, match="unknown fields"):
        ColumnProfile.from_dict({**d["columns"][0], "bogus": 1})


def test_missing_column_lookup_lists_columns():
    with pytest.raises(ProfileError, match="no column 'y'; columns: x"):
        profile_table(pa.table({"x": [1]})).column("y")


def test_text_table_lists_every_column():
    p = profile_table(pa.table({"amount": [1.0, 2.0], "currency": ["EUR", None]}))
    text = p.to_text()
    assert "amount" in text and "currency" in text and "numeric" in text and "string" in text
