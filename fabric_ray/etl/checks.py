"""Quality gates for batch runs: checks computed by small, mergeable partials.

A :class:`Gate` is a list of checks. Its :meth:`~Gate.accumulator` folds in batches and merges
with other accumulators, so each Ray Data block computes a partial and the driver merges them
and calls :meth:`~GateAccumulator.finish` for the :class:`~fabric_ray.etl.gate_report.GateReport`.

The checks:

* the five rules of :mod:`fabric_ray.quality.rules` (``not_null``, ``unique``, ``between``,
  ``in_set``, ``regex``) with their null semantics and ``tolerance``: the check passes while
  the failing rows are at most ``tolerance`` of all rows. ``unique`` holds across the whole
  run, not per batch: each partial keeps the 64-bit hashes of its keys, so the driver needs
  8 bytes per distinct key (80 MB for 10 million); two different keys share a hash with
  probability about ``n**2 / 2**65`` (3e-6 for 10 million), which would count one false
  duplicate. Failing rows are ``rows with a key - distinct keys``;
* ``row_count``: ``min <= rows <= max``;
* ``freshness``: the newest value of a timestamp column (or an integer column with a
  ``unit``) is at most ``max_age_s`` older than now (``now_s`` is injectable in ``finish``);
* ``drift``: PSI and/or KS of a column against a reference profile are at most ``psi_max`` /
  ``ks_max`` (see :mod:`fabric_ray.etl.drift`; the current data is counted exactly on the
  reference's bins and quantile grid).

Every other partial is bounded: counters, and up to ``samples`` offending rows per check (those
with the smallest hash of their content, so any split of the data picks the same rows).

Example:
    >>> import pyarrow as pa
    >>> gate = Gate.parse([{"not_null": "id"}, {"unique": "id"}, {"row_count": {"min": 1}}])
    >>> acc = gate.accumulator().update(pa.table({"id": [1, 2, None]}))
    >>> acc = acc.merge(gate.accumulator().update(pa.table({"id": [2, 3]})))
    >>> report = acc.finish()
    >>> report.passed, [(r.kind, r.passed, r.observed) for r in report.results]
    (False, [('not_null', False, 1), ('unique', False, 1), ('row_count', True, 5)])
    >>> report.result("unique").samples
    ({'id': 2},)
"""

from __future__ import annotations

import datetime as dt
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.etl.drift import PSI_EPSILON, category_counts, ks_against_grid, psi_from_counts
from fabric_ray.etl.gate_report import CheckResult, GateReport, SampleRows, hash_column, json_value
from fabric_ray.etl.profile import ColumnProfile, Profile, ProfileError, column_kind, to_epoch_us
from fabric_ray.quality.rules import RULE_KINDS, NotNull, Rule, RuleError, Unique, parse_rule
from fabric_ray.streams.sketches import mix64

__all__ = [
    "CHECK_KINDS",
    "Check",
    "CheckError",
    "Drift",
    "Freshness",
    "Gate",
    "GateAccumulator",
    "RowCount",
    "RuleCheck",
    "parse_check",
    "parse_checks",
]

Batch: TypeAlias = "pa.Table | pa.RecordBatch"
_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}
_MAX_SAMPLES = 1000
_GOLDEN = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK = (1 << 64) - 1
_FLOAT_SALT = 0x5851F42D4C957F2D


class CheckError(RuleError):
    """A check is invalid or cannot run on the data; the message names the check and the value."""


# -- checks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    rows: int
    now_s: float
    samples: int


class _Partial(ABC):
    """A check's state over some batches; merging two gives the state over both."""

    @abstractmethod
    def update(self, batch: Batch) -> None: ...

    @abstractmethod
    def merge(self, other: _Partial) -> None: ...

    @abstractmethod
    def result(self, ctx: _Context) -> CheckResult: ...


