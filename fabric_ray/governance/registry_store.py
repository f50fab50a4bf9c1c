"""Storage for the schema registry: a narrow protocol, an in-memory backend and a SQLite backend.

The store knows nothing about schema languages or compatibility; it keeps three things:

* schemas: global id, schema type, canonical text (the identity), original text, references JSON;
* subject versions: (subject, version) -> schema id, with a soft-deleted flag;
* config: compatibility level per subject, or global (``subject=None``).

Writes that belong together (a new schema row and its first subject version) happen in one
transaction. Schema rows are never removed, so a global id always means the same schema.

Example:
    >>> store = MemoryRegistryStore()
    >>> store.add_version("payments-value", "AVRO", '"int"', '"int"', "[]")
    SubjectVersion(subject='payments-value', version=1, schema_id=1, deleted=False)
    >>> store.add_version("refunds-value", "AVRO", '"int"', '{"type": "int"}', "[]").schema_id
    1
    >>> store.get_schema(1).original
    '"int"'
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

__all__ = [
    "MemoryRegistryStore",
    "RegistryStore",
    "SqliteRegistryStore",
    "StoredSchema",
    "SubjectVersion",
]


@dataclass(frozen=True)
class StoredSchema:
    """One registered schema, shared by every subject version that uses it."""

    id: int
    schema_type: str
    canonical: str
    original: str
    references: str  # JSON list


@dataclass(frozen=True)
class SubjectVersion:
    """One version of a subject; ``deleted`` is the soft-delete flag."""

    subject: str
    version: int
    schema_id: int
    deleted: bool = False


class RegistryStore(Protocol):
    """What the registry needs from storage; nothing about schema languages."""

    def find_schema(self, schema_type: str, canonical: str) -> int | None:
        """Id of the schema with this type and canonical text, or None."""

    def get_schema(self, schema_id: int) -> StoredSchema | None:
        """The schema with this global id, or None."""

    def subjects(self) -> list[str]:
        """Every subject with at least one version row (live or soft-deleted), sorted."""

    def versions(self, subject: str) -> list[SubjectVersion]:
        """Every version row of ``subject`` (live and soft-deleted), oldest first."""

    def add_version(
        self, subject: str, schema_type: str, canonical: str, original: str, references: str
    ) -> SubjectVersion:
        """In one transaction: find or create the schema, then append it as the subject's next version.

        The next version is one more than the highest version row of the subject, soft-deleted
        included, so soft deletion never frees a version number.
        """

    def soft_delete(self, subject: str, version: int) -> None:
        """Set the deleted flag of one version row."""

    def remove_versions(self, subject: str, versions: list[int]) -> None:
        """Permanently remove version rows (the schema rows stay), in one transaction."""

    def get_config(self, subject: str | None) -> str | None:
        """Compatibility level set for ``subject`` (None: global), or None when unset."""

    def set_config(self, subject: str | None, level: str) -> None:
        """Set the compatibility level for ``subject`` (None: global)."""

    def delete_config(self, subject: str) -> bool:
        """Drop a subject-level setting; False when there was none."""

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""


class MemoryRegistryStore:
    """Dict-backed :class:`RegistryStore`; lives as long as the object. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schemas: dict[int, StoredSchema] = {}
        self._by_key: dict[tuple[str, str], int] = {}
        self._versions: dict[str, dict[int, SubjectVersion]] = {}
        self._config: dict[str | None, str] = {}

    def find_schema(self, schema_type: str, canonical: str) -> int | None:
        return self._by_key.get((schema_type, canonical))

    def get_schema(self, schema_id: int) -> StoredSchema | None:
        return self._schemas.get(schema_id)

    def subjects(self) -> list[str]:
        return sorted(s for s, rows in self._versions.items() if rows)

    def versions(self, subject: str) -> list[SubjectVersion]:
        rows = self._versions.get(subject, {})
        return [rows[v] for v in sorted(rows)]

    def add_version(
        self, subject: str, schema_type: str, canonical: str, original: str, references: str
    ) -> SubjectVersion:
        with self._lock:
            schema_id = self._by_key.get((schema_type, canonical))
            if schema_id is None:
                schema_id = max(self._schemas, default=0) + 1
                self._schemas[schema_id] = StoredSchema(schema_id, schema_type, canonical, original, references)
                self._by_key[(schema_type, canonical)] = schema_id
            rows = self._versions.setdefault(subject, {})
            row = SubjectVersion(subject, max(rows, default=0) + 1, schema_id)
            rows[row.version] = row
            return row

    def soft_delete(self, subject: str, version: int) -> None:
        with self._lock:
            rows = self._versions[subject]
            rows[version] = replace(rows[version], deleted=True)

    def remove_versions(self, subject: str, versions: list[int]) -> None:
        with self._lock:
            rows = self._versions.get(subject, {})
            for v in versions:
                rows.pop(v, None)
            if not rows:
                self._versions.pop(subject, None)

    def get_config(self, subject: str | None) -> str | None:
        return self._config.get(subject)

    def set_config(self, subject: str | None, level: str) -> None:
        self._config[subject] = level

    def delete_config(self, subject: str) -> bool:
        return self._config.pop(subject, None) is not None

    def close(self) -> None:
        pass


