"""The commit log of a dataset: create-only entries under ``_log/`` plus snapshot checkpoints.

A dataset's state at version ``v`` (its schema and the list of its data files) is the replay of
log entries ``0..v``. Entry ``_log/<v:020d>.json`` is a *delta*: the files it adds, the paths it
removes, an optional new schema, the operation and its metadata. Entry 0 creates the dataset and
carries its spec. Entries are written with :meth:`StorageLocation.put_if_absent`, so of two
writers of version ``v`` exactly one wins; that single create-only PUT is the commit.

Every :data:`CHECKPOINT_EVERY` versions the committer also writes ``_checkpoints/<v:020d>.json``
(the whole state at ``v``) and points ``_checkpoints/_last.json`` at it. Both are derived data and
written after the commit: a missing or stale checkpoint only means replaying a few more entries.
A reader of the latest version reads the hint, that checkpoint, and the entries listed after it
(``LIST _log/`` with ``StartAfter``): a constant number of requests however long the history.

The entry format is documented in ``docs/storage.md``.

Example:
    >>> import pyarrow as pa
    >>> s = schema_from_dict({"k": "int64 not null", "ts": "timestamp[ms, tz=UTC]", "tags": "list<item: string>"})
    >>> s.field("k").nullable, str(s.field("ts").type), schema_to_dict(s)["tags"]
    (False, 'timestamp[ms, tz=UTC]', 'list<item: string>')
    >>> DataFile.from_dict(DataFile("date=2024-01-01/part-1.parquet", {"date": "2024-01-01"}, 3, 900, {"k": (1, 9)}).to_dict()).stats
    {'k': (1, 9)}
"""

from __future__ import annotations

import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pyarrow as pa

from fabric_ray.storage.fs import PathNotFoundError, StorageLocation

__all__ = [
    "CHECKPOINT_EVERY",
    "Commit",
    "CommitConflict",
    "CommitLog",
    "DataFile",
    "DatasetError",
    "LogState",
    "SchemaEvolutionError",
    "Snapshot",
    "check_evolution",
    "schema_from_dict",
    "schema_to_dict",
    "type_from_str",
]

log = logging.getLogger(__name__)

FORMAT = 1
CHECKPOINT_EVERY = 10
LOG_DIR = "_log"
CHECKPOINT_DIR = "_checkpoints"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/_last.json"
_ENTRY = re.compile(r"^(\d{20})\.json$")
_READ_THREADS = 8


class DatasetError(ValueError):
    """A dataset operation was refused or failed; the message names the dataset, file or column."""


class SchemaEvolutionError(DatasetError):
    """A schema change other than adding nullable columns; names the column."""


class CommitConflict(DatasetError):
    """A concurrent commit removed files this commit also removes (or re-adds); re-read and retry."""


# -- schemas as YAML/JSON-friendly dicts ------------------------------------------------------------

_TS = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]$")
_DEC = re.compile(r"^decimal(128|256)\((\d+), (-?\d+)\)$")
_FSB = re.compile(r"^fixed_size_binary\[(\d+)\]$")