class Check(ABC):
    """One check of a gate. ``str(check)`` says what it requires; ``to_dict()`` is its YAML form."""

    kind: ClassVar[str]

    @abstractmethod
    def partial(self, samples: int) -> _Partial:
        """A fresh partial keeping up to ``samples`` offending rows."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The check as written in YAML; :func:`parse_check` reads it back."""

    def _result(self, passed: bool, observed: Any, message: str, **kw: Any) -> CheckResult:
        return CheckResult(check=str(self), kind=self.kind, passed=passed, observed=observed,
                           failing_rows=kw.get("failing_rows"), failing_share=kw.get("failing_share"),
                           tolerance=kw.get("tolerance"), message=message, samples=kw.get("samples", ()),
                           spec=json_value(self.spec()))

    def spec(self) -> dict[str, Any]:
        """The check as its report shows it (its YAML form; see :meth:`Drift.spec`)."""
        return self.to_dict()


def _column(batch: Batch, name: str, check: Check) -> pa.ChunkedArray | pa.Array:
    if name not in batch.schema.names:
        raise CheckError(f"check {check}: column {name!r} is not in the batch (columns: {', '.join(batch.schema.names)})")
    return batch.column(name)


@dataclass(frozen=True)
class RuleCheck(Check):
    """A rule of :mod:`fabric_ray.quality.rules` as a gate check (``unique`` across the whole run).

    Example:
        >>> str(RuleCheck(parse_rule({"not_null": {"column": "x", "tolerance": 0.01}})))
        'x: not_null (tolerance 1%)'
    """

    rule: Rule

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.rule.kind

    def partial(self, samples: int) -> _Partial:
        return _UniquePartial(self, samples) if isinstance(self.rule, Unique) else _RulePartial(self, samples)

    def to_dict(self) -> dict[str, Any]:
        return self.rule.to_dict()

    def __str__(self) -> str:
        tol = self.rule.tolerance
        return f"{self.rule} (tolerance {tol * 100:.4g}%)" if tol else str(self.rule)

    def verdict(self, failing: int, ctx: _Context, samples: tuple[dict[str, Any], ...]) -> CheckResult:
        rows, tol = ctx.rows, self.rule.tolerance
        share = failing / rows if rows else 0.0
        passed = self.rule.within_tolerance(failing, rows)
        message = f"{failing:,} of {rows:,} rows fail ({share:.3%}); tolerance {tol * 100:.4g}%"
        return self._result(passed, failing, message, failing_rows=failing, failing_share=share, tolerance=tol, samples=samples)


class _RulePartial(_Partial):
    def __init__(self, check: RuleCheck, samples: int) -> None:
        self.check, self.failing, self.samples = check, 0, SampleRows(samples)

    def update(self, batch: Batch) -> None:
        cols = [_column(batch, name, self.check) for name in self.check.rule.columns]
        if not isinstance(self.check.rule, NotNull) and all(pa.types.is_null(c.type) for c in cols):
            return  # an all-null block (typed null): nulls pass every rule but not_null
        try:
            mask = self.check.rule.failures(batch)
        except pa.ArrowException as exc:
            types = ", ".join(f"{c} is {batch.schema.field(c).type}" for c in self.check.rule.columns)
            raise CheckError(f"check {self.check}: cannot run on this data ({types}): {exc}") from None
        failing = np.flatnonzero(mask)
        self.failing += len(failing)
        self.samples.offer_rows(batch, failing)

    def merge(self, other: _Partial) -> None:
        self.failing += other.failing
        self.samples.merge(other.samples)

    def result(self, ctx: _Context) -> CheckResult:
        return self.check.verdict(self.failing, ctx, self.samples.rows())


def _key_hashes(batch: Batch, key: Sequence[str]) -> np.ndarray:
    h = hash_column(batch.column(key[0]))
    for i, name in enumerate(key[1:], 2):
        with np.errstate(over="ignore"):
            h = mix64(h * np.uint64(0x100000001B3) ^ (hash_column(batch.column(name)) + np.uint64(i * _GOLDEN & _MASK)))
    return h


def _unxorshift(z: int, s: int) -> int:
    out, shift = z, s
    while shift < 64:
        out ^= z >> shift
        shift += s
    return out


def _unmix64(h: int) -> int:
    """The inverse of :func:`fabric_ray.streams.sketches.mix64` (a bijection) on one value."""
    z = _unxorshift(h, 31)
    z = (z * pow(_M2, -1, 1 << 64)) & _MASK
    z = _unxorshift(z, 27)
    z = (z * pow(_M1, -1, 1 << 64)) & _MASK
    z = _unxorshift(z, 30)
    return (z - _GOLDEN) & _MASK


