"""The reader/writer comparison behind ``json_schema.check_compatibility``.

``Checker(reader, writer).run()`` lists why some document valid under ``writer`` may be rejected
by ``reader``. Nodes are compared through their draft-neutral views (``json_schema_views``).

Recursion: a pair of views already under comparison is assumed compatible while it is being
proved, and every pair's answer is memoized, so each pair of definitions is compared once per
pass. Because an assumption may turn out false, the whole comparison is repeated with the
pairs found incompatible no longer assumed (a greatest fixed point) until nothing changes.
Pairs are keyed on the views of the definitions ``$ref`` points to, not on each ``$ref``.

Example:
    >>> Checker({"type": "number"}, {"type": "integer"}).run()
    []
    >>> Checker({"not": {"type": "integer"}}, {"not": {"type": "number"}}).run()
    []
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fabric_ray.governance.json_schema_bounds import bound_messages, value_type
from fabric_ray.governance.json_schema_values import value_errors
from fabric_ray.governance.json_schema_views import (
    EXTERNAL,
    JsonSchemaError,
    Side,
    declared_types,
    has_ref,
    merge,
    pointer_join as join,
    under as _under,
)

__all__ = ["Checker"]

Found = list[tuple[str, str]]  # (JSON pointer relative to the node compared, message)

ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string"})
# Keywords the comparison reads; any other constraining reader keyword is compared for equality.
HANDLED = frozenset({
    "type", "enum", "const", "allOf", "anyOf", "oneOf", "not", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "items", "prefixItems",
    "uniqueItems", "contains", "minContains", "maxContains", "properties", "required", "additionalProperties",
    "patternProperties", "minProperties", "maxProperties", "dependentRequired", "dependentSchemas",
    "if", "then", "else", "propertyNames",
})
_MAX_PASSES = 64
_RECURSION_LIMIT = 20_000
_RECURSIVE = "recursive definition is incompatible"


def covers(types: frozenset[str] | None, t: str) -> bool:
    return types is None or t in types or (t == "integer" and "number" in types)


def values_of(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    return list(schema["enum"]) if "enum" in schema else None


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def constrains(schema: Any) -> bool:
    """Whether a view can reject a document (annotations and unknown keywords never do)."""
    if isinstance(schema, bool):
        return not schema
    if not isinstance(schema, dict):
        return True
    return any(key in HANDLED or key in _COMPARED_FOR_EQUALITY for key in schema)


def writer_types(w: dict[str, Any]) -> set[str]:
    declared = declared_types(w)
    values = values_of(w)
    if values is not None:
        return {t for t in map(value_type, values) if covers(declared, t)}
    types = set(declared if declared is not None else ALL_TYPES)
    if "number" in types:
        types.add("integer")
    return types


class Checker:
    """Compares one reader root with one writer root (see the module docstring)."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader_root, self.writer_root = reader, writer
        self._sides: dict[tuple[str, str], Side] = {}
        self._texts: dict[str, dict[int, tuple[Any, str]]] = {}
        self._derived: dict[tuple[Any, ...], Any] = {}
        self.same_roots = canon(reader) == canon(writer)
        self.assumed: dict[tuple[int, ...], bool] = {}
        self.memo: dict[tuple[int, ...], Found] = {}
        self.active: set[tuple[int, ...]] = set()
        self.used: set[tuple[int, ...]] = set()

    def side(self, root: str, role: str) -> Side:
        """``root`` is "reader" or "writer" (which schema), ``role`` how it is read."""
        key = (root, role)
        if key not in self._sides:
            texts = self._texts.setdefault(root, {})
            self._sides[key] = Side(self.reader_root if root == "reader" else self.writer_root, role, texts)
        return self._sides[key]

    def run(self) -> list[str]:
        """The incompatibility messages, ``"#<pointer>: <why>"``; empty when compatible."""
        if self.same_roots:
            return []
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, _RECURSION_LIMIT))  # each pair of definitions is a few frames deep
        try:
            return self._passes()
        finally:
            sys.setrecursionlimit(limit)

    def _passes(self) -> list[str]:
        rs, ws = self.side("reader", "reader"), self.side("writer", "writer")
        for _ in range(_MAX_PASSES):
            self.memo, self.active, self.used = {}, set(), set()
            try:
                found = self.compare(self.reader_root, rs, self.writer_root, ws)
            except RecursionError:
                return ["#: schemas nest too deeply to compare; cannot prove compatibility"]
            stale = [key for key in self.used if (not self.memo.get(key)) != self.assumed.get(key, True)]
            if not stale:
                real = [item for item in dict.fromkeys(found) if item[1] != _RECURSIVE]
                return [f"#{path}: {text}" for path, text in real or found[:1]]
            self.assumed.update({key: not found_at for key, found_at in self.memo.items()})
        return ["#: recursive schemas did not settle; cannot prove compatibility"]

    # --- the pair cache ----------------------------------------------------------------

    def compare(self, r: Any, rs: Side, w: Any, ws: Side) -> Found:
        """Why some document valid under ``w`` (in ``ws``) may be rejected by ``r`` (in ``rs``)."""
        if self.same_roots and rs.root is ws.root and r is w:
            return []
        rv, wv = rs.view(r), ws.view(w)
        shared = rs.applicators(rv)
        if shared is not None and rs.draft == ws.draft and shared == ws.applicators(wv):
            rv, wv = rs.exact(rv), ws.exact(wv)
        key = (id(rs), id(rv), id(ws), id(wv))
        if key in self.memo:
            return self.memo[key]
        if key in self.active:
            self.used.add(key)
            return [] if self.assumed.get(key, True) else [("", _RECURSIVE)]
        self.active.add(key)
        try:
            found = self._compare(r, rv, rs, wv, ws)
        finally:
            self.active.discard(key)
        self.memo[key] = found
        return found

    def derived(self, side: Side, view: Any, tag: tuple[Any, ...], build: Any) -> Any:
        """A schema built from ``view`` (a branch with the rest of its schema, a view without one
        keyword...), built once: the same derivation is the same object, so recursion through it
        meets a pair it has seen."""
        key = (id(side), id(view), tag)
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    def defaults_apply(self, rs: Side) -> bool:
        """Confluent's rule (a reader ``default`` fills a missing required property) holds only for
        the real reader, not when roles are swapped to prove one schema narrower than another."""
        return rs is self.side("reader", "reader")

    def compatible_reverse(self, a: Any, a_side: Side, b: Any, b_side: Side) -> bool:
        """Whether every document valid under ``b`` is valid under ``a``, with the roles swapped."""
        return not self.compare(a, self._as(a_side, "reader"), b, self._as(b_side, "writer"))

    def _as(self, side: Side, role: str) -> Side:
        which = "reader" if side.root is self.reader_root else "writer"
        return self.side(which, role)

    # --- dispatch ----------------------------------------------------------------------

    def _compare(self, r_raw: Any, r: Any, rs: Side, w: Any, ws: Side) -> Found:
        if w is False or r is True:
            return []
        if isinstance(r, EXTERNAL) or isinstance(w, EXTERNAL):
            if isinstance(r, EXTERNAL) and isinstance(w, EXTERNAL) and r.uri == w.uri and _base(rs) == _base(ws):
                return []  # the same document on both sides
            return [("", "cannot resolve external $ref; cannot prove compatibility")]
        if not constrains(r):
            return []
        if r is False:
            return [("", "reader schema is false and rejects every document")]
        w = {} if w is True else w
        values = values_of(w)
        if values is not None and not ({"anyOf", "oneOf", "allOf"} & set(w)):
            return self._check_values(r, rs, w, values)  # a finite writer: value by value, exactly
        if "anyOf" in w or "oneOf" in w:
            return self._writer_union(r, rs, w, ws)
        if "allOf" in w:
            return self._writer_all_of(r, rs, w, ws)
        for kw in ("allOf", "anyOf", "oneOf"):
            if kw in r:
                return self._reader_combined(r, rs, w, ws, kw)
        return self._compare_plain(r, rs, w, ws)

    def _writer_union(self, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
        kw = "anyOf" if "anyOf" in w else "oneOf"
        rest = _without(w, kw)
        rest = self.derived(ws, w, ("without", kw), lambda: ws.keep(rest))
        if constrains(rest) and not self.compare(r, rs, rest, ws):
            return []  # the writer's own keywords already satisfy the reader
        branches = [self.derived(ws, w, ("branch", i), lambda b=branch: self._with_rest(b, rest, ws))
                    for i, branch in enumerate(w[kw])]
        if kw == "oneOf" and "oneOf" in r and len(branches) > 1:
            return self._one_of_to_one_of(r, rs, branches, ws)
        found: Found = []
        for branch in branches:
            found += self.compare(r, rs, branch, ws)
        return found

    def _with_rest(self, branch: Any, rest: dict[str, Any], ws: Side) -> Any:
        if not constrains(rest):
            return branch
        merged = merge(ws.view(branch), rest, parent_sees_child=True, keep=ws.keep)
        return ws.keep(merged if merged is not None else {"allOf": [branch, ws.keep(rest)]})

    def _writer_all_of(self, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
        rest = self.derived(ws, w, ("without", "allOf"), lambda: ws.keep(_without(w, "allOf")))
        members = [rest, *w["allOf"]]
        attempts = [self.compare(r, rs, member, ws) for member in members if constrains(ws.view(member))]
        if any(not found for found in attempts):
            return []  # one member alone already satisfies the reader
        return [("", "cannot prove compatibility of combined schemas (writer allOf)")]

    def _reader_combined(self, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side, kw: str) -> Found:
        found = self.compare(self.derived(rs, r, ("without", kw), lambda: rs.keep(_without(r, kw))), rs, w, ws)
        if kw == "allOf":
            for i, member in enumerate(r[kw]):
                found += _under(join(kw, i), self.compare(member, rs, w, ws))
            return found
        fits = [i for i, branch in enumerate(r[kw]) if not self.compare(branch, rs, w, ws)]
        if kw == "anyOf" and fits:
            return found
        types = w.get("type")
        if kw == "anyOf" and isinstance(types, list) and len(types) > 1:
            # A nullable writer (["string", "null"]) may match a different branch per type.
            for t in types:
                one_type = self.derived(ws, w, ("type", t), lambda t=t: ws.keep({**w, "type": t}))
                found += self.compare(r, rs, one_type, ws)
            return found
        if kw == "oneOf" and any(self._others_disjoint(r["oneOf"], i, rs, w, ws, None) for i in fits):
            return found
        return found + [("", f"cannot prove compatibility of combined schemas (reader {kw})")]

    def _one_of_to_one_of(self, r: dict[str, Any], rs: Side, branches: list[Any], ws: Side) -> Found:
        """A writer ``oneOf`` read by a reader ``oneOf``: each writer branch must land in exactly one
        reader branch. A reader branch narrower than another writer branch cannot hold a document
        of this one (that document matches no other writer branch)."""
        rest = self.derived(rs, r, ("without", "oneOf"), lambda: rs.keep(_without(r, "oneOf")))
        found: Found = []
        reader_branches = r["oneOf"]
        for i, branch in enumerate(branches):
            order = [i] + [k for k in range(len(reader_branches)) if k != i] if i < len(reader_branches) \
                else range(len(reader_branches))
            found += self.compare(rest, rs, branch, ws) if constrains(rest) else []
            fits = [k for k in order if not self.compare(reader_branches[k], rs, branch, ws)]
            if any(self._others_disjoint(reader_branches, k, rs, ws.view(branch), ws, (branches, i)) for k in fits):
                continue
            if fits or i >= len(reader_branches):
                found.append(("", f"cannot prove that writer oneOf branch {i} matches exactly one reader branch"))
            else:  # no reader branch takes it: say why the one in the same place does not
                found += _under(join("oneOf", i), self.compare(reader_branches[i], rs, branch, ws))
        return found

    def _others_disjoint(self, reader_branches: list[Any], chosen: int, rs: Side, w: Any, ws: Side,
                         writer_branches: tuple[list[Any], int] | None) -> bool:
        for j, branch in enumerate(reader_branches):
            if j == chosen:
                continue
            if self.disjoint(rs.view(branch), w):
                continue
            if writer_branches is not None:
                others, mine = writer_branches
                order = [j] + [x for x in range(len(others)) if x != j] if j < len(others) else range(len(others))
                if any(x != mine and self.compatible_reverse(others[x], ws, branch, rs) for x in order):
                    continue
            return False
        return True

    def disjoint(self, a: Any, b: Any) -> bool:
        """Whether no document is valid under both views (proved by types, values or a discriminator)."""
        if a is False or b is False:
            return True
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        if not (writer_types(a) & writer_types(b)):
            return True
        a_values, b_values = values_of(a), values_of(b)
        if a_values is not None and b_values is not None:
            return not ({canon(v) for v in a_values} & {canon(v) for v in b_values})
        for name in set(a.get("required", [])) & set(b.get("required", [])):
            a_prop = a.get("properties", {}).get(name)
            b_prop = b.get("properties", {}).get(name)
            if isinstance(a_prop, dict) and isinstance(b_prop, dict):
                a_vals, b_vals = values_of(a_prop), values_of(b_prop)
                if a_vals is not None and b_vals is not None and \
                        not ({canon(v) for v in a_vals} & {canon(v) for v in b_vals}):
                    return True
        return False

    # --- one schema against another ----------------------------------------------------

    def _compare_plain(self, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
        values = values_of(w)
        if values is not None:
            return self._check_values(r, rs, w, values)
        found: Found = []
        reader_types = declared_types(r)
        w_types = writer_types(w)
        lost = sorted(t for t in w_types if not covers(reader_types, t))
        if "number" in lost and "integer" in lost and "integer" in w_types:
            lost.remove("integer")
        if not lost and rs.draft == 4 < ws.draft and "integer" in w_types and reader_types is not None \
                and "number" not in reader_types:
            lost = ["number"]  # 1.0 is an integer from draft-06 on, not to a draft-04 reader
        if lost:
            shown = sorted(declared_types(w) or ALL_TYPES)
            found.append(("", f"type narrowed: writer allows {shown}, reader accepts only {sorted(reader_types or ())}"))
        if values_of(r) is not None:
            found.append(("", "reader restricts values to an enum/const but the writer does not"))
        found += self._other_keywords(r, rs, w, ws)
        kept = {t for t in w_types if covers(reader_types, t)}
        found += [("", text) for text in bound_messages(r, w, kept)]
        if "not" in r:
            found += self._not(r, rs, w, ws)
        if "array" in kept:
            from fabric_ray.governance.json_schema_structure import compare_array
            found += compare_array(self, r, rs, w, ws)
        if "object" in kept:
            from fabric_ray.governance.json_schema_structure import compare_object
            found += compare_object(self, r, rs, w, ws)
        if {"if", "then", "else"} & set(r):
            found += self._conditional(r, rs, w, ws)
        return found

    def _other_keywords(self, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
        found: Found = []
        for keyword in sorted(set(r) - HANDLED):
            if keyword not in _COMPARED_FOR_EQUALITY:
                continue  # an unknown keyword never rejects a document
            same = canon(r[keyword]) == canon(w.get(keyword))
            if not same or not self.refs_agree(r[keyword], rs, ws):
                found.append(("", f"reader keyword {keyword!r} differs from the writer's; cannot prove compatibility"))
        return found

    def refs_agree(self, value: Any, rs: Side, ws: Side) -> bool:
        """Whether every reference inside ``value`` leads to the same text in both roots, so that
        ``value`` means the same on both sides."""
        if self.same_roots or not has_ref(value):
            return True
        pending, seen = _refs_in(value), set()
        while pending:
            ref = pending.pop()
            if ref in seen:
                continue
            seen.add(ref)
            try:
                r_target, w_target = rs.target(ref), ws.target(ref)
            except JsonSchemaError:
                return False
            if isinstance(r_target, EXTERNAL) or isinstance(w_target, EXTERNAL):
                if not (isinstance(r_target, EXTERNAL) and isinstance(w_target, EXTERNAL)) or _base(rs) != _base(ws):
                    return False
                continue
            if canon(r_target) != canon(w_target):
                return False
            pending += _refs_in(r_target)
        return True

    def _not(self, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
        if "not" in w and self.compatible_reverse(w["not"], ws, r["not"], rs):
            return []  # the reader excludes less than the writer does
        if self.disjoint(w, rs.view(r["not"])):
            return []
        return [("/not", "reader 'not' excludes documents the writer allows; cannot prove compatibility")]

    def _conditional(self, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
        group = {k: r[k] for k in ("if", "then", "else") if k in r}
        if canon(group) == canon({k: w[k] for k in ("if", "then", "else") if k in w}) and \
                self.refs_agree(group, rs, ws):
            return []
        found: Found = []
        for kw in ("then", "else"):
            if kw in r:
                found += _under(join(kw), self.compare(r[kw], rs, ws.keep(w), ws))
        if found:
            return [("", "reader if/then/else differs from the writer's; cannot prove compatibility")]
        return []

    def _check_values(self, r: dict[str, Any], rs: Side, w: dict[str, Any], values: list[Any]) -> Found:
        found: Found = []
        allowed = values_of(r)
        allowed_set = None if allowed is None else {canon(v) for v in allowed}
        for value in values:
            if not covers(declared_types(w), value_type(value)):
                continue  # the writer's type excludes this value
            if allowed_set is not None and canon(value) not in allowed_set:
                found.append(("", f"writer value {value!r} is not in the reader's enum"))
                continue
            errors = value_errors(r, rs, value)
            if errors:
                found.append(("", f"writer value {value!r} is rejected by the reader: {errors[0]}"))
        return found


def _without(schema: dict[str, Any], keyword: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != keyword}


def _base(side: Side) -> Any:
    """The base URI relative references of a side resolve against."""
    root = side.root if isinstance(side.root, dict) else {}
    return root.get("$id", root.get("id") if side.draft == 4 else None)


def _refs_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value[k] for k in ("$ref", "$dynamicRef") if isinstance(value.get(k), str)]
        found += ["#"] if isinstance(value.get("$recursiveRef"), str) else []
        return found + [ref for k, v in value.items() if k not in ("enum", "const") for ref in _refs_in(v)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs_in(item)]
    return []


# Self-contained reader keywords the checker does not reason about: equal to the writer's, or "cannot prove".
_COMPARED_FOR_EQUALITY = frozenset({"pattern", "format"})