def _split_top(text: str) -> list[str]:
    """Split ``text`` on commas that are not nested in <>, () or []."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur).strip())
    return parts


def _field_from_str(text: str) -> pa.Field:
    name, _, rest = text.partition(": ")
    rest = rest.strip()
    nullable = not rest.endswith(" not null")
    return pa.field(name, type_from_str(rest[: -len(" not null")] if not nullable else rest), nullable=nullable)


def type_from_str(text: str) -> pa.DataType:
    """The Arrow type spelled ``text`` as ``str(type)`` prints it (``int64``, ``timestamp[ms, tz=UTC]``, ...).

    Raises:
        DatasetError: an unknown or unsupported spelling.
    """
    text = text.strip()
    if m := _TS.match(text):
        return pa.timestamp(m.group(1), tz=m.group(2))
    if m := _DEC.match(text):
        return (pa.decimal128 if m.group(1) == "128" else pa.decimal256)(int(m.group(2)), int(m.group(3)))
    if m := _FSB.match(text):
        return pa.binary(int(m.group(1)))
    for prefix, make in (("list<", pa.list_), ("large_list<", pa.large_list)):
        if text.startswith(prefix) and text.endswith(">"):
            return make(_field_from_str(text[len(prefix) : -1]))
    if text.startswith("struct<") and text.endswith(">"):
        return pa.struct([_field_from_str(p) for p in _split_top(text[len("struct<") : -1])])
    if text.startswith("map<") and text.endswith(">"):
        key, value = _split_top(text[len("map<") : -1])
        return pa.map_(type_from_str(key), type_from_str(value))
    try:
        return pa.type_for_alias(text)
    except (ValueError, KeyError) as exc:
        raise DatasetError(f"column type {text!r} is not supported; use an Arrow type name such as int64, string, timestamp[ms, tz=UTC]") from exc


def schema_to_dict(schema: pa.Schema) -> dict[str, str]:
    """``{"column": "type"}`` in column order (``"type not null"`` for non-nullable columns).

    Raises:
        DatasetError: a type that would not read back identically, naming the column.
    """
    out = {}
    for f in schema:
        text = str(f.type) + ("" if f.nullable else " not null")
        try:
            back = type_from_str(str(f.type))
        except DatasetError as exc:
            raise DatasetError(f"column {f.name!r}: type {f.type} cannot be stored in a dataset schema") from exc
        if back != f.type:
            raise DatasetError(f"column {f.name!r}: type {f.type} cannot be stored in a dataset schema (reads back as {back})")
        out[f.name] = text
    return out


def schema_from_dict(d: Mapping[str, str]) -> pa.Schema:
    """The inverse of :func:`schema_to_dict`."""
    if not isinstance(d, Mapping) or not d:
        raise DatasetError(f"a schema is a non-empty mapping column -> type; got {d!r}")
    fields = []
    for name, text in d.items():
        if not isinstance(text, str):
            raise DatasetError(f"column {name!r}: type must be a string such as 'int64'; got {text!r}")
        nullable = not text.strip().endswith(" not null")
        base = text.strip()[: -len(" not null")] if not nullable else text
        try:
            fields.append(pa.field(name, type_from_str(base), nullable=nullable))
        except DatasetError as exc:
            raise DatasetError(f"column {name!r}: {exc}") from exc
    return pa.schema(fields)


def check_evolution(old: pa.Schema, new: pa.Schema) -> None:
    """Allow only additions of nullable columns: every old column kept with its type and nullability.

    Raises:
        SchemaEvolutionError: naming the first offending column and what changed.
    """
    for f in old:
        if f.name not in new.names:
            raise SchemaEvolutionError(
                f"column {f.name!r} ({f.type}) would be dropped or renamed; only adding nullable columns is allowed"
            )
        g = new.field(f.name)
        if g.type != f.type:
            raise SchemaEvolutionError(f"column {f.name!r}: type change {f.type} -> {g.type} is not allowed; add a new column instead")
        if g.nullable != f.nullable:
            raise SchemaEvolutionError(f"column {f.name!r}: changing nullability ({f.nullable} -> {g.nullable}) is not allowed")
    for g in new:
        if g.name not in old.names and not g.nullable:
            raise SchemaEvolutionError(f"new column {g.name!r} ({g.type}) must be nullable: existing files have no values for it")
    if len(set(new.names)) != len(new.names):
        dup = sorted({n for n in new.names if new.names.count(n) > 1})
        raise SchemaEvolutionError(f"column(s) {dup} appear twice in the new schema")


# -- value types -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFile:
    """One committed (or staged) Parquet file.

    Attributes:
        path: relative to the dataset root (``date=.../part-....parquet``).
        partition: field -> value of its folder.
        rows: row count.
        bytes: file size.
        stats: column -> (min, max) of the key and time columns (time in epoch ms), for pruning.
    """

    path: str
    partition: dict[str, str]
    rows: int
    bytes: int
    stats: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "partition": dict(self.partition), "rows": self.rows, "bytes": self.bytes,
                "stats": {k: [lo, hi] for k, (lo, hi) in self.stats.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataFile:
        return cls(str(d["path"]), dict(d.get("partition", {})), int(d["rows"]), int(d["bytes"]),
                   {k: (v[0], v[1]) for k, v in (d.get("stats") or {}).items()})

    def __hash__(self) -> int:
        return hash(self.path)


@dataclass(frozen=True)
class Snapshot:
    """A dataset as of one version: its schema and files (in commit order)."""

    version: int
    schema: pa.Schema
    files: tuple[DataFile, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)


@dataclass(frozen=True)
class Commit:
    """One log entry.

    Attributes:
        version: its version (0 is the creation).
        operation: ``create``, ``append``, ``overwrite``, ``compact``, ``evolve`` or a caller's word.
        added: files it added.
        removed: paths it removed.
        metadata: the caller's JSON-able metadata (an ETL run id, a shard's offsets, ...).
        timestamp_ms: when it was committed (the committer's clock).
        schema: the new schema, for commits that changed it.
        commit_id: unique id of the attempt that wrote it.
    """

    version: int
    operation: str
    added: tuple[DataFile, ...]
    removed: tuple[str, ...]
    metadata: dict[str, Any]
    timestamp_ms: int = 0
    schema: pa.Schema | None = None
    commit_id: str = ""

    def to_entry(self, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
        entry = {"format": FORMAT, "version": self.version, "commit_id": self.commit_id, "operation": self.operation,
                 "timestamp_ms": self.timestamp_ms, "added": [f.to_dict() for f in self.added], "removed": list(self.removed),
                 "schema": schema_to_dict(self.schema) if self.schema is not None else None, "metadata": self.metadata}
        if spec is not None:
            entry["spec"] = dict(spec)
        return entry

    @classmethod
    def from_entry(cls, e: Mapping[str, Any]) -> Commit:
        return cls(int(e["version"]), str(e["operation"]), tuple(DataFile.from_dict(f) for f in e.get("added", [])),
                   tuple(e.get("removed", [])), dict(e.get("metadata") or {}), int(e.get("timestamp_ms", 0)),
                   schema_from_dict(e["schema"]) if e.get("schema") else None, str(e.get("commit_id", "")))


@dataclass(frozen=True)
class LogState:
    """The replayed state at ``version``: spec (without schema), current schema, files by path."""

    version: int
    spec: dict[str, Any]
    schema: pa.Schema
    files: dict[str, DataFile]

    def apply(self, commit: Commit, uri: str) -> LogState:
        """The state after ``commit`` (the next version)."""
        if commit.version != self.version + 1:
            raise DatasetError(f"dataset log {uri}: version {commit.version} follows {self.version}; the log has a gap")
        files = dict(self.files)
        for path in commit.removed:
            if files.pop(path, None) is None:
                raise DatasetError(f"dataset log {uri}: version {commit.version} removes {path!r}, which is not in version {self.version}")
        for f in commit.added:
            files[f.path] = f
        return LogState(commit.version, self.spec, commit.schema or self.schema, files)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.version, self.schema, tuple(self.files.values()))

    def to_checkpoint(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": self.version, "spec": self.spec, "schema": schema_to_dict(self.schema),
                "files": [f.to_dict() for f in self.files.values()]}

    @classmethod
    def from_checkpoint(cls, d: Mapping[str, Any]) -> LogState:
        files = [DataFile.from_dict(f) for f in d["files"]]
        return cls(int(d["version"]), dict(d["spec"]), schema_from_dict(d["schema"]), {f.path: f for f in files})


# -- the log on storage -----------------------------------------------------------------------------


def entry_name(version: int) -> str:
    return f"{LOG_DIR}/{version:020d}.json"


def checkpoint_name(version: int) -> str:
    return f"{CHECKPOINT_DIR}/{version:020d}.json"


class CommitLog:
    """Reads and appends the log of the dataset at ``location``."""

    def __init__(self, location: StorageLocation) -> None:
        self.location = location

    def _json(self, rel: str) -> dict[str, Any]:
        data = self.location.read_bytes(rel)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise DatasetError(f"dataset log file {self.location.uri_of(rel)} is not valid JSON ({exc}); it was damaged outside the dataset") from exc

    def try_append(self, commit: Commit, spec: Mapping[str, Any] | None = None) -> bool:
        """Publish ``commit`` as its version; ``False`` when another writer took that version."""
        data = json.dumps(commit.to_entry(spec), separators=(",", ":"), default=str).encode()
        return self.location.put_if_absent(entry_name(commit.version), data)

    def read_commit(self, version: int) -> Commit:
        try:
            return Commit.from_entry(self._json(entry_name(version)))
        except PathNotFoundError as exc:
            raise DatasetError(f"dataset {self.location.uri}: version {version} does not exist (or was expired)") from exc

    def read_commits(self, versions: Iterable[int]) -> list[Commit]:
        versions = list(versions)
        if len(versions) <= 2:
            return [self.read_commit(v) for v in versions]
        with ThreadPoolExecutor(min(_READ_THREADS, len(versions))) as pool:
            return list(pool.map(self.read_commit, versions))

    def versions(self, after: int | None = None) -> list[int]:
        """Committed versions greater than ``after``, ascending (one LIST from ``after`` on)."""
        start = f"{after:020d}.json" if after is not None else None
        out = []
        for name in self.location.list(LOG_DIR, start_after=start):
            if m := _ENTRY.match(name):
                v = int(m.group(1))
                if after is None or v > after:
                    out.append(v)
        return sorted(out)

    def _initial(self) -> LogState:
        first = self._json(entry_name(0))
        if first.get("operation") != "create" or "spec" not in first:
            raise DatasetError(f"dataset log {self.location.uri}: version 0 is not a create entry")
        return LogState(0, dict(first["spec"]), schema_from_dict(first["schema"]), {})

    def load_checkpoint(self, version: int) -> LogState | None:
        try:
            return LogState.from_checkpoint(self._json(checkpoint_name(version)))
        except PathNotFoundError:
            return None

    def _checkpoint_versions(self) -> list[int]:
        return sorted(int(m.group(1)) for n in self.location.list(CHECKPOINT_DIR) if (m := _ENTRY.match(n)))

    def _base(self, at_most: int | None = None) -> LogState | None:
        """The newest checkpoint (at most ``at_most``), else the create entry; ``None``: no dataset."""
        if at_most is None:
            try:
                hint = int(self._json(LAST_CHECKPOINT)["version"])
                state = self.load_checkpoint(hint)
                if state is not None:
                    return state
            except (PathNotFoundError, KeyError, ValueError, TypeError):
                pass
        for v in reversed(self._checkpoint_versions()):
            if at_most is None or v <= at_most:
                state = self.load_checkpoint(v)
                if state is not None:
                    return state
        try:
            return self._initial()
        except PathNotFoundError:
            return None

    def latest(self, known: LogState | None = None) -> LogState:
        """The state at the latest version, starting from ``known`` if given (only newer entries are read).

        Raises:
            DatasetError: there is no dataset at the location.
        """
        state = known if known is not None else self._base()
        if state is None:
            raise DatasetError(f"no dataset at {self.location.uri} (no {LOG_DIR}/ entries); create it with Dataset.create")
        return self._replay(state, self.versions(after=state.version))

    def at(self, version: int) -> LogState:
        """The state at ``version`` (time travel)."""
        if version < 0:
            raise DatasetError(f"dataset {self.location.uri}: versions start at 0; got {version}")
        state = self._base(at_most=version)
        if state is None:
            raise DatasetError(f"no dataset at {self.location.uri} (no {LOG_DIR}/ entries); create it with Dataset.create")
        return self._replay(state, range(state.version + 1, version + 1))

    def _replay(self, state: LogState, versions: Iterable[int]) -> LogState:
        for commit in self.read_commits(versions):
            state = state.apply(commit, self.location.uri)
        return state

    def write_checkpoint(self, state: LogState) -> None:
        """Write the checkpoint of ``state`` and point the hint at it (best effort: failures are logged)."""
        try:
            data = json.dumps(state.to_checkpoint(), separators=(",", ":"), default=str).encode()
            self.location.put_if_absent(checkpoint_name(state.version), data)
            self.location.write_bytes(LAST_CHECKPOINT, json.dumps({"version": state.version, "written_ms": int(time.time() * 1000)}).encode())
        except Exception as exc:  # noqa: BLE001 - a checkpoint is an optimisation; the commit already stands
            log.warning("dataset %s: could not write checkpoint %d: %r", self.location.uri, state.version, exc)
