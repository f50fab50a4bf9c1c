"""Draft-neutral views of JSON Schema nodes, for the compatibility checker in ``json_schema.py``.

Every draft (04, 06, 07, 2019-09, 2020-12) is read into one vocabulary, the 2020-12 one, node by
node and only when the checker reaches a node:

* draft-04 boolean ``exclusiveMinimum``/``exclusiveMaximum`` become the numeric form;
* the array form of ``items`` (drafts up to 2019-09) becomes ``prefixItems``, its
  ``additionalItems`` the rest ``items``; a lone ``additionalItems`` is dropped (ignored by the spec);
* ``dependencies`` (up to draft 7) splits into ``dependentRequired`` and ``dependentSchemas``;
* keywords a draft does not have (``const`` in draft-04, ``if`` before draft 7, ``unevaluated*``
  before 2019-09...) are dropped: they never reject a document there;
* ``$ref`` is resolved (JSON pointer, ``$id``, ``$anchor``; ``$recursiveRef``/``$dynamicRef`` to their
  anchor): up to draft 7 its siblings are ignored, from 2019-09 they are **merged** with the target
  when that is exact, else kept as ``allOf``;
* ``allOf`` members are merged into their parent when that is exact;
* ``unevaluatedProperties``/``unevaluatedItems`` become ``additionalProperties``/``items`` where that
  is exact (no other applicator at the node). Where it is not, the reader gets the translation
  anyway (stricter than the truth: sound) and the writer drops the keyword (looser: sound).

A :class:`Side` holds one root schema in one role (``"reader"`` or ``"writer"``) and caches the
view of each node it has seen, keeping the node alive so that ``id()`` keys stay unique.

Example:
    >>> side = Side({"items": [{"type": "string"}], "additionalItems": False}, "reader")
    >>> side.view(side.root)
    {'prefixItems': [{'type': 'string'}], 'items': False}
    >>> side = Side({"$schema": "https://json-schema.org/draft/2020-12/schema",
    ...              "$defs": {"b": {"properties": {"b": {"type": "integer"}}}},
    ...              "$ref": "#/$defs/b", "properties": {"a": {}}, "unevaluatedProperties": False}, "writer")
    >>> side.view(side.root)
    {'properties': {'b': {'type': 'integer'}, 'a': {}}, 'additionalProperties': False}
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote, urldefrag

import jsonschema

__all__ = ["DRAFTS", "EXTERNAL", "JsonSchemaError", "Side", "draft_of"]


class JsonSchemaError(ValueError):
    """A schema that is not valid JSON Schema, or a ``$ref`` that cannot be resolved."""


class _External:
    """The view of a ``$ref`` to another document: unknown here."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __repr__(self) -> str:
        return f"<external {self.uri}>"


EXTERNAL = _External

# $schema URI (https, no trailing '#') -> (draft year or number, validator class)
DRAFTS: dict[str, tuple[int, type[Any]]] = {
    "https://json-schema.org/draft-04/schema": (4, jsonschema.Draft4Validator),
    "https://json-schema.org/draft-06/schema": (6, jsonschema.Draft6Validator),
    "https://json-schema.org/draft-07/schema": (7, jsonschema.Draft7Validator),
    "https://json-schema.org/draft/2019-09/schema": (2019, jsonschema.Draft201909Validator),
    "https://json-schema.org/draft/2020-12/schema": (2020, jsonschema.Draft202012Validator),
}
DEFAULT_DRAFT = "https://json-schema.org/draft-07/schema"  # Confluent's default dialect

ANNOTATIONS = frozenset({
    "$schema", "$id", "id", "$anchor", "$dynamicAnchor", "$recursiveAnchor", "$comment", "$vocabulary",
    "title", "description", "default", "examples", "readOnly", "writeOnly", "deprecated", "definitions",
    "$defs", "contentMediaType", "contentEncoding", "contentSchema",
})
_REFS = ("$ref", "$recursiveRef", "$dynamicRef")
_KEYWORDS_SINCE = {
    "const": 6, "contains": 6, "propertyNames": 6, "if": 7, "then": 7, "else": 7,
    "unevaluatedProperties": 2019, "unevaluatedItems": 2019, "dependentRequired": 2019,
    "dependentSchemas": 2019, "minContains": 2019, "maxContains": 2019, "prefixItems": 2020,
}
_OBJECT_KEYS = frozenset({"properties", "patternProperties", "additionalProperties", "unevaluatedProperties"})
_ARRAY_KEYS = frozenset({"prefixItems", "items", "contains", "minContains", "maxContains", "unevaluatedItems"})
_LOWER = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_UPPER = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
# Applicators whose annotations an ``unevaluated*`` keyword beside them would see.
_IN_PLACE = ("allOf", "anyOf", "oneOf", "if", "then", "else", "dependentSchemas", "$ref")


