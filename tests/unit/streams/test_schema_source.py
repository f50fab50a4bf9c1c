"""fabric_ray.streams.schema_source: local lookups, and the HTTP source's failure paths.

The HTTP source's happy path runs against the real REST API in
tests/integration/test_avro_stream.py; here MockTransport stands in only for failures.
"""

from __future__ import annotations

import pickle

import httpx
import pytest

from fabric_ray.governance.registry import SchemaRegistry
from fabric_ray.governance.registry_store import MemoryRegistryStore
from fabric_ray.streams.codec import DecoderUnavailable
from fabric_ray.streams.schema_source import (
    LocalRegistrySource,
    RegisteredSchema,
    RegistryHttpSource,
    RegistryUnavailable,
    UnknownSchemaId,
)

URL = "http://registry.test:8081/sr"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting(handler):
    """A MockTransport that records each request path."""
    seen: list[httpx.Request] = []

    def wrapped(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return httpx.MockTransport(wrapped), seen


# -- local ------------------------------------------------------------------------------------


def test_local_source_returns_registered_schemas_and_knows_unknown_ids():
    registry = SchemaRegistry(MemoryRegistryStore())
    avro_id = registry.register("a-value", '{"type": "record", "name": "A", "fields": []}')
    json_id = registry.register("j-value", '{"type": "object"}', "JSON")
    source = LocalRegistrySource(registry)
    assert source.schema(avro_id).schema_type == "AVRO"
    got = source.schema(json_id)
    assert got == RegisteredSchema(json_id, "JSON", '{"type":"object"}', ())  # the text as the registry stores it
    with pytest.raises(UnknownSchemaId) as err:
        source.schema(999)
    assert err.value.schema_id == 999 and str(err.value) == "unknown schema id 999"


def test_local_source_store_failures_are_outages_not_unknown_ids():
    class BrokenStore(MemoryRegistryStore):
        def get_schema(self, schema_id):
            raise OSError("database is locked")

    source = LocalRegistrySource(SchemaRegistry(BrokenStore()))
    with pytest.raises(RegistryUnavailable, match="database is locked") as err:
        source.schema(1)
    assert isinstance(err.value, DecoderUnavailable)


# -- HTTP failure paths -------------------------------------------------------------------------


def test_not_found_with_confluent_code_is_unknown_and_cached_briefly():
    transport, seen = counting(lambda r: httpx.Response(404, json={"error_code": 40403, "message": "Schema 42 not found"}))
    clock = Clock()
    source = RegistryHttpSource(URL, transport=transport, negative_ttl_s=5, clock=clock)
    for _ in range(3):
        with pytest.raises(UnknownSchemaId, match="unknown schema id 42"):
            source.schema(42)
    assert [r.url.path for r in seen] == ["/sr/schemas/ids/42"]
    assert seen[0].headers["accept"] == "application/vnd.schemaregistry.v1+json"
    clock.now += 5.1  # the id may have been registered since: ask again
    with pytest.raises(UnknownSchemaId):
        source.schema(42)
    assert len(seen) == 2


def test_a_404_without_the_confluent_code_is_a_wrong_url_not_bad_data():
    transport, _ = counting(lambda r: httpx.Response(404, text="<html>Not Found</html>"))
    with pytest.raises(RegistryUnavailable, match="answered 404 .*is the URL right"):
        RegistryHttpSource(URL, transport=transport).schema(1)


@pytest.mark.parametrize("status", [500, 502, 503, 401, 403, 422])
def test_other_statuses_are_outages(status):
    transport, _ = counting(lambda r: httpx.Response(status, json={"error_code": status, "message": "nope"}))
    with pytest.raises(RegistryUnavailable, match=f"answered {status} for schema id 3"):
        RegistryHttpSource(URL, transport=transport).schema(3)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out"), httpx.ConnectTimeout("timed out")],
)
def test_transport_errors_and_timeouts_are_outages(error):
    def fail(request):
        raise error

    transport, _ = counting(fail)
    with pytest.raises(RegistryUnavailable, match=f"unreachable for schema id 5: {type(error).__name__}"):
        RegistryHttpSource(URL, transport=transport).schema(5)


def test_outages_are_not_cached():
    answers = iter([httpx.Response(503), httpx.Response(503)])
    transport, seen = counting(lambda r: next(answers))
    source = RegistryHttpSource(URL, transport=transport)
    for _ in range(2):
        with pytest.raises(RegistryUnavailable):
            source.schema(8)
    assert len(seen) == 2


@pytest.mark.parametrize("body", [b"not json", b'{"id": 1}', b'["schema"]', b'{"schema": 7}'])
def test_a_200_without_schema_text_is_an_outage(body):
    transport, _ = counting(lambda r: httpx.Response(200, content=body))
    with pytest.raises(RegistryUnavailable, match="sent no schema text for schema id 1"):
        RegistryHttpSource(URL, transport=transport).schema(1)


def test_credentials_and_headers_are_sent():
    def refuse(request):
        assert request.headers["authorization"].startswith("Basic ")
        assert request.headers["x-api-key"] == "k1"
        return httpx.Response(401, json={"error_code": 40101, "message": "Unauthorized"})

    transport, seen = counting(refuse)
    source = RegistryHttpSource(URL, transport=transport, auth=("user", "secret"), headers={"X-Api-Key": "k1"})
    with pytest.raises(RegistryUnavailable, match="answered 401"):
        source.schema(1)
    assert len(seen) == 1


def test_arguments_are_checked_and_the_source_pickles_without_its_client():
    with pytest.raises(ValueError, match="must start with http"):
        RegistryHttpSource("registry:8081")
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        RegistryHttpSource(URL, timeout_s=0)
    transport, _ = counting(lambda r: httpx.Response(503))
    source = RegistryHttpSource(URL, transport=transport)
    with pytest.raises(RegistryUnavailable):
        source.schema(1)  # makes the client
    copy = pickle.loads(pickle.dumps(source))
    assert copy.url == URL and copy._client is None and copy.transport is None
    source.close()
    with RegistryHttpSource(URL) as ctx:
        assert ctx.timeout_s == 5.0
