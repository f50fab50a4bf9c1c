"""A schema registry with the behaviour of the Confluent Schema Registry, as plain Python.

Methods mirror the REST API (``POST /subjects/{s}/versions`` is :meth:`SchemaRegistry.register`,
``GET /schemas/ids/{id}`` is :meth:`SchemaRegistry.get_by_id`, and so on) and every failure is a
:class:`RegistryError` carrying Confluent's HTTP status and error code, so an HTTP shell only has
to route requests and serialise results. Avro and JSON Schema are accepted; Protobuf is refused
until compatibility checks for it exist. Schema references are not supported yet.

Example:
    >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
    >>> registry = SchemaRegistry(MemoryRegistryStore())
    >>> v1 = '{"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "int"}]}'
    >>> registry.register("payments-value", v1)
    1
    >>> registry.register("payments-value", v1)  # idempotent
    1
    >>> registry.register("payments-value",
    ...     '{"type": "record", "name": "Payment", "fields": [{"name": "currency", "type": "string"}]}')
    Traceback (most recent call last):
    ...
    fabric_ray.governance.registry.RegistryError: 409/409: Schema being registered is incompatible with an earlier schema for subject 'payments-value': BACKWARD: new schema cannot read version 1: record 'Payment' field 'currency': reader field is missing from the writer and has no default
    >>> registry.get_version("payments-value", "latest")["version"]
    1
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from fabric_ray.governance import avro, json_schema
from fabric_ray.governance.registry_store import RegistryStore, SubjectVersion

__all__ = ["DEFAULT_COMPATIBILITY", "SCHEMA_TYPES", "RegistryError", "SchemaRegistry"]

DEFAULT_COMPATIBILITY = avro.Compatibility.BACKWARD.value
SCHEMA_TYPES = ("AVRO", "JSON")


class RegistryError(Exception):
    """A registry failure with Confluent's HTTP ``status`` and ``error_code``.

    Example:
        >>> RegistryError(404, 40401, "Subject 'x' not found").to_json()
        {'error_code': 40401, 'message': "Subject 'x' not found"}
    """

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(f"{status}/{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """The body Confluent sends with this error."""
        return {"error_code": self.error_code, "message": self.message}


def _subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject {subject!r} not found")


def _version_not_found(subject: str, version: Any) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version!r} not found for subject {subject!r}")


class _Parsed:
    """A validated candidate schema: its type, identity text, original text and compatibility checker."""

    def __init__(self, schema: Any, schema_type: str) -> None:
        if not isinstance(schema_type, str) or schema_type.upper() not in SCHEMA_TYPES + ("PROTOBUF",):
            raise RegistryError(
                422, 42201, f"Invalid schema type {schema_type!r}; expected one of {', '.join(SCHEMA_TYPES)}"
            )
        self.schema_type = schema_type.upper()
        if self.schema_type == "PROTOBUF":
            raise RegistryError(
                422, 42201,
                "Schema type 'PROTOBUF' is refused: Protobuf is accepted only once compatibility checks for it "
                "exist, and they do not yet",
            )
        self.original = schema if isinstance(schema, str) else json.dumps(schema)
        try:
            if self.schema_type == "AVRO":
                self.tree: Any = avro.parse_avro(schema)
                self.canonical = avro.canonical_form(self.tree)
            else:
                self.tree = json_schema.parse_json_schema(schema)
                self.canonical = json.dumps(self.tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (avro.AvroSchemaError, json_schema.JsonSchemaError) as exc:
            raise RegistryError(422, 42201, f"Invalid {self.schema_type} schema: {exc}") from None

    @property
    def checker(self) -> Callable[[Any, Any], list[str]]:
        return avro.check_compatibility if self.schema_type == "AVRO" else json_schema.check_compatibility


class SchemaRegistry:
    """Subjects, versions, global schema ids and compatibility rules over a :class:`RegistryStore`.

    Args:
        store: where schemas, versions and config live (memory or SQLite).

    Version arguments accept a positive int, its decimal string, ``"latest"`` or ``-1`` (latest).
    """

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self._lock = threading.Lock()  # register is check-then-write; keep it atomic in-process

    # -- registering and reading ----------------------------------------------------------------

    def register(self, subject: str, schema: Any, schema_type: str = "AVRO", references: list | None = None) -> int:
        """Register ``schema`` under ``subject``; return its global id.

        Idempotent: a schema already live under the subject returns its id without a new version.
        The same schema (same canonical form) under another subject gets the same id.

        Raises:
            RegistryError: 422/42201 invalid schema, unknown type, Protobuf or references;
                409/409 incompatible with the subject's history under its compatibility level.

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> r = SchemaRegistry(MemoryRegistryStore())
            >>> r.register("a", '"string"'), r.register("b", {"type": "string"})
            (1, 1)
        """
        _check_subject(subject)
        if references:
            raise RegistryError(422, 42201, f"Schema references are not supported yet; got {references!r}")
        parsed = _Parsed(schema, schema_type)
        with self._lock:
            live = self._live(subject)
            schema_id = self.store.find_schema(parsed.schema_type, parsed.canonical)
            if schema_id is not None and any(row.schema_id == schema_id for row in live):
                return schema_id
            problems = self._problems(subject, parsed, live)
            if problems:
                raise RegistryError(
                    409, 409,
                    f"Schema being registered is incompatible with an earlier schema for subject {subject!r}: "
                    + "; ".join(problems),
                )
            return self.store.add_version(subject, parsed.schema_type, parsed.canonical, parsed.original, "[]").schema_id

    def subjects(self, include_deleted: bool = False) -> list[str]:
        """Subjects with a live version (with ``include_deleted``: also fully soft-deleted ones), sorted."""
        return [s for s in self.store.subjects() if include_deleted or self._live(s)]

    def versions(self, subject: str, include_deleted: bool = False) -> list[int]:
        """Version numbers of ``subject``, oldest first. Raises 404/40401 for an unknown subject."""
        rows = [r for r in self.store.versions(subject) if include_deleted or not r.deleted]
        if not rows:
            raise _subject_not_found(subject)
        return [r.version for r in rows]

    def get_version(self, subject: str, version: int | str = "latest", include_deleted: bool = False) -> dict[str, Any]:
        """``{"subject", "version", "id", "schemaType", "schema"}`` of one version.

        Raises:
            RegistryError: 422/42202 bad version, 404/40401 unknown subject, 404/40402 unknown version.
        """
        return self._describe(self._row(subject, version, include_deleted))

    def get_by_id(self, schema_id: int) -> dict[str, Any]:
        """``{"id", "schemaType", "schema", "references"}`` for a global id; 404/40403 when unknown.

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> SchemaRegistry(MemoryRegistryStore()).get_by_id(7)
            Traceback (most recent call last):
            ...
            fabric_ray.governance.registry.RegistryError: 404/40403: Schema 7 not found
        """
        stored = self.store.get_schema(schema_id) if isinstance(schema_id, int) else None
        if stored is None:
            raise RegistryError(404, 40403, f"Schema {schema_id!r} not found")
        return {
            "id": stored.id, "schemaType": stored.schema_type, "schema": stored.original,
            "references": json.loads(stored.references),
        }

    def lookup(self, subject: str, schema: Any, schema_type: str = "AVRO") -> dict[str, Any]:
        """Which live version of ``subject`` holds ``schema`` (``POST /subjects/{subject}``).

        Raises:
            RegistryError: 404/40401 unknown subject, 404/40403 schema not under the subject,
                422/42201 invalid schema.
        """
        parsed = _Parsed(schema, schema_type)
        live = self._live(subject)
        if not live:
            raise _subject_not_found(subject)
        schema_id = self.store.find_schema(parsed.schema_type, parsed.canonical)
        for row in reversed(live):
            if row.schema_id == schema_id:
                return self._describe(row)
        raise RegistryError(404, 40403, f"Schema not found under subject {subject!r}")

    # -- compatibility --------------------------------------------------------------------------

    def check(self, subject: str, schema: Any, version: int | str = "latest", schema_type: str = "AVRO") -> list[str]:
        """Why ``schema`` would be incompatible with ``subject`` at ``version``; empty when compatible.

        ``"latest"`` checks against the live history under the subject's level (transitive modes
        use every live version, the others the latest); a number checks against that version only.
        An unknown subject with ``"latest"`` is compatible, as in Confluent.
        """
        parsed = _Parsed(schema, schema_type)
        if _parse_version(version) == -1:
            return self._problems(subject, parsed, self._live(subject))
        return self._problems(subject, parsed, [self._row(subject, version)])

    def get_config(self, subject: str | None = None) -> str:
        """Compatibility level of ``subject`` (its own, else global), or the global one; default BACKWARD."""
        level = self.store.get_config(subject) if subject is not None else None
        return level or self.store.get_config(None) or DEFAULT_COMPATIBILITY

    def set_config(self, compatibility: str, subject: str | None = None) -> str:
        """Set the level globally or for one subject; 422/42203 for an unknown level. Returns the level."""
        try:
            level = avro.Compatibility(str(compatibility).upper()).value
        except ValueError:
            known = ", ".join(m.value for m in avro.Compatibility)
            raise RegistryError(
                422, 42203, f"Invalid compatibility level {compatibility!r}; expected one of {known}"
            ) from None
        if subject is not None:
            _check_subject(subject)
        self.store.set_config(subject, level)
        return level

    def delete_config(self, subject: str) -> str:
        """Drop a subject's own level so it falls back to global; 404/40408 when it had none. Returns the dropped level."""
        level = self.store.get_config(subject)
        if level is None or not self.store.delete_config(subject):
            raise RegistryError(404, 40408, f"Subject {subject!r} does not have subject-level compatibility configured")
        return level

    # -- deleting -------------------------------------------------------------------------------

    def delete_version(self, subject: str, version: int | str, permanent: bool = False) -> int:
        """Soft-delete a live version, or permanently delete a soft-deleted one; returns its number.

        Raises:
            RegistryError: 404/40401 unknown subject, 404/40402 unknown version, 404/40406 soft-deleting
                a version already soft-deleted, 404/40407 permanent delete of a live version.
        """
        with self._lock:
            latest = _parse_version(version) == -1
            row = self._row(subject, version, include_deleted=permanent or not latest)
            if not permanent and row.deleted:
                raise RegistryError(
                    404, 40406,
                    f"Subject {subject!r} version {row.version} was soft deleted; delete it with permanent=True",
                )
            if not permanent:
                self.store.soft_delete(subject, row.version)
            elif not row.deleted:
                raise RegistryError(
                    404, 40407,
                    f"Subject {subject!r} version {row.version} was not deleted first before being permanently deleted",
                )
            else:
                self.store.remove_versions(subject, [row.version])
            return row.version

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        """Soft-delete every live version, or permanently delete a soft-deleted subject; returns the versions.

        A permanent delete also drops the subject's own compatibility level.

        Raises:
            RegistryError: 404/40401 unknown subject, 404/40404 soft-deleting a subject already
                soft-deleted, 404/40405 permanent delete of a subject that still has live versions.
        """
        _check_subject(subject)
        with self._lock:
            rows = self.store.versions(subject)
            if not rows:
                raise _subject_not_found(subject)
            live = [r.version for r in rows if not r.deleted]
            if not permanent:
                if not live:
                    raise RegistryError(404, 40404, f"Subject {subject!r} was soft deleted")
                for v in live:
                    self.store.soft_delete(subject, v)
                return live
            if live:
                raise RegistryError(
                    404, 40405, f"Subject {subject!r} was not deleted first before being permanently deleted"
                )
            self.store.remove_versions(subject, [r.version for r in rows])
            self.store.delete_config(subject)
            return [r.version for r in rows]

    # -- helpers --------------------------------------------------------------------------------

    def _live(self, subject: str) -> list[SubjectVersion]:
        return [r for r in self.store.versions(subject) if not r.deleted]

    def _row(self, subject: str, version: int | str, include_deleted: bool = False) -> SubjectVersion:
        number = _parse_version(version)
        _check_subject(subject)
        rows = self.store.versions(subject)
        visible = [r for r in rows if include_deleted or not r.deleted]
        if not visible:
            raise _subject_not_found(subject)
        if number == -1:
            return visible[-1]
        for row in visible:
            if row.version == number:
                return row
        raise _version_not_found(subject, version)

    def _describe(self, row: SubjectVersion) -> dict[str, Any]:
        stored = self.store.get_schema(row.schema_id)
        assert stored is not None, f"version row {row} points at a missing schema"
        return {
            "subject": row.subject, "version": row.version, "id": stored.id,
            "schemaType": stored.schema_type, "schema": stored.original,
        }

    def _problems(self, subject: str, parsed: _Parsed, against: list[SubjectVersion]) -> list[str]:
        mode = avro.Compatibility(self.get_config(subject))
        if mode is avro.Compatibility.NONE or not against:
            return []
        if not mode.value.endswith("_TRANSITIVE"):
            against = against[-1:]
        problems: list[str] = []
        for row in against:
            stored = self.store.get_schema(row.schema_id)
            assert stored is not None, f"version row {row} points at a missing schema"
            if stored.schema_type != parsed.schema_type:
                problems.append(f"version {row.version} is {stored.schema_type}, the new schema is {parsed.schema_type}")
                continue
            old = _Parsed(stored.original, stored.schema_type).tree
            # check_mode numbers the one previous schema 0; name the real version instead.
            for p in avro.check_mode(mode, parsed.tree, [old], checker=parsed.checker):
                problems.append(p.replace("version 0", f"version {row.version}", 1))
        return problems


def _check_subject(subject: Any) -> None:
    if not isinstance(subject, str) or not subject.strip():
        raise RegistryError(422, 42208, f"Invalid subject {subject!r}; expected a non-empty string")


def _parse_version(version: Any) -> int:
    """A positive version number, or -1 for latest; 422/42202 otherwise."""
    if isinstance(version, str) and version.strip().lower() == "latest":
        return -1
    if isinstance(version, str) and version.strip().lstrip("-").isdigit():
        version = int(version.strip())
    if isinstance(version, int) and not isinstance(version, bool) and (version >= 1 or version == -1):
        return version
    raise RegistryError(
        422, 42202, f"Invalid version {version!r}; expected a positive integer, 'latest' or -1"
    )
