"""Bounds of JSON Schema views (lengths, sizes, numbers) for the compatibility checker.

A reader bound must be at least as loose as the writer's for the types the writer can produce.

Example:
    >>> bound_messages({"maxLength": 3}, {"maxLength": 5}, {"string"})
    ['maxLength tightened: reader 3, writer 5']
    >>> bound_messages({"exclusiveMinimum": 0}, {"minimum": 1}, {"integer"})
    []
"""

from __future__ import annotations

from typing import Any

__all__ = ["bound_messages", "value_type"]


def value_type(value: Any) -> str:
    """The JSON Schema type of a decoded JSON value (``integer`` for integral numbers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names[type(value)]


def bound_messages(r: dict[str, Any], w: dict[str, Any], kept: set[str]) -> list[str]:
    """Why the reader's bounds may cut off writer values of the types in ``kept``."""
    msgs = []
    if "string" in kept:
        msgs += _bounds(r, w, "minLength", "maxLength")
    if kept & {"number", "integer"}:
        msgs += _numeric_bounds(r, w, integers_only=not (kept & {"number"}))
    if "array" in kept:
        msgs += _bounds(r, w, "minItems", "maxItems")
    if "object" in kept:
        msgs += _bounds(r, w, "minProperties", "maxProperties")
    return msgs


def _bounds(r: dict[str, Any], w: dict[str, Any], low: str, high: str) -> list[str]:
    msgs = []
    if low in r and r[low] > w.get(low, 0):
        msgs.append(f"{low} tightened: reader {r[low]}, writer {w.get(low, 'unbounded')}")
    if high in r and (high not in w or r[high] < w[high]):
        msgs.append(f"{high} tightened: reader {r[high]}, writer {w.get(high, 'unbounded')}")
    return msgs


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _lower(schema: dict[str, Any], integers_only: bool) -> tuple[float, bool] | None:
    """The tightest lower bound as (value, exclusive), or None; integral writers round up."""
    options = [(schema["minimum"], False)] if _number(schema.get("minimum")) else []
    if _number(schema.get("exclusiveMinimum")):
        options.append((schema["exclusiveMinimum"], True))
    if integers_only:
        options = [(int(v) + 1, False) if exclusive and float(v).is_integer() else
                   (-(-v // 1), False) for v, exclusive in options]
    return max(options, key=lambda bound: (bound[0], bound[1]), default=None)


def _upper(schema: dict[str, Any], integers_only: bool) -> tuple[float, bool] | None:
    options = [(schema["maximum"], False)] if _number(schema.get("maximum")) else []
    if _number(schema.get("exclusiveMaximum")):
        options.append((schema["exclusiveMaximum"], True))
    if integers_only:
        options = [(int(v) - 1, False) if exclusive and float(v).is_integer() else
                   (v // 1, False) for v, exclusive in options]
    return min(options, key=lambda bound: (bound[0], not bound[1]), default=None)


def _numeric_bounds(r: dict[str, Any], w: dict[str, Any], integers_only: bool) -> list[str]:
    msgs = []
    r_low, w_low = _lower(r, integers_only), _lower(w, integers_only)
    if _tightened(r_low, w_low, sign=1):
        msgs.append(f"lower bound tightened: reader {_show(_lower(r, False), '>')}, "
                    f"writer {_show(_lower(w, False), '>')}")
    r_high, w_high = _upper(r, integers_only), _upper(w, integers_only)
    if _tightened(r_high, w_high, sign=-1):
        msgs.append(f"upper bound tightened: reader {_show(_upper(r, False), '<')}, "
                    f"writer {_show(_upper(w, False), '<')}")
    if _number(r.get("multipleOf")) and not _divides(r["multipleOf"], w.get("multipleOf"), integers_only):
        msgs.append(f"multipleOf tightened: reader {r['multipleOf']}, writer {w.get('multipleOf', 'none')}")
    return msgs


def _divides(reader: float, writer: Any, integers_only: bool) -> bool:
    if integers_only and reader == 1:
        return True
    if not _number(writer):
        return False
    ratio = writer / reader
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) != 0


def _tightened(reader: tuple[float, bool] | None, writer: tuple[float, bool] | None, sign: int) -> bool:
    """Whether the reader's bound cuts off writer values; sign 1 for lower bounds, -1 for upper."""
    if reader is None:
        return False
    if writer is None:
        return True
    if writer[0] != reader[0]:
        return sign * writer[0] < sign * reader[0]
    return reader[1] and not writer[1]


def _show(bound: tuple[float, bool] | None, op: str) -> str:
    if bound is None:
        return "unbounded"
    return f"{op} {bound[0]}" if bound[1] else f"{op}= {bound[0]}"
