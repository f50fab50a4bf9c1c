"""Reader/writer compatibility of JSON Schemas, case by case."""

from __future__ import annotations

import pytest

from fabric_ray.governance.json_schema import (
    JsonSchemaError,
    backward,
    check_compatibility,
    parse_json_schema,
)


def obj(props: dict, *, closed: bool = False, required: list[str] | None = None) -> dict:
    schema: dict = {"type": "object", "properties": props}
    if closed:
        schema["additionalProperties"] = False
    if required:
        schema["required"] = required
    return schema


INT = {"type": "integer"}
STR = {"type": "string"}


def only(messages: list[str], *fragments: str) -> None:
    assert len(messages) == 1, messages
    for fragment in fragments:
        assert fragment in messages[0], messages


# --- parsing -----------------------------------------------------------------------------


def test_parse_accepts_text_dict_and_booleans():
    assert parse_json_schema('{"type": "string"}') == STR
    assert parse_json_schema(obj({"a": INT})) == obj({"a": INT})
    assert parse_json_schema("true") is True
    assert parse_json_schema(False) is False


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "strin"}, "#/type"),
        ({"properties": {"a": {"minLength": -1}}}, "#/properties/a/minLength"),
        ({"properties": {"a": {"properties": {"b": {"maxItems": "3"}}}}}, "#/properties/a/properties/b/maxItems"),
        ({"required": "a"}, "#/required"),
        ({"properties": {"a": {"$ref": "#/definitions/missing"}}}, "#/properties/a"),
        ({"definitions": {"a": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}, "circular"),
        ({"$schema": "http://json-schema.org/draft-03/schema#"}, "draft-03"),
    ],
)
def test_malformed_schema_names_the_path(schema, fragment):
    with pytest.raises(JsonSchemaError, match=fragment.replace("$", r"\$")):
        parse_json_schema(schema)


def test_parse_rejects_non_json_and_non_objects():
    with pytest.raises(JsonSchemaError, match="not JSON"):
        parse_json_schema("{type:")
    with pytest.raises(JsonSchemaError, match="list"):
        parse_json_schema("[1, 2]")


def test_parse_picks_metaschema_by_dollar_schema():
    draft7_tuple = {"items": [STR, INT]}
    assert parse_json_schema(draft7_tuple) == draft7_tuple
    with pytest.raises(JsonSchemaError, match="#/items"):
        parse_json_schema({"$schema": "https://json-schema.org/draft/2020-12/schema", **draft7_tuple})


# --- types -------------------------------------------------------------------------------


def test_identical_schemas_are_compatible():
    schema = obj({"a": INT, "b": {"type": "array", "items": STR}}, required=["a"])
    assert check_compatibility(schema, schema) == []


def test_type_widening_is_compatible_and_narrowing_is_not():
    assert backward({"type": "number"}, INT) == []
    only(backward(INT, {"type": "number"}), "#:", "type narrowed")
    only(backward(STR, INT), "type narrowed")


def test_adding_a_type_to_a_type_list_is_compatible_removing_is_not():
    assert backward({"type": ["string", "null"]}, STR) == []
    only(backward(STR, {"type": ["string", "null"]}), "type narrowed", "null")


def test_dropping_type_widens_and_adding_type_narrows():
    assert backward({}, STR) == []
    only(backward(STR, {}), "type narrowed")


# --- properties and content models -------------------------------------------------------


def test_closed_reader_rejects_writer_property_it_does_not_declare():
    only(backward(obj({"a": INT}, closed=True), obj({"a": INT, "b": STR}, closed=True)),
         "#/properties/b", "closed content model")


def test_open_reader_accepts_removed_property():
    assert backward(obj({"a": INT}), obj({"a": INT, "b": STR})) == []


def test_closed_reader_rejects_open_writer_extras():
    only(backward(obj({"a": INT}, closed=True), obj({"a": INT})), "#/additionalProperties", "closed")


def test_open_reader_accepts_closed_writer():
    assert backward(obj({"a": INT}), obj({"a": INT}, closed=True)) == []


def test_property_added_to_open_content_model_is_incompatible():
    only(backward(obj({"a": INT, "b": STR}), obj({"a": INT})), "#/properties/b", "open content model")


def test_optional_property_added_to_closed_writer_is_compatible():
    assert backward(obj({"a": INT, "b": STR}, closed=True), obj({"a": INT}, closed=True)) == []


