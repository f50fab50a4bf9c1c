"""PROTOBUF in the schema registry: text and base64 descriptors, references (imports), well-known types, rules."""

from __future__ import annotations

import base64

import pytest
from google.protobuf import descriptor_pb2

from fabric_ray.governance.registry import RegistryError, SchemaRegistry
from fabric_ray.governance.registry_store import MemoryRegistryStore

MONEY = 'syntax = "proto3";\npackage fin;\n\nmessage Money {\n  string currency = 1;\n  int64 units = 2;\n}\n'
PAY = (
    'syntax = "proto3";\npackage shop;\n\nimport "fin/money.proto";\nimport "google/protobuf/timestamp.proto";\n\n'
    "message Payment {\n  string event_id = 1;\n  fin.Money amount = 2;\n  google.protobuf.Timestamp at = 3;\n}\n"
)
# PAY as the registry stores it: printed from the compiled schema, type names fully qualified.
PRINTED = (
    'syntax = "proto3";\npackage shop;\n\nimport "fin/money.proto";\nimport "google/protobuf/timestamp.proto";\n\n'
    "message Payment {\n  string event_id = 1;\n  .fin.Money amount = 2;\n  .google.protobuf.Timestamp at = 3;\n}\n"
)
MONEY_REF = [{"name": "fin/money.proto", "subject": "money-value", "version": 1}]


@pytest.fixture
def registry():
    r = SchemaRegistry(MemoryRegistryStore())
    assert r.register("money-value", MONEY, "PROTOBUF") == 1
    return r


def test_register_with_references_and_well_known_types(registry):
    sid = registry.register("pay-value", PAY, "PROTOBUF", MONEY_REF)
    assert registry.register("pay-value", PAY, "PROTOBUF", MONEY_REF) == sid  # idempotent
    got = registry.get_version("pay-value", "latest")
    assert (got["schemaType"], got["schema"], got["references"]) == ("PROTOBUF", PRINTED, MONEY_REF)
    assert registry.lookup("pay-value", PAY, "PROTOBUF", MONEY_REF)["version"] == 1
    # Layout and comments are not the schema: the same schema written otherwise is the same id.
    spaced = PAY.replace("message Payment {", "// payments\nmessage   Payment\n{")
    assert registry.register("pay-value", spaced, "PROTOBUF", MONEY_REF) == sid


def test_serialized_format_is_the_descriptor_confluent_clients_read(registry):
    sid = registry.register("pay-value", PAY, "PROTOBUF", MONEY_REF)
    for got in (registry.get_by_id(sid, format="serialized"),
                registry.get_version("pay-value", 1, format="serialized")):
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(base64.b64decode(got["schema"]))
        assert proto.package == "shop"
        assert list(proto.dependency) == ["fin/money.proto", "google/protobuf/timestamp.proto"]
        assert [f.type_name for f in proto.message_type[0].field] == ["", ".fin.Money", ".google.protobuf.Timestamp"]
    assert registry.get_by_id(sid)["schema"] == PRINTED  # .proto text without format


def test_a_base64_descriptor_registers_and_checks_like_text(registry):
    registry.register("pay-value", PAY, "PROTOBUF", MONEY_REF)
    serialized = registry.get_version("pay-value", 1, format="serialized")["schema"]
    assert registry.check("pay-value", serialized, schema_type="PROTOBUF", references=MONEY_REF) == []
    # The base64 form is the same schema as the text: same id, and it reads back as text.
    assert registry.register("pay-value", serialized, "PROTOBUF", MONEY_REF) == 2
    sid = registry.register("pay-copy-value", serialized, "PROTOBUF", MONEY_REF)
    assert sid == 2 and registry.get_by_id(sid)["schema"] == PRINTED
    assert registry.get_by_id(sid, format="serialized")["schema"] == serialized


def test_incompatible_change_names_subject_version_field_and_line(registry):
    registry.register("pay-value", PAY, "PROTOBUF", MONEY_REF)
    changed = PAY.replace("string event_id = 1;", "int64 event_id = 1;")
    with pytest.raises(RegistryError) as err:
        registry.register("pay-value", changed, "PROTOBUF", MONEY_REF)
    assert (err.value.status, err.value.error_code) == (409, 409)
    assert err.value.message == (
        "Schema being registered is incompatible with an earlier schema for subject 'pay-value': BACKWARD: new schema "
        "cannot read version 1: FIELD_SCALAR_KIND_CHANGED #/Payment/1: field 'event_id' (line 8 of the new schema): "
        "its scalar kind changed, from string to int64, which is not wire-compatible"
    )


def test_a_changed_referenced_type_is_compared_member_by_member(registry):
    registry.register("pay-value", PAY, "PROTOBUF", MONEY_REF)
    registry.set_config("NONE", "money-value")
    assert registry.register("money-value", MONEY.replace("int64 units", "string units"), "PROTOBUF") == 3
    refs2 = [{**MONEY_REF[0], "version": 2}]
    problems = registry.check("pay-value", PAY, schema_type="PROTOBUF", references=refs2)
    assert problems == [
        "BACKWARD: new schema cannot read version 1: FIELD_SCALAR_KIND_CHANGED #/Money/2: field 'units': its scalar "
        "kind changed, from int64 to string, which is not wire-compatible",
        "BACKWARD: new schema cannot read version 1: FIELD_NAMED_TYPE_CHANGED #/Payment/2: field 'amount' (line 9 of "
        "the new schema): its type fin.Money changed incompatibly",
    ]


def test_compatible_evolution_is_accepted(registry):
    registry.set_config("FULL_TRANSITIVE", "pay-value")
    registry.register("pay-value", PAY, "PROTOBUF", MONEY_REF)
    v2 = PAY.replace("}\n", "  repeated string tags = 4;\n  optional string note = 5;\n}\n")
    assert registry.register("pay-value", v2, "PROTOBUF", MONEY_REF) == 3
    assert registry.versions("pay-value") == [1, 2]


def test_schema_that_does_not_compile_is_422_with_its_line(registry):
    with pytest.raises(RegistryError) as err:
        registry.register("bad-value", 'syntax = "proto3";\nmessage A {\n  Nope n = 1;\n}\n', "PROTOBUF")
    assert (err.value.status, err.value.error_code) == (422, 42201)
    assert err.value.message == 'Invalid PROTOBUF schema: schema.proto line 3: "Nope" is not defined.'


def test_missing_import_and_a_reference_of_another_type_are_refused(registry):
    with pytest.raises(RegistryError, match=r'Invalid PROTOBUF schema: fin/money.proto: File not found'):
        registry.register("pay-value", PAY, "PROTOBUF")
    registry.register("avro-value", '"string"')
    with pytest.raises(RegistryError, match="reference 'fin/money.proto' is a AVRO schema; a PROTOBUF schema can only import"):
        registry.register("pay-value", PAY, "PROTOBUF", [{"name": "fin/money.proto", "subject": "avro-value", "version": 1}])