def _decode_key(h: int, key: tuple[str, ...], types: tuple[pa.DataType, ...]) -> dict[str, Any]:
    """A key from its hash where hash64 is invertible (one integer, float, bool or temporal column)."""
    if len(key) == 1:
        t = types[0]
        bits = _unmix64(h)
        try:
            if pa.types.is_floating(t):
                value = float(np.uint64(bits ^ _FLOAT_SALT).view(np.float64))
            elif pa.types.is_unsigned_integer(t):
                value = bits
            elif pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
                signed = int(np.uint64(bits).view(np.int64))
                value = bool(signed) if pa.types.is_boolean(t) else signed
                if pa.types.is_temporal(t):
                    storage = pa.int32() if pa.types.is_date32(t) or pa.types.is_time32(t) else pa.int64()
                    value = pa.array([value], storage).cast(t).to_pylist()[0]
            else:
                return {"key_hash": f"{h:016x}"}
        except (pa.ArrowException, OverflowError):
            return {"key_hash": f"{h:016x}"}
        return {key[0]: json_value(value)}
    return {"key_hash": f"{h:016x}"}


class _UniquePartial(_Partial):
    """Key hashes over the run: per batch its distinct keys (duplicates inside a batch are
    counted and sampled as rows), merged lazily; keys found in more than one batch are
    duplicates too, sampled as their key (decoded from the hash where possible)."""

    _PENDING = 32

    def __init__(self, check: RuleCheck, samples: int) -> None:
        self.check, self.key = check, check.rule.key
        self.keyed = 0  # rows whose key has no null
        self.types: tuple[pa.DataType, ...] | None = None
        self.pending: list[np.ndarray] = []  # sorted distinct hashes of batches or merged runs
        self.pending_size = 0
        self.samples = SampleRows(samples)

    def update(self, batch: Batch) -> None:
        cols = [_column(batch, c, self.check) for c in self.key]
        valid = np.ones(batch.num_rows, dtype=bool)
        for c in cols:
            if c.null_count:
                valid &= ~np.asarray(c.is_null().to_numpy(zero_copy_only=False))
        if not valid.any():
            return  # no key without a null: nothing to count
        if self.types is None:
            self.types = tuple(c.type for c in cols)
        try:
            h = _key_hashes(batch, self.key)
        except (TypeError, pa.ArrowException) as exc:
            raise CheckError(f"check {self.check}: {exc}") from None
        rows = np.flatnonzero(valid) if not valid.all() else None
        hv = h if rows is None else h[rows]
        self.keyed += len(hv)
        s = np.sort(hv)
        new = np.ones(len(s), dtype=bool)
        np.not_equal(s[1:], s[:-1], out=new[1:])
        if not new.all() and self.samples.limit:
            order = np.argsort(hv, kind="stable")  # the first occurrence of a key passes
            later = order[~new]
            self.samples.offer_rows(batch, later if rows is None else rows[later])
        self._push(s[new])

    def _push(self, hashes: np.ndarray) -> None:
        self.pending.append(hashes)
        self.pending_size += len(hashes)
        if len(self.pending) > self._PENDING:
            self._compact()

    def _compact(self) -> np.ndarray:
        if len(self.pending) == 1:
            return self.pending[0]
        s = np.sort(np.concatenate(self.pending))
        new = np.ones(len(s), dtype=bool)
        np.not_equal(s[1:], s[:-1], out=new[1:])
        if not new.all() and self.samples.limit:
            repeated = s[~new]
            pri = mix64(repeated)
            for i in np.argsort(pri)[: self.samples.limit].tolist():
                self.samples.offer(int(pri[i]), _decode_key(int(repeated[i]), self.key, self.types))
        distinct = s[new]
        self.pending, self.pending_size = [distinct], len(distinct)
        return distinct

    def merge(self, other: _Partial) -> None:
        self.keyed += other.keyed
        self.types = self.types or other.types
        self.samples.merge(other.samples)
        for hashes in other.pending:
            self._push(hashes)

    def result(self, ctx: _Context) -> CheckResult:
        distinct = len(self._compact()) if self.pending else 0
        return self.check.verdict(self.keyed - distinct, ctx, self.samples.rows())


