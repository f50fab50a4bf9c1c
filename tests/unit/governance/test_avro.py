"""Avro schema validation, canonical form, resolution and compatibility modes."""

import doctest
import json

import pytest

from fabric_ray.governance import avro
from fabric_ray.governance.avro import (
    AvroSchemaError,
    Compatibility,
    canonical_form,
    check_compatibility,
    check_mode,
    parse_avro,
)


def record(name, *fields, **extra):
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def fld(name, type_, **extra):
    return {"name": name, "type": type_, **extra}


def enum(name, symbols, **extra):
    return {"type": "enum", "name": name, "symbols": symbols, **extra}


def fixed(name, size, **extra):
    return {"type": "fixed", "name": name, "size": size, **extra}


def test_doctests_pass():
    result = doctest.testmod(avro)
    assert result.attempted > 0 and result.failed == 0


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prim", ["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
def test_primitives_parse_as_name_json_text_and_object(prim):
    assert parse_avro(prim).type == prim
    assert parse_avro(json.dumps(prim)).type == prim
    assert parse_avro({"type": prim}).type == prim


def test_record_fields_defaults_aliases_and_logical_types_are_carried():
    s = parse_avro(record(
        "Payment",
        fld("amount", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}),
        fld("note", ["null", "string"], default=None, aliases=["memo"]),
        namespace="com.acme", aliases=["Charge"],
    ))
    assert s.name == "com.acme.Payment" and s.short_name == "Payment"
    assert s.aliases == ("com.acme.Charge",)
    amount, note = s.fields
    assert amount.type.logical_type == "decimal" and amount.type.props == {"precision": 9, "scale": 2}
    assert not amount.has_default
    assert note.has_default and note.default is None and note.aliases == ("memo",)
    assert [b.type for b in note.type.branches] == ["null", "string"]


def test_nested_types_inherit_namespace_and_can_be_referenced_later():
    s = parse_avro(record(
        "Order",
        fld("status", enum("Status", ["NEW", "DONE"])),
        fld("previous", "Status"),
        fld("full", "shop.Status"),
        fld("hash", fixed("Hash", 4, namespace="other")),
        fld("hash2", "other.Hash"),
        namespace="shop",
    ))
    status, previous, full, hash_, hash2 = s.fields
    assert status.type.name == "shop.Status"
    assert previous.type is status.type and full.type is status.type
    assert hash_.type.name == "other.Hash" and hash2.type is hash_.type


def test_dotted_name_overrides_namespace():
    s = parse_avro(record("a.b.R", namespace="ignored"))
    assert s.name == "a.b.R"


def test_enum_default_and_array_map_parse():
    s = parse_avro(record(
        "R",
        fld("suit", enum("Suit", ["A", "B"], default="A")),
        fld("tags", {"type": "array", "items": "string"}, default=["x"]),
        fld("counts", {"type": "map", "values": "long"}, default={"a": 1}),
    ))
    assert s.fields[0].type.enum_default == "A"
    assert s.fields[1].type.items.type == "string"
    assert s.fields[2].type.values.type == "long"


def test_linked_list_parses_recursively():
    s = parse_avro(record("Node", fld("value", "int"), fld("next", ["null", "Node"], default=None)))
    assert s.fields[1].type.branches[1] is s


