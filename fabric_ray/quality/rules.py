"""The data-quality rule vocabulary shared by data contracts and ETL quality gates.

Five rules, each an immutable value checked when it is made:

* ``not_null``: the column holds no null (NaN is a value, not a null);
* ``unique``: no two rows of the *checked batch* share the key (one or more columns); the
  first row holding a key passes, every later one fails. Uniqueness across batches (a whole
  topic or table) is not checked: that needs state, which belongs to the caller;
* ``between``: ``min <= value <= max`` (each bound optional, each inclusive by default);
  NaN is outside every range;
* ``in_set``: the value is one of a fixed, non-empty set;
* ``regex``: the whole value matches the pattern (full match, RE2 syntax as run by Arrow).

Nulls: only ``not_null`` fails a null. ``between``, ``in_set`` and ``regex`` pass a null
(whether a value may be missing is ``not_null``'s question), and ``unique`` ignores rows with
a null in any key column, as SQL ``UNIQUE`` does.

``tolerance`` is the share of failing rows an ETL gate accepts (``0.0``, the default, accepts
none). It never hides rows: :meth:`Rule.failures` flags every failing row whatever the
tolerance, and :meth:`Rule.within_tolerance` is the gate's verdict.

Every rule evaluates a whole Arrow table or record batch at once with ``pyarrow.compute`` and
returns a NumPy boolean mask of the rows that fail. Rules parse from the dicts of a YAML file
and print back to them.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"amount": [5.0, -1.0, None], "currency": ["EUR", "XXX", "USD"]})
    >>> rule = parse_rule({"between": {"column": "amount", "min": 0, "max": 10000}})
    >>> str(rule), rule.failures(t).tolist()
    ('amount: between 0 and 10000', [False, True, False])
    >>> parse_rule({"not_null": "amount"}).failures(t).tolist()
    [False, False, True]
    >>> InSet("currency", ["EUR", "USD"]).to_dict()
    {'in_set': {'column': 'currency', 'values': ['EUR', 'USD']}}
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterable, Mapping, Sequence, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "RULE_KINDS",
    "Between",
    "InSet",
    "NotNull",
    "Regex",
    "Rule",
    "RuleError",
    "Unique",
    "parse_rule",
    "parse_rules",
]

Batch: TypeAlias = "pa.Table | pa.RecordBatch"
_SHOWN_VALUES = 8  # in_set values spelled out in a rule's label


class RuleError(ValueError):
    """A rule is invalid; the message names the rule and the offending value."""


def _show(value: Any) -> str:
    """A value as it appears in messages: ``null`` for None, repr otherwise."""
    return "null" if value is None else repr(value)


def _column_name(kind: str, column: Any) -> str:
    if not isinstance(column, str) or not column:
        raise RuleError(f"rule {kind}: column must be a non-empty string; got {column!r}")
    return column


def _column(batch: Batch, name: str, rule: Rule) -> pa.Array | pa.ChunkedArray:
    if name not in batch.schema.names:
        raise RuleError(f"rule {rule}: column {name!r} is not in the batch (columns: {', '.join(batch.schema.names)})")
    return batch.column(name)


def _mask(failing: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A null-free NumPy bool mask from an Arrow boolean result (null counts as passing)."""
    if failing.null_count:
        failing = pc.fill_null(failing, False)
    if isinstance(failing, pa.ChunkedArray):
        if failing.num_chunks == 1:
            failing = failing.chunk(0)
        else:
            return failing.to_numpy()
    return failing.to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class Rule(ABC):
    """One quality check over a batch. See the module docstring for the vocabulary.

    Attributes:
        tolerance: share of failing rows (0 to 1) an ETL gate accepts; rows are flagged anyway.
    """

    kind: ClassVar[str]
    tolerance: float = field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        t = self.tolerance
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise RuleError(f"rule {self.kind}: tolerance must be a number from 0 to 1; got {t!r}")

    @property
    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """The columns the rule reads."""

    @abstractmethod
    def describe(self) -> str:
        """What the rule requires, without the column (``between 0 and 10000``)."""

    @abstractmethod
    def _failing(self, batch: Batch) -> np.ndarray:
        """The failure mask; the columns are known to exist."""

    @abstractmethod
    def _args(self) -> dict[str, Any]:
        """The rule's arguments as a YAML mapping (tolerance excluded)."""

    def failures(self, batch: Batch) -> np.ndarray:
        """A boolean mask, one entry per row, True where the row fails the rule.

        Raises:
            RuleError: a column of the rule is not in the batch.
            pyarrow.ArrowException: the column's type does not support the check
                (``between`` on text, ``regex`` on numbers).
        """
        for name in self.columns:
            _column(batch, name, self)
        return self._failing(batch)

    def reasons(self, batch: Batch, rows: np.ndarray) -> list[str]:
        """Why each of ``rows`` (indices of failing rows) fails, e.g. ``amount: between 0 and 10 failed (got -5.0)``.

        Only the given rows are read, so the cost is in the number of failures.
        """
        values = _column(batch, self.columns[0], self).take(pa.array(rows, pa.int64())).to_pylist()
        return [f"{self} failed (got {_show(v)})" for v in values]

    def within_tolerance(self, failed: int, rows: int) -> bool:
        """The ETL gate's verdict: are ``failed`` failures out of ``rows`` within :attr:`tolerance`?

        Example:
            >>> NotNull("x", tolerance=0.01).within_tolerance(1, 100), NotNull("x").within_tolerance(1, 100)
            (True, False)
        """
        return failed == 0 or (rows > 0 and failed <= self.tolerance * rows)

    def to_dict(self) -> dict[str, Any]:
        """The rule as it is written in YAML; :func:`parse_rule` reads it back."""
        args = self._args()
        if self.tolerance:
            args["tolerance"] = self.tolerance
        return {self.kind: args}

    def __repr__(self) -> str:
        args = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "tolerance"]
        if self.tolerance:
            args.append(f"tolerance={self.tolerance!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def __str__(self) -> str:
        cols = self.columns
        where = cols[0] if len(cols) == 1 else f"({', '.join(cols)})"
        return f"{where}: {self.describe()}"


@dataclass(frozen=True, repr=False)
class NotNull(Rule):
    """Fails rows where ``column`` is null. YAML: ``{not_null: user_id}`` or ``{not_null: {column: user_id, tolerance: 0.01}}``.

    Example:
        >>> import pyarrow as pa
        >>> NotNull("x").failures(pa.table({"x": [1, None]})).tolist()
        [False, True]
    """

    column: str
    kind: ClassVar[str] = "not_null"

    def __post_init__(self) -> None:
        super().__post_init__()
        _column_name(self.kind, self.column)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def describe(self) -> str:
        return "not_null"

    def _failing(self, batch: Batch) -> np.ndarray:
        col = batch.column(self.column)
        if not col.null_count:
            return np.zeros(len(col), dtype=bool)
        return _mask(pc.is_null(col))

    def _args(self) -> dict[str, Any]:
        return {"column": self.column}

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: self.column} if not self.tolerance else super().to_dict()


