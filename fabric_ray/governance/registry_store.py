"""Storage for the schema registry and data products: a narrow protocol, a memory and a SQL backend.

The store knows nothing about schema languages or compatibility; it keeps five things:

* schemas: global id, schema type, identity key (``canonical``: the registry's schema text plus its
  references), stored text (``original``), references JSON;
* subject versions: (subject, version) -> schema id, with a soft-deleted flag;
* config: compatibility level per subject, or global (``subject=None``), and other options
  (``normalize``, ``validateNewSchemas``) as a JSON object;
* products: data product name -> its spec as JSON text (opaque to the store);
* the identity marker: which rule computed the identity keys. :meth:`RegistryStore.rekey_schemas`
  recomputes every key, in one transaction, when the registry's rule changes (see
  ``docs/schema-compatibility.md``, "Migration"); ids and version rows never change.

Every write is a transaction; :meth:`RegistryStore.atomic` groups several writes into one, which
commits whole or not at all. Schema rows are never removed, so a global id always means the same schema.

Example:
    >>> store = MemoryRegistryStore()
    >>> store.add_version("payments-value", "AVRO", '"int"', '"int"', "[]")
    SubjectVersion(subject='payments-value', version=1, schema_id=1, deleted=False)
    >>> store.add_version("refunds-value", "AVRO", '"int"', '{"type": "int"}', "[]").schema_id
    1
    >>> store.get_schema(1).original
    '"int"'
    >>> with store.atomic():
    ...     store.put_product("payments", '{"owner": "risk"}')
    ...     store.get_product("payments")
    '{"owner": "risk"}'
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

__all__ = [
    "SUPPORTED_BACKENDS",
    "MemoryRegistryStore",
    "RegistryStore",
    "SqlRegistryStore",
    "StoreError",
    "StoredSchema",
    "SubjectVersion",
    "check_url",
    "mask_url",
    "open_error",
    "sqlite_file",
]

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class StoreError(RuntimeError):
    """The metadata database cannot be opened; the message names its URL (password masked)."""


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
    """What the registry (and ``fabric products``) need from storage; nothing about schema languages."""

    def atomic(self) -> Any:
        """Context manager: the writes inside commit together, or none does if the block raises.

        Reads inside the block see its own writes. A nested ``atomic()`` joins the outer block
        (no savepoint: an inner failure the outer block swallows keeps the inner writes).
        """

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
        """Drop a subject's level and options; False when it had neither."""

    def get_options(self, subject: str | None) -> dict[str, Any]:
        """Config options set for ``subject`` (None: global), e.g. ``{"normalize": True}``; empty when unset."""

    def set_options(self, subject: str | None, options: dict[str, Any]) -> None:
        """Replace the config options of ``subject`` (None: global); an empty dict clears them."""

    def rekey_schemas(self, marker: str, rekey: Any) -> int:
        """Recompute every schema's identity key unless the store's marker already equals ``marker``.

        ``rekey(stored) -> (canonical, original)`` gives a row's new key and stored text. In one
        transaction: every row is rekeyed, then ``marker`` is recorded. Returns the rows rekeyed
        (0 when the marker matched). Ids and version rows are untouched.
        """

    def put_product(self, name: str, spec_json: str) -> None:
        """Insert or replace data product ``name`` with its spec (JSON text, opaque to the store)."""

    def get_product(self, name: str) -> str | None:
        """The spec JSON of product ``name``, or None."""

    def list_products(self) -> list[tuple[str, str]]:
        """Every ``(name, spec_json)``, sorted by name."""

    def delete_product(self, name: str) -> bool:
        """Remove product ``name``; False when there was none."""

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""


