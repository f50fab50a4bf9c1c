"""Distribution drift between a run and a reference profile: PSI and the Kolmogorov-Smirnov statistic.

**PSI** (population stability index) compares the shares of values in the reference profile's
histogram bins (:class:`~fabric_ray.etl.profile.Histogram`: equal-frequency bins, deciles by default), or, for
string and boolean columns, in the reference's categories plus one bin for every other value::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

with ``a_i`` the current share and ``e_i`` the reference share of bin ``i``. An empty bin's
share is replaced by :data:`PSI_EPSILON` (``1e-4``) on either side, so PSI stays finite (an
empty bin in both contributes 0). Usual reading: below 0.1 stable, 0.1 to 0.25 a shift, above
0.25 a major shift.

**KS** is ``sup_x |F_current(x) - F_reference(x)|`` over the two CDFs (numeric and timestamp
columns), here read from the profiles' quantile grids (201 quantiles each). Each grid gives its
CDF to within half a grid step (0.0025) plus the sketch's rank error (0.005), so :func:`ks`
is within ``2 * (0.0025 + 0.005) = 0.015`` of ``scipy.stats.ks_2samp``'s statistic on the full
data (exact sketches: within 0.005). The gate's Drift check counts the current data exactly
against the reference grid and bins (:func:`ks_against_grid`, :func:`psi_from_counts`), so its
KS is within 0.0075 and its PSI uses exact current shares.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> from fabric_ray.etl.profile import profile_table
    >>> rng = np.random.default_rng(0)
    >>> ref = profile_table(pa.table({"x": rng.normal(0, 1, 5000)})).column("x")
    >>> same = profile_table(pa.table({"x": rng.normal(0, 1, 5000)})).column("x")
    >>> moved = profile_table(pa.table({"x": rng.normal(1, 1, 5000)})).column("x")
    >>> psi(same, ref) < 0.1 < 0.25 < psi(moved, ref), ks(same, ref) < 0.05 < 0.3 < ks(moved, ref)
    (True, True)
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from fabric_ray.etl.profile import ColumnProfile
from fabric_ray.etl.quantiles import GRID_SIZE, RANK_ERROR, grid_cdf

__all__ = [
    "KS_ERROR",
    "PSI_EPSILON",
    "DriftError",
    "category_counts",
    "ks",
    "ks_against_grid",
    "ks_from_grids",
    "psi",
    "psi_from_counts",
]

PSI_EPSILON = 1e-4
KS_ERROR = 2 * (0.5 / (GRID_SIZE - 1) + RANK_ERROR)  # bound on |ks() - exact KS| (profiles vs raw data)


class DriftError(ValueError):
    """Drift cannot be measured for a column; the message names it and says why."""


def psi_from_counts(actual: Sequence[float], expected: Sequence[float], *, epsilon: float = PSI_EPSILON) -> float:
    """PSI of two histograms over the same bins (counts or shares; each is normalised).

    Raises:
        DriftError: the bins differ in number, or one side is empty.

    Example:
        >>> round(psi_from_counts([50, 50], [50, 50]), 6), round(psi_from_counts([90, 10], [50, 50]), 4)
        (0.0, 0.8789)
    """
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise DriftError(f"psi: {len(a)} current bins against {len(e)} reference bins")
    if a.sum() <= 0 or e.sum() <= 0:
        raise DriftError(f"psi: a side has no values (current {a.sum():g}, reference {e.sum():g})")
    a = np.maximum(a / a.sum(), epsilon)
    e = np.maximum(e / e.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_from_grids(current: Sequence[float], reference: Sequence[float]) -> float:
    """KS statistic between two distributions given as quantile grids (see :func:`~fabric_ray.etl.quantiles.grid_cdf`).

    Both CDFs are step functions that jump only at grid points, so the largest gap is at one of them.

    Example:
        >>> ks_from_grids([0.0, 1.0, 2.0], [0.0, 1.0, 2.0]), ks_from_grids([0.0, 1.0, 2.0], [5.0, 6.0, 7.0])
        (0.0, 1.0)
    """
    c, r = np.asarray(current, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    points = np.union1d(c, r)
    return float(np.max(np.abs(grid_cdf(c, points) - grid_cdf(r, points))))


def ks_against_grid(reference: Sequence[float], le_counts: np.ndarray, lt_counts: np.ndarray, n: int) -> float:
    """KS statistic between exact current data and a reference quantile grid.

    Args:
        reference: the reference's quantile grid ``g`` (ascending).
        le_counts: current values ``<= g[i]``, per grid point.
        lt_counts: current values ``< g[i]``, per grid point.
        n: current values in all.

    The reference CDF is constant between grid points, the current one non-decreasing, so on
    each interval the largest gap is at one of its ends.

    Example:
        >>> g = [0.0, 1.0, 2.0]              # the reference CDF: 0.25 on [0, 1), 0.75 on [1, 2)
        >>> ks_against_grid(g, np.array([0, 100, 100]), np.array([0, 0, 100]), 100)   # current: all at 1.0
        0.25
    """
    g = np.asarray(reference, dtype=np.float64)
    if n <= 0:
        raise DriftError("ks: the current data has no values")
    le, lt = np.asarray(le_counts) / n, np.asarray(lt_counts) / n
    steps = len(g) - 1
    gaps = [lt[0], 1.0 - le[-1]]  # below the reference minimum; from its maximum on
    # interval [g[j], g[j+1]) for the last j of each run of equal grid values
    j = np.flatnonzero(g[:-1] < g[1:])
    level = (j + 0.5) / steps
    gaps.append(np.max(np.abs(level - le[j]), initial=0.0))
    gaps.append(np.max(np.abs(level - lt[j + 1]), initial=0.0))
    return float(max(gaps))


def category_counts(profile: ColumnProfile, categories: Iterable[Any]) -> np.ndarray:
    """A column's counts for ``categories`` plus one last bin for every other value."""
    if profile.frequencies is None:
        raise DriftError(f"column {profile.name!r}: no exact value counts in its profile "
                         f"(more than the builder's max_categories distinct values)")
    freq = dict(profile.frequencies)
    cats = list(categories)
    counts = [freq.pop(c, 0) for c in cats]
    return np.array(counts + [sum(freq.values())], dtype=np.float64)


