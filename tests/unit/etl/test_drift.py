"""Drift: PSI against a straightforward NumPy PSI on the reference's bins, KS against
scipy.stats.ks_2samp, both within the documented sketch error."""

from __future__ import annotations

import doctest

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from fabric_ray.etl import drift as drift_module
from fabric_ray.etl.checks import Drift, Gate
from fabric_ray.etl.drift import KS_ERROR, PSI_EPSILON, DriftError, ks, ks_against_grid, ks_from_grids, psi, psi_from_counts
from fabric_ray.etl.profile import profile_table
from fabric_ray.etl.quantiles import GRID_SIZE, RANK_ERROR, grid_cdf

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GATE_KS_ERROR = 0.5 / (GRID_SIZE - 1) + RANK_ERROR  # exact current data against a reference grid


def test_doctests_pass():
    result = doctest.testmod(drift_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def numpy_psi(current: np.ndarray, reference: np.ndarray, edges, eps: float = PSI_EPSILON) -> float:
    """PSI the plain way: shares in [edge_i, edge_i+1) bins, empty shares raised to eps."""
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    a = np.histogram(current, bins=bounds)[0] / len(current)
    e = np.histogram(reference, bins=bounds)[0] / len(reference)
    a, e = np.maximum(a, eps), np.maximum(e, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def column(values, name: str = "x"):
    return profile_table(pa.table({name: values})).column(name)


def gate_drift(current: np.ndarray, reference_profile, **limits) -> dict:
    gate = Gate([Drift("x", reference_profile, **(limits or {"psi_max": 10.0}))])
    return gate.evaluate(pa.table({"x": current})).results[0].observed


# -- PSI ---------------------------------------------------------------------------------------------


def test_psi_from_counts_known_values_and_epsilon():
    assert psi_from_counts([1, 1], [1, 1]) == 0.0
    assert psi_from_counts([90, 10], [50, 50]) == pytest.approx(0.4 * np.log(1.8) - 0.4 * np.log(0.2))
    # an empty current bin counts as epsilon, so PSI stays finite
    expect = (PSI_EPSILON - 0.5) * np.log(PSI_EPSILON / 0.5) + 0.5 * np.log(1.0 / 0.5)
    assert psi_from_counts([0, 10], [5, 5]) == pytest.approx(expect)
    assert psi_from_counts([0, 0, 10], [0, 5, 5]) == pytest.approx(expect)  # empty on both sides adds 0
    with pytest.raises(DriftError, match="2 current bins against 3"):
        psi_from_counts([1, 1], [1, 1, 1])
    with pytest.raises(DriftError, match="no values"):
        psi_from_counts([0, 0], [1, 1])


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5, 2.0])
def test_gate_psi_equals_numpy_psi_on_an_exact_reference(shift):
    rng = np.random.default_rng(10)
    ref = rng.normal(0, 1, 1000)  # fits the sketch: the reference's bins and counts are exact
    cur = rng.normal(shift, 1, 30_000)
    profile = column(ref)
    got = gate_drift(cur, profile)["psi"]
    assert got == pytest.approx(numpy_psi(cur, ref, profile.histogram.edges), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_psi_on_a_large_reference_is_close_to_numpy(shift):
    rng = np.random.default_rng(11)
    ref = rng.lognormal(0, 1, 300_000)
    cur = rng.lognormal(shift, 1, 200_000)
    profile = column(ref)
    expect = numpy_psi(cur, ref, profile.histogram.edges)
    assert gate_drift(cur, profile)["psi"] == pytest.approx(expect, abs=0.01)  # exact current counts
    assert psi(column(cur), profile) == pytest.approx(expect, abs=0.03)  # current shares from its grid


def test_categorical_psi_matches_numpy():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 40 + ["b"] * 30 + ["d"] * 30  # "c" vanished, "d" is new
    e = np.array([0.5, 0.3, 0.2, 0.0])
    a = np.array([0.4, 0.3, 0.0, 0.3])
    a, e = np.maximum(a, PSI_EPSILON), np.maximum(e, PSI_EPSILON)
    expect = float(np.sum((a - e) * np.log(a / e)))
    assert psi(column(cur), column(ref)) == pytest.approx(expect)
    assert gate_drift(np.array(cur), column(ref))["psi"] == pytest.approx(expect)


def test_bool_psi():
    ref, cur = [True] * 50 + [False] * 50, [True] * 90 + [False] * 10
    assert psi(column(cur), column(ref)) == pytest.approx(psi_from_counts([90, 10], [50, 50]))


# -- KS ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["same", "shift", "scale", "ties", "large"])
def test_ks_matches_scipy_within_documented_error(case):
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    ref, cur = {
        "same": lambda: (rng.normal(size=900), rng.normal(size=1000)),
        "shift": lambda: (rng.normal(size=1000), rng.normal(0.3, 1, 800)),
        "scale": lambda: (rng.normal(size=1000), rng.normal(0, 2, 1000)),
        "ties": lambda: (rng.integers(0, 5, 1000).astype(float), rng.integers(1, 6, 700).astype(float)),
        "large": lambda: (rng.exponential(size=200_000), rng.exponential(1.1, 300_000)),
    }[case]()
    exact = ks_2samp(cur, ref, method="asymp").statistic
    ref_profile = column(ref)
    assert abs(ks(column(cur), ref_profile) - exact) <= KS_ERROR
    assert abs(gate_drift(cur, ref_profile, ks_max=1.0)["ks"] - exact) <= GATE_KS_ERROR


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value on tiny samples; the statistic is exact
@SETTINGS
@given(st.lists(st.integers(-20, 20), min_size=1, max_size=300), st.lists(st.integers(-20, 20), min_size=1, max_size=300),
       st.integers(1, 4))
def test_ks_property_against_scipy(ref, cur, scale):
    ref_a = np.array(ref, dtype=float) * scale
    cur_a = np.array(cur, dtype=float)
    exact = ks_2samp(cur_a, ref_a, method="asymp").statistic
    assert abs(ks(column(cur_a), column(ref_a)) - exact) <= KS_ERROR
    assert abs(gate_drift(cur_a, column(ref_a), ks_max=1.0)["ks"] - exact) <= GATE_KS_ERROR


def test_ks_of_identical_grids_is_zero_and_disjoint_is_one():
    g = np.linspace(0, 1, GRID_SIZE)
    assert ks_from_grids(g, g) == 0.0
    assert ks_from_grids(g, g + 5) == 1.0


def test_ks_against_grid_with_all_current_values_below_the_reference():
    g = np.linspace(10, 20, 11)
    n = 50
    assert ks_against_grid(g, np.full(11, n), np.full(11, n), n) == 1.0


@SETTINGS
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=500), st.lists(st.floats(-1.1e3, 1.1e3), max_size=50))
def test_grid_cdf_is_within_half_a_step_of_the_true_cdf(values, points):
    x = np.sort(np.array(values))
    grid = profile_table(pa.table({"x": x})).column("x").quantile_grid
    pts = np.array(points + values[:20])
    half = 0.5 / (GRID_SIZE - 1) + 1e-12
    assert np.all(np.abs(grid_cdf(grid, pts) - np.searchsorted(x, pts, "right") / len(x)) <= half)
    assert np.all(np.abs(grid_cdf(grid, pts, strict=True) - np.searchsorted(x, pts, "left") / len(x)) <= half)


