"""Built-in ETL transforms and the small expression language of ``filter`` and ``derive``.

Every transform takes a ``pyarrow.Table`` and returns one, computed with ``pyarrow.compute``
over whole columns. The built-ins, as written in a pipeline's YAML ``transforms:`` list:

=========== =============================================== ==========================================
``select``  keep these columns, in this order                ``{select: [user_id, amount]}``
``rename``  old name -> new name                             ``{rename: {amount: amount_usd}}``
``filter``  keep the rows where the expression is true       ``{filter: "amount > 0 and currency != 'XXX'"}``
``cast``    column -> Arrow type (safe casts only)           ``{cast: {user_id: int64, ts: "timestamp[ms]"}}``
``derive``  new (or replaced) column -> expression           ``{derive: {amount_eur: "amount * 0.92"}}``
=========== =============================================== ==========================================

Expressions are Python syntax, parsed (never evaluated) and compiled to ``pyarrow.compute``
calls: column names, literals (numbers, quoted strings, ``True``/``False``/``None``), arithmetic
``+ - * / // %`` (``/`` is true division; ``//`` and ``%`` follow Python and keep integers integers), comparisons (chains too: ``0 <= x < 10``),
``in`` / ``not in`` a literal list, ``is None`` / ``is not None``, ``and`` / ``or`` / ``not``, and
the functions ``col("name with spaces")``, ``abs``, ``round(x, digits)``, ``floor``, ``ceil``,
``lower``, ``upper``, ``length``, ``coalesce(a, b, ...)``. Nulls follow SQL: a comparison with a null
is null, and ``filter`` drops rows whose condition is null.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"amount": [5.0, -1.0, None, 20.0], "currency": ["EUR", "EUR", "USD", "XXX"]})
    >>> keep = compile_expression("amount > 0 and currency in ['EUR', 'USD']")
    >>> t.filter(keep(t)).to_pydict()
    {'amount': [5.0], 'currency': ['EUR']}
    >>> compile_expression("amount * 2 + 1")(t).to_pylist()
    [11.0, -1.0, None, 41.0]
    >>> compile_expression("amount >")
    Traceback (most recent call last):
    ...
    fabric_ray.etl.transforms.ExpressionError: expression 'amount >' is not valid: invalid syntax
"""

from __future__ import annotations

import ast
import functools
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ExpressionError",
    "apply_cast",
    "apply_derive",
    "apply_filter",
    "apply_rename",
    "apply_select",
    "compile_expression",
    "parse_type",
]

Evaluator = Callable[[pa.Table], Any]  # table -> Arrow array, chunked array or scalar


class ExpressionError(ValueError):
    """An expression is not valid; the message quotes it and names the part that is not allowed."""


_BINARY = {
    ast.Add: "add_checked", ast.Sub: "subtract_checked", ast.Mult: "multiply_checked",
}
_COMPARE = {
    ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less", ast.LtE: "less_equal",
    ast.Gt: "greater", ast.GtE: "greater_equal",
}
_UNARY_FUNCTIONS = {"abs": "abs_checked", "floor": "floor", "ceil": "ceil", "lower": "utf8_lower", "upper": "utf8_upper", "length": "utf8_length"}


def _column(name: str) -> Evaluator:
    def get(table: pa.Table) -> pa.ChunkedArray:
        if name not in table.column_names:
            raise ExpressionError(f"column {name!r} is not in the table; columns: {table.column_names}")
        return table.column(name)

    return get


def _constant(value: Any) -> Evaluator:
    return lambda _table: value


def _call(function: str, *args: Evaluator, **options: Any) -> Evaluator:
    fn = getattr(pc, function)
    return lambda table: fn(*(a(table) for a in args), **options)


def _as_float(arg: Evaluator) -> Evaluator:
    def cast(table: pa.Table) -> Any:
        value = arg(table)
        if isinstance(value, (pa.Array, pa.ChunkedArray)):
            return pc.cast(value, pa.float64()) if pa.types.is_integer(value.type) else value
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    return cast


def _is_integer(value: Any) -> bool:
    if isinstance(value, (pa.Array, pa.ChunkedArray, pa.Scalar)):
        return pa.types.is_integer(value.type)
    return isinstance(value, int) and not isinstance(value, bool)