def test_property_added_with_unconstrained_schema_is_compatible():
    assert backward(obj({"a": INT, "b": {"description": "anything"}}), obj({"a": INT})) == []


def test_added_property_checked_against_writer_additional_properties():
    writer = {**obj({"a": INT}), "additionalProperties": STR}
    assert backward(obj({"a": INT, "b": {"type": ["string", "null"]}}), writer) == []
    only(backward(obj({"a": INT, "b": INT}), writer), "#/properties/b", "type narrowed")


def test_added_required_property_is_incompatible_even_for_closed_writer():
    new = obj({"a": INT, "b": STR}, closed=True, required=["b"])
    only(backward(new, obj({"a": INT}, closed=True)), "requires property 'b'")


def test_making_a_property_optional_is_compatible_and_required_is_not():
    assert backward(obj({"a": INT}), obj({"a": INT}, required=["a"])) == []
    only(backward(obj({"a": INT}, required=["a"]), obj({"a": INT})), "requires property 'a'")


def test_property_type_change_names_the_property_path():
    only(backward(obj({"a": STR}), obj({"a": INT})), "#/properties/a", "type narrowed")


def test_nested_objects_are_compared_recursively():
    old = obj({"address": obj({"zip": STR, "city": STR})})
    assert backward(obj({"address": obj({"zip": STR})}), old) == []
    only(backward(obj({"address": obj({"zip": INT, "city": STR})}), old), "#/properties/address/properties/zip")
    messages = backward(obj({"address": obj({"zip": STR}, closed=True)}), old)
    assert [m.split(":")[0] for m in messages] == [
        "#/properties/address/properties/city",  # declared by the writer, refused by the closed reader
        "#/properties/address/additionalProperties",  # the writer's open model may add any other name
    ], messages


def test_pattern_properties_cover_writer_properties():
    reader = {"type": "object", "patternProperties": {"^x_": STR}, "additionalProperties": False}
    writer = {"type": "object", "patternProperties": {"^x_": STR}, "properties": {"x_a": STR},
              "additionalProperties": False}
    assert backward(reader, writer) == []
    only(backward(reader, {**writer, "properties": {"x_a": INT}}), "#/properties/x_a", "type narrowed")


# --- enum and const ----------------------------------------------------------------------


def test_enum_growth_is_compatible_and_shrink_is_not():
    assert backward({"enum": ["a", "b", "c"]}, {"enum": ["a", "b"]}) == []
    only(backward({"enum": ["a"]}, {"enum": ["a", "b"]}), "'b'", "enum")


def test_enum_writer_is_checked_value_by_value():
    assert backward({"type": "string", "maxLength": 2}, {"enum": ["a", "bb"]}) == []
    only(backward({"type": "string", "maxLength": 1}, {"enum": ["a", "bb"]}), "'bb'", "rejected")


def test_adding_an_enum_to_an_unrestricted_writer_is_incompatible():
    only(backward({"type": "string", "enum": ["a"]}, STR), "enum")


def test_const_writer_against_enum_reader():
    assert backward({"enum": [1, 2]}, {"const": 2}) == []
    only(backward({"const": 1}, {"const": 2}), "2")