def _number(check: str, name: str, value: Any, *, low: float = 0.0, high: float | None = None, integer: bool = False) -> Any:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer()) and value >= low and (high is None or value <= high)
    if not ok:
        what = "an integer" if integer else "a number"
        rng = f"from {low:g}" + (f" to {high:g}" if high is not None else "")
        raise CheckError(f"check {check}: {name} must be {what} {rng}; got {value!r}")
    return int(value) if integer else value


@dataclass(frozen=True)
class RowCount(Check):
    """The run has between ``min`` and ``max`` rows (inclusive; each optional, not both).

    Example:
        >>> str(RowCount(1, 1000)), str(RowCount(min=1))
        ('row_count: between 1 and 1,000', 'row_count: >= 1')
        >>> RowCount(5, 1)
        Traceback (most recent call last):
        ...
        fabric_ray.etl.checks.CheckError: check row_count: min 5 is greater than max 1
    """

    min: int | None = None
    max: int | None = None
    kind: ClassVar[str] = "row_count"

    def __post_init__(self) -> None:
        for name in ("min", "max"):
            if getattr(self, name) is not None:
                _number(self.kind, name, getattr(self, name), integer=True)
        if self.min is None and self.max is None:
            raise CheckError("check row_count: needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise CheckError(f"check row_count: min {self.min} is greater than max {self.max}")

    def partial(self, samples: int) -> _Partial:
        return _RowsPartial(self)

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: {k: getattr(self, k) for k in ("min", "max") if getattr(self, k) is not None}}

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"row_count: between {self.min:,} and {self.max:,}"
        return f"row_count: >= {self.min:,}" if self.min is not None else f"row_count: <= {self.max:,}"


class _RowsPartial(_Partial):
    def __init__(self, check: RowCount) -> None:
        self.check = check

    def update(self, batch: Batch) -> None:
        pass  # the accumulator counts rows

    def merge(self, other: _Partial) -> None:
        pass

    def result(self, ctx: _Context) -> CheckResult:
        c, n = self.check, ctx.rows
        low_ok, high_ok = c.min is None or n >= c.min, c.max is None or n <= c.max
        message = f"{n:,} rows" + ("" if low_ok else f", fewer than {c.min:,}") + ("" if high_ok else f", more than {c.max:,}")
        return c._result(low_ok and high_ok, n, message)


@dataclass(frozen=True)
class Freshness(Check):
    """The newest value of ``column`` is at most ``max_age_s`` seconds before now.

    ``column`` is a timestamp or date column, or an integer column of epoch times in ``unit``
    (``s``, ``ms``, ``us`` or ``ns``). A run without values fails; a newest value in the future
    passes (its age is negative).

    Example:
        >>> str(Freshness("ts", 3600)), Freshness("ts", 60, unit="ms").to_dict()
        ('ts: newest within 3600 s', {'freshness': {'column': 'ts', 'max_age_s': 60, 'unit': 'ms'}})
    """

    column: str
    max_age_s: float
    unit: str | None = None
    kind: ClassVar[str] = "freshness"

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise CheckError(f"check freshness: column must be a non-empty string; got {self.column!r}")
        _number(f"freshness on {self.column!r}", "max_age_s", self.max_age_s)
        if self.unit is not None and self.unit not in _UNITS:
            raise CheckError(f"check freshness on {self.column!r}: unit must be one of {', '.join(_UNITS)}; got {self.unit!r}")

    def partial(self, samples: int) -> _Partial:
        return _FreshnessPartial(self)

    def to_dict(self) -> dict[str, Any]:
        args: dict[str, Any] = {"column": self.column, "max_age_s": self.max_age_s}
        if self.unit is not None:
            args["unit"] = self.unit
        return {self.kind: args}

    def __str__(self) -> str:
        return f"{self.column}: newest within {self.max_age_s:g} s"