def _floor_div_mod(left: Evaluator, right: Evaluator, *, mod: bool) -> Evaluator:
    """Python's ``//`` and ``%`` (sign of the divisor); integers stay integers."""

    def evaluate(table: pa.Table) -> Any:
        a, b = left(table), right(table)
        quotient = pc.floor(pc.divide(_as_float(lambda _t: a)(table), _as_float(lambda _t: b)(table)))
        integers = _is_integer(a) and _is_integer(b)
        if integers:
            quotient = pc.cast(quotient, pa.int64())
        if not mod:
            return quotient
        return pc.subtract(a, pc.multiply(b, quotient))

    return evaluate


def _member(arg: Evaluator, value_set: pa.Array) -> Evaluator:
    """``x in [...]`` with SQL's nulls: a null ``x`` gives null (so ``not in`` drops it too)."""

    def evaluate(table: pa.Table) -> Any:
        x = arg(table)
        member = pc.is_in(x, value_set=value_set)
        if isinstance(x, (pa.Array, pa.ChunkedArray)) and x.null_count:
            member = pc.if_else(pc.is_null(x), pa.scalar(None, pa.bool_()), member)
        return member

    return evaluate


class _Compiler:
    """Turns a parsed expression into an evaluator; anything outside the language raises."""

    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, node: ast.AST, why: str) -> ExpressionError:
        part = ast.get_source_segment(self.text, node) or type(node).__name__
        return ExpressionError(f"expression {self.text!r}: {why}: {part!r}")

    def literal(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            value = node.operand.value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return -value
        raise self.fail(node, "expected a literal (number, quoted string, True, False or None)")

    def compile(self, node: ast.AST) -> Evaluator:
        if isinstance(node, ast.Name):
            if node.id in ("True", "False", "None"):
                return _constant({"True": True, "False": False, "None": None}[node.id])
            return _column(node.id)
        if isinstance(node, ast.Constant):
            return _constant(self.literal(node))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return _call("invert", self.compile(node.operand))
            if isinstance(node.op, ast.UAdd):
                return self.compile(node.operand)
            if isinstance(node.op, ast.USub):
                if isinstance(node.operand, ast.Constant):
                    return _constant(self.literal(node))
                return _call("negate_checked", self.compile(node.operand))
            raise self.fail(node, "operator not allowed")
        if isinstance(node, ast.BoolOp):
            function = "and_kleene" if isinstance(node.op, ast.And) else "or_kleene"
            parts = [self.compile(v) for v in node.values]
            return functools.reduce(lambda a, b: _call(function, a, b), parts)
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(node, "not allowed in an expression")

    def binary(self, node: ast.BinOp) -> Evaluator:
        left, right = self.compile(node.left), self.compile(node.right)
        if type(node.op) in _BINARY:
            return _call(_BINARY[type(node.op)], left, right)
        if isinstance(node.op, ast.Div):  # true division, as in Python
            return _call("divide", _as_float(left), _as_float(right))
        if isinstance(node.op, (ast.FloorDiv, ast.Mod)):
            return _floor_div_mod(left, right, mod=isinstance(node.op, ast.Mod))
        raise self.fail(node, "operator not allowed")

    def compare(self, node: ast.Compare) -> Evaluator:
        parts = []
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            parts.append(self.comparison(left, op, right))
            left = right
        return functools.reduce(lambda a, b: _call("and_kleene", a, b), parts)

    def comparison(self, left: ast.AST, op: ast.cmpop, right: ast.AST) -> Evaluator:
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right, ast.Constant) and right.value is None):
                raise self.fail(right, "'is' and 'is not' compare with None only")
            return _call("is_null" if isinstance(op, ast.Is) else "is_valid", self.compile(left))
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                raise self.fail(right, "'in' needs a literal list, e.g. x in [1, 2]")
            values = [self.literal(v) for v in right.elts]
            member = _member(self.compile(left), pa.array(values))
            if isinstance(op, ast.NotIn):
                return _call("invert", member)
            return member
        return _call(_COMPARE[type(op)], self.compile(left), self.compile(right))

    def call(self, node: ast.Call) -> Evaluator:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if node.keywords:
            raise self.fail(node, "functions take positional arguments only")
        args = node.args
        if name == "col":
            if len(args) != 1 or not (isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)):
                raise self.fail(node, "col() takes one quoted column name")
            return _column(args[0].value)
        if name in _UNARY_FUNCTIONS:
            if len(args) != 1:
                raise self.fail(node, f"{name}() takes one argument")
            return _call(_UNARY_FUNCTIONS[name], self.compile(args[0]))
        if name == "round":
            if len(args) not in (1, 2):
                raise self.fail(node, "round() takes a value and optional digits")
            digits = self.literal(args[1]) if len(args) == 2 else 0
            if not isinstance(digits, int) or isinstance(digits, bool):
                raise self.fail(node, "round() digits must be an integer")
            return _call("round", self.compile(args[0]), ndigits=digits, round_mode="half_to_even")
        if name == "coalesce":
            if not args:
                raise self.fail(node, "coalesce() needs arguments")
            return _call("coalesce", *(self.compile(a) for a in args))
        raise self.fail(node, "unknown function (known: col, abs, round, floor, ceil, lower, upper, length, coalesce)")