class MemoryRegistryStore:
    """Dict-backed :class:`RegistryStore`; lives as long as the object. Thread-safe.

    ``atomic()`` holds the store's lock for the whole block (other threads wait) and restores a
    snapshot when the block raises.

    Example:
        >>> store = MemoryRegistryStore()
        >>> try:
        ...     with store.atomic():
        ...         store.put_product("p", "{}")
        ...         raise RuntimeError("half-way")
        ... except RuntimeError:
        ...     pass
        >>> store.list_products()
        []
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # atomic() nesting of the thread holding the lock
        self._schemas: dict[int, StoredSchema] = {}
        self._by_key: dict[tuple[str, str], int] = {}
        self._versions: dict[str, dict[int, SubjectVersion]] = {}
        self._config: dict[str | None, str] = {}
        self._options: dict[str | None, dict[str, Any]] = {}
        self._marker: str | None = None
        self._products: dict[str, str] = {}

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self._lock:
            if self._depth:  # join the outer block
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            snapshot = self._snapshot()
            self._depth = 1
            try:
                yield
            except BaseException:
                self._restore(snapshot)
                raise
            finally:
                self._depth = 0

    def _snapshot(self) -> tuple:
        return (
            dict(self._schemas), dict(self._by_key), {s: dict(rows) for s, rows in self._versions.items()},
            dict(self._config), dict(self._products), dict(self._options), self._marker,
        )

    def _restore(self, snapshot: tuple) -> None:
        (self._schemas, self._by_key, self._versions, self._config, self._products, self._options,
         self._marker) = snapshot

    def find_schema(self, schema_type: str, canonical: str) -> int | None:
        with self._lock:
            return self._by_key.get((schema_type, canonical))

    def get_schema(self, schema_id: int) -> StoredSchema | None:
        with self._lock:
            return self._schemas.get(schema_id)

    def subjects(self) -> list[str]:
        with self._lock:
            return sorted(s for s, rows in self._versions.items() if rows)

    def versions(self, subject: str) -> list[SubjectVersion]:
        with self._lock:
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
        with self._lock:
            return self._config.get(subject)

    def set_config(self, subject: str | None, level: str) -> None:
        with self._lock:
            self._config[subject] = level

    def delete_config(self, subject: str) -> bool:
        with self._lock:
            had_options = bool(self._options.pop(subject, None))
            return self._config.pop(subject, None) is not None or had_options

    def get_options(self, subject: str | None) -> dict[str, Any]:
        with self._lock:
            return dict(self._options.get(subject, {}))

    def set_options(self, subject: str | None, options: dict[str, Any]) -> None:
        with self._lock:
            self._options[subject] = dict(options)

    def rekey_schemas(self, marker: str, rekey: Any) -> int:
        with self.atomic():
            if self._marker == marker:
                return 0
            schemas = {}
            for sid, row in sorted(self._schemas.items()):
                canonical, original = rekey(row)
                schemas[sid] = replace(row, canonical=canonical, original=original)
            self._schemas = schemas
            self._by_key = {(row.schema_type, row.canonical): sid for sid, row in schemas.items()}
            self._marker = marker
            return len(schemas)

    def put_product(self, name: str, spec_json: str) -> None:
        with self._lock:
            self._products[name] = spec_json

    def get_product(self, name: str) -> str | None:
        with self._lock:
            return self._products.get(name)

    def list_products(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._products.items())

    def delete_product(self, name: str) -> bool:
        with self._lock:
            return self._products.pop(name, None) is not None

    def close(self) -> None:
        pass


# -- URLs ---------------------------------------------------------------------------------------

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@/]*@")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``; works on URLs SQLAlchemy cannot parse too.

    Example:
        >>> mask_url("postgresql+psycopg://fabric:s3cret@db:5432/fabric")
        'postgresql+psycopg://fabric:***@db:5432/fabric'
        >>> mask_url("sqlite:///tmp/metadata.db")
        'sqlite:///tmp/metadata.db'
    """
    return _PASSWORD_IN_URL.sub(r"\1***@", str(url))


