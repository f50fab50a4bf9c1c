"""The verdict of a quality gate: per-check results, as JSON and as a table for a terminal.

JSON shape (``GateReport.to_json()``; keys always present, in this order)::

    {"version": 1, "passed": false, "rows": 1000, "checks": 3, "failed": 1,
     "results": [
       {"check": "amount: between 0 and 10000",   # str(check): what it requires
        "kind": "between",                          # the check's YAML key
        "passed": false,
        "observed": 3,                              # rules: failing rows; row_count: rows;
                                                    # freshness: {"newest", "age_s"}; drift: {"psi", "ks"}
        "failing_rows": 3,                          # null for whole-run checks (row_count, freshness, drift)
        "failing_share": 0.003,                     # failing_rows / rows; null as above
        "tolerance": 0.0,                           # the share a rule tolerates; null for other checks
        "message": "3 of 1,000 rows fail (0.300%); tolerance 0%",
        "samples": [{"amount": -5.0, "currency": "EUR"}],   # up to the gate's `samples` rows
        "spec": {"between": {"column": "amount", "min": 0, "max": 10000}}}]}

Sample values are JSON values: timestamps and dates as ISO 8601 text, non-finite floats as
``"nan"``, ``"inf"``, ``"-inf"``, decimals and other types as text.

Example:
    >>> r = CheckResult("x: not_null", "not_null", False, 2, 2, 0.5, 0.0, "2 of 4 rows fail", ({"x": None},), {"not_null": "x"})
    >>> report = GateReport(False, 4, (r,))
    >>> GateReport.from_json(report.to_json()) == report
    True
    >>> print(report.to_text().splitlines()[0])
    quality gate FAILED: 1 of 1 checks failed on 4 rows
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from fabric_ray.streams.sketches import hash64, mix64

__all__ = ["CheckResult", "GateReport", "SampleRows", "hash_column", "json_value", "row_hashes"]

FORMAT_VERSION = 1
_CHECK_WIDTH = 44
_VALUE_WIDTH = 200  # a sample row's JSON is cut at this many characters in the text table
_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def json_value(v: Any) -> Any:
    """A value as JSON can hold it (see the module docstring).

    Example:
        >>> json_value(dt.datetime(2024, 1, 2, 3, 4, 5)), json_value(float("inf")), json_value(b"ab")
        ('2024-01-02T03:04:05', 'inf', "b'ab'")
    """
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else ("nan" if math.isnan(v) else "inf" if v > 0 else "-inf")
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, Mapping):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, decimal.Decimal):
        return str(v)
    return str(v)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict; the fields are those of the JSON shape in the module docstring."""

    check: str
    kind: str
    passed: bool
    observed: Any
    failing_rows: int | None
    failing_share: float | None
    tolerance: float | None
    message: str
    samples: tuple[dict[str, Any], ...] = ()
    spec: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check, "kind": self.kind, "passed": self.passed, "observed": json_value(self.observed),
            "failing_rows": self.failing_rows, "failing_share": self.failing_share, "tolerance": self.tolerance,
            "message": self.message, "samples": [json_value(s) for s in self.samples], "spec": json_value(self.spec),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        return cls(d["check"], d["kind"], bool(d["passed"]), d["observed"], d["failing_rows"], d["failing_share"],
                   d["tolerance"], d["message"], tuple(d.get("samples") or ()), d.get("spec"))


@dataclass(frozen=True)
class GateReport:
    """A gate's verdict: ``passed`` when every check passed; one :class:`CheckResult` per check, in order."""

    passed: bool
    rows: int
    results: tuple[CheckResult, ...]

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        """The results of the checks that failed."""
        return tuple(r for r in self.results if not r.passed)

    def result(self, check: str) -> CheckResult:
        """The result of the check whose label (``str(check)``) or kind is ``check``.

        Raises:
            KeyError: no such check (the message lists them).
        """
        for r in self.results:
            if check in (r.check, r.kind):
                return r
        raise KeyError(f"no check {check!r} in the report; checks: {', '.join(r.check for r in self.results)}")

    def to_dict(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "passed": self.passed, "rows": self.rows, "checks": len(self.results),
                "failed": len(self.failed), "results": [r.to_dict() for r in self.results]}

    def to_json(self, *, indent: int | None = None) -> str:
        """The report as standard JSON (shape in the module docstring); the same report gives the same text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateReport:
        if not isinstance(d, Mapping) or d.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a gate report of format version {FORMAT_VERSION}: {str(d)[:80]!r}")
        return cls(bool(d["passed"]), int(d["rows"]), tuple(CheckResult.from_dict(r) for r in d["results"]))

    @classmethod
    def from_json(cls, text: str | bytes) -> GateReport:
        return cls.from_dict(json.loads(text))

    def to_text(self) -> str:
        """A fixed-width table, one line per check, then each failed check's message and sample rows."""
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"quality gate {verdict}: {len(self.failed)} of {len(self.results)} checks failed on {self.rows:,} rows"]
        header = f"{'#':>3}  {'verdict':<7}  {'check':<{_CHECK_WIDTH}}  observed"
        lines += [header, "-" * len(header)]
        for i, r in enumerate(self.results, 1):
            lines.append(f"{i:>3}  {'pass' if r.passed else 'FAIL':<7}  {_clip(r.check, _CHECK_WIDTH):<{_CHECK_WIDTH}}  {_observed(r)}".rstrip())
        failed = [(i, r) for i, r in enumerate(self.results, 1) if not r.passed]
        if failed:
            lines.append("")
            lines.append("failed checks:")
            for i, r in failed:
                lines.append(f"{i:>3}. {r.check}: {r.message}")
                for s in r.samples:
                    lines.append(f"       {_clip(json.dumps(json_value(s), ensure_ascii=False), _VALUE_WIDTH)}")
        return "\n".join(lines)