class _FreshnessPartial(_Partial):
    def __init__(self, check: Freshness) -> None:
        self.check, self.newest_us = check, None

    def update(self, batch: Batch) -> None:
        c = self.check
        col = _column(batch, c.column, c)
        t = col.type
        if col.null_count == len(col):
            return
        col = col.drop_null()
        if column_kind(t) == "timestamp":
            newest = int(to_epoch_us(col).max())
        elif (pa.types.is_integer(t) or pa.types.is_floating(t)) and c.unit is not None:
            newest = int(pc.max(col).as_py() * _UNITS[c.unit])
        else:
            hint = "; give unit (s, ms, us or ns) for epoch numbers" if pa.types.is_integer(t) or pa.types.is_floating(t) else ""
            raise CheckError(f"check {c}: column {c.column!r} is {t}, not a timestamp{hint}")
        self.newest_us = newest if self.newest_us is None else max(self.newest_us, newest)

    def merge(self, other: _Partial) -> None:
        if other.newest_us is not None:
            self.newest_us = other.newest_us if self.newest_us is None else max(self.newest_us, other.newest_us)

    def result(self, ctx: _Context) -> CheckResult:
        c = self.check
        if self.newest_us is None:
            return c._result(False, None, f"no values in {c.column!r}: freshness unknown")
        age_s = ctx.now_s - self.newest_us / 1e6
        newest = (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=self.newest_us)).isoformat()
        passed = age_s <= c.max_age_s
        message = f"newest {newest} UTC is {age_s:,.1f} s old" + ("" if passed else f", older than {c.max_age_s:g} s")
        return c._result(passed, {"newest": newest, "age_s": age_s}, message)


def _load_profile(source: str | Path, storage: Any = None) -> Profile:
    text = str(source)
    try:
        if "://" in text and not text.startswith("file://"):
            from fabric_ray.storage.fs import open_location

            parent, _, name = text.rstrip("/").rpartition("/")
            data = open_location(parent, storage).read_bytes(name)
        else:
            data = Path(text.removeprefix("file://")).read_bytes()
        return Profile.from_json(data)
    except (OSError, ProfileError) as exc:
        raise CheckError(f"check drift: cannot read the reference profile {text!r}: {exc}") from None


