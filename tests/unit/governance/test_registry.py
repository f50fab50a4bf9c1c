"""Schema registry behaviour, one suite run against every RegistryStore backend."""

import doctest
import json

import pytest

from fabric_ray.governance import avro_format, formats, registry_store
from fabric_ray.governance import registry as registry_module
from fabric_ray.governance.registry import RegistryError, SchemaRegistry
from fabric_ray.governance.registry_store import MemoryRegistryStore, SqlRegistryStore


def record(*fields, name="Payment"):
    """A record schema as the registry stores it (Avro Java's text: compact, Avro's key order)."""
    return json.dumps({"type": "record", "name": name, "fields": list(fields)}, separators=(",", ":"))


AMOUNT = {"name": "amount", "type": "int"}
CURRENCY_DEFAULT = {"name": "currency", "type": "string", "default": "EUR"}
CURRENCY_REQUIRED = {"name": "currency", "type": "string"}
V1 = record(AMOUNT)
V2 = record(AMOUNT, CURRENCY_DEFAULT)  # backward and forward compatible with V1
V_NEW_REQUIRED = record(AMOUNT, CURRENCY_REQUIRED)  # forward but not backward compatible with V1
V_DROP_AMOUNT = record()  # backward but not forward compatible with V1 (amount has no default)