_GLOBAL = ""  # config key for the global level; subjects are never empty
_DDL = """
CREATE TABLE IF NOT EXISTS schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schema_type TEXT NOT NULL,
    canonical TEXT NOT NULL,
    original TEXT NOT NULL,
    references_json TEXT NOT NULL,
    UNIQUE (schema_type, canonical)
);
CREATE TABLE IF NOT EXISTS subject_versions (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES schemas(id),
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, version)
);
CREATE TABLE IF NOT EXISTS config (
    subject TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL
);
"""


class SqliteRegistryStore:
    """:class:`RegistryStore` in one SQLite file; a new store on the same file sees everything.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "registry.db")
        >>> store = SqliteRegistryStore(path)
        >>> store.add_version("s", "AVRO", '"int"', '"int"', "[]").version
        1
        >>> store.close()
        >>> SqliteRegistryStore(path).versions("s")
        [SubjectVersion(subject='s', version=1, schema_id=1, deleted=False)]
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so related writes share one transaction.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self._lock:
            self._conn.executescript(_DDL)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _write(self, statements: list[tuple[str, tuple]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._conn.execute(sql, args)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def find_schema(self, schema_type: str, canonical: str) -> int | None:
        rows = self._query("SELECT id FROM schemas WHERE schema_type = ? AND canonical = ?", (schema_type, canonical))
        return rows[0][0] if rows else None

    def get_schema(self, schema_id: int) -> StoredSchema | None:
        rows = self._query(
            "SELECT id, schema_type, canonical, original, references_json FROM schemas WHERE id = ?", (schema_id,)
        )
        return StoredSchema(*rows[0]) if rows else None

    def subjects(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT subject FROM subject_versions ORDER BY subject")]

    def versions(self, subject: str) -> list[SubjectVersion]:
        rows = self._query(
            "SELECT subject, version, schema_id, deleted FROM subject_versions WHERE subject = ? ORDER BY version",
            (subject,),
        )
        return [SubjectVersion(s, v, i, bool(d)) for s, v, i, d in rows]

    def add_version(
        self, subject: str, schema_type: str, canonical: str, original: str, references: str
    ) -> SubjectVersion:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = conn.execute(
                    "SELECT id FROM schemas WHERE schema_type = ? AND canonical = ?", (schema_type, canonical)
                ).fetchone()
                if found:
                    schema_id = found[0]
                else:
                    schema_id = conn.execute(
                        "INSERT INTO schemas (schema_type, canonical, original, references_json) VALUES (?, ?, ?, ?)",
                        (schema_type, canonical, original, references),
                    ).lastrowid
                (top,) = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM subject_versions WHERE subject = ?", (subject,)
                ).fetchone()
                conn.execute(
                    "INSERT INTO subject_versions (subject, version, schema_id, deleted) VALUES (?, ?, ?, 0)",
                    (subject, top + 1, schema_id),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return SubjectVersion(subject, top + 1, schema_id)

    def soft_delete(self, subject: str, version: int) -> None:
        self._write([("UPDATE subject_versions SET deleted = 1 WHERE subject = ? AND version = ?", (subject, version))])

    def remove_versions(self, subject: str, versions: list[int]) -> None:
        sql = "DELETE FROM subject_versions WHERE subject = ? AND version = ?"
        self._write([(sql, (subject, v)) for v in versions])

    def get_config(self, subject: str | None) -> str | None:
        rows = self._query("SELECT compatibility FROM config WHERE subject = ?", (subject or _GLOBAL,))
        return rows[0][0] if rows else None

    def set_config(self, subject: str | None, level: str) -> None:
        self._write([(
            "INSERT INTO config (subject, compatibility) VALUES (?, ?) "
            "ON CONFLICT(subject) DO UPDATE SET compatibility = excluded.compatibility",
            (subject or _GLOBAL, level),
        )])

    def delete_config(self, subject: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM config WHERE subject = ?", (subject,))
            return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()
