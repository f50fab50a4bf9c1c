"""Objects and arrays in the JSON Schema compatibility checker (``json_schema_checker``).

Objects: every property name a document may carry gets, on each side, the schemas that apply
to it: its ``properties`` entry, every matching ``patternProperties`` entry, or else
``additionalProperties`` (``unevaluatedProperties`` arrives here already translated). Names
declared on either side are compared one by one; the names no side declares are covered by
comparing each reader pattern, and the reader's ``additionalProperties``, with every writer
source such a name can come from. Arrays: ``prefixItems`` position by position, then the rest
``items``; ``contains`` with ``minContains``/``maxContains``.

Example:
    >>> from fabric_ray.governance.json_schema_checker import Checker
    >>> closed = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    >>> Checker({"type": "object", "additionalProperties": False, "patternProperties": {"^a": {}}}, closed).run()
    []
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fabric_ray.governance.json_schema_views import Side, pointer_join as _join, pattern_matches, under as _under

if TYPE_CHECKING:
    from fabric_ray.governance.json_schema_checker import Checker, Found

__all__ = ["compare_array", "compare_object"]


def _is_false(side: Side, schema: Any) -> bool:
    return side.view(schema) is False


def _literal_prefix(pattern: str) -> str | None:
    """The fixed text an anchored pattern starts with (``^I_`` -> ``I_``), or None."""
    match = re.match(r"\^((?:[A-Za-z0-9_\-]|\\.)*)", pattern)
    if not match:
        return None
    return re.sub(r"\\(.)", r"\1", match.group(1))


def _patterns_disjoint(a: str, b: str) -> bool:
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    return pa is not None and pb is not None and not (pa.startswith(pb) or pb.startswith(pa))


def _pattern_covers(reader: str, writer: str) -> bool:
    """Whether every name matching ``writer`` matches ``reader``."""
    if reader == writer:
        return True
    pw = _literal_prefix(writer)
    return re.fullmatch(r"\^[A-Za-z0-9_\-]*", reader) is not None and pw is not None and pw.startswith(reader[1:])


def compare_object(checker: Checker, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
    found: Found = []
    r_props, w_props = r.get("properties", {}), w.get("properties", {})
    r_patterns, w_patterns = r.get("patternProperties", {}), w.get("patternProperties", {})
    r_add, w_add = r.get("additionalProperties", True), w.get("additionalProperties", True)
    w_required = set(w.get("required", []))
    for name in r.get("required", []):
        if name in w_required:
            continue
        prop = r_props.get(name)
        prop_view = rs.view(prop) if prop is not None else None
        has_default = (isinstance(prop, dict) and "default" in prop) or (isinstance(prop_view, dict) and "default" in prop_view)
        if has_default and checker.defaults_apply(rs):
            continue  # the reader supplies the default (Confluent's rule)
        found.append(("", f"reader requires property {name!r} that the writer does not require"))
    for name in sorted(set(r_props) | set(w_props)):
        at = _join("properties", name)
        w_matching = [s for p, s in w_patterns.items() if pattern_matches(p, name)]
        writer_schema = w_props[name] if name in w_props else (w_matching[0] if w_matching else w_add)
        if _is_false(ws, writer_schema):
            continue  # the writer never has this property
        r_matching = [s for p, s in r_patterns.items() if pattern_matches(p, name)]
        reader_schemas = ([r_props[name]] if name in r_props else []) + r_matching
        if not reader_schemas:
            if _is_false(rs, r_add):
                found.append((at, f"writer property {name!r} is not allowed by the reader's closed content model"))
                continue
            reader_schemas = [r_add]
        if name in r_props and name not in w_props and not w_matching and \
                not _constrains_view(ws, w_add) and _constrains_view(rs, r_props[name]):
            found.append((at, f"property {name!r} added to the reader, but the writer's open content model "
                              "allows it with any value"))
            continue
        for schema in reader_schemas:
            found += _under(at, checker.compare(schema, rs, writer_schema, ws))
    for pattern, schema in r_patterns.items():
        at = _join("patternProperties", pattern)
        if pattern in w_patterns:
            found += _under(at, checker.compare(schema, rs, w_patterns[pattern], ws))
            continue
        sources = [s for p, s in w_patterns.items() if not _patterns_disjoint(pattern, p)] + [w_add]
        for source in sources:
            found += _under(at, checker.compare(schema, rs, source, ws))
    at = _join("additionalProperties")
    sources = [s for p, s in w_patterns.items() if not any(_pattern_covers(q, p) for q in r_patterns)] + [w_add]
    for source in sources:
        extra = checker.compare(r_add, rs, source, ws)
        if extra and _is_false(rs, r_add):
            extra = [("", "reader's closed content model rejects additional properties the writer allows")]
        found += _under(at, extra)
    found += _dependencies(checker, r, rs, w, ws)
    if "propertyNames" in r:
        writer_names = checker.derived(ws, w, ("propertyNames",), lambda: ws.keep({
            "allOf": [w.get("propertyNames", True), ws.keep({"type": "string"})]}))
        names = checker.compare(r["propertyNames"], rs, writer_names, ws)
        if names and _is_false(ws, w_add) and not w_patterns:
            from fabric_ray.governance.json_schema_values import value_errors

            names = [("", f"writer property name {n!r} is rejected") for n in w_props
                     if value_errors(rs.view(r["propertyNames"]), rs, n)]
        found += _under(_join("propertyNames"), names)
    return found


def _constrains_view(side: Side, schema: Any) -> bool:
    from fabric_ray.governance.json_schema_checker import constrains

    return constrains(side.view(schema))


def _dependencies(checker: Checker, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
    found: Found = []
    w_props = w.get("properties", {})
    w_required = set(w.get("required", []))
    absent = {name for name, schema in w_props.items() if _is_false(ws, schema)}
    if w.get("additionalProperties", True) is False or ws.view(w.get("additionalProperties", True)) is False:
        if not w.get("patternProperties"):
            absent |= set(r.get("dependentRequired", {})) | set(r.get("dependentSchemas", {}))
            absent -= set(w_props)
    for name, needed in r.get("dependentRequired", {}).items():
        have = set(w.get("dependentRequired", {}).get(name, [])) | w_required
        if name in absent or set(needed) <= have:
            continue
        found.append((_join("dependentRequired", name), f"reader requires {sorted(set(needed) - have)} with "
                                                        f"{name!r} and the writer does not"))
    for name, schema in r.get("dependentSchemas", {}).items():
        if name in absent:
            continue
        writer_dep = w.get("dependentSchemas", {}).get(name)
        at = _join("dependentSchemas", name)
        if writer_dep is not None and not checker.compare(schema, rs, writer_dep, ws):
            continue
        rest = checker.derived(ws, w, ("without", "dependentSchemas"),
                               lambda: ws.keep({k: v for k, v in w.items() if k != "dependentSchemas"}))
        if not checker.compare(schema, rs, rest, ws):
            continue
        found.append((at, f"reader dependent schema for {name!r} is not implied by the writer"))
    return found


def compare_array(checker: Checker, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
    found: Found = []
    if r.get("uniqueItems") and not w.get("uniqueItems"):
        found.append(("", "reader requires uniqueItems but the writer does not"))
    r_prefix, w_prefix = list(r.get("prefixItems", [])), list(w.get("prefixItems", []))
    r_rest, w_rest = r.get("items", True), w.get("items", True)
    w_max = w.get("maxItems")
    tuple_form = rs.draft <= 2019  # the user wrote items: [...] and additionalItems
    rest_at = _join("additionalItems" if tuple_form and r_prefix else "items")
    for i in range(max(len(r_prefix), len(w_prefix))):
        if isinstance(w_max, int) and i >= w_max:
            break
        reader_item = r_prefix[i] if i < len(r_prefix) else r_rest
        writer_item = w_prefix[i] if i < len(w_prefix) else w_rest
        at = _join("items" if tuple_form else "prefixItems", i) if i < len(r_prefix) else rest_at
        found += _under(at, checker.compare(reader_item, rs, writer_item, ws))
    if not (isinstance(w_max, int) and w_max <= max(len(r_prefix), len(w_prefix))):
        found += _under(rest_at, checker.compare(r_rest, rs, w_rest, ws))
    if "contains" in r:
        found += _contains(checker, r, rs, w, ws)
    return found


def _contains(checker: Checker, r: dict[str, Any], rs: Side, w: dict[str, Any], ws: Side) -> Found:
    found: Found = []
    r_min, w_min = r.get("minContains", 1), w.get("minContains", 1)
    if r_min > 0:
        proved = "contains" in w and w_min >= r_min and not checker.compare(r["contains"], rs, w["contains"], ws)
        if not proved:
            found.append((_join("contains"), f"reader requires at least {r_min} item(s) matching 'contains' "
                                             "and the writer does not guarantee them"))
    if "maxContains" in r:
        r_max = r["maxContains"]
        proved = isinstance(w.get("maxItems"), int) and w["maxItems"] <= r_max
        if not proved and "contains" in w and w.get("maxContains", float("inf")) <= r_max:
            proved = checker.compatible_reverse(w["contains"], ws, r["contains"], rs)
        if not proved:
            found.append((_join("maxContains"), f"reader allows at most {r_max} item(s) matching 'contains' "
                                                "and the writer does not guarantee it"))
    return found