def draft_of(schema: Any) -> tuple[int, type[Any]]:
    """The (draft, validator class) a schema declares with ``$schema``; draft-07 when it has none.

    Example:
        >>> draft_of({"$schema": "http://json-schema.org/draft/2019-09/schema#"})[0]
        2019
        >>> draft_of(True)[0]
        7
    """
    uri = schema.get("$schema", DEFAULT_DRAFT) if isinstance(schema, dict) else DEFAULT_DRAFT
    key = str(uri).rstrip("#").replace("http://", "https://", 1)
    if key not in DRAFTS:
        raise JsonSchemaError(f"unsupported $schema {uri!r}; use draft-04, -06, -07, 2019-09 or 2020-12")
    return DRAFTS[key]


def has_ref(schema: Any) -> bool:
    """Whether a sub-schema refers elsewhere, so that its meaning depends on its root."""
    text = json.dumps(schema)
    return any(f'"{ref}"' in text for ref in _REFS)


class Side:
    """One root schema in one role; ``view(node)`` gives a node's normalized, resolved form."""

    def __init__(self, root: Any, role: str, texts: dict[int, tuple[Any, str]] | None = None) -> None:
        self.root = root
        self.role = role
        self.draft, self.validator_class = draft_of(root)
        self._views: dict[int, tuple[Any, Any]] = {}
        self._resolving: set[int] = set()
        self._ids = _index_ids(root)
        self._kept: list[Any] = []
        self._normal: set[int] = set()  # dicts already in the 2020-12 vocabulary
        self._by_text: dict[str, Any] = {}
        self._texts: dict[int, tuple[Any, str]] = {} if texts is None else texts  # shared by sides of one root
        self._normal_texts: dict[int, tuple[Any, str]] = {}
        self._inexact: dict[int, dict[str, Any]] = {}
        self._exact: dict[int, Any] = {}
        self._cycles: dict[int, dict[str, Any]] = {}
        self._interning = all(node is root for key, node in self._ids.items() if not key.startswith("#"))

    def view(self, node: Any) -> Any:
        """The normalized view of ``node``: ``True``, ``False``, a dict, or an ``EXTERNAL``."""
        if isinstance(node, bool):
            return node
        cached = self._views.get(id(node))
        if cached is not None:
            return cached[1]
        # Equal sub-schemas of one document mean the same (no nested $id changes a base URI):
        # they share one view, so the checker compares each distinct pair once.
        text = self._text(node) if self._interning else None
        result = self._by_text.get(text) if text is not None else None
        if result is None:
            result = self._finish(self._resolved(node))
            if text is not None:
                self._by_text[text] = result
        self._views[id(node)] = (node, result)
        return result

    def _text(self, node: Any) -> str:
        """Canonical JSON of a node, built once per node from its children's; a node already in
        the normalized vocabulary is marked, as the same text may mean otherwise in a raw node."""
        if isinstance(node, dict):
            key = id(node)
            normal = key in self._normal
            cache = self._normal_texts if normal else self._texts
            if key not in cache:
                inner = ",".join(f"{json.dumps(k)}:{self._text(node[k])}" for k in sorted(node))
                cache[key] = (node, ("N{" if normal else "{") + inner + "}")
            return cache[key][1]
        if isinstance(node, list):
            key = id(node)
            if key not in self._texts:
                self._texts[key] = (node, "[" + ",".join(self._text(v) for v in node) + "]")
            return self._texts[key][1]
        return json.dumps(node, sort_keys=True)

    def keep(self, node: Any) -> Any:
        """Register a synthetic node in the normalized vocabulary, kept alive so its ``id()`` stays unique."""
        if isinstance(node, dict) and id(node) not in self._normal:
            self._kept.append(node)
            self._normal.add(id(node))
        return node

    def ref_chain_ends(self, node: Any, where: str) -> None:
        """Raise unless a chain of ``$ref`` from ``node`` reaches a schema (not itself, not nothing)."""
        seen: set[int] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            if id(node) in seen:
                raise JsonSchemaError(f"$ref {node['$ref']!r} at {where} is circular")
            seen.add(id(node))
            try:
                node = self.target(node["$ref"])
            except JsonSchemaError as exc:
                raise JsonSchemaError(f"{exc} (at {where})") from None

    # --- resolution --------------------------------------------------------------------

    def target(self, ref: str) -> Any:
        """The node a reference names, or an ``EXTERNAL`` for another document."""
        base, fragment = urldefrag(ref)
        if base and base not in self._ids:
            return _External(ref)
        node = self._ids.get(base, self.root)
        if fragment.startswith("/") or fragment == "":
            for part in fragment.split("/")[1:]:
                part = unquote(part).replace("~1", "/").replace("~0", "~")
                if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                elif isinstance(node, dict) and part in node:
                    node = node[part]
                else:
                    raise JsonSchemaError(f"$ref {ref!r} does not resolve")
            return node
        anchor = self._ids.get("#" + fragment)
        if anchor is None:
            raise JsonSchemaError(f"$ref {ref!r} names no $anchor in the schema")
        return anchor

    def _resolved(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if id(node) in self._resolving:
            return self._cycle_view(node)
        self._resolving.add(id(node))
        try:
            return self._resolve_dict(node)
        finally:
            self._resolving.discard(id(node))

    def _resolve_dict(self, node: dict[str, Any]) -> Any:
        if id(node) in self._normal:
            return self._merge_all_of(node)
        ref_key = next((k for k in _REFS if isinstance(node.get(k), str)), None)
        if ref_key is not None and self.draft < 2019 and ref_key != "$ref":
            ref_key = None
        local = self.keep(self._local(node))
        if ref_key is None:
            return self._merge_all_of(local)
        ref = node[ref_key]
        if ref_key != "$ref" and not self._interning:
            return _External(f"{ref_key} {ref} in a document with nested $id")  # dynamic scope: not resolved here
        if ref_key == "$recursiveRef":
            ref = "#"  # one document: the outermost $recursiveAnchor is its root
        elif ref_key == "$dynamicRef" and "#" + ref.lstrip("#") in self._ids:
            ref = "#" + ref.lstrip("#")
        target = self.target(ref)
        if isinstance(target, _External):
            return target
        target_view = self._resolved(target)
        siblings = {k: v for k, v in local.items() if k not in _REFS and k not in ANNOTATIONS}
        if self.draft <= 7 or not siblings:
            return target_view
        if isinstance(target_view, _External):
            return self.keep({"allOf": [target, self.keep(siblings)]})
        siblings = self.keep(siblings)
        merged = merge(target_view, self._merge_all_of(siblings), parent_sees_child=True, keep=self.keep)
        return self.keep(merged) if merged is not None else self.keep({"allOf": [target, siblings]})

    def _cycle_view(self, target: Any) -> Any:
        # A $ref back into a node being resolved right now: hand it over unmerged, always as the
        # same object, so that the checker meets the same pair again and stops there.
        if not isinstance(target, dict):
            return target
        if id(target) not in self._cycles:
            self._cycles[id(target)] = self.keep({"allOf": [target]})
        return self._cycles[id(target)]

    def _local(self, node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if _KEYWORDS_SINCE.get(k, 0) <= self.draft}
        if self.draft <= 2019:
            items = node.get("items")
            out.pop("additionalItems", None)
            if isinstance(items, list):
                out["prefixItems"] = items
                out.pop("items")
                if "additionalItems" in node:  # else the items after the tuple stay unevaluated
                    out["items"] = node["additionalItems"]
        else:
            out.pop("additionalItems", None)
        if self.draft <= 7:
            for name, dep in (node.get("dependencies") or {}).items():
                kind = "dependentRequired" if isinstance(dep, list) else "dependentSchemas"
                out.setdefault(kind, {})[name] = dep
        out.pop("dependencies", None)
        if self.draft == 4:
            for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
                flag = out.pop(exclusive, False)
                if flag is True and bound in out:
                    out[exclusive] = out.pop(bound)
        if "if" not in out:
            out.pop("then", None)
            out.pop("else", None)  # ignored without an 'if' beside them (a lone 'if' still evaluates)
        return out

    def _merge_all_of(self, node: dict[str, Any]) -> Any:
        members = node.get("allOf")
        if not members:
            return node
        merged: Any = {}
        for member in members:
            member_view = self._resolved(member)
            if isinstance(member_view, _External):
                return node
            merged = merge(merged, member_view, parent_sees_child=False, keep=self.keep)
            if merged is None:
                return node
        rest = self.keep({k: v for k, v in node.items() if k != "allOf"})
        out = merge(merged, rest, parent_sees_child=True, keep=self.keep)
        return node if out is None else self.keep(out)

    def _finish(self, node: Any, exact: bool | None = None) -> Any:
        """Translate ``unevaluated*`` for this side's role (see the module docstring)."""
        if not isinstance(node, dict) or not ({"unevaluatedProperties", "unevaluatedItems"} & set(node)):
            return node
        out = self.keep(dict(node))
        if exact is None:
            exact = not any(k in out for k in _IN_PLACE)
            if not exact:
                self._inexact[id(out)] = node
        if "unevaluatedProperties" in out:
            value = out.pop("unevaluatedProperties")
            if "additionalProperties" not in out and (exact or self.role == "reader"):
                out["additionalProperties"] = value
        if "unevaluatedItems" in out:
            value = out.pop("unevaluatedItems")
            if "items" not in out and (self.role == "reader" or (exact and "contains" not in out)):
                out["items"] = value
        return out

    def applicators(self, view: Any) -> str | None:
        """For a view whose ``unevaluated*`` could not be translated exactly: its in-place
        applicators as JSON text, when they hold no reference (else None)."""
        node = self._inexact.get(id(view))
        if node is None:
            return None
        group = {k: node[k] for k in _IN_PLACE if k in node}
        return None if has_ref(group) else json.dumps(group, sort_keys=True)

    def exact(self, view: Any) -> Any:
        """The view with ``unevaluated*`` translated as if the applicators beside it evaluated
        nothing: exact for comparing two schemas whose applicators are identical, as they then
        evaluate the same names of every document."""
        if id(view) not in self._exact:
            self._exact[id(view)] = self._finish(self._inexact[id(view)], exact=True)
        return self._exact[id(view)]


def _index_ids(root: Any) -> dict[str, Any]:
    """``$id``/``id`` values and ``#anchor`` names of a schema, to the nodes that declare them."""
    found: dict[str, Any] = {}

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, dict):
            for key in ("$id", "id"):
                value = node.get(key)
                if isinstance(value, str) and (key == "$id" or "$ref" not in node):
                    base, fragment = urldefrag(value)
                    if base:
                        found.setdefault(base, node)
                    if fragment and not fragment.startswith("/"):
                        found.setdefault("#" + fragment, node)
            for key in ("$anchor", "$dynamicAnchor"):
                if isinstance(node.get(key), str):
                    found.setdefault("#" + node[key], node)
            for key, value in node.items():
                if key not in ("enum", "const", "default", "examples"):
                    walk(value, False)
        elif isinstance(node, list):
            for value in node:
                walk(value, False)

    walk(root, True)
    return found