@pytest.mark.parametrize(
    "schema, message",
    [
        (record("Payment", fld("amount", "dobule")), "record 'Payment' field 'amount': unknown type 'dobule'"),
        ("dobule", "schema: unknown type 'dobule'"),
        (record("R", fld("a", "int"), fld("a", "long")), "record 'R': duplicate field 'a'"),
        (record("R", fld("a", "int", default="zero")), "record 'R' field 'a': default 'zero' does not match type int"),
        (record("R", fld("a", "int", default=2**31)), "field 'a': default 2147483648 does not match type int"),
        (record("R", fld("a", "boolean", default=0)), "field 'a': default 0 does not match type boolean"),
        (record("R", fld("a", ["null", "string"], default="x")),
         "record 'R' field 'a': default 'x' does not match the first union branch null"),
        (record("R", fld("a", fixed("F", 2), default="abc")), "field 'a': default 'abc' does not match type fixed 'F'"),
        (record("R", fld("a", enum("E", ["X"]), default="Y")), "field 'a': default 'Y' does not match type enum 'E'"),
        (record("R", fld("a", record("In", fld("b", "int")), default={})),
         "field 'a': default {} does not match type record 'In'"),
        (enum("Suit", ["OK", "1X"]), "enum 'Suit': symbol '1X' is not a valid Avro name"),
        (enum("Suit", ["A", "A"]), "enum 'Suit': duplicate symbol 'A'"),
        (enum("Suit", ["A"], default="B"), "enum 'Suit': default 'B' is not one of the symbols"),
        (["null", "string", "null"], "schema: union has duplicate branch 'null'"),
        ([{"type": "array", "items": "int"}, {"type": "array", "items": "long"}], "union has duplicate branch 'array'"),
        ([fixed("F", 1), fixed("F2", 1), "F"], "union has duplicate branch 'F'"),
        (["null", ["int"]], "union branch 1 is itself a union"),
        ({"type": "record", "fields": []}, "schema: record has no 'name'"),
        ({"type": "enum", "symbols": ["A"]}, "schema: enum has no 'name'"),
        ({"type": "fixed", "size": 4}, "schema: fixed has no 'name'"),
        (fixed("F", -1), "fixed 'F': 'size' must be a non-negative integer; got -1"),
        (record("R", fld("a", "int"), {"name": "b"}), "record 'R' field 'b': field has no 'type'"),
        (record("R", fld("a", {"type": "array"})), "field 'a': array has no 'items'"),
        (record("1R"), "record name '1R' is not a valid Avro name"),
        (record("int"), "may not be named after primitive type 'int'"),
        (record("R", fld("a", record("R"))), "record name 'R' is already defined"),
        (record("R", fld("a", "record")), "type 'record' must be written as an object"),
        (record("R", fld("a", "Later")), "field 'a': unknown type 'Later'"),
        ({"name": "x"}, "schema: object has no 'type'"),
        (5, "expected a type name, object or list; got 5"),
        ("{not json", "schema: not valid JSON"),
    ],
)
def test_invalid_schemas_name_the_culprit(schema, message):
    with pytest.raises(AvroSchemaError) as exc:
        parse_avro(schema)
    assert message in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_valid_defaults_are_accepted():
    s = parse_avro(record(
        "R",
        fld("f", "float", default=1),
        fld("d", "double", default=1.5),
        fld("l", "long", default=2**40),
        fld("b", "bytes", default="\u00ff"),
        fld("fx", fixed("F", 2), default="ab"),
        fld("u", ["string", "null"], default="x"),
        fld("rec", record("In", fld("x", "int"), fld("y", "int", default=0)), default={"x": 1}),
    ))
    assert [f.has_default for f in s.fields] == [True] * 7


# --- canonical form --------------------------------------------------------------------------


def test_canonical_primitive_forms_agree():
    assert canonical_form("int") == canonical_form({"type": "int"}) == canonical_form('"int"') == '"int"'
    assert canonical_form({"type": "long", "logicalType": "timestamp-millis"}) == '"long"'


def test_canonical_strips_attributes_orders_keys_and_keeps_field_order():
    schema = {
        "doc": "a payment", "fields": [
            {"type": "string", "name": "z", "doc": "last letter", "default": "q"},
            {"name": "a", "type": {"values": "int", "type": "map"}, "aliases": ["b"]},
        ],
        "type": "record", "namespace": "com.acme", "name": "Payment", "aliases": ["P"],
    }
    assert canonical_form(schema) == (
        '{"name":"com.acme.Payment","type":"record","fields":['
        '{"name":"z","type":"string"},{"name":"a","type":{"type":"map","values":"int"}}]}'
    )