def _repeats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row, whether an earlier row holds the same non-null value (one column).

    Dictionary encoding finds the first row of each value without Acero's per-call thread-pool
    cost (about 1 ms, which dominated small stream batches: 30 times slower at 100 rows).

    Example:
        >>> _repeats(pa.array(["a", "b", "a", None, None])).tolist()
        [False, False, True, False, False]
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()  # one dictionary for all rows
    codes = pc.fill_null(pc.dictionary_encode(column).indices, -1).to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    failing = np.ones(len(codes), dtype=bool)
    failing[first] = False
    failing[codes < 0] = False  # nulls are never duplicates
    return failing


@dataclass(frozen=True, repr=False)
class Unique(Rule):
    """Fails every row whose key (``columns``) already occurred earlier in the same batch.

    Rows with a null in a key column are ignored. YAML: ``{unique: event_id}`` or
    ``{unique: {columns: [user_id, event_ts]}}``.

    Example:
        >>> import pyarrow as pa
        >>> Unique("k").failures(pa.table({"k": [1, 2, 1, None, None, 1]})).tolist()
        [False, False, True, False, False, True]
    """

    key: tuple[str, ...]
    kind: ClassVar[str] = "unique"

    def __init__(self, key: str | Sequence[str], *, tolerance: float = 0.0) -> None:
        names = (key,) if isinstance(key, str) else tuple(key) if isinstance(key, (list, tuple)) else key
        object.__setattr__(self, "key", names)
        object.__setattr__(self, "tolerance", tolerance)
        self.__post_init__()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.key, tuple) or not self.key:
            raise RuleError(f"rule unique: needs one column or a non-empty list of columns; got {self.key!r}")
        for name in self.key:
            _column_name(self.kind, name)
        if len(set(self.key)) != len(self.key):
            raise RuleError(f"rule unique: a column is listed twice in {list(self.key)}")

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key

    def describe(self) -> str:
        return "unique"

    def _failing(self, batch: Batch) -> np.ndarray:
        n = batch.num_rows
        if len(self.key) == 1:
            return _repeats(batch.column(self.key[0]))
        keys = pa.table({f"k{i}": batch.column(c) for i, c in enumerate(self.key)})
        keys = keys.append_column("__row", pa.array(np.arange(n, dtype=np.int64)))
        # min is order-independent, so the threaded hash aggregation is safe.
        first = keys.group_by([f"k{i}" for i in range(len(self.key))]).aggregate([("__row", "min")])
        failing = np.ones(n, dtype=bool)
        failing[first.column("__row_min").to_numpy()] = False
        for c in self.key:  # nulls are never duplicates
            col = batch.column(c)
            if col.null_count:
                failing &= ~_mask(pc.is_null(col))
        return failing

    def reasons(self, batch: Batch, rows: np.ndarray) -> list[str]:
        idx = pa.array(rows, pa.int64())
        values = [_column(batch, c, self).take(idx).to_pylist() for c in self.key]
        shown = [_show(v[0]) if len(v) == 1 else "(" + ", ".join(map(_show, v)) + ")" for v in zip(*values)]
        return [f"{self} failed (got {s} again)" for s in shown]

    def _args(self) -> dict[str, Any]:
        return {"columns": list(self.key)}

    def to_dict(self) -> dict[str, Any]:
        if len(self.key) == 1 and not self.tolerance:
            return {self.kind: self.key[0]}
        return super().to_dict()