def _check_pair(current: ColumnProfile, reference: ColumnProfile) -> None:
    if current.kind != reference.kind:
        raise DriftError(f"column {current.name!r}: cannot compare a {current.kind} column with a {reference.kind} reference")


def psi(current: ColumnProfile, reference: ColumnProfile, *, epsilon: float = PSI_EPSILON) -> float:
    """PSI of ``current`` against ``reference`` on the reference's bins (see the module docstring).

    Numeric and timestamp columns use the reference's histogram, with the current shares read
    from the current quantile grid; string and boolean columns use both exact value counts.

    Raises:
        DriftError: the kinds differ, a column has no values, or the value counts are not exact.
    """
    _check_pair(current, reference)
    if reference.kind in ("string", "bool"):
        cats = [v for v, _ in reference.frequencies or ()]
        if reference.frequencies is None:
            category_counts(reference, ())  # raises, naming the column
        return psi_from_counts(category_counts(current, cats), category_counts(reference, cats), epsilon=epsilon)
    if reference.histogram is None or current.quantile_grid is None:
        side = "reference" if reference.histogram is None else "current"
        raise DriftError(f"column {current.name!r}: the {side} profile has no values to compare ({reference.kind})")
    edges = np.asarray(reference.histogram.edges)
    below = np.concatenate([[0.0], grid_cdf(current.quantile_grid, edges, strict=True), [1.0]])
    return psi_from_counts(np.diff(below), reference.histogram.counts, epsilon=epsilon)


def ks(current: ColumnProfile, reference: ColumnProfile) -> float:
    """KS statistic of ``current`` against ``reference`` from their quantile grids (within :data:`KS_ERROR`).

    Raises:
        DriftError: not a numeric or timestamp column, or a side has no values.
    """
    _check_pair(current, reference)
    if reference.kind not in ("numeric", "timestamp"):
        raise DriftError(f"column {current.name!r}: KS needs an ordered numeric or timestamp column; it is {reference.kind}")
    for side, p in (("current", current), ("reference", reference)):
        if p.quantile_grid is None:
            raise DriftError(f"column {current.name!r}: the {side} profile has no values")
    return ks_from_grids(current.quantile_grid, reference.quantile_grid)
