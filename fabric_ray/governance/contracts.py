"""Data contracts enforced on Arrow batches: required fields and quality rules, row by row, vectorized.

:func:`enforce` is the hook the stream engine and ETL call on every batch: it splits the batch
into the rows that pass (kept in input order, with their input indices) and the rows that fail,
each with one reason naming every check it failed. All checks run as whole-column
``pyarrow.compute`` kernels; Python touches only the rejected rows, to word their reasons.

A contract that does not fit the batch does not raise: a required field or rule column missing
from the batch, or a rule that cannot run on its column's type (``between`` on text), rejects
every row with that reason, so the batch goes to the dead-letter path with an explanation.

Example:
    >>> import pyarrow as pa
    >>> from fabric_ray.quality.rules import Between
    >>> contract = Contract(required=("user_id",), rules=(Between("amount", 0, 10000),))
    >>> batch = pa.table({"user_id": [1, None, 3], "amount": [5.0, -5.0, 20000.0]})
    >>> result = enforce(batch, contract)
    >>> result.passed.to_pylist(), result.passed_index.tolist()
    ([{'user_id': 1, 'amount': 5.0}], [0])
    >>> for row, reason in result.rejected:
    ...     print(row, reason)
    1 user_id: required field is null; amount: between 0 and 10000 failed (got -5.0)
    2 amount: between 0 and 10000 failed (got 20000.0)
    >>> result.failures
    {'user_id: required': 1, 'amount: between 0 and 10000': 2}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.governance.products import DataProduct
from fabric_ray.quality.rules import Rule, RuleError, parse_rule

__all__ = ["Contract", "ContractResult", "enforce"]


@dataclass(frozen=True)
class Contract:
    """What every row of a batch must satisfy: required (present, not null) fields and quality rules.

    Attributes:
        required: fields that must be columns of the batch and not null.
        rules: quality rules (:mod:`fabric_ray.quality.rules`; dicts are parsed).
        name: for messages, usually the data product's name.

    Raises:
        ValueError: a required field is not a non-empty string, or a rule is invalid (``RuleError``).

    Example:
        >>> Contract(required=["event_id"], rules=[{"not_null": "amount"}]).checks
        ('event_id: required', 'amount: not_null')
    """

    required: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    name: str = "contract"

    def __post_init__(self) -> None:
        if isinstance(self.required, str) or not all(isinstance(r, str) and r for r in self.required):
            raise ValueError(f"contract {self.name!r}: required must be a list of field names; got {self.required!r}")
        object.__setattr__(self, "required", tuple(dict.fromkeys(self.required)))
        rules = []
        for i, spec in enumerate(self.rules):
            try:
                rules.append(parse_rule(spec))
            except RuleError as exc:
                raise RuleError(f"contract {self.name!r}: rules[{i}]: {exc}") from None
        object.__setattr__(self, "rules", tuple(rules))

    @classmethod
    def from_product(cls, product: DataProduct) -> Contract:
        """The contract of a data product: its required fields and quality rules."""
        return cls(required=product.required, rules=product.rules, name=product.name)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the contract reads: required fields, then the rules' columns."""
        return tuple(dict.fromkeys([*self.required, *(c for r in self.rules for c in r.columns)]))

    @property
    def checks(self) -> tuple[str, ...]:
        """The label of every check, in the order they run: required fields, then rules."""
        return tuple(f"{c}: required" for c in self.required) + tuple(str(r) for r in self.rules)


@dataclass(frozen=True)
class ContractResult:
    """The outcome of :func:`enforce` on one batch.

    Attributes:
        passed: the rows that passed every check, in input order.
        passed_index: for each row of ``passed``, its index in the input (int64).
        rejected: ``(input row index, reason)`` for every failing row, in input order; the reason
            names every check the row failed, joined by ``"; "``.
        failures: failing rows per check (label as in :attr:`Contract.checks`), zeros included.
        over_tolerance: labels of the checks whose failures exceed their rule's ``tolerance``
            (required fields tolerate none): the verdict of an ETL quality gate.
        rows: rows in the input.
    """

    passed: pa.Table
    passed_index: np.ndarray
    rejected: list[tuple[int, str]]
    failures: dict[str, int]
    over_tolerance: tuple[str, ...]
    rows: int

    @property
    def ok(self) -> bool:
        """Whether every row passed."""
        return not self.rejected

    @property
    def rejected_index(self) -> np.ndarray:
        """Input indices of the rejected rows (int64)."""
        return np.fromiter((i for i, _ in self.rejected), dtype=np.int64, count=len(self.rejected))


