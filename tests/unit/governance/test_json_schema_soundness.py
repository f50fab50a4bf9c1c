"""Soundness probe: every "compatible" verdict is tried on documents valid under the writer.

For each (reader, writer) pair the checker calls compatible (Confluent's example files, the
schemas rebuilt from its Java tests, and this suite's own examples), Hypothesis generates JSON
documents (shaped by the writer's types, properties, items and branches, and built from the
names and values both schemas mention: ``hypothesis-jsonschema`` 0.23 does not run on this
Hypothesis) and keeps those ``jsonschema`` finds valid under the
writer; each of them must be valid under the reader. The reader first fills in the ``default`` of
a required property the document lacks: the one rule taken from Confluent beyond validation.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_ray.governance.json_schema import JsonSchemaError, check_compatibility, parse_json_schema
from fabric_ray.governance.json_schema_views import draft_of
from tests.unit.governance.json_schema_pairs import Pairs
from tests.unit.governance.test_json_schema_confluent import circular_schema, memo_masking_schema

DATA = Path(__file__).parent / "data"
DRAFT_2020 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_2019 = "https://json-schema.org/draft/2019-09/schema"
DRAFT_4 = "http://json-schema.org/draft-04/schema#"
S, N, I = {"type": "string"}, {"type": "number"}, {"type": "integer"}

# Pairs (reader, writer) this suite asserts compatible outside the Confluent example files.
OWN_CASES: list[tuple[str, Any, Any]] = [
    ("not narrowed", {"not": I}, {"not": N}),
    ("not disjoint from writer", {"not": S}, I),
    ("pattern property covers removed property",
     {"properties": {"foo": S}, "additionalProperties": False, "patternProperties": {"^S_": S, "^I_": N}},
     {"properties": {"foo": S, "I_1": I}, "additionalProperties": False}),
    ("dependency removed", {"dependencies": {"foo": S}}, {"dependencies": {"foo": S, "bar": S}}),
    ("dependentRequired narrowed", {"$schema": DRAFT_2020, "dependentRequired": {"a": ["b"]}},
     {"$schema": DRAFT_2020, "dependentRequired": {"a": ["b", "c"]}}),
    ("minContains lowered", {"$schema": DRAFT_2020, "type": "array", "contains": N, "minContains": 1},
     {"$schema": DRAFT_2020, "type": "array", "contains": N, "minContains": 2}),
    ("maxContains raised", {"$schema": DRAFT_2020, "type": "array", "contains": N, "maxContains": 3},
     {"$schema": DRAFT_2020, "type": "array", "contains": N, "maxContains": 2}),
    ("unevaluatedProperties closes the model",
     {"$schema": DRAFT_2020, "properties": {"foo": S, "bar": N}, "unevaluatedProperties": False},
     {"$schema": DRAFT_2020, "properties": {"foo": S}, "unevaluatedProperties": False}),
    ("false property removed from closed model", {"additionalProperties": False},
     {"additionalProperties": False, "properties": {"foo": False}}),
    ("required with default in closed model",
     {"type": "object", "properties": {"a": S, "b": {"type": "string", "default": "x"}}, "required": ["a", "b"],
      "additionalProperties": False},
     {"type": "object", "properties": {"a": S}, "required": ["a"], "additionalProperties": False}),
    ("2020-12 $ref with siblings",
     {"$schema": DRAFT_2020, "$defs": {"b": {"type": "object", "properties": {"n": N}}}, "$ref": "#/$defs/b",
      "properties": {"s": S}, "unevaluatedProperties": False},
     {"$schema": DRAFT_2020, "$defs": {"b": {"type": "object", "properties": {"n": I}}}, "$ref": "#/$defs/b",
      "properties": {"s": S}, "unevaluatedProperties": False}),
    ("unevaluatedItems with prefix items added",
     {"$schema": DRAFT_2020, "type": "array", "prefixItems": [S, N, S], "unevaluatedItems": S},
     {"$schema": DRAFT_2020, "type": "array", "prefixItems": [S, N], "unevaluatedItems": S}),
    ("draft-04 exclusive bounds", {"$schema": DRAFT_4, "type": "number", "minimum": 0},
     {"$schema": DRAFT_4, "type": "number", "minimum": 0, "exclusiveMinimum": True}),
    ("draft-04 exclusive against 2020-12", {"$schema": DRAFT_2020, "type": "integer", "minimum": 1},
     {"$schema": DRAFT_4, "type": "integer", "minimum": 0, "exclusiveMinimum": True}),
    ("2019-09 recursive ref",
     {"$schema": DRAFT_2019, "$recursiveAnchor": True, "type": "object",
      "properties": {"n": N, "next": {"$recursiveRef": "#"}}},
     {"$schema": DRAFT_2019, "$recursiveAnchor": True, "type": "object",
      "properties": {"n": I, "next": {"$recursiveRef": "#"}}}),
    ("integer gap", {"type": "integer", "minimum": 1}, {"type": "integer", "exclusiveMinimum": 0}),
    ("writer allOf merged",
     {"type": "object", "properties": {"a": I}, "required": ["a"], "additionalProperties": False},
     {"allOf": [{"type": "object", "properties": {"a": I}, "required": ["a"]}, {"additionalProperties": False,
                                                                                "properties": {"a": True}}]}),
    ("oneOf branches with a discriminator",
     {"oneOf": [{"type": "object", "properties": {"k": {"const": "a"}, "v": N}, "required": ["k"]},
                {"type": "object", "properties": {"k": {"const": "b"}}, "required": ["k"]}]},
     {"oneOf": [{"type": "object", "properties": {"k": {"const": "a"}, "v": I}, "required": ["k"]},
                {"type": "object", "properties": {"k": {"const": "b"}}, "required": ["k"]}]}),
]


def _confluent_cases() -> list[tuple[str, Any, Any]]:
    cases = []
    for path in sorted(DATA.glob("confluent_diff_*.json")):
        for index, case in enumerate(json.loads(path.read_text())["cases"]):
            cases.append((f"{path.stem[10:]}[{index}] {case['description']}", case["update_schema"],
                          case["original_schema"]))
    return cases


def _retitled(schema: dict) -> dict:
    return {**copy.deepcopy(schema), "title": "v2"}


JAVA_CASES = [
    ("circular 2x1 retitled", _retitled(circular_schema(2, 1)), circular_schema(2, 1)),
    ("memo masking schema retitled", _retitled(memo_masking_schema("integer", "boolean")),
     memo_masking_schema("integer", "boolean")),
]


def _compatible_cases() -> list:
    params = []
    for name, reader, writer in _confluent_cases() + OWN_CASES + JAVA_CASES:
        if not check_compatibility(reader, writer):
            params.append(pytest.param(reader, writer, id=name))
    return params


def _hints(schema: Any, names: set[str], values: list[Any]) -> None:
    """Collect the property names and literal values a schema mentions."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("properties", "dependentRequired", "dependentSchemas", "dependencies") and isinstance(value, dict):
                names.update(value)
            elif key == "patternProperties" and isinstance(value, dict):
                names.update(p.lstrip("^").rstrip("$") + "x" for p in value)
            elif key == "required" and isinstance(value, list):
                names.update(v for v in value if isinstance(v, str))
            elif key in ("enum", "examples") and isinstance(value, list):
                values.extend(value)
            elif key in ("const", "default"):
                values.append(value)
            elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf") and \
                    isinstance(value, (int, float)) and not isinstance(value, bool):
                values.extend([value, value + 1, value - 1, value * 2])
            _hints(value, names, values)
    elif isinstance(schema, list):
        for item in schema:
            _hints(item, names, values)


