"""A schema registry with the behaviour of the Confluent Schema Registry, as plain Python.

Methods mirror the REST API (``POST /subjects/{s}/versions`` is :meth:`SchemaRegistry.register`,
``GET /schemas/ids/{id}`` is :meth:`SchemaRegistry.get_by_id`, and so on) and every failure is a
:class:`RegistryError` carrying Confluent's HTTP status and error code, so an HTTP shell only has
to route requests and serialise results. Schema types are formats of
:mod:`fabric_ray.governance.formats` (Avro and JSON Schema; others plug in there). Avro schemas may
use named types of other subjects' versions through Confluent ``references``
(``[{"name", "subject", "version"}]``).

Identity is Confluent's: a schema is its type, its text as the format writes it (Avro: Avro Java's
``Schema.toString()``, keeping logical types, defaults, docs and aliases) and its references; the
same schema in two subjects has one id. ``normalize=True`` (or the ``normalize`` config) stores
and looks up the format's normalized text instead.

Example:
    >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
    >>> registry = SchemaRegistry(MemoryRegistryStore())
    >>> v1 = '{"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "int"}]}'
    >>> registry.register("payments-value", v1)
    1
    >>> registry.register("payments-value", v1)  # idempotent
    1
    >>> registry.get_by_id(1)["schema"]  # stored as Confluent stores it
    '{"type":"record","name":"Payment","fields":[{"name":"amount","type":"int"}]}'
    >>> registry.register("payments-value",
    ...     '{"type": "record", "name": "Payment", "fields": [{"name": "currency", "type": "string"}]}')
    Traceback (most recent call last):
    ...
    fabric_ray.governance.registry.RegistryError: 409/409: Schema being registered is incompatible with an earlier schema for subject 'payments-value': BACKWARD: new schema cannot read version 1: record 'Payment' field 'currency': reader field is missing from the writer and has no default (READER_FIELD_MISSING_DEFAULT_VALUE at /fields/0)
    >>> registry.get_version("payments-value", "latest")["version"]
    1
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any

from fabric_ray.governance import avro, formats
from fabric_ray.governance.registry_store import RegistryStore, StoredSchema, SubjectVersion

__all__ = ["CONFIG_OPTIONS", "DEFAULT_COMPATIBILITY", "IDENTITY", "RegistryError", "SchemaRegistry"]

DEFAULT_COMPATIBILITY = avro.Compatibility.BACKWARD.value
# Config options besides the level, with Confluent's defaults (schema.validate.new.schemas=true).
CONFIG_OPTIONS = {"normalize": False, "validateNewSchemas": True}
# The rule the stored identity keys follow; a store keyed by another rule is rekeyed on start.
IDENTITY = "confluent-text-v2"  # v2: types nested in referenced schemas written in full
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
    """A validated candidate schema: its format, parsed form, stored text and identity key.

    ``text`` is what the registry stores and returns (the format's text, or its normalized text
    with ``normalize``); ``identity`` adds the reference list, so the same text with other
    references is another schema, as in Confluent.
    """

    def __init__(
        self, schema: Any, schema_type: Any, references: list[dict[str, Any]], resolved: list[formats.Resolved],
        validate: bool = True, normalize: bool = False,
    ) -> None:
        try:
            self.format = formats.get_format(schema_type)
        except (formats.SchemaFormatError, AttributeError):
            raise RegistryError(
                422, 42201, f"Invalid schema type {schema_type!r}; expected one of {', '.join(formats.schema_types())}"
            ) from None
        self.schema_type = self.format.schema_type
        self.references = list(references)
        if self.references and not self.format.references_supported:
            raise RegistryError(
                422, 42201, f"Schema references are not supported for {self.schema_type} schemas; got "
                f"references {self.references!r}",
            )
        if normalize:  # Confluent sorts and deduplicates the references of a normalized schema
            unique = {json.dumps(r, sort_keys=True): r for r in self.references}
            self.references = sorted(unique.values(), key=lambda r: (r["name"], r["subject"], r["version"]))
        source = schema if isinstance(schema, str) else json.dumps(schema)
        try:
            self.parsed = self.format.parse(source, resolved, validate=validate)
            self.text = self.format.normalized(self.parsed) if normalize else self.format.text(self.parsed)
        except formats.SchemaFormatError as exc:
            raise RegistryError(422, 42201, f"Invalid {self.schema_type} schema: {exc}") from None
        self.identity = _identity(self.text, self.references)

    @property
    def references_json(self) -> str:
        return json.dumps(self.references)


def _identity(text: str, references: list[dict[str, Any]]) -> str:
    """The identity key of a schema text with its references (the store's ``canonical`` column)."""
    if not references:
        return text
    return text + "\nreferences:" + json.dumps(references, sort_keys=True, separators=(",", ":"))


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
        # A store written under an earlier identity rule (e.g. Avro's Parsing Canonical Form) gets
        # its identity keys and stored texts recomputed once, in one transaction; ids and versions stay.
        store.rekey_schemas(IDENTITY, self._rekey)

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

    def register(
        self, subject: str, schema: Any, schema_type: str = "AVRO", references: list | None = None,
        normalize: bool = False, version: int | None = None, force: bool = False,
    ) -> int:
        """Register ``schema`` under ``subject``; return its global id (``POST /subjects/{s}/versions``).

        As Confluent does: the schema is validated (defaults too, unless the ``validateNewSchemas``
        config is false) and normalized when ``normalize`` or the ``normalize`` config is set; if
        the same schema (type, text, references) is live under the subject its id is returned
        without a new version (when no ``version`` is asked for), and so is a live version's id when
        ``schema`` is that version's schema with its references written in full (Confluent's
        ``canLookup``); otherwise it must pass the subject's compatibility level, and the new version
        gets the schema's existing id if any subject has it, else a new one.

        ``references`` (formats with ``references_supported``: Avro, Protobuf) name other subjects'
        versions the schema uses, for Avro by the named type they define:
        ``[{"name": "fabric.Money", "subject": "money-value", "version": 1}]``. ``version``, when
        given, must be the next version number (Confluent's compare-and-set). ``force`` skips the
        compatibility check (Confluent's ``?force=true``); validation still applies.

        Raises:
            RegistryError: 422/42201 invalid schema, unknown type, a malformed or unresolvable
                reference, or a ``version`` that is not the next one; 409/409 incompatible with the
                subject's history under its compatibility level.

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> r = SchemaRegistry(MemoryRegistryStore())
            >>> r.register("a", '"string"'), r.register("b", {"type": "string"})
            (1, 1)
            >>> r.register("ts", '{"type": "long", "logicalType": "timestamp-millis"}')  # not "long"
            2
            >>> r.register("money-value", '{"type": "fixed", "name": "fabric.Money", "size": 8}')
            3
            >>> r.register("payment-value",
            ...     '{"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "fabric.Money"}]}',
            ...     references=[{"name": "fabric.Money", "subject": "money-value", "version": 1}])
            4
        """
        _check_subject(subject)
        with self._store.atomic():  # references resolve against the same state the write lands in
            settings = self.config(subject)
            parsed = self._parse(
                schema, schema_type, references, validate=settings["validateNewSchemas"],
                normalize=normalize or settings["normalize"],
            )
            rows = self._store.versions(subject)
            live = [r for r in rows if not r.deleted]
            schema_id = self._store.find_schema(parsed.schema_type, parsed.identity)
            if version is None and schema_id is not None and any(row.schema_id == schema_id for row in live):
                return schema_id
            inlined = self._inlined_match(parsed, live) if version is None else None
            if inlined is not None:
                return inlined.schema_id
            next_version = max((r.version for r in rows), default=0) + 1
            if version is not None and version not in (-1, 0, next_version):
                raise RegistryError(
                    422, 42201, f"Invalid schema: version {version} is not one more than the subject's latest "
                    f"version {next_version - 1}",
                )
            problems = [] if force else self._problems(subject, parsed, live, transitive_history=True)
            if problems:
                raise RegistryError(
                    409, 409,
                    f"Schema being registered is incompatible with an earlier schema for subject {subject!r}: "
                    + "; ".join(problems),
                )
            row = self._store.add_version(
                subject, parsed.schema_type, parsed.identity, parsed.text, parsed.references_json
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

    def get_version(
        self, subject: str, version: int | str = "latest", include_deleted: bool = False, format: str | None = None
    ) -> dict[str, Any]:
        """``{"subject", "version", "id", "schemaType", "schema"}`` of one version, plus ``"references"`` if it has any.

        ``format="serialized"``: a Protobuf schema as a base64 ``FileDescriptorProto``, as Confluent answers;
        ``format="resolved"``: an Avro schema with its referenced types written in full.

        Raises:
            RegistryError: 422/42202 bad version, 404/40401 unknown subject, 404/40402 unknown version.
        """
        return self._formatted(self._describe(self._row(subject, version, include_deleted)), format)

    def get_by_id(self, schema_id: int, format: str | None = None) -> dict[str, Any]:
        """``{"id", "schemaType", "schema", "references"}`` for a global id; 404/40403 when unknown.

        ``format="serialized"``: a Protobuf schema as a base64 ``FileDescriptorProto``, as Confluent answers;
        ``format="resolved"``: an Avro schema with its referenced types written in full.

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
        return self._formatted({
            "id": stored.id, "schemaType": stored.schema_type, "schema": stored.original,
            "references": json.loads(stored.references),
        }, format)

    def _formatted(self, described: dict[str, Any], format: str | None) -> dict[str, Any]:
        """``described`` with its schema in ``format`` where its format has that method: ``serialized``
        (Protobuf as a base64 descriptor) or ``resolved`` (Avro with referenced types written in full);
        other formats are ignored, as Confluent ignores them."""
        method = str(format or "").lower()
        if method not in ("serialized", "resolved") or not hasattr(formats.get_format(described["schemaType"]), method):
            return described
        refs = described.get("references") or []
        parsed = _Parsed(
            described["schema"], described["schemaType"], refs, self._resolved(refs) if refs else [], validate=False
        )
        return {**described, "schema": getattr(parsed.format, method)(parsed.parsed)}

    def lookup(
        self, subject: str, schema: Any, schema_type: str = "AVRO", references: list | None = None,
        normalize: bool = False, include_deleted: bool = False,
    ) -> dict[str, Any]:
        """Which version of ``subject`` holds ``schema`` with these ``references`` (``POST /subjects/{subject}``).

        The candidate is parsed as Confluent does for a lookup (defaults not validated) and
        normalized with ``normalize`` or the ``normalize`` config; soft-deleted versions count
        only with ``include_deleted``.

        Raises:
            RegistryError: 404/40401 unknown subject, 404/40403 schema not under the subject,
                422/42201 invalid schema or reference.
        """
        settings = self.config(subject)
        parsed = self._parse(schema, schema_type, references, validate=False,
                             normalize=normalize or settings["normalize"])
        rows = [r for r in self._store.versions(subject) if include_deleted or not r.deleted]
        if not rows:
            raise _subject_not_found(subject)
        schema_id = self._store.find_schema(parsed.schema_type, parsed.identity)
        for row in reversed(rows):
            if row.schema_id == schema_id:
                return self._describe(row)
        inlined = self._inlined_match(parsed, rows)
        if inlined is not None:
            return self._describe(inlined)
        raise RegistryError(404, 40403, f"Schema not found under subject {subject!r}")

    # -- compatibility --------------------------------------------------------------------------

    def check(
        self, subject: str, schema: Any, version: int | str | None = None, schema_type: str = "AVRO",
        references: list | None = None, normalize: bool = False,
    ) -> list[str]:
        """Why ``schema`` would be incompatible with ``subject``; empty when compatible.

        ``version=None`` (``POST /compatibility/subjects/{s}/versions``) checks as ``register`` would:
        against the live history under the subject's level (every version when transitive, else
        the latest). A version (a number, ``"latest"`` or -1; ``POST .../versions/{version}``)
        checks against that one version only, in the level's direction, as Confluent does even
        under a transitive level. An unknown subject with ``None`` or ``"latest"`` is compatible.
        The candidate is validated as ``register`` validates it (``validateNewSchemas``).

        Raises:
            RegistryError: 422/42201 invalid schema, 422/42202 bad version, 404/40402 no such live
                version (for a numbered version, also when the subject is unknown, as Confluent answers).

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> r = SchemaRegistry(MemoryRegistryStore())
            >>> r.set_config("BACKWARD_TRANSITIVE")
            'BACKWARD_TRANSITIVE'
            >>> f1 = {"name": "f1", "type": "string"}
            >>> r.register("s", {"type": "record", "name": "r", "fields": [f1]})
            1
            >>> r.register("s", {"type": "record", "name": "r", "fields": [f1, {"name": "f2", "type": "string", "default": "x"}]})
            2
            >>> no_default = {"type": "record", "name": "r", "fields": [f1, {"name": "f2", "type": "string"}]}
            >>> r.check("s", no_default, "latest")  # version 2 only
            []
            >>> len(r.check("s", no_default)) > 0  # the history: version 1 has no f2
            True
        """
        _check_subject(subject)
        settings = self.config(subject)
        parsed = self._parse(schema, schema_type, references, validate=settings["validateNewSchemas"],
                             normalize=normalize or settings["normalize"])
        if version is None:
            return self._problems(subject, parsed, self._live(subject), transitive_history=True)
        number, live = _parse_version(version), self._live(subject)
        if number == -1:
            return self._problems(subject, parsed, live[-1:], transitive_history=False)
        row = next((r for r in live if r.version == number), None)
        if row is None:  # Confluent: 40402 even when the subject does not exist
            raise _version_not_found(subject, version)
        return self._problems(subject, parsed, [row], transitive_history=False)

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

    def config(self, subject: str | None = None) -> dict[str, Any]:
        """The effective config of ``subject`` (its own settings over the global ones) with defaults.

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> SchemaRegistry(MemoryRegistryStore()).config("s")
            {'compatibilityLevel': 'BACKWARD', 'normalize': False, 'validateNewSchemas': True}
        """
        options = {**CONFIG_OPTIONS, **self._store.get_options(None)}
        if subject is not None:
            options.update(self._store.get_options(subject))
        return {"compatibilityLevel": self.get_config(subject), **options}

    def get_config_body(self, subject: str | None = None, default_to_global: bool = True) -> dict[str, Any]:
        """``GET /config[/{subject}]``: ``{"compatibilityLevel"}`` plus the options that are set.

        A subject with no level of its own answers with the global level under
        ``default_to_global``, else 404/40408 (unless it has options of its own).
        """
        own = self._store.get_options(subject) if subject is not None else self._store.get_options(None)
        if subject is not None and not default_to_global:
            level = self._store.get_config(subject)
            if level is None and not own:
                raise _no_subject_config(subject)
            body = {"compatibilityLevel": level} if level is not None else {}
            return {**body, **own}
        if subject is not None:
            own = {**self._store.get_options(None), **own}
        return {"compatibilityLevel": self.get_config(subject), **own}

    def set_config(self, compatibility: str, subject: str | None = None) -> str:
        """Set the level globally or for one subject; 422/42203 for an unknown level. Returns the level."""
        return self.update_config(subject, compatibility=compatibility)["compatibility"]

    def update_config(
        self, subject: str | None = None, compatibility: str | None = None, normalize: bool | None = None,
        validate_new_schemas: bool | None = None,
    ) -> dict[str, Any]:
        """``PUT /config[/{subject}]``: set what is given, keep the rest; answer Confluent's echo of it.

        Raises:
            RegistryError: 422/42203 unknown level or a non-boolean option.

        Example:
            >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
            >>> r = SchemaRegistry(MemoryRegistryStore())
            >>> r.update_config(validate_new_schemas=False)
            {'validateNewSchemas': False}
            >>> r.update_config("s", compatibility="full", normalize=True)
            {'compatibility': 'FULL', 'normalize': True}
            >>> r.config("s")
            {'compatibilityLevel': 'FULL', 'normalize': True, 'validateNewSchemas': False}
        """
        answer: dict[str, Any] = {}
        if compatibility is not None:
            try:
                answer["compatibility"] = avro.Compatibility(str(compatibility).upper()).value
            except ValueError:
                known = ", ".join(m.value for m in avro.Compatibility)
                raise RegistryError(
                    422, 42203, f"Invalid compatibility level {compatibility!r}; expected one of {known}"
                ) from None
        for key, value in (("normalize", normalize), ("validateNewSchemas", validate_new_schemas)):
            if value is not None:
                if not isinstance(value, bool):
                    raise RegistryError(422, 42203, f"Invalid config: {key!r} must be true or false; got {value!r}")
                answer[key] = value
        if subject is not None:
            _check_subject(subject)
        with self._store.atomic():
            if "compatibility" in answer:
                self._store.set_config(subject, answer["compatibility"])
            options = {k: v for k, v in answer.items() if k != "compatibility"}
            if options:
                self._store.set_options(subject, {**self._store.get_options(subject), **options})
        return answer

    def delete_config(self, subject: str) -> str:
        """Drop a subject's own level and options so it falls back to global; 404/40408 when it had none.

        Returns the dropped level (the global level when the subject had options only).
        """
        with self._store.atomic():
            level = self._store.get_config(subject)
            deleted = self._store.delete_config(subject)
        if not deleted:
            raise _no_subject_config(subject)
        return level or self.get_config(None)

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

    def _parse(
        self, schema: Any, schema_type: Any, references: Any, validate: bool = True, normalize: bool = False
    ) -> _Parsed:
        """A candidate schema with its references checked and resolved."""
        refs = _check_references(references)
        return _Parsed(schema, schema_type, refs, self._resolved(refs) if refs else [], validate, normalize)

    def _parse_stored(self, stored: StoredSchema) -> _Parsed:
        """A registered schema; checks meant for new schemas (defaults) are not applied again."""
        refs = json.loads(stored.references)
        return _Parsed(stored.original, stored.schema_type, refs, self._resolved(refs) if refs else [], validate=False)

    def _inlined_match(self, parsed: _Parsed, rows: list[SubjectVersion]) -> SubjectVersion | None:
        """The newest of ``rows`` whose schema, its references written in full, is ``parsed`` (sent
        without references): Confluent's ``canLookup``. Only formats with ``resolved`` take part."""
        if parsed.references or not hasattr(parsed.format, "resolved"):
            return None
        wanted = parsed.format.resolved(parsed.parsed)
        for row in reversed(rows):
            stored = self._store.get_schema(row.schema_id)
            if stored is None or stored.schema_type != parsed.schema_type or not json.loads(stored.references):
                continue
            previous = self._parse_stored(stored)
            if previous.format.resolved(previous.parsed) == wanted:
                return row
        return None

    def _rekey(self, stored: StoredSchema) -> tuple[str, str]:
        """(identity, text) of a stored schema under :data:`IDENTITY`; unchanged if it no longer parses."""
        try:
            parsed = self._parse_stored(stored)
        except RegistryError:
            return stored.canonical, stored.original
        return _identity(parsed.text, parsed.references), parsed.text

    def _resolved(self, refs: list[dict[str, Any]]) -> list[formats.Resolved]:
        """The schemas ``refs`` resolve to, their own references first, each once; 422/42201 when missing."""
        found: list[formats.Resolved] = []
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
            for inner in json.loads(stored.references):
                visit(inner)
            found.append(formats.Resolved(ref["name"], stored.schema_type, stored.original))

        for ref in refs:
            visit(ref)
        return found

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

    def _problems(
        self, subject: str, parsed: _Parsed, against: list[SubjectVersion], transitive_history: bool
    ) -> list[str]:
        """Problems of ``parsed`` against the versions ``against`` under the subject's level.

        With ``transitive_history`` a non-transitive level keeps only the latest of ``against``.
        """
        mode = avro.Compatibility(self.get_config(subject))
        if mode is avro.Compatibility.NONE or not against:
            return []
        if transitive_history and not mode.value.endswith("_TRANSITIVE"):
            against = against[-1:]
        problems: list[str] = []
        for row in against:
            stored = self._store.get_schema(row.schema_id)
            assert stored is not None, f"version row {row} points at a missing schema"
            if stored.schema_type != parsed.schema_type:
                problems.append(f"version {row.version} is {stored.schema_type}, the new schema is {parsed.schema_type}")
                continue
            old = self._parse_stored(stored).parsed
            # check_mode numbers the one previous schema 0; name the real version instead.
            for p in avro.check_mode(mode, parsed.parsed, [old], checker=parsed.format.check):
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