def declared_types(schema: dict[str, Any]) -> frozenset[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return frozenset([declared] if isinstance(declared, str) else declared)


def _intersect_types(a: Any, b: Any) -> list[str]:
    left = [a] if isinstance(a, str) else list(a)
    right = [b] if isinstance(b, str) else list(b)
    out = [t for t in left if t in right]
    if "integer" not in out and (("integer" in left and "number" in right) or ("number" in left and "integer" in right)):
        out.append("integer")
    return out


def merge(child: Any, parent: Any, *, parent_sees_child: bool, keep: Any) -> Any:
    """The conjunction of two normalized schemas as one schema, or None where that is not exact.

    ``parent_sees_child``: whether ``parent``'s ``unevaluated*`` keywords see ``child``'s annotations
    (a ``$ref`` target or ``allOf`` member under its parent), not for two ``allOf`` members.

    Example:
        >>> merge({"type": ["string", "null"], "required": ["a"]}, {"type": "string", "required": ["b"]},
        ...       parent_sees_child=False, keep=lambda node: node)
        {'type': ['string'], 'required': ['a', 'b']}
        >>> merge({"additionalProperties": False}, {"properties": {"a": {}}}, parent_sees_child=True,
        ...       keep=lambda node: node)
        {'properties': {'a': False}, 'additionalProperties': False}
        >>> merge({"additionalProperties": False}, {"patternProperties": {"^a": {}}}, parent_sees_child=True,
        ...       keep=lambda node: node) is None
        True
    """
    if child is True or child == {}:
        return parent
    if parent is True or parent == {}:
        return child
    if child is False or parent is False:
        return False
    if not isinstance(child, dict) or not isinstance(parent, dict):
        return None
    if not _groups_mergeable(child, parent, parent_sees_child):
        return None
    conditional = {"if", "then", "else"}
    if conditional & set(child) and conditional & set(parent):
        return None  # one conditional per schema: an 'if' must not meet the other side's 'then'

    out: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    closed = "additionalProperties" in child or "additionalProperties" in parent
    if closed and _OBJECT_KEYS & set(child) and _OBJECT_KEYS & set(parent):
        out.update(_merge_closed(child, parent, keep))
    for key in list(child) + [k for k in parent if k not in child]:
        if key in ANNOTATIONS or key in out:
            continue
        if key not in child or key not in parent:
            out[key] = child[key] if key in child else parent[key]
            continue
        a, b = child[key], parent[key]
        if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
            out[key] = a
        elif key == "type":
            out[key] = _intersect_types(a, b)
            if not out[key]:
                return False
        elif key == "required":
            out[key] = list(dict.fromkeys([*a, *b]))
        elif key in ("properties", "patternProperties", "dependentSchemas"):
            both = dict(a)
            for name, schema in b.items():
                both[name] = keep({"allOf": [both[name], schema]}) if name in both else schema
            out[key] = both
        elif key == "dependentRequired":
            out[key] = {n: list(dict.fromkeys([*a.get(n, []), *b.get(n, [])])) for n in {*a, *b}}
        elif key == "allOf":
            out[key] = [*a, *b]
        elif key in _LOWER and _number(a) and _number(b):
            out[key] = max(a, b)
        elif key in _UPPER and _number(a) and _number(b):
            out[key] = min(a, b)
        elif key in _OBJECT_KEYS or key in _ARRAY_KEYS:
            return None
        else:
            out[key] = a
            extra.append(keep({key: b}))  # self-contained keywords (enum, not, pattern...): both must hold
    if extra:
        out["allOf"] = [*out.get("allOf", []), *extra]
    return out


def _merge_closed(a: dict[str, Any], b: dict[str, Any], keep: Any) -> dict[str, Any]:
    """``properties`` and ``additionalProperties`` of two schemas that both apply, name by name:
    a name one side does not declare falls under that side's ``additionalProperties``."""
    a_props, b_props = a.get("properties", {}), b.get("properties", {})
    a_add, b_add = a.get("additionalProperties", True), b.get("additionalProperties", True)

    def both(x: Any, y: Any) -> Any:
        if x is True or x == {}:
            return y
        if y is True or y == {}:
            return x
        return False if x is False or y is False else keep({"allOf": [x, y]})

    names = list(a_props) + [n for n in b_props if n not in a_props]
    out: dict[str, Any] = {"properties": {n: both(a_props.get(n, a_add), b_props.get(n, b_add)) for n in names}}
    extra = both(a_add, b_add)
    if extra is not True:
        out["additionalProperties"] = extra
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _groups_mergeable(child: dict[str, Any], parent: dict[str, Any], parent_sees_child: bool) -> bool:
    for group, closing, unevaluated in ((_OBJECT_KEYS, "additionalProperties", "unevaluatedProperties"),
                                       (_ARRAY_KEYS, "items", "unevaluatedItems")):
        in_child, in_parent = group & set(child), group & set(parent)
        if not in_child or not in_parent:
            continue
        if unevaluated in child or (unevaluated in parent and not parent_sees_child):
            return False
        if closing in child or closing in parent:
            # additionalProperties is merged name by name (_merge_closed), without patterns beside it
            if group is _ARRAY_KEYS or unevaluated in parent or \
                    "patternProperties" in child or "patternProperties" in parent:
                return False
        if unevaluated in parent and not parent_sees_child:
            return False
        if group is _ARRAY_KEYS and (in_parent - {unevaluated}):
            return False  # two prefixItems or contains lists do not combine
    return True


def pattern_matches(pattern: str, name: str) -> bool:
    return re.search(pattern, name) is not None


def pointer_join(*parts: Any) -> str:
    """JSON pointer segments, escaped: ``pointer_join("properties", "a/b")`` is ``/properties/a~1b``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def under(prefix: str, found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Findings of a sub-schema, their relative pointers moved under ``prefix``."""
    return [(prefix + path, text) for path, text in found]
