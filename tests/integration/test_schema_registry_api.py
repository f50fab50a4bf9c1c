"""The Confluent Schema Registry REST API (serving.registry over actors.registry) on the session Ray cluster.

Confluent's own Python client and serializers talk to it under a route prefix; raw HTTP checks
pin the error bodies, status codes and content type.
"""

from __future__ import annotations

import json
import struct
import uuid

import httpx
import pytest

from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from .conftest import registry_service

CT = "application/vnd.schemaregistry.v1+json"

PAYMENT_V1 = json.dumps({
    "type": "record", "name": "Payment", "namespace": "fabric.payments",
    "fields": [
        {"name": "user_id", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
    ],
})
PAYMENT_V2 = json.dumps({  # BACKWARD-compatible: an added field with a default
    "type": "record", "name": "Payment", "namespace": "fabric.payments",
    "fields": [
        {"name": "user_id", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "merchant", "type": "string", "default": "unknown"},
    ],
})
PAYMENT_BAD = json.dumps({  # incompatible: a new field without a default
    "type": "record", "name": "Payment", "namespace": "fabric.payments",
    "fields": [
        {"name": "user_id", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "country", "type": "string"},
    ],
})
PAYMENT_JSON = json.dumps({
    "type": "object", "title": "Payment",
    "properties": {"user_id": {"type": "integer"}, "amount": {"type": "number"}},
    "required": ["user_id", "amount"],
})


@pytest.fixture(scope="module")
def registry_url(ray_cluster, serve_port, tmp_path_factory):
    """Base URL (with route prefix) of a registry app backed by its own RegistryActor and SQLite file."""
    with registry_service(serve_port, tmp_path_factory.mktemp("registry") / "metadata.db") as url:
        yield url


@pytest.fixture
def client(registry_url) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry_url})


@pytest.fixture
def subject() -> str:
    return f"payments-{uuid.uuid4().hex[:6]}-value"


# -- Confluent's client ---------------------------------------------------------------------------


def test_client_register_read_lookup_delete(client, subject):
    schema_id = client.register_schema(subject, Schema(PAYMENT_V1, "AVRO"))
    assert schema_id >= 1
    assert client.register_schema(subject, Schema(PAYMENT_V1, "AVRO")) == schema_id  # idempotent
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version, latest.subject) == (schema_id, 1, subject)
    assert json.loads(latest.schema.schema_str) == json.loads(PAYMENT_V1)
    fresh = SchemaRegistryClient({"url": client._rest_client.base_urls[0]})  # no cache
    got = fresh.get_schema(schema_id)
    assert got.schema_type == "AVRO" and json.loads(got.schema_str) == json.loads(PAYMENT_V1)
    found = fresh.lookup_schema(subject, Schema(PAYMENT_V1, "AVRO"))
    assert (found.schema_id, found.version) == (schema_id, 1)
    assert subject in fresh.get_subjects()
    assert fresh.get_versions(subject) == [1]
    assert [v.subject for v in fresh.get_schema_versions(schema_id)] == [subject]
    assert fresh.delete_subject(subject) == [1]
    assert subject not in fresh.get_subjects()
    assert fresh.delete_subject(subject, permanent=True) == [1]
    with pytest.raises(SchemaRegistryError) as err:
        fresh.get_latest_version(subject)
    assert (err.value.http_status_code, err.value.error_code) == (404, 40401)


def test_client_compatibility_and_config(client, subject):
    client.register_schema(subject, Schema(PAYMENT_V1, "AVRO"))
    assert client.test_compatibility(subject, Schema(PAYMENT_V2, "AVRO")) is True
    assert client.test_compatibility(subject, Schema(PAYMENT_BAD, "AVRO"), version=1) is False
    assert client.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    assert client.test_compatibility(subject, Schema(PAYMENT_BAD, "AVRO")) is True
    assert client.set_compatibility(subject, "backward") == {"compatibility": "BACKWARD"}
    assert client.get_compatibility() == "BACKWARD"  # global default
    assert client.get_config(subject).compatibility_level.value == "BACKWARD"
    with pytest.raises(SchemaRegistryError) as err:
        client.set_compatibility(subject, "SIDEWAYS")
    assert (err.value.http_status_code, err.value.error_code) == (422, 42203)


