"""Data products: validation with named problems, YAML loading, all-or-nothing apply, reading back."""

from __future__ import annotations

import dataclasses
import doctest
import json
from pathlib import Path

import pytest
import yaml

import fabric_ray.demo
from fabric_ray.governance import products as products_module
from fabric_ray.governance.products import (
    ApplyError,
    DataProduct,
    ProductError,
    apply_products,
    format_duration,
    get_product,
    list_products,
    load_products,
    parse_duration,
)
from fabric_ray.governance.registry import RegistryError, SchemaRegistry
from fabric_ray.governance.registry_store import MemoryRegistryStore, SqlRegistryStore
from fabric_ray.quality.rules import Between, InSet, NotNull

DEMO_PRODUCTS = Path(fabric_ray.demo.__file__).parent / "products"
RECORD = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": ["null", "string"], "default": None},
    ],
}


def spec(**changes) -> dict:
    base = {
        "name": "payments",
        "domain": "payments",
        "owner": "risk-team",
        "topic": "payments",
        "schema": RECORD,
        "required": ["event_id", "amount"],
        "freshness": "5m",
        "rules": [{"between": {"column": "amount", "min": 0, "max": 10000}}, {"in_set": {"column": "currency", "values": ["EUR"]}}],
        "fields": {"event_id": ["sensitive"]},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def write(folder: Path, name: str, data) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def problems_of(fn, *args, **kwargs) -> list[str]:
    with pytest.raises(ProductError) as info:
        fn(*args, **kwargs)
    assert str(info.value)  # readable as one message too
    return info.value.problems


def test_doctests_pass():
    result = doctest.testmod(products_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- the model ------------------------------------------------------------------------------------


def test_from_dict_normalises_and_defaults():
    p = DataProduct.from_dict(spec())
    assert p.subject == "payments-value"
    assert p.freshness_s == 300.0
    assert p.required == ("event_id", "amount")
    assert p.rules == (Between("amount", 0, 10000), InSet("currency", ["EUR"]))
    assert p.fields == {"event_id": ("sensitive",)}
    assert p.schema_type == "AVRO" and p.access == {} and p.description == ""


def test_round_trip_through_dict_and_json():
    p = DataProduct.from_dict(spec(access={"readers": ["fraud"]}, description="card payments"))
    again = DataProduct.from_dict(json.loads(p.to_json()))
    assert again == p and again.to_json() == p.to_json()
    assert p.to_dict()["freshness"] == "5m" and p.to_dict()["subject"] == "payments-value"


def test_declaring_in_python_parses_rule_dicts():
    p = DataProduct(
        "payments", "payments", "risk", RECORD, topic="payments", required=["amount"],
        rules=[{"not_null": "currency"}, Between("amount", 0, 1)], freshness_s=60, fields={"event_id": "pii"},
    )
    assert p.rules == (NotNull("currency"), Between("amount", 0, 1))
    assert p.required == ("amount",) and p.freshness_s == 60.0 and p.fields == {"event_id": ("pii",)}
    assert p.tagged("pii") == ("event_id",)


def test_products_are_immutable_and_do_not_share_the_input():
    schema = json.loads(json.dumps(RECORD))
    access = {"readers": ["a"]}
    p = DataProduct("p", "d", "o", schema, topic="t", access=access)
    schema["fields"].append({"name": "x", "type": "int"})
    access["readers"].append("b")
    assert len(p.schema["fields"]) == 3 and p.access == {"readers": ["a"]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "q"  # type: ignore[misc]
    assert hash(p) == hash(DataProduct("p", "d", "o", RECORD, topic="t", access={"readers": ["a"]}))


def test_subject_defaults_and_overrides():
    assert DataProduct.from_dict(spec(topic=None, dataset="s3://b/payments/")).subject == "payments-value"
    assert DataProduct.from_dict(spec(topic="pay-events")).subject == "pay-events-value"
    assert DataProduct.from_dict(spec(subject="custom")).subject == "custom"


def test_json_schema_product():
    schema = {"type": "object", "properties": {"url": {"type": "string"}, "ts": {"type": "integer"}}}
    p = DataProduct.from_dict({
        "name": "clicks", "domain": "web", "owner": "web", "dataset": "clicks", "schema_type": "json", "schema": schema,
        "required": ["url"], "rules": [{"regex": {"column": "url", "pattern": "https?://.+"}}, {"between": {"column": "ts", "min": 0}}],
    })
    assert p.schema_type == "JSON" and p.subject == "clicks-value"
    problems = problems_of(DataProduct.from_dict, {**p.to_dict(), "required": ["uri"]})
    assert problems == ["product 'clicks': required: 'uri' is not a field of the schema (fields: url, ts)"]


def test_schema_given_as_json_text():
    p = DataProduct.from_dict(spec(schema=json.dumps(RECORD)))
    assert p.schema == RECORD


# -- validation problems --------------------------------------------------------------------------


def test_every_problem_is_reported_together_naming_the_key_field_and_rule():
    bad = spec(
        name="payments",
        required=["event_id", "amount", "user_id"],
        rules=[
            {"between": {"column": "amount", "min": 10, "max": 0}},
            {"in_set": {"column": "currency", "values": ["EUR"]}},
            {"in_set": {"column": "currency", "values": ["EUR"]}},
            {"regex": {"column": "amount", "pattern": "[0-9]+"}},
            {"between": {"column": "merchant", "min": 0}},
        ],
        fields={"card": ["pii"], "event_id": ["secret"]},
        freshness="soon",
        ownr="x",
    )
    problems = problems_of(DataProduct.from_dict, bad, source="products/payments.yaml")
    assert problems == [
        "products/payments.yaml: product 'payments': ownr: unknown key (did you mean 'owner'?)",
        "products/payments.yaml: product 'payments': freshness: duration 'soon' is not a positive number of seconds "
        "or text like 30s, 5m, 1h30m, 2d",
        "products/payments.yaml: product 'payments': required: 'user_id' is not a field of the schema "
        "(fields: event_id, amount, currency)",
        "products/payments.yaml: product 'payments': rules[0]: rule between on 'amount': min 10 is greater than max 0",
        "products/payments.yaml: product 'payments': rules[2] (currency: in_set ['EUR']): declared twice",
        "products/payments.yaml: product 'payments': rules[3] (amount: regex '[0-9]+'): field 'amount' holds number, "
        "the rule needs text",
        "products/payments.yaml: product 'payments': rules[4] (merchant: >= 0): 'merchant' is not a field of the schema "
        "(fields: event_id, amount, currency)",
        "products/payments.yaml: product 'payments': fields.card: 'card' is not a field of the schema "
        "(fields: event_id, amount, currency)",
        "products/payments.yaml: product 'payments': fields.event_id: unknown tag 'secret'; allowed tags: pii, sensitive",
    ]


def test_invalid_schema_is_a_422_style_problem():
    bad = dict(RECORD, fields=[{"name": "amount", "type": "dobule"}])
    (problem,) = problems_of(DataProduct.from_dict, spec(schema=bad, required=[], rules=[], fields={}))
    assert problem == "product 'payments': schema: invalid AVRO schema (422): record 'Payment' field 'amount': unknown type 'dobule'"
    (problem,) = problems_of(DataProduct.from_dict, spec(schema={"type": "strin"}, schema_type="JSON", required=[], rules=[], fields={}))
    assert problem.startswith("product 'payments': schema: invalid JSON schema (422): invalid JSON Schema at #/type")


def test_a_schema_without_fields_cannot_name_columns():
    problems = problems_of(DataProduct.from_dict, spec(schema="string", rules=[], fields={}, required=[]))
    assert problems == ["product 'payments': schema: an AVRO schema of type 'string' has no fields; declare a record"]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": "9lives"}, "name: must start with a letter"),
        ({"owner": None}, "owner: missing"),
        ({"owner": " "}, "owner: must be a non-empty string; got ' '"),
        ({"topic": None}, "topic, dataset: declare a topic, a dataset or both"),
        ({"topic": 5}, "topic: must be a non-empty string; got 5"),
        ({"schema_type": "PROTOBUF"}, "schema_type: must be one of AVRO, JSON; got 'PROTOBUF'"),
        ({"freshness": -5}, "freshness: duration -5 is not a positive number"),
        ({"required": "event_id"}, "required: must be a list of field names; got 'event_id'"),
        ({"required": ["amount", "amount"]}, "required: 'amount' is listed twice"),
        ({"rules": {"not_null": "amount"}}, "rules: must be a list"),
        ({"rules": [{"not_nul": "amount"}]}, "rules[0]: unknown rule 'not_nul' (did you mean 'not_null'?)"),
        ({"fields": {"event_id": []}}, "fields.event_id: must be a non-empty list of tags"),
        ({"access": ["x"]}, "access: must be a mapping"),
        ({"schema": "nope.avsc"}, "schema: schema file 'nope.avsc' does not exist"),
        ({"schema": "{not json"}, "schema: inline schema text is not JSON"),
    ],
)
def test_single_problems_name_the_key(changes, problem):
    problems = problems_of(DataProduct.from_dict, spec(**changes))  # a None value drops the key
    assert any(problem in p for p in problems), problems


def test_not_a_mapping():
    assert problems_of(DataProduct.from_dict, ["x"], source="a.yaml") == [
        "a.yaml: a product is a mapping of name, domain, owner, schema, ...; got list"
    ]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25), (45, 45), (1.5, 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", ["", "5", "m", "5 m", "5min", "-5s", "0s", 0, True, None, float("nan")])
def test_bad_durations(bad):
    with pytest.raises(ValueError, match="is not a positive number of seconds"):
        parse_duration(bad)


# -- loading --------------------------------------------------------------------------------------


def test_the_demo_product_loads():
    (p,) = load_products(DEMO_PRODUCTS)
    assert (p.name, p.topic, p.subject, p.freshness_s) == ("payments", "payments", "payments-value", 300.0)
    assert set(p.tagged("pii")) == {"card_number", "email"}
    assert p.source.endswith("payments.yaml")


def test_schema_file_is_relative_to_the_yaml(tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "payment.avsc").write_text(json.dumps(RECORD))
    write(tmp_path, "p.yaml", spec(schema="schemas/payment.avsc"))
    (p,) = load_products(tmp_path)
    assert p.schema == RECORD
    assert p.to_dict()["schema"] == RECORD  # stored inline


def test_a_folder_reports_every_problem_of_every_file(tmp_path):
    write(tmp_path, "a.yaml", spec())
    write(tmp_path, "b.yml", spec(owner=None, freshness="later"))
    write(tmp_path, "c.yaml", "name: [unclosed\n")
    write(tmp_path, "d.yaml", spec(rules=[{"between": {"column": "amount", "min": 1, "max": 0}}]))
    write(tmp_path, "notes.txt", "ignored")
    problems = problems_of(load_products, tmp_path)
    assert problems[0] == f"{tmp_path / 'b.yml'}: product 'payments': owner: missing"
    assert problems[1].startswith(f"{tmp_path / 'b.yml'}: product 'payments': freshness: duration 'later'")
    assert problems[2] == f"{tmp_path / 'b.yml'}: product 'payments': duplicate name, also defined in {tmp_path / 'a.yaml'}"
    assert problems[3].startswith(f"{tmp_path / 'c.yaml'}: not valid YAML:")
    assert problems[4] == f"{tmp_path / 'd.yaml'}: product 'payments': rules[0]: rule between on 'amount': min 1 is greater than max 0"
    assert problems[5] == f"{tmp_path / 'd.yaml'}: product 'payments': duplicate name, also defined in {tmp_path / 'a.yaml'}"
    assert len(problems) == 6


def test_lists_and_documents_in_one_file(tmp_path):
    write(tmp_path, "many.yaml", [spec(name="a"), spec(name="b")])
    (tmp_path / "docs.yaml").write_text(yaml.safe_dump(spec(name="c")) + "---\n" + yaml.safe_dump(spec(name="a")))
    problems = problems_of(load_products, tmp_path)
    assert problems == [f"{tmp_path / 'many.yaml'}: product 'a': duplicate name, also defined in {tmp_path / 'docs.yaml'} (#2)"]
    (tmp_path / "docs.yaml").unlink()
    assert [p.name for p in load_products(tmp_path)] == ["a", "b"]
    assert [p.name for p in load_products(tmp_path / "many.yaml")] == ["a", "b"]


def test_empty_missing_and_scalar_inputs(tmp_path):
    assert problems_of(load_products, tmp_path) == [f"{tmp_path}: no *.yaml or *.yml files"]
    assert problems_of(load_products, tmp_path / "nope") == [f"{tmp_path / 'nope'}: no such file or folder"]
    write(tmp_path, "empty.yaml", "# nothing\n")
    write(tmp_path, "scalar.yaml", "just text\n")
    assert problems_of(load_products, tmp_path) == [
        f"{tmp_path / 'empty.yaml'}: declares no product",
        f"{tmp_path / 'scalar.yaml'}: a product is a mapping of name, domain, owner, schema, ...; got str",
    ]


# -- applying -------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryRegistryStore()
    elif request.param == "sqlite":
        s = SqlRegistryStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    else:
        s = SqlRegistryStore(request.getfixturevalue("new_postgres_database")())
    yield s
    s.close()


def snapshot(store) -> tuple:
    """Everything the store holds: schemas, versions, config and products."""
    schemas, i = [], 1
    while (row := store.get_schema(i)) is not None:
        schemas.append(row)
        i += 1
    versions = {s: store.versions(s) for s in store.subjects()}
    return schemas, versions, store.get_config(None), store.list_products()


def product(name="payments", fields=RECORD["fields"], **changes) -> DataProduct:
    return DataProduct.from_dict(spec(name=name, schema=dict(RECORD, fields=list(fields)), **changes))


def test_apply_registers_and_stores_then_is_idempotent(store):
    registry = SchemaRegistry(store)
    report = apply_products(registry, [product()])
    (r,) = report.results
    assert (r.name, r.subject, r.schema_id, r.version, r.new_version, r.spec, r.status) == (
        "payments", "payments-value", 1, 1, True, "created", "new"
    )
    assert report.changed and not report.dry_run
    assert registry.get_version("payments-value")["id"] == 1
    assert get_product(store, "payments") == product()
    (again,) = apply_products(registry, [product()]).results
    assert (again.version, again.new_version, again.spec, again.status) == (1, False, "unchanged", "unchanged")
    assert get_product(store, "nope") is None


def test_apply_compatible_evolution_and_spec_change(store):
    registry = SchemaRegistry(store)
    apply_products(registry, [product()])
    evolved = product(fields=[*RECORD["fields"], {"name": "note", "type": "string", "default": ""}], owner="new-owner")
    (r,) = apply_products(registry, [evolved]).results
    assert (r.schema_id, r.version, r.new_version, r.spec, r.status) == (2, 2, True, "updated", "updated")
    assert get_product(store, "payments").owner == "new-owner"
    (r,) = apply_products(registry, [product(owner="another")]).results  # back to v1's schema: no new version
    assert (r.schema_id, r.version, r.new_version, r.status) == (1, 1, False, "updated")


def test_dry_run_reports_and_writes_nothing(store):
    registry = SchemaRegistry(store)
    before = snapshot(store)
    report = apply_products(registry, [product(), product("refunds", topic="refunds")], dry_run=True)
    assert [(r.name, r.subject, r.schema_id, r.version, r.status) for r in report.results] == [
        ("payments", "payments-value", 1, 1, "new"), ("refunds", "refunds-value", 1, 1, "new")
    ]
    assert report.dry_run and snapshot(store) == before


def test_one_incompatible_product_leaves_everything_as_before(store, tmp_path):
    registry = SchemaRegistry(store)
    apply_products(registry, [product()])
    before = snapshot(store)
    # One good product (new) and one incompatible evolution (amount: double -> string) in one folder.
    write(tmp_path, "a_refunds.yaml", spec(name="refunds", topic="refunds"))
    incompatible = [RECORD["fields"][0], {"name": "amount", "type": "string"}, RECORD["fields"][2]]
    write(tmp_path, "b_payments.yaml", spec(schema=dict(RECORD, fields=incompatible), rules=[]))
    products = load_products(tmp_path)
    with pytest.raises(RegistryError) as info:
        apply_products(registry, products)
    err = info.value
    assert isinstance(err, ApplyError) and (err.status, err.error_code) == (409, 409)
    assert err.problems == [
        f"{tmp_path / 'b_payments.yaml'}: product 'payments': Schema being registered is incompatible with an earlier "
        "schema for subject 'payments-value': BACKWARD: new schema cannot read version 1: record 'Payment' field "
        "'amount': reader type string cannot read writer type double (TYPE_MISMATCH at /fields/1/type)"
    ]
    assert snapshot(store) == before
    assert [p.name for p in list_products(store)] == ["payments"]


def test_every_refused_product_is_named(store):
    registry = SchemaRegistry(store)
    apply_products(registry, [product(), product("refunds", topic="refunds")])
    bad_fields = [RECORD["fields"][0], {"name": "amount", "type": "string"}]
    with pytest.raises(ApplyError) as info:
        apply_products(registry, [product(fields=bad_fields, rules=[]), product("refunds", topic="refunds", fields=bad_fields, rules=[])])
    assert [p.split(":")[0] for p in info.value.problems] == ["product 'payments'", "product 'refunds'"]


def test_duplicate_names_are_refused_before_anything(store):
    with pytest.raises(ProductError, match="product 'payments': passed more than once"):
        apply_products(SchemaRegistry(store), [product(), product()])
    assert store.subjects() == []


def test_list_products_returns_products_by_name(store):
    registry = SchemaRegistry(store)
    apply_products(registry, [product("b", topic="b"), product("a", topic="a")])
    assert [p.name for p in list_products(store)] == ["a", "b"]
    assert all(isinstance(p, DataProduct) for p in list_products(store))


def test_a_stored_spec_that_no_longer_validates_is_named(store):
    store.put_product("broken", json.dumps({"name": "broken", "domain": "d", "owner": "o"}))
    problems = problems_of(list_products, store)
    assert problems == ["metadata store: product 'broken': schema: missing"]
    store.put_product("garbage", "{")
    assert problems_of(get_product, store, "garbage")[0].startswith("metadata store: product 'garbage': stored spec is not JSON")