def _bound(kind: str, column: str, name: str, value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise RuleError(f"rule {kind} on {column!r}: {name} must be a finite number; got {value!r}")
    return value


@dataclass(frozen=True, repr=False)
class Between(Rule):
    """Fails rows outside ``[min, max]``; a bound may be None (open) or exclusive. Nulls pass, NaN fails.

    YAML: ``{between: {column: amount, min: 0, max: 10000, min_inclusive: false}}``.

    Example:
        >>> import pyarrow as pa
        >>> r = Between("x", 0, 10, min_inclusive=False)
        >>> str(r), r.failures(pa.table({"x": [0, 10, 11, None, float("nan")]})).tolist()
        ('x: > 0 and <= 10', [True, False, True, False, True])
        >>> Between("x", 5, 1)
        Traceback (most recent call last):
        ...
        fabric_ray.quality.rules.RuleError: rule between on 'x': min 5 is greater than max 1
    """

    column: str
    min: float | int | None = None
    max: float | int | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    kind: ClassVar[str] = "between"

    def __post_init__(self) -> None:
        super().__post_init__()
        c = _column_name(self.kind, self.column)
        lo, hi = _bound(self.kind, c, "min", self.min), _bound(self.kind, c, "max", self.max)
        for name in ("min_inclusive", "max_inclusive"):
            if not isinstance(getattr(self, name), bool):
                raise RuleError(f"rule between on {c!r}: {name} must be true or false; got {getattr(self, name)!r}")
        if lo is None and hi is None:
            raise RuleError(f"rule between on {c!r}: needs min, max or both")
        if lo is not None and hi is not None:
            if lo > hi:
                raise RuleError(f"rule between on {c!r}: min {lo!r} is greater than max {hi!r}")
            if lo == hi and not (self.min_inclusive and self.max_inclusive):
                raise RuleError(f"rule between on {c!r}: min = max = {lo!r} with an exclusive bound admits no value")

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def describe(self) -> str:
        if self.min is not None and self.max is not None and self.min_inclusive and self.max_inclusive:
            return f"between {self.min!r} and {self.max!r}"
        parts = []
        if self.min is not None:
            parts.append(f"{'>=' if self.min_inclusive else '>'} {self.min!r}")
        if self.max is not None:
            parts.append(f"{'<=' if self.max_inclusive else '<'} {self.max!r}")
        return " and ".join(parts)

    def _failing(self, batch: Batch) -> np.ndarray:
        col = batch.column(self.column)
        ok = None
        if self.min is not None:
            ok = (pc.greater_equal if self.min_inclusive else pc.greater)(col, self.min)
        if self.max is not None:
            high = (pc.less_equal if self.max_inclusive else pc.less)(col, self.max)
            ok = high if ok is None else pc.and_(ok, high)
        # A null compares to null, which _mask counts as passing; NaN compares false, so fails.
        return _mask(pc.invert(ok))

    def _args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"column": self.column}
        if self.min is not None:
            args["min"] = self.min
        if self.max is not None:
            args["max"] = self.max
        if not self.min_inclusive:
            args["min_inclusive"] = False
        if not self.max_inclusive:
            args["max_inclusive"] = False
        return args