def test_avro_wire_format_round_trip_and_evolution(client, subject):
    topic = subject.removesuffix("-value")
    ctx = SerializationContext(topic, MessageField.VALUE)
    record = {"user_id": 42, "amount": 12.5, "currency": "EUR"}
    ser = AvroSerializer(client, PAYMENT_V1, conf={"auto.register.schemas": True})
    payload = ser(record, ctx)
    magic, schema_id = struct.unpack(">bI", payload[:5])
    assert magic == 0
    assert schema_id == client.get_latest_version(subject).schema_id
    fresh = SchemaRegistryClient({"url": client._rest_client.base_urls[0]})
    assert AvroDeserializer(fresh)(payload, ctx) == record

    # BACKWARD evolution: an added field with a default is accepted and gets a new id and version.
    v2 = AvroSerializer(client, PAYMENT_V2, conf={"auto.register.schemas": True})
    payload2 = v2({**record, "merchant": "acme"}, ctx)
    id2 = struct.unpack(">bI", payload2[:5])[1]
    assert id2 != schema_id
    assert fresh.get_versions(subject) == [1, 2]  # (get_latest_version is cached by the client)
    assert AvroDeserializer(fresh)(payload2, ctx) == {**record, "merchant": "acme"}
    # A v2 reader reads v1 data, filling the default.
    reader = AvroDeserializer(fresh, PAYMENT_V2)
    assert reader(payload, ctx) == {**record, "merchant": "unknown"}

    # An incompatible change is refused with Confluent's 409.
    bad = AvroSerializer(client, PAYMENT_BAD, conf={"auto.register.schemas": True})
    with pytest.raises(Exception) as err:
        bad({**record, "country": "FR"}, ctx)
    cause = err.value if isinstance(err.value, SchemaRegistryError) else err.value.__cause__ or err.value.__context__
    assert isinstance(cause, SchemaRegistryError), repr(err.value)
    assert (cause.http_status_code, cause.error_code) == (409, 409)
    with pytest.raises(SchemaRegistryError) as err2:
        client.register_schema(subject, Schema(PAYMENT_BAD, "AVRO"))
    assert (err2.value.http_status_code, err2.value.error_code) == (409, 409)


def test_json_schema_round_trip(client, subject):
    ctx = SerializationContext(subject.removesuffix("-value"), MessageField.VALUE)
    ser = JSONSerializer(PAYMENT_JSON, client, conf={"auto.register.schemas": True})
    payload = ser({"user_id": 7, "amount": 3.25}, ctx)
    assert payload[0] == 0
    schema_id = struct.unpack(">I", payload[1:5])[0]
    fresh = SchemaRegistryClient({"url": client._rest_client.base_urls[0]})
    got = fresh.get_schema(schema_id)
    assert got.schema_type == "JSON"
    assert JSONDeserializer(None, schema_registry_client=fresh)(payload, ctx) == {"user_id": 7, "amount": 3.25}
    assert client.get_latest_version(subject).schema.schema_type == "JSON"


# -- raw HTTP -------------------------------------------------------------------------------------


def _post(url: str, body, **kw) -> httpx.Response:
    return httpx.post(url, content=body if isinstance(body, (bytes, str)) else json.dumps(body),
                      headers={"Content-Type": CT, **kw.pop("headers", {})}, timeout=30, **kw)