def check_url(url: str) -> URL:
    """Parse a metadata-store URL and check that its backend is one the store supports.

    The database driver is not imported here (``psycopg`` need only be installed where the store opens).

    Raises:
        ValueError: unparseable, or a backend other than sqlite/postgresql; names the masked URL.

    Example:
        >>> check_url("postgresql+psycopg://u:pw@db/fabric").get_backend_name()
        'postgresql'
        >>> check_url("mysql://u:pw@db/fabric")
        Traceback (most recent call last):
        ...
        ValueError: metadata store URL 'mysql://u:***@db/fabric': backend 'mysql' is not supported; use one of sqlite, postgresql
    """
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - ArgumentError, ValueError for a bad port, ...
        raise ValueError(
            f"metadata store URL {mask_url(url)!r} is not a SQLAlchemy URL "
            "(expected e.g. sqlite:///path/metadata.db or postgresql+psycopg://user:pass@host:5432/db)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"metadata store URL {mask_url(url)!r}: backend {backend!r} is not supported; "
            f"use one of {', '.join(SUPPORTED_BACKENDS)}"
        )
    try:
        parsed.get_dialect()  # knows the driver name; imports SQLAlchemy's dialect, not the driver
    except Exception:  # noqa: BLE001 - NoSuchModuleError
        raise ValueError(
            f"metadata store URL {mask_url(url)!r}: unknown driver {parsed.get_driver_name()!r} for {backend}"
            + (" (use postgresql+psycopg://)" if backend == "postgresql" else "")
        ) from None
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ValueError(f"metadata store URL {mask_url(url)!r}: port {parsed.port} is out of range")
    if backend == "postgresql" and not parsed.database:
        raise ValueError(f"metadata store URL {mask_url(url)!r}: name the database (.../DBNAME)")
    return parsed


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, or None (other backends, in-memory SQLite).

    Example:
        >>> sqlite_file("sqlite:////var/fabric/metadata.db")
        PosixPath('/var/fabric/metadata.db')
        >>> sqlite_file("postgresql+psycopg://db/fabric") is None
        True
    """
    parsed = check_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


# -- SQL backend --------------------------------------------------------------------------------

_META = sa.MetaData()
_SCHEMAS = sa.Table(
    "registry_schemas", _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("schema_type", sa.String(32), nullable=False),
    # The identity is (type, canonical); canonical text can be far longer than a PostgreSQL index
    # row allows, so the unique index is on its digest.
    sa.Column("canonical_sha256", sa.String(64), nullable=False),
    sa.Column("canonical", sa.Text, nullable=False),
    sa.Column("original", sa.Text, nullable=False),
    sa.Column("references_json", sa.Text, nullable=False),
    sa.UniqueConstraint("schema_type", "canonical_sha256", name="registry_schemas_identity"),
)
_VERSIONS = sa.Table(
    "registry_versions", _META,
    sa.Column("subject", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("schema_id", sa.Integer, sa.ForeignKey("registry_schemas.id"), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
)
_CONFIG = sa.Table(
    "registry_config", _META,
    sa.Column("subject", sa.Text, primary_key=True),  # "" is the global level; subjects are never empty
    sa.Column("compatibility", sa.String(32), nullable=False),
)
_OPTIONS = sa.Table(
    "registry_config_options", _META,
    sa.Column("subject", sa.Text, primary_key=True),  # "" is global, as in registry_config
    sa.Column("options_json", sa.Text, nullable=False),
)
_META_ROWS = sa.Table(  # created on start by create_all, also in stores written before it existed
    "registry_meta", _META,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
_IDENTITY_KEY = "identity"
_PRODUCTS = sa.Table(
    "products", _META,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("spec_json", sa.Text, nullable=False),
)
_GLOBAL = ""
# pg_advisory_xact_lock key serialising writers on PostgreSQL ("fabric" in ASCII, then 1).
_PG_WRITE_LOCK = 0x6661627269630001
SQLITE_BUSY_TIMEOUT_MS = 30_000


def open_error(url: str, exc: Exception) -> StoreError:
    """The error for a metadata store at ``url`` that cannot be opened: the driver's cause, password masked.

    Example:
        >>> str(open_error("postgresql://u:s3cret@db/x", RuntimeError("auth failed for s3cret")))
        "metadata store 'postgresql://u:***@db/x' cannot be opened: RuntimeError: auth failed for ***"
    """
    detail = getattr(exc, "orig", None) or exc
    message = str(detail).strip().replace(make_url(url).password or "\0", "***")
    return StoreError(f"metadata store {mask_url(url)!r} cannot be opened: {type(detail).__name__}: {message}")


def _digest(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _open_engine(url: str) -> Engine:
    try:
        parsed = check_url(url)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _sqlite_events(engine)
            return engine
        return sa.create_engine(parsed, pool_pre_ping=True)
    except ImportError as exc:  # the driver (e.g. psycopg) is not installed
        raise StoreError(
            f"metadata store {mask_url(url)!r}: database driver missing ({exc}); "
            "for PostgreSQL use postgresql+psycopg:// and install 'psycopg[binary]'"
        ) from None
    except Exception as exc:  # noqa: BLE001 - NoSuchModuleError and friends
        raise StoreError(f"metadata store {mask_url(url)!r}: {type(exc).__name__}: {exc}") from None


def _sqlite_events(engine: Engine) -> None:
    """WAL and a busy timeout so several processes share the file; writers take the lock at BEGIN."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver leaves BEGIN to us (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front (waiting up to the busy timeout); a deferred
        # transaction that reads and then writes would fail at once when another writer committed.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("fabric_write") else "BEGIN")