@dataclass(frozen=True, repr=False)
class InSet(Rule):
    """Fails rows whose value is not one of ``values`` (text, numbers or booleans; not empty). Nulls pass.

    YAML: ``{in_set: {column: currency, values: [EUR, USD]}}``.

    Example:
        >>> import pyarrow as pa
        >>> InSet("c", ["EUR", "USD"]).failures(pa.table({"c": ["EUR", "GBP", None]})).tolist()
        [False, True, False]
        >>> InSet("c", [])
        Traceback (most recent call last):
        ...
        fabric_ray.quality.rules.RuleError: rule in_set on 'c': values must be a non-empty list; got []
    """

    column: str
    values: tuple[Any, ...]
    kind: ClassVar[str] = "in_set"

    def __init__(self, column: str, values: Iterable[Any], *, tolerance: float = 0.0) -> None:
        if isinstance(values, (list, tuple, set, frozenset)):
            values = tuple(values)
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "tolerance", tolerance)
        self.__post_init__()

    def __post_init__(self) -> None:
        super().__post_init__()
        c = _column_name(self.kind, self.column)
        if not isinstance(self.values, tuple) or not self.values:
            raise RuleError(f"rule in_set on {c!r}: values must be a non-empty list; got {list(self.values) if isinstance(self.values, tuple) else self.values!r}")
        kinds = set()
        for v in self.values:
            if v is None:
                raise RuleError(f"rule in_set on {c!r}: null is not a value (nulls always pass; use not_null)")
            if isinstance(v, bool):
                kinds.add("boolean")
            elif isinstance(v, (int, float)) and math.isfinite(v):
                kinds.add("number")
            elif isinstance(v, str):
                kinds.add("text")
            else:
                raise RuleError(f"rule in_set on {c!r}: values must be text, finite numbers or booleans; got {v!r}")
        if len(kinds) > 1:
            raise RuleError(f"rule in_set on {c!r}: values mix {' and '.join(sorted(kinds))}: {list(self.values)!r}")

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def describe(self) -> str:
        shown = ", ".join(repr(v) for v in self.values[:_SHOWN_VALUES])
        more = len(self.values) - _SHOWN_VALUES
        return f"in_set [{shown}{f', ... {more} more' if more > 0 else ''}]"

    def _failing(self, batch: Batch) -> np.ndarray:
        col = batch.column(self.column)
        # is_in says false (not null) for a null; put the nulls back as passing.
        failing = pc.invert(pc.is_in(col, value_set=pa.array(self.values)))
        mask = _mask(failing)
        if col.null_count:
            mask &= ~_mask(pc.is_null(col))
        return mask

    def _args(self) -> dict[str, Any]:
        return {"column": self.column, "values": list(self.values)}


@dataclass(frozen=True, repr=False)
class Regex(Rule):
    """Fails rows whose text does not match ``pattern`` in full. Nulls pass.

    The pattern runs in Arrow (RE2), and is checked by Python's ``re`` too, so it must use the
    syntax both share: no look-around, no back-references. YAML:
    ``{regex: {column: card_number, pattern: "[0-9]{16}"}}``.

    Example:
        >>> import pyarrow as pa
        >>> Regex("c", "[0-9]{4}").failures(pa.table({"c": ["1234", "12345", "x1234", None]})).tolist()
        [False, True, True, False]
        >>> Regex("c", "(")
        Traceback (most recent call last):
        ...
        fabric_ray.quality.rules.RuleError: rule regex on 'c': invalid pattern '(': missing ), unterminated subpattern at position 0
    """

    column: str
    pattern: str
    kind: ClassVar[str] = "regex"

    def __post_init__(self) -> None:
        super().__post_init__()
        c = _column_name(self.kind, self.column)
        if not isinstance(self.pattern, str):
            raise RuleError(f"rule regex on {c!r}: pattern must be text; got {self.pattern!r}")
        try:
            re.compile(self.pattern)
            pc.match_substring_regex(pa.array([""], pa.string()), pattern=self._anchored)
        except re.error as exc:
            raise RuleError(f"rule regex on {c!r}: invalid pattern {self.pattern!r}: {exc}") from None
        except pa.ArrowException as exc:
            raise RuleError(f"rule regex on {c!r}: pattern {self.pattern!r} is not supported by RE2: {exc}") from None

    @property
    def _anchored(self) -> str:
        return rf"\A(?:{self.pattern})\z"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def describe(self) -> str:
        return f"regex {self.pattern!r}"

    def _failing(self, batch: Batch) -> np.ndarray:
        return _mask(pc.invert(pc.match_substring_regex(batch.column(self.column), pattern=self._anchored)))

    def _args(self) -> dict[str, Any]:
        return {"column": self.column, "pattern": self.pattern}


