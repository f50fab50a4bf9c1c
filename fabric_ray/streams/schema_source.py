"""Where decoders find writer schemas by id: the fabric's registry in-process or over HTTP.

A :class:`SchemaSource` answers ``schema(schema_id) -> RegisteredSchema``. Two failures are
kept apart on purpose, because a decoder treats them in opposite ways:

* :class:`UnknownSchemaId`: the registry answered and has no such id. The messages that name it
  are bad data and are dead-lettered.
* :class:`RegistryUnavailable`: no usable answer (connection refused, timeout, 5xx, a 404 that
  is not Confluent's "schema not found", a wrong URL, bad credentials). Nothing is known about
  the messages, so the batch is retried later instead (it is a
  :class:`~fabric_ray.streams.codec.DecoderUnavailable`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol
from urllib.parse import quote

import httpx

from fabric_ray.streams.codec import DecoderUnavailable

if TYPE_CHECKING:  # the registry (and its store) is imported only where it is used
    from fabric_ray.governance.registry import SchemaRegistry

__all__ = [
    "LocalRegistrySource",
    "RegisteredSchema",
    "RegistryHttpSource",
    "RegistryUnavailable",
    "SchemaSource",
    "UnknownReference",
    "UnknownSchemaId",
]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class RegisteredSchema:
    """One schema of the registry, as ``GET /schemas/ids/{id}`` returns it.

    Attributes:
        id: the global schema id.
        schema_type: ``AVRO``, ``JSON`` or ``PROTOBUF`` (Confluent omits it for Avro).
        schema_str: the schema text.
        references: Confluent schema references (the Protobuf decoder resolves them; the others refuse them).
    """

    id: int
    schema_type: str
    schema_str: str
    references: tuple[Any, ...] = ()


class UnknownSchemaId(LookupError):
    """The registry has no schema with this id.

    Example:
        >>> str(UnknownSchemaId(42))
        'unknown schema id 42'
    """

    def __init__(self, schema_id: int) -> None:
        super().__init__(f"unknown schema id {schema_id}")
        self.schema_id = schema_id


class UnknownReference(LookupError):
    """The registry has no version ``version`` of ``subject`` (a schema reference points nowhere).

    Example:
        >>> str(UnknownReference("money", 2))
        "subject 'money' has no version 2"
    """

    def __init__(self, subject: str, version: int) -> None:
        super().__init__(f"subject {subject!r} has no version {version}")
        self.subject, self.version = subject, version


class RegistryUnavailable(DecoderUnavailable, ConnectionError):
    """The registry could not be asked (outage, timeout, misconfiguration): retry later."""


class SchemaSource(Protocol):
    """Looks up registered schemas by their global id."""

    def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema with ``schema_id``.

        Raises:
            UnknownSchemaId: the registry has no such schema.
            RegistryUnavailable: the registry could not be asked.
        """
        ...


class LocalRegistrySource:
    """Schemas straight from an in-process :class:`SchemaRegistry` (tests, code beside the registry).

    Example:
        >>> from fabric_ray.governance.registry import SchemaRegistry
        >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
        >>> registry = SchemaRegistry(MemoryRegistryStore())
        >>> sid = registry.register("t-value", '"string"')
        >>> source = LocalRegistrySource(registry)
        >>> source.schema(sid)
        RegisteredSchema(id=1, schema_type='AVRO', schema_str='"string"', references=())
        >>> source.schema(9)
        Traceback (most recent call last):
        ...
        fabric_ray.streams.schema_source.UnknownSchemaId: unknown schema id 9
    """

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

    def schema(self, schema_id: int) -> RegisteredSchema:
        from fabric_ray.governance.registry import RegistryError

        try:
            body = self.registry.get_by_id(schema_id)
        except RegistryError as exc:
            if exc.status == 404:
                raise UnknownSchemaId(schema_id) from None
            raise RegistryUnavailable(f"schema registry failed on schema id {schema_id}: {exc}") from exc
        except Exception as exc:  # the store failed (a locked SQLite file...): not the messages' fault
            raise RegistryUnavailable(f"schema registry failed on schema id {schema_id}: {type(exc).__name__}: {exc}") from exc
        return _registered(schema_id, body, "the local registry")

    def referenced(self, subject: str, version: int) -> RegisteredSchema:
        """The schema a Confluent reference ``{"subject", "version"}`` names (soft-deleted versions too).

        Raises:
            UnknownReference: the registry has no such version.
        """
        from fabric_ray.governance.registry import RegistryError

        try:
            body = self.registry.get_version(subject, version, include_deleted=True)
        except RegistryError as exc:
            if exc.status == 404:
                raise UnknownReference(subject, version) from None
            raise RegistryUnavailable(f"schema registry failed on subject {subject!r} version {version}: {exc}") from exc
        return _registered(int(body["id"]), body, "the local registry")