@dataclass(frozen=True)
class Drift(Check):
    """``column``'s PSI and/or KS against a reference profile are at most ``psi_max`` / ``ks_max``.

    Args:
        column: the column (numeric, timestamp, string or bool; KS only for the first two).
        reference: the reference: a :class:`~fabric_ray.etl.profile.Profile`, one column's
            profile, or the path/URI of a profile's JSON (read now).
        psi_max: largest PSI that passes (see :mod:`fabric_ray.etl.drift`).
        ks_max: largest KS statistic that passes (0 to 1).
        storage: storage settings to read an ``s3://`` reference with.

    Example:
        >>> import pyarrow as pa
        >>> from fabric_ray.etl.profile import profile_table
        >>> ref = profile_table(pa.table({"x": [float(i) for i in range(100)]}))
        >>> str(Drift("x", ref, psi_max=0.2, ks_max=0.1))
        'x: drift psi <= 0.2, ks <= 0.1'
    """

    column: str
    reference: ColumnProfile
    psi_max: float | None = None
    ks_max: float | None = None
    source: str | None = None
    kind: ClassVar[str] = "drift"

    def __init__(self, column: str, reference: Profile | ColumnProfile | str | Path, psi_max: float | None = None,
                 ks_max: float | None = None, *, source: str | None = None, storage: Any = None) -> None:
        if not isinstance(column, str) or not column:
            raise CheckError(f"check drift: column must be a non-empty string; got {column!r}")
        what = f"drift on {column!r}"
        if isinstance(reference, (str, Path)):
            source, reference = str(reference), _load_profile(reference, storage)
        if isinstance(reference, Profile):
            try:
                reference = reference.column(column)
            except ProfileError as exc:
                raise CheckError(f"check {what}: the reference {exc}") from None
        if not isinstance(reference, ColumnProfile):
            raise CheckError(f"check {what}: reference must be a profile or its path; got {type(reference).__name__}")
        if psi_max is None and ks_max is None:
            raise CheckError(f"check {what}: needs psi_max, ks_max or both")
        if psi_max is not None:
            _number(what, "psi_max", psi_max)
        if ks_max is not None:
            _number(what, "ks_max", ks_max, high=1.0)
        kind = reference.kind
        if kind not in ("numeric", "timestamp", "string", "bool"):
            raise CheckError(f"check {what}: the reference column is {reference.type}; drift needs numbers, timestamps, text or booleans")
        if ks_max is not None and kind not in ("numeric", "timestamp"):
            raise CheckError(f"check {what}: KS needs an ordered numeric or timestamp column; the reference is {kind}")
        if kind in ("string", "bool") and reference.frequencies is None:
            raise CheckError(f"check {what}: the reference has too many distinct values ({reference.distinct}) "
                             "for PSI on categories; raise the profile builder's max_categories")
        if kind in ("numeric", "timestamp") and reference.histogram is None:
            raise CheckError(f"check {what}: the reference profile has no values in the column")
        for name, value in (("column", column), ("reference", reference), ("psi_max", psi_max), ("ks_max", ks_max), ("source", source)):
            object.__setattr__(self, name, value)

    def partial(self, samples: int) -> _Partial:
        return _DriftPartial(self)

    def to_dict(self) -> dict[str, Any]:
        args: dict[str, Any] = {"column": self.column, "reference": self.source or self.reference.to_dict()}
        for name in ("psi_max", "ks_max"):
            if getattr(self, name) is not None:
                args[name] = getattr(self, name)
        return {self.kind: args}

    def spec(self) -> dict[str, Any]:
        """The YAML form with an inline reference shown as ``"(inline profile)"``, keeping reports small."""
        d = self.to_dict()
        if self.source is None:
            d[self.kind]["reference"] = "(inline profile)"
        return d

    def __str__(self) -> str:
        limits = [f"{n} <= {getattr(self, n + '_max'):g}" for n in ("psi", "ks") if getattr(self, n + "_max") is not None]
        return f"{self.column}: drift {', '.join(limits)}"

    def __repr__(self) -> str:
        return f"Drift(column={self.column!r}, psi_max={self.psi_max!r}, ks_max={self.ks_max!r}, source={self.source!r})"


class _DriftPartial(_Partial):
    """Exact counts of the current values on the reference's bins (and quantile grid)."""

    def __init__(self, check: Drift) -> None:
        ref = check.reference
        self.check, self.n = check, 0
        self.ordered = ref.kind in ("numeric", "timestamp")
        if self.ordered:
            self.edges = np.asarray(ref.histogram.edges, dtype=np.float64)
            self.grid = np.asarray(ref.quantile_grid, dtype=np.float64)
            self.bins = np.zeros(len(self.edges) + 1, dtype=np.int64)
            self.le = np.zeros(len(self.grid), dtype=np.int64)
            self.lt = np.zeros(len(self.grid), dtype=np.int64)
        else:
            self.categories = [v for v, _ in ref.frequencies]
            self.bins = np.zeros(len(self.categories) + 1, dtype=np.int64)

    def update(self, batch: Batch) -> None:
        c = self.check
        col = _column(batch, c.column, c)
        if pa.types.is_null(col.type):
            return
        if column_kind(col.type) != c.reference.kind:
            raise CheckError(f"check {c}: column {c.column!r} is {col.type}, the reference is {c.reference.type}")
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        arr = arr.drop_null() if arr.null_count else arr
        if not len(arr):
            return
        if not self.ordered:
            vc = pc.value_counts(arr)
            counts = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))
            known = [counts.pop(v, 0) for v in self.categories]
            self.bins += np.array(known + [sum(counts.values())], dtype=np.int64)
            self.n += len(arr)
            return
        if c.reference.kind == "timestamp":
            x = to_epoch_us(arr).astype(np.float64)
        else:
            x = (arr.cast(pa.float64()) if pa.types.is_decimal(arr.type) else arr).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            x = x[~np.isnan(x)]
        xs = np.sort(x)  # one sort, then a binary search per edge and grid point
        self.n += len(xs)
        below = np.searchsorted(xs, self.edges, side="left")
        self.bins += np.diff(below, prepend=0, append=len(xs))
        self.le += np.searchsorted(xs, self.grid, side="right")
        self.lt += np.searchsorted(xs, self.grid, side="left")

    def merge(self, other: _Partial) -> None:
        self.n += other.n
        self.bins += other.bins
        if self.ordered:
            self.le += other.le
            self.lt += other.lt

    def result(self, ctx: _Context) -> CheckResult:
        c = self.check
        if not self.n:
            return c._result(False, None, f"no values in {c.column!r}: drift cannot be measured")
        ref = c.reference
        expected = ref.histogram.counts if self.ordered else category_counts(ref, self.categories)
        observed: dict[str, float] = {"psi": psi_from_counts(self.bins, expected, epsilon=PSI_EPSILON)}
        if self.ordered:
            observed["ks"] = ks_against_grid(self.grid, self.le, self.lt, self.n)
        over = [f"{k} {observed[k]:.4g} > {getattr(c, k + '_max'):g}" for k in ("psi", "ks")
                if getattr(c, k + "_max") is not None and observed[k] > getattr(c, k + "_max")]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in observed.items())
        message = f"{shown} on {self.n:,} values" + (f": {'; '.join(over)}" if over else "")
        return c._result(not over, observed, message)