RULE_KINDS: dict[str, type[Rule]] = {r.kind: r for r in (NotNull, Unique, Between, InSet, Regex)}
_KEYS = {
    "not_null": ("column",),
    "unique": ("columns", "column"),
    "between": ("column", "min", "max", "min_inclusive", "max_inclusive"),
    "in_set": ("column", "values"),
    "regex": ("column", "pattern"),
}


def parse_rule(spec: Any) -> Rule:
    """A rule from its YAML form: a mapping with one key, the rule's kind.

    ``not_null`` and ``unique`` also take the column (``unique``: or a list of columns) directly.

    Raises:
        RuleError: unknown kind or key, missing argument, or an invalid value; the message
            names the rule and the value.

    Example:
        >>> parse_rule({"unique": ["user_id", "event_ts"]})
        Unique(key=('user_id', 'event_ts'))
        >>> parse_rule({"betwen": {"column": "x", "min": 0}})
        Traceback (most recent call last):
        ...
        fabric_ray.quality.rules.RuleError: unknown rule 'betwen' (did you mean 'between'?); known rules: not_null, unique, between, in_set, regex
        >>> parse_rule({"between": {"column": "x", "mn": 0}})
        Traceback (most recent call last):
        ...
        fabric_ray.quality.rules.RuleError: rule between: unknown key 'mn'; expected column, min, max, min_inclusive, max_inclusive, tolerance
    """
    if isinstance(spec, Rule):
        return spec
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise RuleError(f"a rule is a mapping with one key, its kind ({', '.join(RULE_KINDS)}); got {spec!r}")
    ((kind, args),) = spec.items()
    if kind not in RULE_KINDS:
        import difflib

        close = difflib.get_close_matches(str(kind), list(RULE_KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RuleError(f"unknown rule {kind!r}{hint}; known rules: {', '.join(RULE_KINDS)}")
    if kind == "not_null" and isinstance(args, str):
        return NotNull(args)
    if kind == "unique" and isinstance(args, (str, list)):
        return Unique(args)
    if not isinstance(args, Mapping):
        raise RuleError(f"rule {kind}: expected a mapping of arguments ({', '.join(_KEYS[kind])}); got {args!r}")
    allowed = _KEYS[kind] + ("tolerance",)
    unknown = [k for k in args if k not in allowed]
    if unknown:
        raise RuleError(f"rule {kind}: unknown key {unknown[0]!r}; expected {', '.join(allowed)}")
    args = dict(args)
    if kind == "unique":
        if ("columns" in args) == ("column" in args):
            raise RuleError(f"rule unique: give either column or columns; got {sorted(args)}")
        return Unique(args.pop("columns", None) or args.pop("column"), **args)
    required = {"not_null": ("column",), "between": ("column",), "in_set": ("column", "values"), "regex": ("column", "pattern")}[kind]
    missing = [k for k in required if k not in args]
    if missing:
        raise RuleError(f"rule {kind}: missing {', '.join(missing)}")
    if kind == "in_set" and not isinstance(args["values"], (list, tuple)):
        raise RuleError(f"rule in_set on {args['column']!r}: values must be a non-empty list; got {args['values']!r}")
    return RULE_KINDS[kind](**args)


def parse_rules(specs: Any) -> tuple[Rule, ...]:
    """Several rules from a YAML list; see :func:`parse_rule`.

    Raises:
        RuleError: the first bad rule, named by its position (``rules[2]``).

    Example:
        >>> [str(r) for r in parse_rules([{"not_null": "a"}, {"regex": {"column": "b", "pattern": "x+"}}])]
        ['a: not_null', "b: regex 'x+'"]
    """
    if specs is None:
        return ()
    if not isinstance(specs, (list, tuple)):
        raise RuleError(f"rules must be a list; got {specs!r}")
    out = []
    for i, spec in enumerate(specs):
        try:
            out.append(parse_rule(spec))
        except RuleError as exc:
            raise RuleError(f"rules[{i}]: {exc}") from None
    return tuple(out)