def test_timestamp_ks_and_psi():
    base = np.datetime64("2024-01-01T00:00:00", "ms").astype(np.int64)
    ref = pa.array(base + np.arange(0, 1000) * 60_000, pa.timestamp("ms"))
    cur = pa.array(base + np.arange(500, 1500) * 60_000, pa.timestamp("ms"))
    r, c = column(ref), column(cur)
    assert ks(c, r) == pytest.approx(0.5, abs=KS_ERROR)
    assert psi(c, r) > 1.0


# -- errors ----------------------------------------------------------------------------------------------


def test_drift_errors_name_the_column_and_reason():
    num, text = column([1.0, 2.0]), column(["a", "b"], name="x")
    with pytest.raises(DriftError, match="cannot compare a string column with a numeric reference"):
        psi(text, num)
    with pytest.raises(DriftError, match="KS needs an ordered"):
        ks(text, column(["c"], name="x"))
    many = profile_table(pa.table({"x": [f"v{i}" for i in range(100)]}), max_categories=10).column("x")
    with pytest.raises(DriftError, match="no exact value counts"):
        psi(text, many)
    empty = profile_table(pa.table({"x": pa.array([None, None], pa.float64())})).column("x")
    with pytest.raises(DriftError, match="no values"):
        ks(empty, num)