class _Check:
    """One check's failing rows and how to word them."""

    __slots__ = ("label", "mask", "words")

    def __init__(self, label: str, mask: np.ndarray, words: Any) -> None:
        self.label, self.mask, self.words = label, mask, words


def enforce(table: pa.Table | pa.RecordBatch, contract: Contract | DataProduct) -> ContractResult:
    """Check every row of ``table`` against ``contract``; see the module docstring.

    Args:
        table: the batch (a table or a record batch).
        contract: a :class:`Contract`, or a data product (its :meth:`Contract.from_product`).

    Returns:
        The passing rows with their input indices, the rejected rows with their reasons, and
        failure counts per check.

    Raises:
        TypeError: ``table`` is not Arrow, or ``contract`` is neither a contract nor a product.

    Example:
        >>> import pyarrow as pa
        >>> r = enforce(pa.table({"amount": [1.0, 2.0]}), Contract(required=["user_id"]))
        >>> r.passed.num_rows, r.rejected
        (0, [(0, 'user_id: required field is missing from the batch'), (1, 'user_id: required field is missing from the batch')])
    """
    if isinstance(contract, DataProduct):
        contract = Contract.from_product(contract)
    if not isinstance(contract, Contract):
        raise TypeError(f"enforce: expected a Contract or a DataProduct; got {type(contract).__name__}")
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise TypeError(f"enforce: expected a pyarrow Table or RecordBatch; got {type(table).__name__}")
    n = table.num_rows
    names = set(table.schema.names)
    failures: dict[str, int] = {}
    over: list[str] = []
    whole: list[str] = []  # reasons that reject every row
    checks: list[_Check] = []

    for column in contract.required:
        label = f"{column}: required"
        if column not in names:
            whole.append(f"{column}: required field is missing from the batch")
            failures[label] = n
        else:
            col = table.column(column)
            failures[label] = col.null_count
            if col.null_count:
                mask = pc.is_null(col).to_numpy()
                checks.append(_Check(label, mask, f"{column}: required field is null"))
        if failures[label]:
            over.append(label)

    for rule in contract.rules:
        label = str(rule)
        missing = [c for c in rule.columns if c not in names]
        if missing:
            whole.append(f"{rule}: column {missing[0]!r} is missing from the batch")
            failures[label] = n
        else:
            try:
                mask = rule.failures(table)
            except (pa.ArrowException, RuleError) as exc:
                types = ", ".join(f"{c} is {table.schema.field(c).type}" for c in rule.columns)
                whole.append(f"{rule}: cannot be checked ({types}): {' '.join(str(exc).split())}")
                failures[label] = n
            else:
                failures[label] = int(np.count_nonzero(mask))
                if failures[label]:
                    checks.append(_Check(label, mask, rule))
        if not rule.within_tolerance(failures[label], n):
            over.append(label)

    if whole:
        failing = np.ones(n, dtype=bool)
    elif checks:
        failing = checks[0].mask.copy() if len(checks) == 1 else np.logical_or.reduce([c.mask for c in checks])
    else:
        return ContractResult(table, np.arange(n, dtype=np.int64), [], failures, tuple(over), n)

    bad = np.flatnonzero(failing)
    parts: list[list[str]] = [list(whole) for _ in range(len(bad))]
    for check in checks:
        idx = np.flatnonzero(check.mask)
        texts = [check.words] * len(idx) if isinstance(check.words, str) else check.words.reasons(table, idx)
        for pos, text in zip(np.searchsorted(bad, idx).tolist(), texts):
            parts[pos].append(text)
    rejected = [(row, "; ".join(p)) for row, p in zip(bad.tolist(), parts)]
    keep = ~failing
    passed_index = np.flatnonzero(keep).astype(np.int64, copy=False)
    passed = table.filter(pa.array(keep)) if len(passed_index) else table.schema.empty_table()
    return ContractResult(passed, passed_index, rejected, failures, tuple(over), n)