def test_http_errors_and_content_type(registry_url, subject):
    r = httpx.get(f"{registry_url}/subjects/{subject}/versions/latest", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 40401
    assert r.headers["content-type"].startswith(CT)

    r = _post(f"{registry_url}/subjects/{subject}/versions", {"schema": PAYMENT_V1})
    assert r.status_code == 200 and r.headers["content-type"].startswith(CT)
    schema_id = r.json()["id"]
    assert set(r.json()) == {"id"}

    r = httpx.get(f"{registry_url}/subjects/{subject}/versions/7", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 40402
    r = httpx.get(f"{registry_url}/subjects/{subject}/versions/zero", timeout=30)
    assert r.status_code == 422 and r.json()["error_code"] == 42202
    r = httpx.get(f"{registry_url}/schemas/ids/999999", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 40403
    r = httpx.get(f"{registry_url}/schemas/ids/{schema_id}", timeout=30)
    assert r.status_code == 200 and set(r.json()) == {"schema"}  # no schemaType for AVRO
    r = httpx.get(f"{registry_url}/subjects/{subject}/versions/1/schema", timeout=30)
    assert r.status_code == 200 and r.json() == json.loads(PAYMENT_V1)

    r = _post(f"{registry_url}/subjects/{subject}/versions", {"schema": '{"type": "record", "name": 1}'})
    assert r.status_code == 422 and r.json()["error_code"] == 42201 and r.json()["message"]
    r = _post(f"{registry_url}/subjects/{subject}/versions", {"schema": PAYMENT_V1, "schemaType": "PROTOBUF"})
    assert r.status_code == 422 and r.json()["error_code"] == 42201
    r = httpx.put(f"{registry_url}/config/{subject}", json={"compatibility": "SIDEWAYS"}, timeout=30)
    assert r.status_code == 422 and r.json()["error_code"] == 42203

    for bad in (b"{not json", b"\xff\xfe", b"[" * 100_000, b'"just a string"', b"{}"):
        r = _post(f"{registry_url}/subjects/{subject}/versions", bad)
        assert 400 <= r.status_code < 500, (bad[:20], r.status_code, r.text[:200])
        assert r.json()["message"]
    r = _post(f"{registry_url}/subjects/{subject}/versions", {"schema": "[" * 50_000 + "]" * 50_000})
    assert 400 <= r.status_code < 500 and r.json()["message"]
    r = httpx.put(f"{registry_url}/config", content=b"{oops", headers={"Content-Type": CT}, timeout=30)
    assert r.status_code == 400 and r.json()["message"]


def test_http_accepts_json_and_octet_stream(registry_url, subject):
    for ctype in ("application/json", "application/octet-stream", CT):
        r = _post(f"{registry_url}/subjects/{subject}/versions", {"schema": '"string"'}, headers={"Content-Type": ctype})
        assert r.status_code == 200, (ctype, r.text)
    r = _post(f"{registry_url}/subjects/{subject}", {"schema": '"string"'})
    assert r.status_code == 200 and r.json()["subject"] == subject and r.json()["version"] == 1


def test_http_compatibility_verbose_config_and_deletes(registry_url, subject):
    base = registry_url
    assert _post(f"{base}/subjects/{subject}/versions", {"schema": PAYMENT_V1}).status_code == 200
    r = _post(f"{base}/compatibility/subjects/{subject}/versions/latest?verbose=true", {"schema": PAYMENT_BAD})
    assert r.status_code == 200 and r.json()["is_compatible"] is False and r.json()["messages"]
    r = _post(f"{base}/compatibility/subjects/{subject}/versions/latest", {"schema": PAYMENT_V2})
    assert r.json() == {"is_compatible": True}

    r = httpx.get(f"{base}/config/{subject}", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 40408
    r = httpx.get(f"{base}/config/{subject}?defaultToGlobal=true", timeout=30)
    assert r.json() == {"compatibilityLevel": "BACKWARD"}
    r = httpx.put(f"{base}/config/{subject}", json={"compatibility": "FULL"}, timeout=30)
    assert r.json() == {"compatibility": "FULL"}
    assert httpx.get(f"{base}/config/{subject}", timeout=30).json() == {"compatibilityLevel": "FULL"}
    r = httpx.delete(f"{base}/config/{subject}", timeout=30)
    assert r.status_code == 200 and r.json()["compatibilityLevel"] == "FULL"
    r = httpx.delete(f"{base}/config/{subject}", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 40408

    assert _post(f"{base}/subjects/{subject}/versions", {"schema": PAYMENT_V2}).json()["id"]
    r = httpx.delete(f"{base}/subjects/{subject}/versions/1?permanent=true", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 40407
    assert httpx.delete(f"{base}/subjects/{subject}/versions/1", timeout=30).json() == 1
    assert httpx.get(f"{base}/subjects/{subject}/versions", timeout=30).json() == [2]
    assert httpx.get(f"{base}/subjects/{subject}/versions?deleted=true", timeout=30).json() == [1, 2]
    assert httpx.delete(f"{base}/subjects/{subject}/versions/1?permanent=true", timeout=30).json() == 1
    r = httpx.delete(f"{base}/subjects/{subject}?permanent=true", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 40405
    assert httpx.delete(f"{base}/subjects/{subject}", timeout=30).json() == [2]
    assert httpx.delete(f"{base}/subjects/{subject}?permanent=true", timeout=30).json() == [2]
    assert subject not in httpx.get(f"{base}/subjects?deleted=true", timeout=30).json()
    r = httpx.get(f"{base}/no/such/route", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 404


def test_subject_config_answers_40408_unless_default_to_global(client, registry_url, subject):
    # Confluent's client sends GET /config/{subject} without defaultToGlobal, as Confluent expects
    with pytest.raises(SchemaRegistryError) as err:
        client.get_compatibility(subject)
    assert (err.value.http_status_code, err.value.error_code) == (404, 40408)
    assert err.value.error_message == f"Subject '{subject}' does not have subject-level compatibility configured"
    r = httpx.get(f"{registry_url}/config/{subject}?defaultToGlobal=true", timeout=30)
    assert r.status_code == 200 and r.json() == {"compatibilityLevel": client.get_compatibility()}
    r = httpx.get(f"{registry_url}/config/{subject}?defaultToGlobal=false", timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == 40408
    r = httpx.get(f"{registry_url}/config", timeout=30)
    assert r.status_code == 200 and list(r.json()) == ["compatibilityLevel"]
    client.set_compatibility(subject, "FORWARD_TRANSITIVE")
    assert client.get_compatibility(subject) == "FORWARD_TRANSITIVE"
    r = httpx.get(f"{registry_url}/config/{subject}?defaultToGlobal=true", timeout=30)
    assert r.json() == {"compatibilityLevel": "FORWARD_TRANSITIVE"}  # its own level still wins
    client.delete_config(subject)
    with pytest.raises(SchemaRegistryError):
        client.get_compatibility(subject)


def test_registry_actor_on_postgresql_keeps_schemas_across_actors(ray_cluster, new_postgres_database):
    import ray
    import sqlalchemy as sa

    from actors.registry import RegistryActor

    url = new_postgres_database("pg")
    name = sa.make_url(url).database

    actor = RegistryActor.options(namespace=name).remote(url)
    assert ray.get(actor.call.remote("register", "payments-value", PAYMENT_V1)) == ("ok", 1)
    assert ray.get(actor.call.remote("register", "payments-value", PAYMENT_V2)) == ("ok", 2)
    ray.kill(actor)
    again = RegistryActor.options(namespace=name).remote(url)
    try:
        assert ray.get(again.call.remote("versions", "payments-value")) == ("ok", [1, 2])
        status, got = ray.get(again.call.remote("get_by_id", 1))
        assert status == "ok" and got["schema"] == json.dumps(json.loads(PAYMENT_V1), separators=(",", ":"))
        assert ray.get(again.call.remote("register", "other-value", '"string"')) == ("ok", 3)
    finally:
        ray.kill(again)


CURRENCY = json.dumps({"type": "enum", "name": "Currency", "namespace": "fabric.money", "symbols": ["EUR", "USD"]})
PRICED = json.dumps({
    "type": "record", "name": "Priced", "namespace": "fabric.payments",
    "fields": [{"name": "amount", "type": "double"}, {"name": "currency", "type": "fabric.money.Currency"}],
})


def test_client_schema_references_round_trip(client, registry_url, subject):
    money = f"{subject}-currency"
    assert client.register_schema(money, Schema(CURRENCY, "AVRO")) >= 1
    refs = [SchemaReference("fabric.money.Currency", money, 1)]
    priced = Schema(PRICED, "AVRO", references=refs)
    schema_id = client.register_schema(subject, priced)
    fresh = SchemaRegistryClient({"url": registry_url})
    got = fresh.get_schema(schema_id)
    assert [(r.name, r.subject, r.version) for r in got.references] == [("fabric.money.Currency", money, 1)]
    latest = fresh.get_latest_version(subject)
    assert latest.schema_id == schema_id and len(latest.schema.references) == 1
    assert fresh.lookup_schema(subject, priced).version == 1
    assert fresh.test_compatibility(subject, priced) is True
    assert fresh.get_referenced_by(money, 1) == [schema_id]

    # Confluent's serializers resolve the referenced types through the registry.
    ctx = SerializationContext(subject.removesuffix("-value"), MessageField.VALUE)
    ser = AvroSerializer(client, priced, conf={"auto.register.schemas": False, "use.latest.version": True})
    payload = ser({"amount": 9.5, "currency": "USD"}, ctx)
    assert struct.unpack(">bI", payload[:5]) == (0, schema_id)
    assert AvroDeserializer(SchemaRegistryClient({"url": registry_url}))(payload, ctx) == {"amount": 9.5, "currency": "USD"}

    # The referenced version stays while something references it (Confluent's 42206).
    with pytest.raises(SchemaRegistryError) as err:
        fresh.delete_version(money, 1)
    assert (err.value.http_status_code, err.value.error_code) == (422, 42206)
    r = _post(f"{registry_url}/subjects/{subject}/versions",
              {"schema": PRICED, "references": [{"name": "x", "subject": "no-such-subject", "version": 1}]})
    assert r.status_code == 422 and r.json()["error_code"] == 42201 and "no-such-subject" in r.json()["message"]
    r = httpx.get(f"{registry_url}/subjects/{subject}/versions/1", timeout=30)
    assert r.json()["references"] == [{"name": "fabric.money.Currency", "subject": money, "version": 1}]



def test_subjects_with_slashes_work_on_every_route(registry_url):
    """The Protobuf serializer names an import's subject after its file ("shop/money.proto");
    Confluent's client sends the slash as %2F, which reaches the routes decoded."""
    subject = f"shop-{uuid.uuid4().hex[:6]}/versions/money.proto"  # "/versions/" inside, on purpose
    fresh = SchemaRegistryClient({"url": registry_url})
    schema_id = fresh.register_schema(subject, Schema(PAYMENT_V1, "AVRO"))
    assert fresh.get_versions(subject) == [1]
    latest = fresh.get_latest_version(subject)
    assert (latest.subject, latest.version, latest.schema_id) == (subject, 1, schema_id)
    assert fresh.lookup_schema(subject, Schema(PAYMENT_V1, "AVRO")).version == 1
    assert fresh.test_compatibility(subject, Schema(PAYMENT_V1, "AVRO")) is True
    fresh.set_compatibility(subject, "FULL")
    assert fresh.get_compatibility(subject) == "FULL"
    assert subject in fresh.get_subjects()
    assert fresh.delete_version(subject, 1) == 1  # the version route, not the subject route
    assert subject not in fresh.get_subjects()
    assert fresh.delete_version(subject, 1, permanent=True) == 1
    assert httpx.get(f"{registry_url}/subjects?deleted=true").json().count(subject) == 0