class SqlRegistryStore:
    """:class:`RegistryStore` in a SQL database (SQLAlchemy Core): SQLite or PostgreSQL.

    A new store on the same URL sees everything. Writers are serialised across processes
    (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-level advisory lock), so global ids and
    version numbers stay unique when several processes write at once; readers never wait.
    ``atomic()`` blocks are per thread.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:////abs/metadata.db`` or
            ``postgresql+psycopg://user:pass@host:5432/fabric``. Tables are created when missing.

    Raises:
        StoreError: bad URL, missing driver, or unreachable database; names the URL, password masked.

    Example:
        >>> import tempfile, os
        >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "metadata.db")
        >>> store = SqlRegistryStore(url)
        >>> store.add_version("s", "AVRO", '"int"', '"int"', "[]").version
        1
        >>> store.close()
        >>> SqlRegistryStore(url).versions("s")
        [SubjectVersion(subject='s', version=1, schema_id=1, deleted=False)]
    """

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        self._engine = _open_engine(url)
        self._pg = self._engine.dialect.name == "postgresql"
        self._local = threading.local()
        try:
            with self._write() as conn:
                _META.create_all(conn)
        except sa.exc.SQLAlchemyError as exc:
            self._engine.dispose()
            raise open_error(url, exc) from None

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self._write():
            yield

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """The thread's open write transaction, or a new one committed when the block ends."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._engine.connect() as conn:
            conn.execution_options(fabric_write=True)
            with conn.begin():
                if self._pg:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_WRITE_LOCK)))
                self._local.conn = conn
                try:
                    yield conn
                finally:
                    self._local.conn = None

    def _rows(self, stmt: Any) -> list[Any]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:  # inside atomic(): see the block's own writes
            return list(conn.execute(stmt))
        with self._engine.connect() as conn:
            return list(conn.execute(stmt))

    # -- schemas and versions -------------------------------------------------------------------

    def find_schema(self, schema_type: str, canonical: str) -> int | None:
        rows = self._rows(
            sa.select(_SCHEMAS.c.id).where(
                _SCHEMAS.c.schema_type == schema_type, _SCHEMAS.c.canonical_sha256 == _digest(canonical)
            )
        )
        return rows[0][0] if rows else None

    def get_schema(self, schema_id: int) -> StoredSchema | None:
        c = _SCHEMAS.c
        rows = self._rows(
            sa.select(c.id, c.schema_type, c.canonical, c.original, c.references_json).where(c.id == schema_id)
        )
        return StoredSchema(*rows[0]) if rows else None

    def subjects(self) -> list[str]:
        return [r[0] for r in self._rows(sa.select(_VERSIONS.c.subject).distinct().order_by(_VERSIONS.c.subject))]

    def versions(self, subject: str) -> list[SubjectVersion]:
        c = _VERSIONS.c
        rows = self._rows(
            sa.select(c.subject, c.version, c.schema_id, c.deleted).where(c.subject == subject).order_by(c.version)
        )
        return [SubjectVersion(s, v, i, bool(d)) for s, v, i, d in rows]

    def add_version(
        self, subject: str, schema_type: str, canonical: str, original: str, references: str
    ) -> SubjectVersion:
        with self._write() as conn:
            schema_id = self.find_schema(schema_type, canonical)
            if schema_id is None:
                # Ids are max + 1 under the write lock: no gaps, and rows are never deleted.
                schema_id = conn.execute(sa.select(sa.func.coalesce(sa.func.max(_SCHEMAS.c.id), 0))).scalar_one() + 1
                conn.execute(_SCHEMAS.insert().values(
                    id=schema_id, schema_type=schema_type, canonical_sha256=_digest(canonical),
                    canonical=canonical, original=original, references_json=references,
                ))
            top = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(_VERSIONS.c.version), 0)).where(_VERSIONS.c.subject == subject)
            ).scalar_one()
            row = SubjectVersion(subject, top + 1, schema_id)
            conn.execute(_VERSIONS.insert().values(subject=subject, version=row.version, schema_id=schema_id, deleted=False))
            return row

    def soft_delete(self, subject: str, version: int) -> None:
        c = _VERSIONS.c
        with self._write() as conn:
            conn.execute(_VERSIONS.update().where(c.subject == subject, c.version == version).values(deleted=True))

    def remove_versions(self, subject: str, versions: list[int]) -> None:
        c = _VERSIONS.c
        with self._write() as conn:
            conn.execute(_VERSIONS.delete().where(c.subject == subject, c.version.in_(list(versions))))

    # -- config ---------------------------------------------------------------------------------

    def get_config(self, subject: str | None) -> str | None:
        rows = self._rows(sa.select(_CONFIG.c.compatibility).where(_CONFIG.c.subject == (subject or _GLOBAL)))
        return rows[0][0] if rows else None

    def set_config(self, subject: str | None, level: str) -> None:
        self._upsert(_CONFIG, _CONFIG.c.subject, subject or _GLOBAL, compatibility=level)

    def delete_config(self, subject: str) -> bool:
        with self._write() as conn:
            options = conn.execute(_OPTIONS.delete().where(_OPTIONS.c.subject == subject)).rowcount
            return conn.execute(_CONFIG.delete().where(_CONFIG.c.subject == subject)).rowcount + options > 0

    def get_options(self, subject: str | None) -> dict[str, Any]:
        rows = self._rows(sa.select(_OPTIONS.c.options_json).where(_OPTIONS.c.subject == (subject or _GLOBAL)))
        return json.loads(rows[0][0]) if rows else {}

    def set_options(self, subject: str | None, options: dict[str, Any]) -> None:
        self._upsert(_OPTIONS, _OPTIONS.c.subject, subject or _GLOBAL, options_json=json.dumps(options, sort_keys=True))

    def rekey_schemas(self, marker: str, rekey: Any) -> int:
        c = _SCHEMAS.c
        marker_query = sa.select(_META_ROWS.c.value).where(_META_ROWS.c.key == _IDENTITY_KEY)
        if [r[0] for r in self._rows(marker_query)] == [marker]:
            return 0  # the usual start: no write lock taken
        with self._write() as conn:
            found = conn.execute(marker_query).first()
            if found is not None and found[0] == marker:
                return 0
            rows = [self.get_schema(r[0]) for r in conn.execute(sa.select(c.id).order_by(c.id))]
            # Move every digest out of the way first, so no row's new key meets another's old one.
            conn.execute(_SCHEMAS.update().values(canonical_sha256=sa.literal("rekey:") + sa.cast(c.id, sa.Text)))
            for row in rows:
                canonical, original = rekey(row)
                conn.execute(_SCHEMAS.update().where(c.id == row.id).values(
                    canonical=canonical, canonical_sha256=_digest(canonical), original=original,
                ))
            self._upsert(_META_ROWS, _META_ROWS.c.key, _IDENTITY_KEY, value=marker)
            return len(rows)

    # -- products -------------------------------------------------------------------------------

    def put_product(self, name: str, spec_json: str) -> None:
        self._upsert(_PRODUCTS, _PRODUCTS.c.name, name, spec_json=spec_json)

    def get_product(self, name: str) -> str | None:
        rows = self._rows(sa.select(_PRODUCTS.c.spec_json).where(_PRODUCTS.c.name == name))
        return rows[0][0] if rows else None

    def list_products(self) -> list[tuple[str, str]]:
        c = _PRODUCTS.c
        return [(n, s) for n, s in self._rows(sa.select(c.name, c.spec_json).order_by(c.name))]

    def delete_product(self, name: str) -> bool:
        with self._write() as conn:
            return conn.execute(_PRODUCTS.delete().where(_PRODUCTS.c.name == name)).rowcount > 0

    # -- helpers --------------------------------------------------------------------------------

    def _upsert(self, table: sa.Table, key: sa.Column, key_value: str, **fields: str) -> None:
        # Writers are serialised, so update-else-insert cannot race; it also needs no dialect SQL.
        with self._write() as conn:
            if conn.execute(table.update().where(key == key_value).values(**fields)).rowcount == 0:
                conn.execute(table.insert().values({key.name: key_value, **fields}))

    def close(self) -> None:
        self._engine.dispose()