def fresh_url(backend: str, request, tmp_path) -> str:
    """A new, empty database of a SQL backend (``sqlite`` or ``postgresql``)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    return request.getfixturevalue("new_postgres_database")()


@pytest.fixture
def sql_url(request, tmp_path):
    return fresh_url(request.param, request, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request, tmp_path):
    s = MemoryRegistryStore() if request.param == "memory" else SqlRegistryStore(fresh_url(request.param, request, tmp_path))
    yield s
    s.close()


@pytest.fixture
def reg(store):
    return SchemaRegistry(store)


def raises(status, code, fn, *args, **kwargs) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        fn(*args, **kwargs)
    assert (info.value.status, info.value.error_code) == (status, code), info.value.message
    assert info.value.to_json() == {"error_code": code, "message": info.value.message}
    return info.value


def test_doctests_pass():
    for module in (registry_module, registry_store, formats, avro_format):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# -- ids and versions ---------------------------------------------------------------------------


def test_ids_are_global_and_stable(reg):
    a = reg.register("a-value", V1)
    b = reg.register("b-value", '"string"')
    assert (a, b) == (1, 2)
    assert reg.get_by_id(a)["schema"] == V1
    assert reg.get_by_id(b) == {"id": 2, "schemaType": "AVRO", "schema": '"string"', "references": []}


def test_register_is_idempotent(reg):
    first = reg.register("s", V1)
    # The same schema written with other whitespace and key order is the same text, as Avro Java writes it.
    again = reg.register("s", json.dumps({"fields": [{"type": "int", "name": "amount"}], "name": "Payment",
                                          "type": "record"}, indent=2))
    assert again == first
    assert reg.versions("s") == [1]


def test_doc_default_alias_and_logical_type_are_part_of_the_identity(reg):
    # Confluent keys identity on the text; the old Parsing Canonical Form collapsed all of these.
    variants = [
        record(AMOUNT),
        json.dumps({"type": "record", "name": "Payment", "doc": "x", "fields": [AMOUNT]}),
        record({**AMOUNT, "default": 0}),
        record({**AMOUNT, "aliases": ["amt"]}),
        record({"name": "amount", "type": {"type": "int", "logicalType": "date"}}),
    ]
    reg.set_config("NONE")
    ids = [reg.register("s", v) for v in variants]
    assert ids == [1, 2, 3, 4, 5]
    assert reg.versions("s") == [1, 2, 3, 4, 5]
    assert json.loads(reg.get_by_id(5)["schema"])["fields"][0]["type"] == {"type": "int", "logicalType": "date"}
    assert reg.register("ts", '{"type": "long", "logicalType": "timestamp-millis"}') == 6
    assert reg.get_by_id(6)["schema"] == '{"type":"long","logicalType":"timestamp-millis"}'
    assert reg.register("plain", '"long"') == 7


def test_the_same_text_in_two_subjects_keeps_each_subjects_own_text(reg):
    with_default = record(AMOUNT, CURRENCY_DEFAULT)
    without = record(AMOUNT, CURRENCY_REQUIRED)
    assert reg.register("a", with_default) == 1
    assert reg.register("b", without) == 2  # not subject a's text with its default
    assert reg.get_version("b", 1)["schema"] == without
    assert reg.register("c", with_default) == 1


def test_same_schema_two_subjects_same_id(reg):
    assert reg.register("a", V1) == reg.register("b", V1)
    assert reg.versions("a") == reg.versions("b") == [1]
    assert reg.subjects() == ["a", "b"]


def test_versions_increment_and_latest(reg):
    ids = [reg.register("s", V1), reg.register("s", V2)]
    assert ids == [1, 2]
    assert reg.versions("s") == [1, 2]
    latest = reg.get_version("s", "latest")
    assert latest == {"subject": "s", "version": 2, "id": 2, "schemaType": "AVRO", "schema": V2}
    assert reg.get_version("s", -1)["version"] == 2
    assert reg.get_version("s", "1")["schema"] == V1


def test_lookup(reg):
    reg.register("s", V1)
    reg.register("s", V2)
    assert reg.lookup("s", V1)["version"] == 1
    assert reg.lookup("s", V2) == reg.get_version("s", 2)
    raises(404, 40403, reg.lookup, "s", '"string"')
    raises(404, 40401, reg.lookup, "nope", V1)


# -- compatibility ------------------------------------------------------------------------------


def test_backward_is_default(reg):
    assert reg.get_config() == "BACKWARD" == reg.get_config("s")
    reg.register("s", V1)
    err = raises(409, 409, reg.register, "s", V_NEW_REQUIRED)
    assert "currency" in err.message and "version 1" in err.message
    assert reg.register("s", V_DROP_AMOUNT) == 2


@pytest.mark.parametrize(
    "mode, accepted, rejected",
    [
        ("FORWARD", V_NEW_REQUIRED, V_DROP_AMOUNT),
        ("FULL", V2, V_NEW_REQUIRED),
        ("NONE", V_NEW_REQUIRED, None),
    ],
)
def test_modes(reg, mode, accepted, rejected):
    reg.set_config(mode)
    reg.register("s", V1)
    if rejected is not None:
        raises(409, 409, reg.register, "s", rejected)
        assert reg.check("s", rejected)
    assert reg.check("s", accepted) == []
    assert reg.register("s", accepted) == 2
    assert reg.versions("s") == [1, 2]


def test_full_rejects_both_directions(reg):
    reg.set_config("FULL")
    reg.register("s", V1)
    assert any(p.startswith("FORWARD") for p in reg.check("s", V_DROP_AMOUNT))
    assert any(p.startswith("BACKWARD") for p in reg.check("s", V_NEW_REQUIRED))


def test_none_accepts_anything(reg):
    reg.set_config("NONE", subject="s")
    reg.register("s", V1)
    assert reg.register("s", '"string"') == 2


def test_backward_transitive_checks_whole_chain(reg):
    # Only the oldest version breaks: v1 has amount:int, v2 drops it, v3 brings it back as a string.
    v1 = record({"name": "amount", "type": "int"}, {"name": "id", "type": "string"})
    v2 = record({"name": "id", "type": "string"})
    v3 = record({"name": "amount", "type": "string", "default": ""}, {"name": "id", "type": "string"})
    reg.register("plain", v1)
    reg.register("plain", v2)
    assert reg.register("plain", v3) == 3  # BACKWARD only looks at v2
    reg.set_config("BACKWARD_TRANSITIVE", subject="chain")
    reg.register("chain", v1)
    reg.register("chain", v2)
    err = raises(409, 409, reg.register, "chain", v3)
    assert "version 1" in err.message and "version 2" not in err.message
    assert reg.check("chain", v3, version=2) == []  # a single version is checked on its own
    assert reg.check("chain", v3, version=1)


def test_check_latest_on_unknown_subject_is_compatible(reg):
    assert reg.check("nope", V1) == []
    raises(404, 40402, reg.check, "nope", V1, version=1)  # Confluent: version not found
    reg.register("s", V1)
    raises(404, 40402, reg.check, "s", V1, version=9)


def test_subject_config_overrides_global_and_falls_back(reg):
    reg.set_config("FORWARD")
    reg.set_config("NONE", subject="s")
    assert reg.get_config() == "FORWARD"
    assert reg.get_config("s") == "NONE"
    assert reg.get_config("other") == "FORWARD"
    reg.register("s", V1)
    reg.register("s", V_DROP_AMOUNT)  # not forward compatible, allowed by NONE
    assert reg.delete_config("s") == "NONE"
    assert reg.get_config("s") == "FORWARD"
    raises(409, 409, reg.register, "s", '"string"')  # latest (a record) cannot read a string
    raises(404, 40408, reg.delete_config, "s")


def test_subject_config_without_default_to_global_is_40408(reg):
    reg.set_config("FULL")
    err = raises(404, 40408, reg.get_config, "s", default_to_global=False)
    assert err.message == "Subject 's' does not have subject-level compatibility configured"
    assert reg.get_config("s", default_to_global=True) == "FULL"
    assert reg.get_config(None, default_to_global=False) == "FULL"  # the global level always answers
    reg.set_config("NONE", subject="s")
    assert reg.get_config("s", default_to_global=False) == "NONE"
    reg.delete_config("s")
    raises(404, 40408, reg.get_config, "s", default_to_global=False)


def test_set_config_normalises_case(reg):
    assert reg.set_config("full_transitive") == "FULL_TRANSITIVE"
    assert reg.get_config() == "FULL_TRANSITIVE"


def test_schema_type_change_is_incompatible(reg):
    reg.register("s", V1)
    err = raises(409, 409, reg.register, "s", '{"type": "object"}', schema_type="JSON")
    assert "JSON" in err.message


# -- deletion -----------------------------------------------------------------------------------


def test_soft_then_permanent_delete_version(reg):
    reg.register("s", V1)
    reg.register("s", V2)
    raises(404, 40407, reg.delete_version, "s", 1, permanent=True)  # not soft-deleted yet
    assert reg.delete_version("s", 1) == 1
    assert reg.versions("s") == [2]
    assert reg.versions("s", include_deleted=True) == [1, 2]
    raises(404, 40402, reg.get_version, "s", 1)
    assert reg.get_version("s", 1, include_deleted=True)["schema"] == V1
    raises(404, 40406, reg.delete_version, "s", 1)  # already soft-deleted
    assert reg.delete_version("s", 1, permanent=True) == 1
    assert reg.versions("s", include_deleted=True) == [2]
    raises(404, 40402, reg.delete_version, "s", 1, permanent=True)
    assert reg.get_by_id(1)["schema"] == V1  # ids stay valid


def test_delete_latest(reg):
    reg.register("s", V1)
    reg.register("s", V2)
    assert reg.delete_version("s", "latest") == 2
    assert reg.get_version("s", "latest")["version"] == 1


def test_version_numbers_not_reused_after_soft_delete(reg):
    reg.register("s", V1)
    reg.register("s", V2)
    reg.delete_version("s", 2)
    assert reg.register("s", V2) == 2
    assert reg.versions("s") == [1, 3]
    assert reg.get_version("s", 3)["id"] == 2  # same schema, same id, new version


def test_soft_then_permanent_delete_subject(reg):
    reg.register("s", V1)
    reg.register("s", V2)
    reg.set_config("NONE", subject="s")
    raises(404, 40405, reg.delete_subject, "s", permanent=True)
    assert reg.delete_subject("s") == [1, 2]
    assert reg.subjects() == []
    assert reg.subjects(include_deleted=True) == ["s"]
    raises(404, 40401, reg.versions, "s")
    raises(404, 40401, reg.get_version, "s", "latest")
    raises(404, 40404, reg.delete_subject, "s")  # already soft-deleted
    assert reg.delete_subject("s", permanent=True) == [1, 2]
    assert reg.subjects(include_deleted=True) == []
    assert reg.get_config("s") == "BACKWARD"  # subject config dropped with the subject
    raises(404, 40401, reg.delete_subject, "s")
    assert reg.register("s", '"string"') == 3
    assert reg.versions("s") == [1]


def test_register_after_soft_delete_skips_deleted_versions_in_checks(reg):
    reg.register("s", V1)
    reg.delete_version("s", 1)
    # V_NEW_REQUIRED is not backward compatible with V1, but V1 is no longer live.
    assert reg.register("s", V_NEW_REQUIRED) == 2
    assert reg.versions("s", include_deleted=True) == [1, 2]


# -- JSON Schema and Protobuf -------------------------------------------------------------------


OPEN = {"type": "object", "properties": {"id": {"type": "string"}}}
CLOSED = {**OPEN, "additionalProperties": False}


def test_json_schema_subjects(reg):
    first = reg.register("j", OPEN, schema_type="JSON")
    # Identity is the JSON text, compact: whitespace does not matter, key order does (unless normalized).
    same = json.dumps(OPEN, indent=4)
    assert reg.register("j", same, schema_type="json") == first
    assert reg.get_version("j", 1)["schemaType"] == "JSON"
    assert reg.lookup("j", same, schema_type="JSON")["id"] == first
    reordered = json.dumps({"properties": {"id": {"type": "string"}}, "type": "object"})
    raises(404, 40403, reg.lookup, "j", reordered, schema_type="JSON")
    assert reg.register("j", reordered, schema_type="JSON") == first + 1
    assert reg.versions("j") == [1, 2]
    # The same text as Avro and as JSON are different schemas.
    # A JSON Schema and an Avro schema never share an id.
    assert reg.register("a", '"string"') != reg.register("j2", {"type": "string"}, schema_type="JSON")


def test_json_schema_open_to_closed_rejected_under_backward(reg):
    reg.register("j", OPEN, schema_type="JSON")
    err = raises(409, 409, reg.register, "j", CLOSED, schema_type="JSON")
    assert "#" in err.message
    assert reg.check("j", CLOSED, schema_type="JSON")


def test_json_schema_closed_to_open_accepted_under_backward(reg):
    reg.register("j", CLOSED, schema_type="JSON")
    assert reg.register("j", OPEN, schema_type="JSON") == 2


def test_unknown_schema_type_refused(reg):
    err = raises(422, 42201, reg.register, "p", "<schema/>", schema_type="XML")
    assert "'XML'" in err.message and "AVRO" in err.message
    assert reg.subjects(include_deleted=True) == []


# -- error codes --------------------------------------------------------------------------------


def test_invalid_schema_422_42201(reg):
    err = raises(422, 42201, reg.register, "s", record({"name": "amount", "type": "dobule"}))
    assert "dobule" in err.message
    err = raises(422, 42201, reg.register, "j", {"type": "strin"}, schema_type="JSON")
    assert "#/type" in err.message
    raises(422, 42201, reg.register, "s", "{not json")
    raises(422, 42201, reg.register, "s", V1, schema_type="XML")
    raises(422, 42201, reg.register, "s", V1, references=[{"name": "x", "subject": "y", "version": 1}])  # unknown
    raises(422, 42201, reg.check, "s", "{not json")


def test_unknown_subject_40401(reg):
    raises(404, 40401, reg.versions, "nope")
    raises(404, 40401, reg.get_version, "nope", 1)
    raises(404, 40401, reg.delete_version, "nope", 1)
    raises(404, 40401, reg.delete_subject, "nope")


def test_unknown_version_40402(reg):
    reg.register("s", V1)
    err = raises(404, 40402, reg.get_version, "s", 2)
    assert "'s'" in err.message and "2" in err.message
    raises(404, 40402, reg.delete_version, "s", 7)


def test_unknown_schema_id_40403(reg):
    raises(404, 40403, reg.get_by_id, 1)
    reg.register("s", V1)
    raises(404, 40403, reg.get_by_id, 2)
    raises(404, 40403, reg.get_by_id, "1")


def test_invalid_compatibility_level_42203(reg):
    err = raises(422, 42203, reg.set_config, "SIDEWAYS")
    assert "SIDEWAYS" in err.message
    raises(422, 42203, reg.set_config, "SIDEWAYS", subject="s")
    assert reg.get_config() == "BACKWARD"


@pytest.mark.parametrize("bad", ["one", 0, -2, "1.5", True, "", 1.0])
def test_invalid_version_42202(reg, bad):
    reg.register("s", V1)
    raises(422, 42202, reg.get_version, "s", bad)
    raises(422, 42202, reg.delete_version, "s", bad)
    raises(422, 42202, reg.check, "s", V1, version=bad)


def test_invalid_subject(reg):
    raises(422, 42208, reg.register, "", V1)
    raises(422, 42208, reg.set_config, "NONE", subject="  ")


# -- durability ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sql_url", ["sqlite", "postgresql"], indirect=True)
def test_restart_keeps_everything(sql_url):
    store = SqlRegistryStore(sql_url)
    reg = SchemaRegistry(store)
    reg.register("a", V1)
    reg.register("a", V2)
    reg.register("b", '"string"')
    reg.set_config("FULL")
    reg.set_config("NONE", subject="b")
    reg.delete_version("a", 1)
    store.close()

    store = SqlRegistryStore(sql_url)
    reg = SchemaRegistry(store)
    assert reg.subjects() == ["a", "b"]
    assert reg.versions("a") == [2]
    assert reg.versions("a", include_deleted=True) == [1, 2]
    assert reg.get_version("a", "latest") == {"subject": "a", "version": 2, "id": 2, "schemaType": "AVRO", "schema": V2}
    assert reg.get_by_id(1)["schema"] == V1
    assert (reg.get_config(), reg.get_config("b"), reg.get_config("a")) == ("FULL", "NONE", "FULL")
    assert reg.register("a", V1) == 1  # known schema keeps its id
    assert reg.versions("a") == [2, 3]  # and version numbers continue
    assert reg.register("c", '"long"') == 4  # next id continues
    store.close()


# -- schema references (Avro) -------------------------------------------------------------------

CURRENCY_V1 = json.dumps({"type": "enum", "name": "Currency", "namespace": "fabric", "symbols": ["EUR"]})
CURRENCY_V2 = json.dumps({"type": "enum", "name": "Currency", "namespace": "fabric", "symbols": ["EUR", "USD"]})
PRICED = record({"name": "amount", "type": "int"}, {"name": "currency", "type": "fabric.Currency"}, name="Priced")


def ref(subject="currency-value", version=1, name="fabric.Currency"):
    return {"name": name, "subject": subject, "version": version}


def test_register_with_a_reference_and_read_it_back(reg):
    assert reg.register("currency-value", CURRENCY_V1) == 1
    assert reg.register("priced-value", PRICED, references=[ref()]) == 2
    assert reg.register("priced-value", PRICED, references=[ref()]) == 2  # idempotent
    got = reg.get_version("priced-value", 1)
    assert got["references"] == [ref()] and got["schema"] == PRICED and got["id"] == 2
    assert reg.get_by_id(2)["references"] == [ref()]
    assert "references" not in reg.get_version("currency-value", 1)  # none: left out, as Confluent does
    assert reg.lookup("priced-value", PRICED, references=[ref()])["version"] == 1
    raises(422, 42201, reg.lookup, "priced-value", PRICED)  # without its reference the type is unknown
    assert reg.referenced_by("currency-value", 1) == [2] and reg.referenced_by("priced-value") == []


def test_other_references_make_another_schema(reg):
    reg.register("currency-value", CURRENCY_V1)
    reg.register("currency-value", CURRENCY_V2)  # a symbol added: BACKWARD compatible
    reg.register("money-value", CURRENCY_V1)  # the same schema (id 1) under another subject
    assert reg.register("priced-value", PRICED, references=[ref(version=1)]) == 3
    assert reg.register("priced-value", PRICED, references=[ref(version=2)]) == 4
    assert reg.register("other-value", PRICED, references=[ref(subject="money-value")]) == 5
    assert reg.versions("priced-value") == [1, 2]
    assert reg.lookup("priced-value", PRICED, references=[ref(version=1)])["version"] == 1


def test_compatibility_sees_the_referenced_types(reg):
    reg.register("currency-value", CURRENCY_V1)
    reg.register("currency-value", CURRENCY_V2)
    reg.register("priced-value", PRICED, references=[ref(version=2)])  # EUR, USD
    # the same text over fewer symbols cannot read data written with USD
    problems = reg.check("priced-value", PRICED, references=[ref(version=1)])
    assert problems and "USD" in " ".join(problems)
    raises(409, 409, reg.register, "priced-value", PRICED, references=[ref(version=1)])
    reg.set_config("FORWARD", subject="priced-value")
    assert reg.check("priced-value", PRICED, references=[ref(version=1)]) == []
    assert reg.register("priced-value", PRICED, references=[ref(version=1)]) == 4


def test_references_resolve_through_chains_and_diamonds(reg):
    money = json.dumps({"type": "record", "name": "fabric.Money", "fields": [
        {"name": "amount", "type": "long"}, {"name": "currency", "type": "fabric.Currency"}]})
    reg.register("currency-value", CURRENCY_V1)
    reg.register("money-value", money, references=[ref()])
    merchant = json.dumps({"type": "record", "name": "fabric.Merchant", "fields": [
        {"name": "home", "type": "fabric.Currency"}]})
    reg.register("merchant-value", merchant, references=[ref()])
    payment = record({"name": "price", "type": "fabric.Money"}, {"name": "merchant", "type": "fabric.Merchant"})
    refs = [ref("money-value", 1, "fabric.Money"), ref("merchant-value", 1, "fabric.Merchant")]
    schema_id = reg.register("payment-value", payment, references=refs)  # Currency reached twice, defined once
    assert reg.get_by_id(schema_id)["references"] == refs
    assert reg.referenced_by("currency-value", 1) == [2, 3]


@pytest.mark.parametrize(
    "references",
    [
        {"name": "x"},
        ["fabric.Currency"],
        [{"subject": "currency-value", "version": 1}],
        [{"name": "", "subject": "currency-value", "version": 1}],
        [{"name": "fabric.Currency", "subject": "currency-value", "version": 0}],
        [{"name": "fabric.Currency", "subject": "currency-value", "version": True}],
        [{"name": "fabric.Currency", "subject": "currency-value", "version": "latest"}],
        [{"name": "fabric.Currency", "subject": "currency-value", "version": 9}],
        [{"name": "fabric.Currency", "subject": "nope", "version": 1}],
    ],
)
def test_bad_references_are_42201(reg, references):
    reg.register("currency-value", CURRENCY_V1)
    err = raises(422, 42201, reg.register, "priced-value", PRICED, references=references)
    assert "reference" in err.message
    assert reg.subjects() == ["currency-value"]


def test_references_are_avro_only_and_may_not_be_redefined(reg):
    reg.register("currency-value", CURRENCY_V1)
    err = raises(422, 42201, reg.register, "j", {"type": "string"}, schema_type="JSON", references=[ref()])
    assert "not supported for JSON" in err.message
    reg.register("json-value", {"type": "string"}, schema_type="JSON")
    err = raises(422, 42201, reg.register, "s", PRICED, references=[ref("json-value", 1)])
    assert "is JSON" in err.message
    err = raises(422, 42201, reg.register, "s", CURRENCY_V2, references=[ref()])  # defines fabric.Currency again
    assert "already defined" in err.message


def test_a_referenced_version_cannot_be_deleted_42206(reg):
    reg.register("currency-value", CURRENCY_V1)
    reg.register("priced-value", PRICED, references=[ref()])
    err = raises(422, 42206, reg.delete_version, "currency-value", 1)
    assert "'currency-value' version 1" in err.message and "[2]" in err.message
    raises(422, 42206, reg.delete_subject, "currency-value")
    assert reg.versions("currency-value") == [1]
    reg.delete_subject("priced-value")  # soft: the reference still holds
    raises(422, 42206, reg.delete_version, "currency-value", 1)
    reg.delete_subject("priced-value", permanent=True)
    assert reg.referenced_by("currency-value", 1) == []
    assert reg.delete_subject("currency-value") == [1]
    assert reg.delete_subject("currency-value", permanent=True) == [1]



def test_a_schema_sent_with_its_references_inlined_is_found_as_the_referencing_version(reg):
    """Confluent's canLookup: the resolved schema (no references) finds the version that references its types."""
    reg.register("currency-value", CURRENCY_V1)
    assert reg.register("priced-value", PRICED, references=[ref()]) == 2
    inlined = json.dumps({"type": "record", "name": "Priced", "fields": [
        {"name": "amount", "type": "int"},
        {"name": "currency", "type": json.loads(CURRENCY_V1)},
    ]})
    resolved = reg.get_version("priced-value", 1, format="resolved")["schema"]
    assert json.loads(resolved) == json.loads(inlined)
    assert reg.get_by_id(2, format="resolved")["schema"] == resolved
    assert reg.get_by_id(2)["schema"] == PRICED  # stored with the reference by name
    found = reg.lookup("priced-value", inlined)
    assert (found["id"], found["version"]) == (2, 1)
    assert reg.register("priced-value", inlined) == 2  # no new version
    assert reg.versions("priced-value") == [1]
    assert reg.register("other-value", inlined) == 3  # elsewhere it is its own text
    assert reg.get_by_id(1, format="resolved")["schema"] == reg.get_by_id(1)["schema"]  # nothing to resolve
