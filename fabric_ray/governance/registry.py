"""A schema registry with the behaviour of the Confluent Schema Registry, as plain Python.

Methods mirror the REST API (``POST /subjects/{s}/versions`` is :meth:`SchemaRegistry.register`,
``GET /schemas/ids/{id}`` is :meth:`SchemaRegistry.get_by_id`, and so on) and every failure is a
:class:`RegistryError` carrying Confluent's HTTP status and error code, so an HTTP shell only has
to route requests and serialise results. Avro and JSON Schema are accepted; Protobuf is refused
until compatibility checks for it exist. Avro schemas may use named types of other subjects'
versions through Confluent ``references`` (``[{"name", "subject", "version"}]``).

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
from contextlib import AbstractContextManager
from typing import Any, Callable

from fabric_ray.governance import avro, json_schema
from fabric_ray.governance.registry_store import RegistryStore, StoredSchema, SubjectVersion

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


def _no_subject_config(subject: str) -> RegistryError:
    return RegistryError(404, 40408, f"Subject {subject!r} does not have subject-level compatibility configured")


def _version_not_found(subject: str, version: Any) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version!r} not found for subject {subject!r}")


class _Parsed:
    """A validated candidate schema: its type, identity text, original text and compatibility checker.

    ``references`` are the checked reference list; ``named_sources`` the texts of the schemas they
    resolve to, dependencies first, whose named types the schema may use (Avro only).
    """

    def __init__(
        self, schema: Any, schema_type: str, references: list[dict[str, Any]] | None = None,
        named_sources: list[str] | None = None,
    ) -> None:
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
        self.references = list(references or [])
        if self.references and self.schema_type != "AVRO":
            raise RegistryError(
                422, 42201, f"Schema references are supported for AVRO schemas only; got {self.schema_type} with "
                f"references {self.references!r}",
            )
        try:
            if self.schema_type == "AVRO":
                self.tree: Any = _parse_avro_with(named_sources or [], schema)
                # The canonical form writes referenced types out in full; the identity adds the
                # reference list, as Confluent's does (same text, other references: another schema).
                self.canonical = avro.canonical_form(self.tree)
                if self.references:
                    self.canonical += "\nreferences:" + json.dumps(self.references, sort_keys=True, separators=(",", ":"))
            else:
                self.tree = json_schema.parse_json_schema(schema)
                self.canonical = json.dumps(self.tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (avro.AvroSchemaError, json_schema.JsonSchemaError) as exc:
            raise RegistryError(422, 42201, f"Invalid {self.schema_type} schema: {exc}") from None

    @property
    def checker(self) -> Callable[[Any, Any], list[str]]:
        return avro.check_compatibility if self.schema_type == "AVRO" else json_schema.check_compatibility

    @property
    def references_json(self) -> str:
        return json.dumps(self.references)


def _parse_avro_with(named_sources: list[str], schema: Any) -> avro.AvroSchema:
    """Parse ``schema`` with the named types of ``named_sources`` (referenced schemas) already defined."""
    if not named_sources:
        return avro.parse_avro(schema)
    # One parser for all: each referenced schema's named types are known to the ones after it.
    parser = avro._Parser()
    for source in named_sources + [schema]:
        raw = source
        if isinstance(source, str) and source.strip()[:1] in ('"', "{", "["):
            try:
                raw = json.loads(source)
            except json.JSONDecodeError as exc:
                raise avro.AvroSchemaError(f"schema: not valid JSON ({exc})") from None
        tree = parser.parse_root(raw)
    return tree


def _check_references(references: Any) -> list[dict[str, Any]]:
    """``references`` as a list of ``{"name", "subject", "version"}``; 422/42201 naming the bad entry."""
    if references is None:
        return []
    if not isinstance(references, list):
        raise RegistryError(422, 42201, f"'references' must be a list; got {type(references).__name__}")
    checked = []
    for i, ref in enumerate(references):
        ok = (
            isinstance(ref, dict)
            and all(isinstance(ref.get(k), str) and ref[k].strip() for k in ("name", "subject"))
            and isinstance(ref.get("version"), int) and not isinstance(ref["version"], bool) and ref["version"] >= 1
        )
        if not ok:
            raise RegistryError(
                422, 42201, f"Invalid schema reference {i}: {ref!r}; expected "
                '{"name": <non-empty string>, "subject": <non-empty string>, "version": <positive integer>}',
            )
        checked.append({"name": ref["name"], "subject": ref["subject"], "version": ref["version"]})
    return checked


class SchemaRegistry:
    """Subjects, versions, global schema ids and compatibility rules over a :class:`RegistryStore`.

    Args:
        store: where schemas, versions and config live (memory or SQL).

    Version arguments accept a positive int, its decimal string, ``"latest"`` or ``-1`` (latest).
    Check-then-write operations (register, deletes) run inside one ``store.atomic()`` block, so they
    are serialised against every other writer of the store, in this process or another.
    """

    def __init__(self, store: RegistryStore) -> None:
        self._store = store

    @property
    def store(self) -> RegistryStore:
        """The store underneath (read-only), e.g. for product rows written next to schemas."""
        return self._store

    def atomic(self) -> AbstractContextManager[Any]:
        """Group registry calls and store writes: all commit together, or none if the block raises.

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> r = SchemaRegistry(MemoryRegistryStore())
            >>> try:
            ...     with r.atomic():
            ...         r.register("payments-value", '"int"')
            ...         r.store.put_product("payments", "{}")
            ...         raise RuntimeError("apply failed")
            ... except RuntimeError:
            ...     pass
            1
            >>> r.subjects(), r.store.list_products()
            ([], [])
        """
        return self._store.atomic()

    # -- registering and reading ----------------------------------------------------------------

    def register(self, subject: str, schema: Any, schema_type: str = "AVRO", references: list | None = None) -> int:
        """Register ``schema`` under ``subject``; return its global id.

        Idempotent: a schema already live under the subject returns its id without a new version.
        The same schema (same canonical form) under another subject gets the same id.

        ``references`` (Avro only) name other subjects' versions whose named types the schema uses:
        ``[{"name": "fabric.Money", "subject": "money-value", "version": 1}]``.

        Raises:
            RegistryError: 422/42201 invalid schema, unknown type, Protobuf, or a malformed or
                unresolvable reference; 409/409 incompatible with the subject's history under its
                compatibility level.

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> r = SchemaRegistry(MemoryRegistryStore())
            >>> r.register("a", '"string"'), r.register("b", {"type": "string"})
            (1, 1)
            >>> r.register("money-value", '{"type": "fixed", "name": "fabric.Money", "size": 8}')
            2
            >>> r.register("payment-value",
            ...     '{"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "fabric.Money"}]}',
            ...     references=[{"name": "fabric.Money", "subject": "money-value", "version": 1}])
            3
        """
        _check_subject(subject)
        with self._store.atomic():  # references resolve against the same state the write lands in
            parsed = self._parse(schema, schema_type, references)
            live = self._live(subject)
            schema_id = self._store.find_schema(parsed.schema_type, parsed.canonical)
            if schema_id is not None and any(row.schema_id == schema_id for row in live):
                return schema_id
            problems = self._problems(subject, parsed, live)
            if problems:
                raise RegistryError(
                    409, 409,
                    f"Schema being registered is incompatible with an earlier schema for subject {subject!r}: "
                    + "; ".join(problems),
                )
            row = self._store.add_version(
                subject, parsed.schema_type, parsed.canonical, parsed.original, parsed.references_json
            )
            return row.schema_id

    def subjects(self, include_deleted: bool = False) -> list[str]:
        """Subjects with a live version (with ``include_deleted``: also fully soft-deleted ones), sorted."""
        return [s for s in self._store.subjects() if include_deleted or self._live(s)]

    def versions(self, subject: str, include_deleted: bool = False) -> list[int]:
        """Version numbers of ``subject``, oldest first. Raises 404/40401 for an unknown subject."""
        rows = [r for r in self._store.versions(subject) if include_deleted or not r.deleted]
        if not rows:
            raise _subject_not_found(subject)
        return [r.version for r in rows]

    def get_version(self, subject: str, version: int | str = "latest", include_deleted: bool = False) -> dict[str, Any]:
        """``{"subject", "version", "id", "schemaType", "schema"}`` of one version, plus ``"references"`` if it has any.

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
        stored = self._store.get_schema(schema_id) if isinstance(schema_id, int) else None
        if stored is None:
            raise RegistryError(404, 40403, f"Schema {schema_id!r} not found")
        return {
            "id": stored.id, "schemaType": stored.schema_type, "schema": stored.original,
            "references": json.loads(stored.references),
        }

    def lookup(
        self, subject: str, schema: Any, schema_type: str = "AVRO", references: list | None = None
    ) -> dict[str, Any]:
        """Which live version of ``subject`` holds ``schema`` with these ``references`` (``POST /subjects/{subject}``).

        Raises:
            RegistryError: 404/40401 unknown subject, 404/40403 schema not under the subject,
                422/42201 invalid schema or reference.
        """
        parsed = self._parse(schema, schema_type, references)
        live = self._live(subject)
        if not live:
            raise _subject_not_found(subject)
        schema_id = self._store.find_schema(parsed.schema_type, parsed.canonical)
        for row in reversed(live):
            if row.schema_id == schema_id:
                return self._describe(row)
        raise RegistryError(404, 40403, f"Schema not found under subject {subject!r}")

    # -- compatibility --------------------------------------------------------------------------

    def check(
        self, subject: str, schema: Any, version: int | str = "latest", schema_type: str = "AVRO",
        references: list | None = None,
    ) -> list[str]:
        """Why ``schema`` would be incompatible with ``subject`` at ``version``; empty when compatible.

        ``"latest"`` checks against the live history under the subject's level (transitive modes
        use every live version, the others the latest); a number checks against that version only.
        An unknown subject with ``"latest"`` is compatible, as in Confluent.
        """
        parsed = self._parse(schema, schema_type, references)
        if _parse_version(version) == -1:
            return self._problems(subject, parsed, self._live(subject))
        return self._problems(subject, parsed, [self._row(subject, version)])

    def referenced_by(self, subject: str, version: int | str = "latest") -> list[int]:
        """Ids of the schemas whose references name ``subject`` at ``version`` (live or soft-deleted versions), sorted.

        Raises:
            RegistryError: 422/42202 bad version, 404/40401 unknown subject, 404/40402 unknown version.
        """
        row = self._row(subject, version, include_deleted=True)
        return self._references_to().get((subject, row.version), [])

    def get_config(self, subject: str | None = None, default_to_global: bool = True) -> str:
        """Compatibility level of ``subject`` (its own, else global), or the global one; default BACKWARD.

        With ``default_to_global=False`` only a subject's own level answers, as Confluent's
        ``GET /config/{subject}`` without ``?defaultToGlobal=true``: 404/40408 when it has none.

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> r = SchemaRegistry(MemoryRegistryStore())
            >>> r.get_config("payments-value")
            'BACKWARD'
            >>> r.get_config("payments-value", default_to_global=False)
            Traceback (most recent call last):
            ...
            fabric_ray.governance.registry.RegistryError: 404/40408: Subject 'payments-value' does not have subject-level compatibility configured
        """
        level = self._store.get_config(subject) if subject is not None else None
        if level is None and subject is not None and not default_to_global:
            raise _no_subject_config(subject)
        return level or self._store.get_config(None) or DEFAULT_COMPATIBILITY

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
        self._store.set_config(subject, level)
        return level

    def delete_config(self, subject: str) -> str:
        """Drop a subject's own level so it falls back to global; 404/40408 when it had none. Returns the dropped level."""
        with self._store.atomic():
            level = self._store.get_config(subject)
            deleted = level is not None and self._store.delete_config(subject)
        if not deleted:
            raise _no_subject_config(subject)
        return level

    # -- deleting -------------------------------------------------------------------------------

    def delete_version(self, subject: str, version: int | str, permanent: bool = False) -> int:
        """Soft-delete a live version, or permanently delete a soft-deleted one; returns its number.

        Raises:
            RegistryError: 404/40401 unknown subject, 404/40402 unknown version, 404/40406 soft-deleting
                a version already soft-deleted, 404/40407 permanent delete of a live version,
                422/42206 another schema references the version.
        """
        with self._store.atomic():
            latest = _parse_version(version) == -1
            row = self._row(subject, version, include_deleted=permanent or not latest)
            if not permanent and row.deleted:
                raise RegistryError(
                    404, 40406,
                    f"Subject {subject!r} version {row.version} was soft deleted; delete it with permanent=True",
                )
            self._refuse_if_referenced(subject, [row.version])
            if not permanent:
                self._store.soft_delete(subject, row.version)
            elif not row.deleted:
                raise RegistryError(
                    404, 40407,
                    f"Subject {subject!r} version {row.version} was not deleted first before being permanently deleted",
                )
            else:
                self._store.remove_versions(subject, [row.version])
            return row.version

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        """Soft-delete every live version, or permanently delete a soft-deleted subject; returns the versions.

        A permanent delete also drops the subject's own compatibility level.

        Raises:
            RegistryError: 404/40401 unknown subject, 404/40404 soft-deleting a subject already
                soft-deleted, 404/40405 permanent delete of a subject that still has live versions,
                422/42206 another schema references one of its versions.
        """
        _check_subject(subject)
        with self._store.atomic():
            rows = self._store.versions(subject)
            if not rows:
                raise _subject_not_found(subject)
            live = [r.version for r in rows if not r.deleted]
            if not permanent:
                if not live:
                    raise RegistryError(404, 40404, f"Subject {subject!r} was soft deleted")
                self._refuse_if_referenced(subject, live)
                for v in live:
                    self._store.soft_delete(subject, v)
                return live
            if live:
                raise RegistryError(
                    404, 40405, f"Subject {subject!r} was not deleted first before being permanently deleted"
                )
            self._refuse_if_referenced(subject, [r.version for r in rows])
            self._store.remove_versions(subject, [r.version for r in rows])
            self._store.delete_config(subject)
            return [r.version for r in rows]

    # -- helpers --------------------------------------------------------------------------------

    def _live(self, subject: str) -> list[SubjectVersion]:
        return [r for r in self._store.versions(subject) if not r.deleted]

    def _row(self, subject: str, version: int | str, include_deleted: bool = False) -> SubjectVersion:
        number = _parse_version(version)
        _check_subject(subject)
        rows = self._store.versions(subject)
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
        stored = self._store.get_schema(row.schema_id)
        assert stored is not None, f"version row {row} points at a missing schema"
        out = {
            "subject": row.subject, "version": row.version, "id": stored.id,
            "schemaType": stored.schema_type, "schema": stored.original,
        }
        references = json.loads(stored.references)
        if references:
            out["references"] = references
        return out

    def _parse(self, schema: Any, schema_type: Any, references: Any) -> _Parsed:
        """A candidate schema with its references checked and resolved."""
        refs = _check_references(references)
        return _Parsed(schema, schema_type, refs, self._named_sources(refs) if refs else [])

    def _parse_stored(self, stored: StoredSchema) -> _Parsed:
        refs = json.loads(stored.references)
        return _Parsed(stored.original, stored.schema_type, refs, self._named_sources(refs) if refs else [])

    def _named_sources(self, refs: list[dict[str, Any]]) -> list[str]:
        """Texts of the schemas ``refs`` resolve to, their own references first, each once; 422/42201 when missing."""
        sources: list[str] = []
        seen: set[tuple[str, int]] = set()

        def visit(ref: dict[str, Any]) -> None:
            key = (ref["subject"], ref["version"])
            if key in seen:  # a diamond: defined once
                return
            seen.add(key)
            row = next((r for r in self._store.versions(ref["subject"]) if r.version == ref["version"]), None)
            stored = self._store.get_schema(row.schema_id) if row is not None else None
            if stored is None:
                raise RegistryError(
                    422, 42201, f"Invalid schema reference {ref['name']!r}: subject {ref['subject']!r} "
                    f"version {ref['version']} not found",
                )
            if stored.schema_type != "AVRO":
                raise RegistryError(
                    422, 42201, f"Invalid schema reference {ref['name']!r}: subject {ref['subject']!r} "
                    f"version {ref['version']} is {stored.schema_type}; an AVRO schema can only reference AVRO",
                )
            for inner in json.loads(stored.references):
                visit(inner)
            sources.append(stored.original)

        for ref in refs:
            visit(ref)
        return sources

    def _references_to(self) -> dict[tuple[str, int], list[int]]:
        """(subject, version) -> sorted ids of the schemas referencing it, over schemas that still have a
        version row (live or soft-deleted); a scan of every version, fine for the rare deletes."""
        ids = {row.schema_id for s in self._store.subjects() for row in self._store.versions(s)}
        index: dict[tuple[str, int], list[int]] = {}
        for schema_id in sorted(ids):
            stored = self._store.get_schema(schema_id)
            for ref in json.loads(stored.references) if stored is not None else []:
                index.setdefault((ref["subject"], ref["version"]), []).append(schema_id)
        return index

    def _refuse_if_referenced(self, subject: str, versions: list[int]) -> None:
        index = self._references_to()
        for version in versions:
            ids = index.get((subject, version))
            if ids:
                raise RegistryError(
                    422, 42206, f"One or more references exist to subject {subject!r} version {version}: "
                    f"schema ids {ids}; delete those first",
                )

    def _problems(self, subject: str, parsed: _Parsed, against: list[SubjectVersion]) -> list[str]:
        mode = avro.Compatibility(self.get_config(subject))
        if mode is avro.Compatibility.NONE or not against:
            return []
        if not mode.value.endswith("_TRANSITIVE"):
            against = against[-1:]
        problems: list[str] = []
        for row in against:
            stored = self._store.get_schema(row.schema_id)
            assert stored is not None, f"version row {row} points at a missing schema"
            if stored.schema_type != parsed.schema_type:
                problems.append(f"version {row.version} is {stored.schema_type}, the new schema is {parsed.schema_type}")
                continue
            old = self._parse_stored(stored).tree
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