# -- parsing -------------------------------------------------------------------------------------

CHECK_KINDS: tuple[str, ...] = (*RULE_KINDS, RowCount.kind, Freshness.kind, Drift.kind)
_ARGS = {"row_count": ("min", "max"), "freshness": ("column", "max_age_s", "unit"),
         "drift": ("column", "reference", "psi_max", "ks_max")}


def parse_check(spec: Any, *, storage: Any = None) -> Check:
    """A check from its YAML form: a mapping with one key, the check's kind.

    The rule kinds take the arguments of :func:`fabric_ray.quality.rules.parse_rule`.

    Args:
        spec: e.g. ``{"row_count": {"min": 1}}`` or ``{"drift": {"column": "x", "reference": "ref.json", "psi_max": 0.2}}``.
        storage: storage settings for a drift reference given as an ``s3://`` URI.

    Raises:
        CheckError: unknown kind or key, missing or invalid value; the message names the check and the value.

    Example:
        >>> str(parse_check({"freshness": {"column": "ts", "max_age_s": 600}}))
        'ts: newest within 600 s'
        >>> parse_check({"row_count": {"min": -1}})
        Traceback (most recent call last):
        ...
        fabric_ray.etl.checks.CheckError: check row_count: min must be an integer from 0; got -1
    """
    if isinstance(spec, Check):
        return spec
    if isinstance(spec, Rule):
        return RuleCheck(spec)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise CheckError(f"a check is a mapping with one key, its kind ({', '.join(CHECK_KINDS)}); got {spec!r}")
    ((kind, args),) = spec.items()
    if kind in RULE_KINDS:
        try:
            return RuleCheck(parse_rule(spec))
        except CheckError:
            raise
        except RuleError as exc:
            raise CheckError(str(exc)) from None
    if kind not in _ARGS:
        import difflib

        close = difflib.get_close_matches(str(kind), list(CHECK_KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CheckError(f"unknown check {kind!r}{hint}; known checks: {', '.join(CHECK_KINDS)}")
    if not isinstance(args, Mapping):
        raise CheckError(f"check {kind}: expected a mapping of arguments ({', '.join(_ARGS[kind])}); got {args!r}")
    unknown = [k for k in args if k not in _ARGS[kind]]
    if unknown:
        raise CheckError(f"check {kind}: unknown key {unknown[0]!r}; expected {', '.join(_ARGS[kind])}")
    required = {"row_count": (), "freshness": ("column", "max_age_s"), "drift": ("column", "reference")}[kind]
    missing = [k for k in required if k not in args]
    if missing:
        raise CheckError(f"check {kind}: missing {', '.join(missing)}")
    if kind == "row_count":
        return RowCount(**args)
    if kind == "freshness":
        return Freshness(**args)
    args = dict(args)
    ref = args.pop("reference")
    if isinstance(ref, Mapping):
        try:
            ref = Profile.from_dict(ref) if "columns" in ref else ColumnProfile.from_dict(ref)
        except (ProfileError, KeyError, TypeError) as exc:
            raise CheckError(f"check drift on {args.get('column')!r}: reference is not a profile: {exc}") from None
    return Drift(args.pop("column"), ref, storage=storage, **args)


def parse_checks(specs: Any, *, storage: Any = None) -> tuple[Check, ...]:
    """Several checks from a YAML list; see :func:`parse_check`.

    Raises:
        CheckError: the first bad check, named by its position (``checks[2]``).
    """
    if specs is None:
        return ()
    if not isinstance(specs, (list, tuple)):
        raise CheckError(f"checks must be a list; got {specs!r}")
    out = []
    for i, spec in enumerate(specs):
        try:
            out.append(parse_check(spec, storage=storage))
        except RuleError as exc:
            raise CheckError(f"checks[{i}]: {exc}") from None
    return tuple(out)


# -- the gate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """Checks that a run must pass before its output is published.

    Args:
        checks: the checks (or their YAML dicts).
        samples: offending rows kept per check (0 to 1000).
    """

    checks: tuple[Check, ...]
    samples: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks", parse_checks(list(self.checks)))
        _number("gate", "samples", self.samples, high=_MAX_SAMPLES, integer=True)

    @classmethod
    def parse(cls, specs: Any, *, samples: int = 5, storage: Any = None) -> Gate:
        """A gate from a YAML list of checks; see :func:`parse_check`."""
        return cls(parse_checks(specs, storage=storage), samples)

    def to_list(self) -> list[dict[str, Any]]:
        """The checks in their YAML form."""
        return [c.to_dict() for c in self.checks]

    def accumulator(self) -> GateAccumulator:
        """A fresh, empty partial of every check."""
        return GateAccumulator(self)

    def evaluate(self, table: Batch, *, profile: Profile | None = None, now_s: float | None = None) -> GateReport:
        """Check one table in one pass (``accumulator().update(table).finish(...)``)."""
        return self.accumulator().update(table).finish(profile, now_s=now_s)

    def __str__(self) -> str:
        return f"gate of {len(self.checks)} checks: " + "; ".join(str(c) for c in self.checks)


class GateAccumulator:
    """A gate's partial over some batches: ``update`` with batches, ``merge`` partials, ``finish`` once.

    Picklable and small (see the module docstring), so Ray Data blocks each build one and the
    driver merges them.
    """

    def __init__(self, gate: Gate) -> None:
        self.gate, self.rows = gate, 0
        self.partials = [c.partial(gate.samples) for c in gate.checks]

    def update(self, batch: Batch) -> GateAccumulator:
        """Fold in one batch (table or record batch); returns the accumulator.

        Raises:
            CheckError: a check's column is missing or of a type the check cannot read.
        """
        for p in self.partials:
            p.update(batch)
        self.rows += batch.num_rows
        return self

    def merge(self, other: GateAccumulator) -> GateAccumulator:
        """Fold in another accumulator of the same gate; returns this one."""
        if other.gate is not self.gate and other.gate.to_list() != self.gate.to_list():
            raise CheckError("gate accumulators of different gates cannot be merged")
        for mine, theirs in zip(self.partials, other.partials):
            mine.merge(theirs)
        self.rows += other.rows
        return self

    def finish(self, profile: Profile | None = None, *, now_s: float | None = None) -> GateReport:
        """The report over everything folded in.

        Args:
            profile: the run's profile, if one was built over the same batches: its row count
                must agree (a guard against partials of different data).
            now_s: "now" for freshness checks, in seconds since the epoch (default: the clock).

        Raises:
            CheckError: the profile counts different rows.
        """
        if profile is not None and profile.rows != self.rows:
            raise CheckError(f"gate: the profile counts {profile.rows:,} rows but the gate saw {self.rows:,}; "
                             "build both from the same batches")
        ctx = _Context(self.rows, time.time() if now_s is None else float(now_s), self.gate.samples)
        results = tuple(p.result(ctx) for p in self.partials)
        return GateReport(all(r.passed for r in results), self.rows, results)