def _documents(reader: Any, writer: Any) -> st.SearchStrategy[Any]:
    names: set[str] = {"a", "id"}
    values: list[Any] = []
    _hints([reader, writer], names, values)
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(-3, 12), st.sampled_from([0.5, -1.5, 2.5, 1e3]),
        st.text(alphabet="abxyz_", max_size=4), st.sampled_from(sorted(names)),
        *([st.sampled_from(values)] if values else []),
    )
    keys = st.one_of(st.sampled_from(sorted(names)), st.text(alphabet="abxyz_", max_size=3))
    built = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
                         max_leaves=10)
    return st.one_of(_guided(writer, writer, leaves, keys, 0), built)


def _guided(schema: Any, root: Any, leaves: Any, keys: Any, depth: int) -> st.SearchStrategy[Any]:
    """Documents shaped by a writer schema (types, properties, items, branches); not always valid."""
    if not isinstance(schema, dict) or depth > 12:
        return leaves
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        target: Any = root
        for part in ref[1:].split("/")[1:]:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _guided({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, root, leaves, keys, depth + 1)
    if schema.get("allOf"):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for member in schema["allOf"]:
            merged.update(member if isinstance(member, dict) else {})
        return _guided(merged, root, leaves, keys, depth + 1)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for kw in ("oneOf", "anyOf"):
        if schema.get(kw):
            rest = {k: v for k, v in schema.items() if k != kw}
            return st.one_of([_guided({**rest, **b} if isinstance(b, dict) else rest, root, leaves, keys, depth + 1)
                              for b in schema[kw]])
    types = schema.get("type")
    types = [types] if isinstance(types, str) else (types or ["object", "array", "string", "number", "null"])
    options = []
    for t in types:
        if t == "object":
            props = schema.get("properties", {})
            required = [n for n in schema.get("required", []) if isinstance(n, str)]
            fixed = {n: _guided(props.get(n, True), root, leaves, keys, depth + 1) for n in required}
            optional = {n: _guided(p, root, leaves, keys, depth + 1) for n, p in props.items() if n not in fixed}
            extra = st.just({}) if schema.get("additionalProperties", True) is False or \
                schema.get("unevaluatedProperties", True) is False else st.dictionaries(keys, leaves, max_size=2)
            options.append(st.builds(lambda a, b, c: {**c, **b, **a}, st.fixed_dictionaries(fixed),
                                     st.fixed_dictionaries({}, optional=optional), extra))
        elif t == "array":
            prefix = schema.get("prefixItems") or (schema["items"] if isinstance(schema.get("items"), list) else [])
            rest = schema.get("items", True) if not isinstance(schema.get("items"), list) else \
                schema.get("additionalItems", True)
            rest = schema.get("unevaluatedItems", True) if rest is True and prefix else rest
            tail = st.lists(_guided(schema.get("contains", rest), root, leaves, keys, depth + 1), max_size=3)
            options.append(st.builds(lambda a, b: a + b,
                                     st.tuples(*[_guided(p, root, leaves, keys, depth + 1) for p in prefix]).map(list),
                                     tail if rest is not False else st.just([])))
        elif t == "string":
            shortest = schema.get("minLength", 0)
            options.append(st.text(alphabet="abxyz_0", min_size=shortest, max_size=max(6, shortest + 2)))
            if isinstance(schema.get("pattern"), str):
                options.append(st.from_regex(schema["pattern"]))
        elif t in ("number", "integer"):
            low = schema.get("minimum", schema.get("exclusiveMinimum", -5))
            low = low if isinstance(low, (int, float)) and not isinstance(low, bool) else -5
            options.append(st.integers(int(low) - 1, int(low) + 8))
            step = schema.get("multipleOf")
            if isinstance(step, (int, float)) and not isinstance(step, bool):
                options.append(st.integers(-4, 8).map(lambda k, step=step: k * step))
            if t == "number":
                options.append(st.floats(low - 1, low + 8, allow_nan=False))
        elif t == "boolean":
            options.append(st.booleans())
        elif t == "null":
            options.append(st.none())
    return st.one_of(options) if options else leaves


def _fill_defaults(schema: Any, root: Any, document: Any, depth: int = 0) -> Any:
    """The reader's defaults for required properties the document lacks, filled in."""
    if depth > 20 or not isinstance(schema, dict) or not isinstance(document, dict):
        return document
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _fill_defaults(target, root, document, depth + 1)
    properties = schema.get("properties", {})
    filled = dict(document)
    for name in schema.get("required", []):
        prop = properties.get(name)
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = prop["default"]
    for name, prop in properties.items():
        if name in filled:
            filled[name] = _fill_defaults(prop, root, filled[name], depth + 1)
    return filled


@pytest.mark.parametrize(("reader", "writer"), _compatible_cases())
def test_compatible_verdicts_hold_for_generated_documents(reader, writer):
    writer_check = draft_of(writer)[1](writer)
    reader_check = draft_of(reader)[1](reader)

    @settings(max_examples=15, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_documents(reader, writer))
    def probe(document):
        if not writer_check.is_valid(document):
            return
        filled = _fill_defaults(reader, reader, document)
        errors = [e.message for e in reader_check.iter_errors(filled)]
        assert not errors, f"writer-valid document {document!r} rejected by the reader: {errors[:2]}"

    try:
        probe()
    except jsonschema.exceptions.RefResolutionError:  # pragma: no cover - external $ref
        pytest.skip("external $ref")


def test_probe_catches_an_unsound_verdict():
    """The probe itself finds a counter-example when one exists (a closed reader, an open writer)."""
    reader = {"type": "object", "properties": {"a": S}, "additionalProperties": False}
    writer = {"type": "object", "properties": {"a": S}}
    assert check_compatibility(reader, writer)  # the checker says no ...
    found = []

    @settings(max_examples=50, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_documents(reader, writer))
    def probe(document):
        if jsonschema.Draft7Validator(writer).is_valid(document) and not jsonschema.Draft7Validator(reader).is_valid(
                document):
            found.append(document)

    probe()
    assert found  # ... and the probe shows why


@pytest.mark.parametrize(("name", "reader", "writer"), OWN_CASES + JAVA_CASES, ids=[c[0] for c in OWN_CASES + JAVA_CASES])
def test_own_cases_are_judged_compatible(name, reader, writer):
    """The probe's own pairs are all verdicts this suite expects to be "compatible"."""
    assert check_compatibility(reader, writer) == [], name


def _random_pair(seed: int) -> tuple[Any, Any] | None:
    reader, writer = Pairs(seed).pair()
    try:
        parse_json_schema(reader)
        parse_json_schema(writer)
    except JsonSchemaError:
        return None
    return reader, writer


@pytest.mark.parametrize("seed", range(60))
def test_random_pairs_judged_compatible_hold(seed):
    """Random pairs (json_schema_pairs.py): where the checker says compatible, the probe agrees."""
    pair = _random_pair(seed)
    if pair is None or check_compatibility(*pair):
        return  # not a schema, or judged incompatible: nothing to probe
    reader, writer = pair
    writer_check, reader_check = draft_of(writer)[1](writer), draft_of(reader)[1](reader)

    @settings(max_examples=10, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_documents(reader, writer))
    def probe(document):
        try:
            if not writer_check.is_valid(document):
                return
            errors = [e.message for e in reader_check.iter_errors(_fill_defaults(reader, reader, document))]
        except RecursionError:  # a $ref loop through not/allOf: jsonschema cannot validate it
            return
        assert not errors, f"writer-valid document {document!r} rejected by the reader: {errors[:2]}"

    probe()


def test_random_pairs_cover_both_verdicts():
    verdicts = [not check_compatibility(*pair) for pair in map(_random_pair, range(60)) if pair is not None]
    assert verdicts.count(True) >= 10 and verdicts.count(False) >= 10, verdicts