class RegistryHttpSource:
    """Schemas from a Confluent-compatible registry over its REST API (``GET /schemas/ids/{id}``).

    Found schemas are cached for good (ids are immutable); "not found" answers for
    ``negative_ttl_s``, so a stream full of one unknown id asks once per interval, not once per
    batch, and still sees the schema once it is registered.

    Args:
        url: base URL of the registry, e.g. ``http://127.0.0.1:8000/schema-registry``.
        timeout_s: limit for each request (connect and read).
        headers: extra request headers (an API key, say).
        auth: anything httpx takes as ``auth``; ``(user, password)`` is basic auth.
        negative_ttl_s: how long "unknown id" answers are trusted.
        transport: an httpx transport (tests use :class:`httpx.MockTransport`).
        clock: monotonic seconds, for tests.

    Picklable: the HTTP client is made on first use and dropped when pickled (with
    ``transport``), so a decoder holding this source can be shipped to a Ray actor.

    Example:
        >>> import httpx
        >>> dead = httpx.MockTransport(lambda request: httpx.Response(503, text="down for maintenance"))
        >>> RegistryHttpSource("http://registry:8081", transport=dead).schema(1)
        Traceback (most recent call last):
        ...
        fabric_ray.streams.schema_source.RegistryUnavailable: schema registry at http://registry:8081 answered 503 for schema id 1: down for maintenance
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        auth: Any = None,
        negative_ttl_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"schema registry url must start with http:// or https://; got {url!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive; got {timeout_s}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self.auth = auth
        self.negative_ttl_s = negative_ttl_s
        self.transport = transport
        self.clock = clock
        self._found: dict[int, RegisteredSchema] = {}
        self._missing_until: dict[int, float] = {}
        self._referenced: dict[tuple[str, int], RegisteredSchema] = {}
        self._client: httpx.Client | None = None

    def schema(self, schema_id: int) -> RegisteredSchema:
        found = self._found.get(schema_id)
        if found is not None:
            return found
        until = self._missing_until.get(schema_id)
        if until is not None and self.clock() < until:
            raise UnknownSchemaId(schema_id)
        where = f"schema registry at {self.url}"
        try:
            response = self._http().get(f"/schemas/ids/{int(schema_id)}")
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"{where} unreachable for schema id {schema_id}: {type(exc).__name__}: {exc}") from exc
        body = _json_body(response)
        if response.status_code == 404 and isinstance(body, dict) and body.get("error_code") == 40403:
            self._missing_until[schema_id] = self.clock() + self.negative_ttl_s
            raise UnknownSchemaId(schema_id)
        if response.status_code != 200:
            hint = " (not the registry's 'schema not found': is the URL right?)" if response.status_code == 404 else ""
            raise RegistryUnavailable(
                f"{where} answered {response.status_code} for schema id {schema_id}{hint}: {response.text[:200]}"
            )
        found = _registered(schema_id, body, where)
        self._found[schema_id] = found
        self._missing_until.pop(schema_id, None)
        return found

    def referenced(self, subject: str, version: int) -> RegisteredSchema:
        """The schema a Confluent reference names: ``GET /subjects/{subject}/versions/{version}?deleted=true``.

        Cached for good, as ids are.

        Raises:
            UnknownReference: the registry has no such version.
            RegistryUnavailable: the registry could not be asked.
        """
        key = (subject, int(version))
        found = self._referenced.get(key)
        if found is not None:
            return found
        where = f"schema registry at {self.url}"
        path = f"/subjects/{quote(subject, safe='')}/versions/{int(version)}"
        try:
            response = self._http().get(path, params={"deleted": "true"})
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"{where} unreachable for {path}: {type(exc).__name__}: {exc}") from exc
        body = _json_body(response)
        if response.status_code == 404 and isinstance(body, dict) and body.get("error_code") in (40401, 40402):
            raise UnknownReference(subject, int(version))
        if response.status_code != 200 or not isinstance(body, dict):
            raise RegistryUnavailable(f"{where} answered {response.status_code} for {path}: {response.text[:200]}")
        found = _registered(int(body.get("id", 0)), body, where)
        self._referenced[key] = found
        return found

    def close(self) -> None:
        """Close the HTTP connections (the cache stays)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> RegistryHttpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        state["transport"] = None
        return state

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url,
                timeout=self.timeout_s,
                headers={"Accept": CONTENT_TYPE, **self.headers},
                auth=self.auth,
                transport=self.transport,
            )
        return self._client


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _registered(schema_id: int, body: Any, where: str) -> RegisteredSchema:
    """A :class:`RegisteredSchema` from a ``/schemas/ids/{id}`` body; a malformed body is an outage."""
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise RegistryUnavailable(f"{where} sent no schema text for schema id {schema_id}: {str(body)[:200]}")
    references = body.get("references") or ()
    return RegisteredSchema(schema_id, str(body.get("schemaType") or "AVRO").upper(), body["schema"], tuple(references))