@functools.lru_cache(maxsize=256)
def compile_expression(text: str) -> Evaluator:
    """Compile ``text`` (see the module docstring) to a function ``table -> column``.

    Args:
        text: the expression, e.g. ``"amount > 0 and currency != 'XXX'"``.

    Returns:
        A function of a table returning an Arrow array (or a scalar for a constant expression).
        Evaluating it raises :class:`ExpressionError` naming a column the table lacks, or a
        ``pyarrow.ArrowException`` for types that do not fit (text compared with a number).

    Raises:
        ExpressionError: ``text`` is not valid Python syntax or uses something outside the language.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(f"expression must be a non-empty string; got {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"expression {text!r} is not valid: {exc.msg}") from None
    return _Compiler(text.strip()).compile(tree.body)


def parse_type(name: str) -> pa.DataType:
    """The Arrow type named ``name`` (``int64``, ``float64``, ``string``, ``bool``, ``timestamp[ms]``, ``date32``, ...).

    Raises:
        ValueError: not a type name; the message quotes it.

    Example:
        >>> parse_type("timestamp[ms]"), parse_type("string")
        (TimestampType(timestamp[ms]), DataType(string))
    """
    if isinstance(name, str):
        alias = {"str": "string", "int": "int64", "float": "float64", "boolean": "bool", "date32": "date32[day]"}.get(name, name)
        try:
            return pa.type_for_alias(alias)
        except (ValueError, KeyError):
            pass
    raise ValueError(f"unknown Arrow type {name!r} (e.g. int64, float64, string, bool, timestamp[ms], date32)")


def _missing(table: pa.Table, columns: Sequence[str]) -> None:
    absent = [c for c in columns if c not in table.column_names]
    if absent:
        raise KeyError(f"column(s) {absent} not in the table; columns: {table.column_names}")


def apply_select(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """Keep ``columns`` in this order."""
    _missing(table, columns)
    return table.select(list(columns))


def apply_rename(table: pa.Table, mapping: Mapping[str, str]) -> pa.Table:
    """Rename columns ``old -> new``."""
    _missing(table, list(mapping))
    return table.rename_columns([mapping.get(c, c) for c in table.column_names])


def apply_filter(table: pa.Table, condition: Evaluator) -> pa.Table:
    """Keep the rows where ``condition`` is true (null counts as false)."""
    mask = condition(table)
    if not isinstance(mask, (pa.Array, pa.ChunkedArray)):
        return table if mask else table.slice(0, 0)
    if not pa.types.is_boolean(mask.type):
        raise TypeError(f"a filter condition must be true/false, got a column of {mask.type}")
    return table.filter(mask, null_selection_behavior="drop")


def apply_cast(table: pa.Table, types: Mapping[str, pa.DataType]) -> pa.Table:
    """Cast columns to types; unsafe casts (overflow, truncation, unparseable text) raise."""
    _missing(table, list(types))
    for name, type_ in types.items():
        i = table.column_names.index(name)
        table = table.set_column(i, pa.field(name, type_), pc.cast(table.column(i), type_, safe=True))
    return table


def apply_derive(table: pa.Table, columns: Mapping[str, Evaluator]) -> pa.Table:
    """Add (or replace) columns computed from expressions, in order (a later one may use an earlier one)."""
    for name, evaluate in columns.items():
        value = evaluate(table)
        if not isinstance(value, (pa.Array, pa.ChunkedArray)):
            value = pa.repeat(pa.scalar(value) if not isinstance(value, pa.Scalar) else value, table.num_rows)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, value)
        else:
            table = table.append_column(name, value)
    return table