def _clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 3] + "..."


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v)


def _observed(r: CheckResult) -> str:
    o = r.observed
    if r.failing_rows is not None:
        share = f" ({r.failing_share:.3%})" if r.failing_share else ""
        return f"{r.failing_rows:,} failing row{'' if r.failing_rows == 1 else 's'}{share}"
    if r.kind == "row_count" and isinstance(o, int):
        return f"{o:,} rows"
    if r.kind == "freshness" and isinstance(o, Mapping):
        return f"newest {o.get('newest')}, age {_num(o.get('age_s'))} s"
    if r.kind == "drift" and isinstance(o, Mapping):
        return ", ".join(f"{k} {_num(v)}" for k, v in o.items())
    return "no values" if o is None else _clip(json.dumps(json_value(o)), 60)


# -- sample rows: bounded, and the same whatever the split into batches ---------------------------


def hash_column(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """:func:`~fabric_ray.streams.sketches.hash64`, with booleans hashed as the integers 0 and 1."""
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    return hash64(col)


def row_hashes(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """A 64-bit hash of each row's content (columns that cannot be hashed are left out)."""
    h = np.zeros(table.num_rows, dtype=np.uint64)
    for i, col in enumerate(table.columns):
        try:
            hc = hash_column(col)
        except (TypeError, pa.ArrowException):
            continue
        with np.errstate(over="ignore"):
            h = mix64(h ^ (hc + np.uint64((i + 1) * _GOLDEN & _MASK)))
    return h


class SampleRows:
    """Up to ``limit`` offending rows: those with the smallest hash of their content, so any
    split of the data into batches, merged in any order, keeps the same rows.

    Example:
        >>> import pyarrow as pa
        >>> t = pa.table({"x": list(range(100))})
        >>> a, b = SampleRows(3), SampleRows(3)
        >>> a.offer_rows(t.slice(0, 40), np.arange(40)); b.offer_rows(t.slice(40), np.arange(60))
        >>> whole = SampleRows(3)
        >>> whole.offer_rows(t, np.arange(100))
        >>> a.merge(b); a.rows() == whole.rows() and len(a.rows()) == 3
        True
    """

    __slots__ = ("limit", "items")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[tuple[int, dict[str, Any]]] = []  # (priority, JSON-able row), ascending

    def offer_rows(self, batch: pa.Table | pa.RecordBatch, rows: np.ndarray) -> None:
        """Consider rows ``rows`` (indices) of ``batch``; only the kept ones are converted to dicts."""
        if not self.limit or not len(rows):
            return
        taken = batch.take(pa.array(rows, pa.int64()))
        pri = row_hashes(taken)
        pick = np.argpartition(pri, self.limit - 1)[: self.limit] if len(pri) > self.limit else np.arange(len(pri))
        pick = pick[np.argsort(pri[pick], kind="stable")]
        if len(self.items) >= self.limit and int(pri[pick[0]]) >= self.items[-1][0]:
            return
        chosen = taken.take(pa.array(pick, pa.int64())).to_pylist()
        for p, row in zip(pri[pick].tolist(), chosen):
            self.items.append((p, {k: json_value(v) for k, v in row.items()}))
        self._trim()

    def offer(self, priority: int, row: dict[str, Any]) -> None:
        """Consider one entry (already JSON-able); an entry already kept is not kept twice."""
        if self.limit and (priority, row) not in self.items:
            self.items.append((priority, row))
            self._trim()

    def merge(self, other: SampleRows) -> None:
        self.items.extend(other.items)
        self._trim()

    def _trim(self) -> None:
        self.items.sort(key=lambda item: item[0])
        del self.items[self.limit :]

    def rows(self) -> tuple[dict[str, Any], ...]:
        return tuple(row for _, row in self.items)