def test_canonical_uses_full_names_and_refers_to_defined_types_by_name():
    schema = record("R", fld("e", enum("E", ["A", "B"])), fld("e2", "E"), fld("l", {"type": "array", "items": "E"}),
                    namespace="ns")
    assert canonical_form(schema) == (
        '{"name":"ns.R","type":"record","fields":[{"name":"e","type":{"name":"ns.E","type":"enum","symbols":["A","B"]}},'
        '{"name":"e2","type":"ns.E"},{"name":"l","type":{"type":"array","items":"ns.E"}}]}'
    )


def test_canonical_recursive_and_union():
    node = record("Node", fld("next", ["null", "Node"]))
    assert canonical_form(node) == '{"name":"Node","type":"record","fields":[{"name":"next","type":["null","Node"]}]}'
    assert canonical_form(["null", {"type": "string"}]) == '["null","string"]'


def test_canonical_differs_for_different_schemas():
    assert canonical_form(record("R", fld("a", "int"))) != canonical_form(record("R", fld("a", "long")))
    assert canonical_form(record("R", fld("a", "int"), fld("b", "int"))) != canonical_form(
        record("R", fld("b", "int"), fld("a", "int")))


# --- schema resolution -----------------------------------------------------------------------


@pytest.mark.parametrize("prim", ["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
def test_same_primitive_is_compatible(prim):
    assert check_compatibility(prim, prim) == []


PROMOTIONS = [("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
              ("float", "double"), ("string", "bytes"), ("bytes", "string")]


@pytest.mark.parametrize("writer, reader", PROMOTIONS)
def test_allowed_promotions(writer, reader):
    assert check_compatibility(reader, writer) == []


@pytest.mark.parametrize("writer, reader", [(w, r) for r, w in PROMOTIONS if (w, r) not in PROMOTIONS])
def test_reverse_promotions_fail(writer, reader):
    assert check_compatibility(reader, writer) == [
        f"schema: reader type {reader} cannot read writer type {writer}"]


def test_type_mismatch_in_field_names_the_path():
    reader = record("Payment", fld("amount", "int"))
    writer = record("Payment", fld("amount", "string"))
    assert check_compatibility(reader, writer) == [
        "record 'Payment' field 'amount': reader type int cannot read writer type string"]


def test_reader_field_without_default_missing_from_writer():
    reader = record("P", fld("a", "int"), fld("b", "int"))
    writer = record("P", fld("a", "int"))
    assert check_compatibility(reader, writer) == [
        "record 'P' field 'b': reader field is missing from the writer and has no default"]
    reader_with_default = record("P", fld("a", "int"), fld("b", "int", default=0))
    assert check_compatibility(reader_with_default, writer) == []


def test_writer_fields_missing_from_reader_are_ignored():
    assert check_compatibility(record("P", fld("a", "int")), record("P", fld("a", "int"), fld("extra", "string"))) == []


def test_record_name_mismatch():
    assert check_compatibility(record("A"), record("B")) == [
        "schema: record name 'A' (reader) does not match 'B' (writer)"]


def test_record_matched_by_reader_alias_and_unqualified_name():
    assert check_compatibility(record("New", aliases=["Old"]), record("Old")) == []
    assert check_compatibility(record("New", aliases=["x.Old"], namespace="y"), record("x.Old")) == []
    assert check_compatibility(record("a.R"), record("b.R")) == []  # spec 1.11: unqualified names
    assert check_compatibility(record("Old"), record("New", aliases=["Old"])) != []  # writer aliases don't count


def test_field_matched_by_reader_alias():
    reader = record("P", fld("total", "long", aliases=["amount"]))
    writer = record("P", fld("amount", "int"))
    assert check_compatibility(reader, writer) == []
    assert check_compatibility(record("P", fld("total", "long")), writer) == [
        "record 'P' field 'total': reader field is missing from the writer and has no default"]


def test_nested_record_problem_names_full_path():
    reader = record("Outer", fld("inner", record("Inner", fld("x", "int"), fld("y", "int"))))
    writer = record("Outer", fld("inner", record("Inner", fld("x", "long"))))
    assert check_compatibility(reader, writer) == [
        "record 'Outer' field 'inner' record 'Inner' field 'x': reader type int cannot read writer type long",
        "record 'Outer' field 'inner' record 'Inner' field 'y': reader field is missing from the writer and has no default",
    ]


def test_enum_missing_symbol_and_reader_default_escape():
    writer = enum("Suit", ["HEARTS", "SPADES", "CLUBS"])
    assert check_compatibility(enum("Suit", ["HEARTS", "SPADES"]), writer) == [
        "enum 'Suit': writer symbols ['CLUBS'] are missing from the reader, which has no default"]
    assert check_compatibility(enum("Suit", ["HEARTS", "SPADES"], default="HEARTS"), writer) == []
    assert check_compatibility(enum("Suit", ["HEARTS", "SPADES", "CLUBS", "DIAMONDS"]), writer) == []


def test_enum_name_mismatch():
    assert check_compatibility(enum("A", ["X"]), enum("B", ["X"])) == [
        "schema: enum name 'A' (reader) does not match 'B' (writer)"]


def test_fixed_size_and_name_mismatch():
    assert check_compatibility(fixed("F", 16), fixed("F", 8)) == ["fixed 'F': fixed size 16 (reader) does not match 8 (writer)"]
    assert check_compatibility(fixed("F", 8), fixed("G", 8)) == [
        "schema: fixed name 'F' (reader) does not match 'G' (writer)"]
    assert check_compatibility(fixed("F", 8), fixed("F", 8)) == []


def test_arrays_and_maps_check_items_and_values():
    arr = lambda t: {"type": "array", "items": t}  # noqa: E731
    mp = lambda t: {"type": "map", "values": t}  # noqa: E731
    assert check_compatibility(arr("long"), arr("int")) == []
    assert check_compatibility(arr("int"), arr("long")) == ["items: reader type int cannot read writer type long"]
    assert check_compatibility(mp("double"), mp("float")) == []
    assert check_compatibility(mp("string"), mp("int")) == ["values: reader type string cannot read writer type int"]
    assert check_compatibility(arr("int"), mp("int")) == [
        "schema: reader type array<int> cannot read writer type map<int>"]


def test_writer_union_branch_missing_from_reader_union():
    assert check_compatibility(["null", "string"], ["null", "string", "int"]) == [
        "writer branch int: writer type int matches no branch of reader union[null, string]"]
    assert check_compatibility(["null", "string", "long"], ["null", "string", "int"]) == []  # int promotes to long


def test_writer_union_against_reader_non_union():
    assert check_compatibility("long", ["int", "long"]) == []
    assert check_compatibility("string", ["null", "string"]) == [
        "writer branch null: reader type string cannot read writer type null"]


def test_reader_union_with_writer_non_union():
    assert check_compatibility(["null", "string"], "string") == []
    assert check_compatibility(["null", "double"], "int") == []
    assert check_compatibility(["null", "string"], "int") == [
        "schema: writer type int matches no branch of reader union[null, string]"]


def test_reader_union_reports_why_the_same_named_branch_failed():
    reader = ["null", record("R", fld("a", "int"), fld("b", "int"))]
    assert check_compatibility(reader, record("R", fld("a", "int"))) == [
        "record 'R' field 'b': reader field is missing from the writer and has no default"]


def test_recursive_linked_list_terminates():
    v1 = record("Node", fld("value", "int"), fld("next", ["null", "Node"], default=None))
    v2 = record("Node", fld("value", "long"), fld("next", ["null", "Node"], default=None))
    assert check_compatibility(v2, v1) == []
    assert check_compatibility(v1, v2) == [
        "record 'Node' field 'value': reader type int cannot read writer type long"]


def test_mutually_recursive_types_terminate():
    tree = record("Tree", fld("children", {"type": "array", "items": record(
        "Branch", fld("tree", ["null", "Tree"]), fld("w", "int"))}))
    assert check_compatibility(tree, tree) == []


def test_logical_types_resolve_on_their_underlying_type():
    assert check_compatibility({"type": "long", "logicalType": "timestamp-millis"}, "int") == []


def test_invalid_schema_in_compatibility_check_raises():
    with pytest.raises(AvroSchemaError, match="unknown type 'strng'"):
        check_compatibility("string", "strng")


# --- compatibility modes ---------------------------------------------------------------------

A = record("User", fld("id", "long"))
B = record("User", fld("id", "long"), fld("email", "string", default=""))
C = record("User", fld("email", "string", default=""), fld("name", "string", default="?"), fld("id", "long"))
# C2 drops the default on email: reads B (which has email) but not A (which lacks it).
C2 = record("User", fld("id", "long"), fld("email", "string"))


def test_backward_checks_only_latest_and_transitive_checks_all():
    assert check_mode(Compatibility.BACKWARD, C2, [A, B]) == []
    problems = check_mode(Compatibility.BACKWARD_TRANSITIVE, C2, [A, B])
    assert problems == [
        "BACKWARD: new schema cannot read version 0: record 'User' field 'email': "
        "reader field is missing from the writer and has no default"]


def test_backward_compatible_evolution_passes_transitively():
    assert check_mode("BACKWARD_TRANSITIVE", C, [A, B]) == []


def test_forward_new_field_without_default_is_ok_but_removal_without_default_is_not():
    assert check_mode("FORWARD", C2, [A]) == []  # old reader ignores the added field
    problems = check_mode("FORWARD", A, [C2])
    assert problems == [
        "FORWARD: version 0 cannot read the new schema: record 'User' field 'email': "
        "reader field is missing from the writer and has no default"]


def test_forward_transitive():
    # D drops email; B (the latest) has a default for email, C2 does not.
    d = record("User", fld("id", "long"))
    assert check_mode("FORWARD", d, [C2, B]) == []
    assert len(check_mode("FORWARD_TRANSITIVE", d, [C2, B])) == 1


def test_full_requires_both_directions():
    assert check_mode("FULL", B, [A]) == []
    problems = check_mode("FULL", C2, [A])
    assert len(problems) == 1 and problems[0].startswith("BACKWARD: new schema cannot read version 0")
    widened = record("User", fld("id", "double"))
    problems = check_mode("FULL", widened, [A])
    assert problems == ["FORWARD: version 0 cannot read the new schema: record 'User' field 'id': "
                        "reader type long cannot read writer type double"]


def test_full_transitive():
    assert check_mode("FULL", C2, [A, B]) == []
    assert len(check_mode("FULL_TRANSITIVE", C2, [A, B])) == 1


def test_none_and_empty_history_always_pass():
    assert check_mode(Compatibility.NONE, "string", [A, B]) == []
    assert check_mode("BACKWARD", "string", []) == []
    assert check_mode("BACKWARD", "string", [A]) != []


def test_unknown_mode_names_it():
    with pytest.raises(ValueError, match="unknown compatibility mode 'SIDEWAYS'"):
        check_mode("SIDEWAYS", A, [A])


def test_check_mode_accepts_any_pair_checker():
    calls = []

    def checker(reader, writer):
        calls.append((reader, writer))
        return ["bad"] if (reader, writer) == ("new", "v0") else []

    assert check_mode("FULL_TRANSITIVE", "new", ["v0", "v1"], checker=checker) == [
        "BACKWARD: new schema cannot read version 0: bad"]
    assert calls == [("new", "v0"), ("v0", "new"), ("new", "v1"), ("v1", "new")]