# --- bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loose", "tight"),
    [
        ({"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 5}),
        ({"type": "string", "minLength": 1}, {"type": "string", "minLength": 3}),
        ({"type": "string"}, {"type": "string", "maxLength": 5}),
        ({"type": "number", "minimum": 0}, {"type": "number", "minimum": 1}),
        ({"type": "number", "maximum": 10}, {"type": "number", "maximum": 5}),
        ({"type": "number", "minimum": 0}, {"type": "number", "exclusiveMinimum": 0}),
        ({"type": "number", "exclusiveMaximum": 10}, {"type": "number", "maximum": 9}),
        ({"type": "number", "multipleOf": 2}, {"type": "number", "multipleOf": 4}),
        ({"type": "array", "minItems": 1}, {"type": "array", "minItems": 2}),
        ({"type": "array", "maxItems": 5}, {"type": "array", "maxItems": 3}),
        ({"type": "object", "maxProperties": 5}, {"type": "object", "maxProperties": 3}),
    ],
)
def test_loosened_bounds_are_compatible_and_tightened_are_not(loose, tight):
    assert backward(loose, tight) == []
    messages = backward(tight, loose)
    assert len(messages) == 1 and "tightened" in messages[0], messages


def test_exclusive_bound_equal_to_inclusive_bound_is_tighter():
    only(backward({"type": "number", "exclusiveMaximum": 5}, {"type": "number", "maximum": 5}), "upper bound")
    assert backward({"type": "number", "maximum": 5}, {"type": "number", "exclusiveMaximum": 5}) == []


def test_bounds_of_a_type_the_writer_cannot_produce_are_ignored():
    assert backward({"type": ["integer", "string"], "maxLength": 3}, INT) == []


# --- arrays ------------------------------------------------------------------------------


def test_array_items_are_compared_recursively():
    old = {"type": "array", "items": obj({"id": INT})}
    assert backward({"type": "array", "items": obj({"id": {"type": "number"}})}, old) == []
    only(backward({"type": "array", "items": obj({"id": STR})}, old), "#/items/properties/id", "type narrowed")


def test_tuple_items_and_additional_items():
    old = {"type": "array", "items": [STR, INT], "additionalItems": False}
    assert backward({"type": "array", "items": [STR]}, old) == []
    only(backward({"type": "array", "items": [STR], "additionalItems": STR}, old), "#/additionalItems")
    only(backward({"type": "array", "items": STR}, old), "#/items", "type narrowed")


def test_prefix_items_in_2020_12():
    draft = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    old = {**draft, "type": "array", "prefixItems": [STR], "items": INT}
    assert backward({**draft, "type": "array", "items": {"type": ["string", "integer"]}}, old) == []
    only(backward({**draft, "type": "array", "prefixItems": [STR], "items": STR}, old), "#/items")


# --- $ref --------------------------------------------------------------------------------


def test_refs_are_resolved_within_each_schema():
    old = {"definitions": {"id": INT}, **obj({"a": {"$ref": "#/definitions/id"}})}
    new = {"$defs": {"id": {"type": "number"}}, **obj({"a": {"$ref": "#/$defs/id"}})}
    assert backward(new, old) == []
    only(backward(old, new), "#/properties/a", "type narrowed")


def test_same_ref_text_pointing_at_different_definitions_is_compared():
    old = {"definitions": {"x": STR}, **obj({"a": {"$ref": "#/definitions/x"}})}
    new = {"definitions": {"x": INT}, **obj({"a": {"$ref": "#/definitions/x"}})}
    only(backward(new, old), "#/properties/a")


def test_recursive_refs_terminate():
    def tree(value_type: str) -> dict:
        children = {"type": "array", "items": {"$ref": "#/definitions/node"}}
        node = obj({"value": {"type": value_type}, "children": children})
        return {"definitions": {"node": node}, "$ref": "#/definitions/node"}

    assert backward(tree("number"), tree("integer")) == []
    messages = backward(tree("integer"), tree("number"))
    assert messages and all("type narrowed" in m for m in messages), messages


def test_external_ref_cannot_be_proven():
    only(backward(obj({"a": {"$ref": "other.json"}}), obj({"a": INT})), "external $ref")


def test_unresolvable_ref_raises_in_check():
    with pytest.raises(JsonSchemaError, match="#/nope"):
        check_compatibility({"$ref": "#/nope"}, STR)


# --- boolean schemas ---------------------------------------------------------------------


def test_boolean_schemas():
    assert check_compatibility(True, STR) == []
    assert check_compatibility(STR, False) == []
    assert check_compatibility(False, False) == []
    only(check_compatibility(False, STR), "false")
    only(check_compatibility(STR, True), "type narrowed")
    only(backward(obj({"a": False}), obj({"a": INT})), "#/properties/a", "false")


# --- combinators -------------------------------------------------------------------------


def test_writer_any_of_is_compatible_when_every_branch_is():
    writer = {"anyOf": [INT, {"type": "number", "maximum": 3}]}
    assert backward({"type": "number"}, writer) == []
    only(backward(INT, writer), "type narrowed")


def test_reader_any_of_accepts_writer_matching_one_branch():
    assert backward({"anyOf": [STR, {"type": "null"}]}, STR) == []
    only(backward({"anyOf": [STR, {"type": "null"}]}, INT), "cannot prove", "anyOf")


def test_reader_any_of_takes_writer_type_list_type_by_type():
    reader = {"anyOf": [STR, {"type": "null"}]}
    assert backward(reader, {"type": ["string", "null"]}) == []
    only(backward(reader, {"type": ["string", "integer"]}), "cannot prove", "anyOf")


def test_reader_one_of_with_disjoint_branches():
    assert backward({"oneOf": [STR, {"type": "null"}]}, STR) == []
    only(backward({"oneOf": [{"type": "number"}, INT]}, INT), "cannot prove", "oneOf")


def test_all_of_on_both_sides():
    reader = {"allOf": [obj({"a": INT}), {"required": ["a"]}]}
    assert backward(reader, {"allOf": [obj({"a": INT}, required=["a"]), {"maxProperties": 3}]}) == []
    messages = backward(reader, obj({"a": INT}))
    assert any("requires property 'a'" in m for m in messages), messages


def test_unsupported_reader_keyword_is_reported_not_passed():
    only(backward({"type": "string", "pattern": "^a"}, STR), "'pattern'", "cannot prove")
    assert backward({"type": "string", "pattern": "^a"}, {"type": "string", "pattern": "^a", "maxLength": 2}) == []
    only(backward({"not": STR}, {"type": ["integer", "string"]}), "'not'")


# --- soundness: what the reader covers changes -------------------------------------------

D2020 = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
D2019 = {"$schema": "https://json-schema.org/draft/2019-09/schema"}
D4 = {"$schema": "http://json-schema.org/draft-04/schema#"}


def test_unevaluated_items_with_a_prefix_item_removed_is_incompatible():
    old = {**D2020, "type": "array", "prefixItems": [STR, {"type": "number"}, {"type": "number"}],
           "unevaluatedItems": STR}
    new = {**D2020, "type": "array", "prefixItems": [STR, {"type": "number"}], "unevaluatedItems": STR}
    only(backward(new, old), "#/items", "type narrowed")  # old's third item (a number) is unevaluated in new
    only(backward(old, new), "#/prefixItems/2", "type narrowed")  # new's third item is any string


def test_unevaluated_properties_with_a_property_removed_is_incompatible():
    old = {**D2020, "properties": {"a": STR, "b": INT}, "unevaluatedProperties": False}
    new = {**D2020, "properties": {"a": STR}, "unevaluatedProperties": False}
    only(backward(new, old), "#/properties/b", "closed content model")
    assert backward(old, new) == []  # an optional property added to a closed model


def test_unevaluated_properties_sees_ref_siblings_in_2020_12():
    base = {"type": "object", "properties": {"id": INT}}
    old = {**D2020, "$defs": {"base": base}, "$ref": "#/$defs/base", "properties": {"a": STR},
           "unevaluatedProperties": False}
    new = {**old, "properties": {"a": STR, "b": STR}}
    assert backward(new, old) == []
    only(backward(old, new), "#/properties/b", "closed content model")
    widened = {**old, "$defs": {"base": {"type": "object", "properties": {"id": {"type": "number"}}}}}
    assert backward(widened, old) == []
    only(backward(old, widened), "#/properties/id", "type narrowed")


def test_equal_reader_keywords_with_refs_are_not_taken_on_trust():
    cond = {"if": {"$ref": "#/definitions/x"}, "then": {"required": ["a"]}}
    old = {"definitions": {"x": {"required": ["k"]}}, **cond}
    new = {"definitions": {"x": {"required": ["j"]}}, **cond}
    only(backward(new, old), "if/then/else")
    assert backward(new, {**new, "title": "same conditional"}) == []


def test_same_ref_text_in_not_with_other_definitions():
    old = {"definitions": {"x": STR}, "not": {"$ref": "#/definitions/x"}}
    new = {"definitions": {"x": INT}, "not": {"$ref": "#/definitions/x"}}
    only(backward(new, old), "#/not")


# --- where Confluent accepts ---------------------------------------------------------------


def test_not_narrowed_is_compatible_and_widened_is_not():
    assert backward({"not": INT}, {"not": {"type": "number"}}) == []
    only(backward({"not": {"type": "number"}}, {"not": INT}), "#/not")


def test_pattern_properties_added_cover_a_removed_property():
    old = obj({"foo": STR, "I_1": INT}, closed=True)
    new = {**obj({"foo": STR}, closed=True), "patternProperties": {"^S_": STR, "^I_": {"type": "number"}}}
    assert backward(new, old) == []
    only(backward({**new, "patternProperties": {"^I_": STR}}, old), "#/properties/I_1", "type narrowed")


def test_reader_pattern_properties_also_apply_to_declared_properties():
    writer = obj({"x_a": STR})
    reader = {**obj({"x_a": STR}), "patternProperties": {"^x_": {"maxLength": 3}}}
    assert any("maxLength" in m for m in backward(reader, writer))


def test_dependencies_removed_and_added():
    assert backward({"dependencies": {"foo": STR}}, {"dependencies": {"foo": STR, "bar": STR}}) == []
    only(backward({"dependencies": {"foo": STR, "bar": STR}}, {"dependencies": {"foo": STR}}), "dependentSchemas/bar")
    assert backward({"dependencies": {"a": ["b"]}}, {"dependencies": {"a": ["b", "c"]}}) == []
    only(backward({"dependencies": {"a": ["b", "c"]}}, {"dependencies": {"a": ["b"]}}), "dependentRequired/a")
    assert backward({**D2020, "dependentRequired": {"a": ["b"]}}, {**D2020, "required": ["b"]}) == []


def test_min_contains_lowered_and_max_contains_raised():
    old = {**D2020, "type": "array", "contains": {"type": "number"}, "minContains": 2, "maxContains": 3}
    assert backward({**old, "minContains": 1}, old) == []
    assert backward({**old, "maxContains": 4}, old) == []
    only(backward({**old, "minContains": 3}, old), "#/contains")
    only(backward({**old, "maxContains": 2}, old), "#/maxContains")
    assert backward({**old, "contains": INT}, old)  # a number item need not be an integer


def test_false_writer_property_removed_from_closed_model():
    assert backward({"additionalProperties": False}, {"additionalProperties": False, "properties": {"foo": False}}) == []


def test_required_property_with_default_is_compatible_only_in_a_closed_model():
    email = {"type": "string", "default": "unknown"}
    closed_old = obj({"name": STR}, closed=True, required=["name"])
    assert backward(obj({"name": STR, "email": email}, closed=True, required=["name", "email"]), closed_old) == []
    open_old = obj({"name": STR}, required=["name"])
    only(backward(obj({"name": STR, "email": email}, required=["name", "email"]), open_old), "open content model")


def test_ref_with_siblings_is_merged_not_wrapped():
    defs = {"$defs": {"base": {"type": "object", "properties": {"a": STR}}}}
    old = {**D2020, **defs, "$ref": "#/$defs/base", "properties": {"b": INT}, "required": ["b"]}
    assert backward({**old, "title": "renamed"}, old) == []
    assert backward({**old, "properties": {"b": {"type": "number"}}}, old) == []
    only(backward({**old, "properties": {"b": STR}}, old), "#/properties/b", "type narrowed")
    # draft-07 ignores the siblings of $ref
    draft7 = {**defs, "definitions": defs["$defs"], "$ref": "#/definitions/base", "properties": {"b": INT}}
    assert backward({**draft7, "properties": {"b": STR}}, draft7) == []


def test_writer_all_of_members_are_merged():
    writer = {"allOf": [obj({"a": INT}, required=["a"]), {"additionalProperties": False, "properties": {"a": True}}]}
    assert backward({"type": "object", "required": ["a"]}, writer) == []
    merged = {"allOf": [obj({"a": INT}, required=["a"]), {"required": ["b"]}]}
    assert backward({"type": "object", "required": ["a", "b"]}, merged) == []


def test_integer_writer_gets_credit_for_integer_gaps():
    assert backward({"type": "integer", "minimum": 1}, {"type": "integer", "exclusiveMinimum": 0}) == []
    only(backward({"type": "number", "minimum": 1}, {"type": "number", "exclusiveMinimum": 0}), "lower bound")


def test_property_names():
    closed = obj({"a": STR, "cd": STR}, closed=True)
    assert backward({"propertyNames": {"maxLength": 2}}, closed) == []
    only(backward({"propertyNames": {"maxLength": 1}}, closed), "#/propertyNames", "'cd'")
    assert backward({"propertyNames": {"type": "string"}}, obj({})) == []


# --- recursion -----------------------------------------------------------------------------


def test_recursive_one_of_does_not_overflow():
    def tree(leaf: dict) -> dict:
        node = {"oneOf": [leaf, {"type": "array", "items": {"$ref": "#/definitions/node"}}]}
        return {"definitions": {"node": node}, "$ref": "#/definitions/node"}

    assert backward(tree({"type": "number"}), tree(INT)) == []
    assert backward(tree(INT), tree({"type": "number"}))


def test_cycle_detection_keys_on_the_definition_not_each_ref():
    # Many $ref occurrences to one definition, with 2020-12 siblings: each pair of definitions is
    # compared once, not once per path through the graph.
    def graph(leaf: dict) -> dict:
        props = {f"p{i}": {"$ref": "#/$defs/node", "description": f"edge {i}"} for i in range(8)}
        node = {"type": "object", "properties": {**props, "v": leaf}}
        return {**D2020, "$defs": {"node": node}, "$ref": "#/$defs/node", "title": "graph"}

    assert backward({**graph({"type": "number"}), "title": "v2"}, graph(INT)) == []
    messages = backward(graph(INT), graph({"type": "number"}))
    assert messages and all("type narrowed" in m or "recursive" in m for m in messages), messages


def test_fixed_point_does_not_keep_a_masked_incompatibility():
    # T0 -> T2 -> T0 cycle; the change sits behind it (SchemaDiffTest's memo-masking shape).
    def schema(t0: str, t1: str) -> dict:
        def rec(id_type: str, target: str) -> dict:
            return obj({"id": {"type": id_type}, "ref": {"oneOf": [{"$ref": f"#/definitions/{target}"}]}})

        return {"definitions": {"T0": rec(t0, "T2"), "T1": rec(t1, "T2"), "T2": rec("integer", "T0")},
                **obj({"root": {"oneOf": [{"$ref": "#/definitions/T0"}, {"$ref": "#/definitions/T1"}]}})}

    assert backward(schema("boolean", "number"), schema("integer", "boolean"))
    assert backward({**schema("integer", "boolean"), "title": "v2"}, schema("integer", "boolean")) == []


# --- drafts ----------------------------------------------------------------------------------


def test_draft_04_boolean_exclusive_bounds():
    old = {**D4, "type": "number", "minimum": 0, "exclusiveMinimum": True}
    assert backward({**D4, "type": "number", "minimum": 0}, old) == []
    only(backward(old, {**D4, "type": "number", "minimum": 0}), "lower bound")
    assert backward({"type": "number", "exclusiveMinimum": 0}, old) == []  # draft-07 reader, draft-04 writer


def test_draft_04_ignores_keywords_it_does_not_have():
    assert backward({**D4, "const": 1}, {**D4, "type": "string"}) == []  # const is not a draft-04 keyword
    with pytest.raises(JsonSchemaError):
        parse_json_schema({**D4, "properties": {"a": True}})  # no boolean schemas before draft-06


def test_id_and_dollar_id_name_the_document():
    for key, draft in (("id", D4), ("$id", {})):
        schema = {**draft, key: "http://example.com/task.json", "type": "object",
                  "properties": {"parent": {"$ref": "http://example.com/task.json"}, "n": INT}}
        wider = {**schema, "properties": {**schema["properties"], "n": {"type": "number"}}}
        assert backward(wider, schema) == []
        assert backward(schema, wider)


def test_definitions_and_defs_both_resolve():
    old = {"definitions": {"x": INT}, **obj({"a": {"$ref": "#/definitions/x"}})}
    new = {**D2020, "$defs": {"x": {"type": "number"}}, **obj({"a": {"$ref": "#/$defs/x"}})}
    assert backward(new, old) == []
    only(backward(old, new), "#/properties/a")


def test_2019_09_recursive_ref():
    def schema(n: dict) -> dict:
        return {**D2019, "$recursiveAnchor": True, "type": "object",
                "properties": {"n": n, "next": {"$recursiveRef": "#"}}}

    assert backward(schema({"type": "number"}), schema(INT)) == []
    assert backward(schema(INT), schema({"type": "number"}))


def test_2020_12_anchor_and_dynamic_ref():
    def schema(n: dict) -> dict:
        return {**D2020, "$dynamicAnchor": "node", "type": "object",
                "properties": {"n": n, "next": {"$dynamicRef": "#node"}, "same": {"$ref": "#node"}}}

    assert backward(schema({"type": "number"}), schema(INT)) == []
    assert backward(schema(INT), schema({"type": "number"}))


def test_2019_09_items_array_and_additional_items():
    old = {**D2019, "type": "array", "items": [STR, INT], "additionalItems": False}
    assert backward({**D2019, "type": "array", "items": [STR]}, old) == []
    only(backward({**D2019, "type": "array", "items": [STR], "additionalItems": STR}, old), "#/additionalItems")


def test_additional_items_without_tuple_items_is_ignored():
    assert backward({"additionalItems": False}, {"additionalItems": True}) == []


def test_draft_04_integers_exclude_integral_floats():
    # Found by fuzzing the soundness probe: 1.0 is an integer from draft-06 on, not in draft-04.
    integer = {"type": "integer"}
    assert backward({**D4, **integer}, {**D4, **integer}) == []
    only(backward({**D4, **integer}, integer), "type narrowed")
    assert backward(integer, {**D4, **integer}) == []


def test_a_conditional_is_not_split_across_a_merge():
    # 2020-12: a sibling 'else' without its own 'if' is ignored; it must not join the target's 'if'
    defs = {"$defs": {"c": {"if": {"required": ["k"]}, "then": {"required": ["v"]}}}}
    old = {**D2020, **defs, "$ref": "#/$defs/c", "else": {"required": ["e"]}}
    new = {**D2020, **defs, "$ref": "#/$defs/c"}
    assert backward(old, new) == []
    assert backward(new, old) == []
    with_if = {**old, "if": {"required": ["j"]}}  # now the sibling conditional counts
    assert backward(with_if, new)


def test_external_refs_agree_only_under_the_same_base():
    ref = {"properties": {"a": {"$ref": "common.json#/x"}}}
    assert backward({**ref, "$id": "https://a.example/s.json", "title": "v2"}, {**ref, "$id": "https://a.example/s.json"}) == []
    only(backward({**ref, "$id": "https://b.example/s.json"}, {**ref, "$id": "https://a.example/s.json"}), "external")


@pytest.mark.parametrize("schema", [
    {"definitions": {"D": {"not": {"$ref": "#/definitions/D"}}}, "$ref": "#/definitions/D"},
    {"definitions": {"D": {"allOf": [{"$ref": "#/definitions/D"}]}}, "properties": {"a": {"$ref": "#/definitions/D"}}},
    {"oneOf": [{"$ref": "#"}, {"$ref": "#"}]},
    {"anyOf": [{"$ref": "#"}, {"type": "integer"}], "type": ["integer", "string"]},
])
def test_refs_back_through_combinators_terminate(schema):
    # A $ref that loops through allOf/anyOf/oneOf/not rebuilds the same derived schema each time
    # round; the checker must meet it again as the same pair, not as a new one.
    assert backward({**schema, "title": "v2"}, schema) == []
    assert isinstance(backward(schema, {**schema, "title": "v2", "type": "string"}), list)


def test_writer_values_are_checked_against_a_reader_format():
    assert backward({"type": "string", "format": "date"}, {"enum": ["2020-01-01"]}) == []
    only(backward({"type": "string", "format": "date"}, {"enum": ["2020-01-01", "soon"]}), "'soon'", "date")


def test_merging_keeps_both_values_of_a_keyword():
    # Found by fuzzing the soundness probe: merging two allOf members with different multipleOf
    # once kept only the second; -5 is a multiple of 0.5 but not of 2.
    writer = obj({"x": {"allOf": [{"type": "integer", "maximum": 1}, {"type": "number", "multipleOf": 0.5}]}})
    reader = obj({"x": {"allOf": [{"type": "number", "multipleOf": 2}, {"type": "number", "multipleOf": 0.5}]}})
    assert backward(reader, writer)
    assert backward({"allOf": [{"pattern": "^a"}, {"pattern": "b$"}]}, {"pattern": "b$"})


def test_items_true_evaluates_every_item():
    # items: true leaves nothing to unevaluatedItems: the writer allows any rest items
    writer = {**D2020, "type": "array", "prefixItems": [STR], "items": True, "unevaluatedItems": False}
    only(backward({**D2020, "type": "array", "prefixItems": [STR], "items": False}, writer), "#/items")
    tuple_2019 = {**D2019, "type": "array", "items": [STR], "unevaluatedItems": False}  # rest unevaluated: none
    assert backward({**D2020, "type": "array", "prefixItems": [STR], "items": False}, tuple_2019) == []
    with_rest = {**tuple_2019, "additionalItems": True}
    only(backward({**D2020, "type": "array", "prefixItems": [STR], "items": False}, with_rest), "#/items")


def test_a_lone_if_still_evaluates_properties():
    writer = {**D2020, "if": {"properties": {"a": True}}, "unevaluatedProperties": False}
    only(backward({**D2020, "additionalProperties": False}, writer), "additionalProperties")
