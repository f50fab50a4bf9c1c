"""Where an ETL pipeline's rows come from: path resolution (no Ray) and the Ray Data readers.

Paths in a pipeline's ``read:`` step resolve like this:

* ``file:///abs/...`` and ``s3://bucket/...`` are used as they are (S3 with the endpoint and
  credentials of ``storage`` in the config);
* anything else is relative to the storage root (``storage.root``): ``raw/payments/*.parquet``;
  ``..`` and leading ``/`` are refused, so a relative path never leaves the root;
* a glob (``*`` within a folder, ``**`` across folders, ``?``, ``[abc]``) matches file names;
  a folder means the files below it with the format's extensions; names starting with ``.``
  or ``_`` (temporary files, ``_log/``) are skipped in both cases;
* nothing found raises :class:`SourceError` naming the URI.

The stream archive of pipeline ``P``'s topic ``T`` is ``<root>/archive/P/T`` (see
:mod:`fabric_ray.streams.archive`); a fabric dataset ``D`` is ``<root>/datasets/D``.

Example:
    >>> import tempfile
    >>> from fabric_ray.storage import open_location
    >>> root = f"file://{tempfile.mkdtemp()}"
    >>> loc = open_location(root)
    >>> for name in ("raw/a.csv", "raw/b.csv", "raw/notes.txt", "raw/_tmp/c.csv"):
    ...     loc.fs.pipe_file(loc.join(name), b"x\\n1\\n")
    >>> [p.rsplit("/", 2)[-2:] for p in resolve_files("raw", "csv", root).paths]
    [['raw', 'a.csv'], ['raw', 'b.csv']]
    >>> len(resolve_files("raw/*.txt", "csv", root).paths)
    1
    >>> resolve_files("raw/*.json", "json", root)
    Traceback (most recent call last):
    ...
    fabric_ray.etl.sources.SourceError: read: no file matches file://.../raw/*.json
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import pyarrow as pa

from fabric_ray.config import FabricConfig, StorageConfig
from fabric_ray.storage.fs import StorageLocation, open_location

if TYPE_CHECKING:  # pragma: no cover
    from fabric_ray.etl.pipeline import ReadStep

__all__ = [
    "BlockReader",
    "ParquetRange",
    "ReadPlan",
    "ResolvedInput",
    "SourceError",
    "archive_location",
    "dataset_location",
    "decode_block",
    "pack_row_groups",
    "plan_parquet",
    "read_dataset",
    "resolve_files",
    "resolve_input",
    "sample_rows",
]

FORMAT_EXTENSIONS = {
    "parquet": (".parquet", ".pq"),
    "csv": (".csv", ".csv.gz", ".tsv"),
    "json": (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz"),
}
_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceError(ValueError):
    """An input cannot be read or found; the message names the file, folder, URI or broker."""


@dataclass(frozen=True)
class ResolvedInput:
    """What a read step resolved to, before anything is read.

    Attributes:
        source: ``path``, ``archive``, ``dataset`` or ``kafka``.
        format: ``parquet``, ``csv``, ``json`` (files) or ``json`` / ``raw`` (kafka).
        location: the folder the paths are on (its :meth:`~StorageLocation.arrow_filesystem`
            reads them); ``None`` for kafka.
        paths: full paths on ``location``'s file system.
        description: one line for records and messages.
        kafka: for kafka: ``{"topic", "bootstrap_servers", "start_offset", "end_offset", "client"}``.
    """

    source: str
    format: str
    location: StorageLocation | None
    paths: tuple[str, ...]
    description: str
    kafka: dict[str, Any] | None = None

    @property
    def uris(self) -> list[str]:
        """The inputs as URIs (files) or ``kafka://servers/topic`` (for run records)."""
        if self.kafka is not None:
            k = self.kafka
            return [f"kafka://{k['bootstrap_servers']}/{k['topic']}?start={k['start_offset']}&end={k['end_offset']}"]
        scheme = self.location.scheme if self.location else "file"
        return [f"{scheme}://{p}" for p in self.paths]

    def uri_of(self, path: str) -> str:
        """``path`` (on the location's file system) as a URI."""
        return f"{self.location.scheme if self.location else 'file'}://{path}"


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` within a folder, ``**`` across folders, ``?`` one character, ``[...]`` a class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _hidden(name: str) -> bool:
    return any(part.startswith((".", "_")) for part in name.split("/"))


def _split(path: str, storage_root: str) -> tuple[str, str]:
    """``(base folder URI, path or pattern relative to it)`` of a read path."""
    if "://" in path:
        scheme, rest = path.split("://", 1)
        if scheme not in ("file", "s3"):
            raise SourceError(f"read: path {path!r}: use file:///abs/path, s3://bucket/key or a path under the storage root")
        rest = rest.rstrip("/")
        glob = _GLOB_CHARS.search(rest)
        cut = rest.rfind("/", 0, glob.start() if glob else len(rest))
        if cut < 0:  # s3://bucket
            return f"{scheme}://{rest}", ""
        return f"{scheme}://{rest[:cut] or '/'}", rest[cut + 1 :]
    rel = path.strip().rstrip("/")
    if rel.startswith("/"):
        raise SourceError(
            f"read: path {path!r} is absolute; paths without a scheme are under the storage root "
            "(use file:///abs/path for a local file elsewhere)"
        )
    if ".." in rel.split("/"):
        raise SourceError(f"read: path {path!r}: '..' is not allowed (paths stay under the storage root {storage_root})")
    return storage_root, rel


def resolve_files(path: str, format: str, storage_root: str, storage: StorageConfig | None = None) -> ResolvedInput:
    """Resolve a file, folder or glob (see the module docstring) to the files to read.

    Args:
        path: as written in the pipeline's ``read.path``.
        format: ``parquet``, ``csv`` or ``json``: the extensions a folder's files must have.
        storage_root: the storage root URI (``config.storage_root``).
        storage: S3 settings for ``s3://`` paths.

    Returns:
        The resolved input, paths sorted.

    Raises:
        SourceError: a bad path, or nothing found; names the URI.
        fabric_ray.storage.fs.StorageError: the store refused (no bucket, bad credentials,
            unreachable endpoint); names the URI.
    """
    base_uri, rel = _split(path, storage_root)
    location = open_location(base_uri, storage)
    shown = location.uri_of(rel) if rel else location.uri
    glob = _GLOB_CHARS.search(rel)
    if glob:
        prefix = rel[: rel.rfind("/", 0, glob.start()) + 1]
        regex = _glob_regex(rel[len(prefix) :])
        rels = [prefix + n for n in location.list(prefix) if regex.match(n) and not _hidden(n)]
        if not rels:
            raise SourceError(f"read: no file matches {shown}")
    elif rel and location.scheme == "file" and location.fs.isfile(location.join(rel)):
        rels = [rel]
    else:
        names = [n for n in location.list(rel) if not _hidden(n)]
        if names:  # a folder
            extensions = FORMAT_EXTENSIONS[format]
            rels = [f"{rel}/{n}" if rel else n for n in names if n.lower().endswith(extensions)]
            if not rels:
                raise SourceError(f"read: no {'/'.join(extensions)} file under {shown} (found {names[:3]}); set read.format")
        elif rel and location.exists(rel):
            rels = [rel]
        else:
            raise SourceError(f"read: {shown} does not exist (no such file or folder)")
    paths = tuple(location.join(r) for r in sorted(rels))
    return ResolvedInput("path", format, location, paths, f"{format} {path} ({len(paths)} file(s))")


def archive_location(config: FabricConfig, pipeline: str, topic: str) -> StorageLocation:
    """The stream archive folder of ``pipeline``'s ``topic``: ``<root>/archive/<pipeline>/<topic>``."""
    return open_location(config.storage_root, config.storage).child("archive", pipeline, topic)


def dataset_location(config: FabricConfig, name: str) -> StorageLocation:
    """The folder of fabric dataset ``name``: ``<root>/datasets/<name>``."""
    return open_location(config.storage_root, config.storage).child("datasets", name)


def _bootstrap_servers(config: FabricConfig) -> str:
    if config.kafka.bootstrap_servers:
        return config.kafka.bootstrap_servers
    from fabric_ray.daemon import read_daemon_state

    state = read_daemon_state(config.home)
    if state and state.get("bootstrap_servers"):
        return state["bootstrap_servers"]
    raise SourceError(
        "read.kafka: no broker: set kafka.bootstrap_servers (FABRIC_KAFKA__BOOTSTRAP_SERVERS), "
        f"or start the fabric with its embedded broker (`fabric up`, home {config.home})"
    )


def resolve_input(read: ReadStep, config: FabricConfig) -> ResolvedInput:
    """Resolve a pipeline's read step against the configuration (lists files; asks the broker).

    Raises:
        SourceError: nothing to read, or the broker cannot be reached; names the URI or servers.
        fabric_ray.storage.fs.StorageError: the object store refused; names the URI.
    """
    if read.source == "path":
        return resolve_files(read.path, read.format, config.storage_root, config.storage)
    if read.source == "archive":
        from fabric_ray.streams.archive import archived_files

        location = archive_location(config, read.pipeline, read.topic)
        paths = tuple(p for p, *_ in archived_files(location))
        if not paths:
            raise SourceError(f"read.archive: no archived Parquet file under {location.uri} (is pipeline {read.pipeline!r} archiving topic {read.topic!r}?)")
        return ResolvedInput("archive", "parquet", location, paths, f"archive {read.pipeline}/{read.topic} ({len(paths)} file(s))")
    if read.source == "dataset":
        from fabric_ray.storage.dataset import Dataset

        location = dataset_location(config, read.dataset)
        dataset = Dataset.open(location)
        paths = tuple(dataset.file_paths())
        return ResolvedInput("dataset", "parquet", location, paths, f"dataset {read.dataset} v{dataset.version} ({len(paths)} file(s))")
    servers = _bootstrap_servers(config)
    _check_topic(servers, read.topic, dict(config.kafka.client))
    kafka = {
        "topic": read.topic,
        "bootstrap_servers": servers,
        "start_offset": read.start_offset,
        "end_offset": read.end_offset,
        "client": dict(config.kafka.client),
    }
    return ResolvedInput("kafka", read.format, None, (), read.describe(), kafka)


def _check_topic(servers: str, topic: str, client: dict[str, str], timeout_s: float = 10.0) -> None:
    from confluent_kafka import KafkaException

    from fabric_ray.streams.kafka import partition_count

    try:
        partition_count(servers, topic, client, timeout_s=timeout_s)
    except LookupError as exc:
        raise SourceError(f"read.kafka: {exc}") from None
    except KafkaException as exc:
        raise SourceError(
            f"read.kafka: broker {servers} did not answer for topic {topic!r} within {timeout_s:g}s "
            f"({exc.args[0] if exc.args else exc}); check kafka.bootstrap_servers and kafka.client"
        ) from None


def _hive_folders(resolved: ResolvedInput) -> bool:
    """Whether a path input has ``key=value`` folders (Ray Data adds those as columns)."""
    return resolved.source == "path" and any("=" in part for p in resolved.paths for part in p.split("/")[:-1])


@dataclass(frozen=True)
class ParquetRange:
    """What one block is read from: row groups of Parquet files (``(path, row groups)`` pairs)."""

    pieces: tuple[tuple[str, tuple[int, ...]], ...]
    rows: int
    bytes: int

    def to_json(self) -> str:
        return json.dumps({"pieces": [[p, list(g)] for p, g in self.pieces], "rows": self.rows, "bytes": self.bytes})

    @classmethod
    def from_json(cls, text: str) -> ParquetRange:
        d = json.loads(text)
        return cls(tuple((p, tuple(g)) for p, g in d["pieces"]), d["rows"], d["bytes"])


def plan_parquet(resolved: ResolvedInput, block_bytes: int, *, threads: int = 16) -> list[ParquetRange]:
    """Pack the row groups of Parquet files into ranges of about ``block_bytes`` uncompressed bytes.

    Row groups are taken in file order; a range closes when the next row group would take it over
    ``block_bytes`` (a row group larger than that is a range of its own). Footers are read in a
    thread pool, so an object store answers them in parallel.

    Raises:
        SourceError: a file is not Parquet or cannot be read; names its URI.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    fs = resolved.location.arrow_filesystem()

    def footer(path: str) -> list[tuple[int, int, int]]:
        try:
            with fs.open_input_file(path) as f:
                meta = pq.ParquetFile(f).metadata
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"read: {resolved.uri_of(path)} is not a readable Parquet file: {type(exc).__name__}: {exc}") from None
        return [(i, meta.row_group(i).num_rows, meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups)]

    with ThreadPoolExecutor(min(threads, max(1, len(resolved.paths)))) as pool:
        footers = list(pool.map(footer, resolved.paths))
    return pack_row_groups(
        ((path, index, n, nbytes) for path, groups in zip(resolved.paths, footers) for index, n, nbytes in groups),
        block_bytes,
    )


def pack_row_groups(groups: Iterable[tuple[str, int, int, int]], block_bytes: int) -> list[ParquetRange]:
    """Pack ``(path, row_group_index, rows, nbytes)`` row groups, in order, into ranges of about ``block_bytes``.

    A range closes when the next row group would take it over ``block_bytes``; a row group larger
    than that is a range of its own.

    Example:
        >>> [r.pieces for r in pack_row_groups([("a", 0, 5, 60), ("a", 1, 5, 60), ("b", 0, 5, 60)], 150)]
        [(('a', (0, 1)),), (('b', (0,)),)]
    """
    ranges: list[ParquetRange] = []
    pieces: list[tuple[str, list[int]]] = []
    rows = size = 0
    for path, index, n, nbytes in groups:
        if pieces and size + nbytes > block_bytes:
            ranges.append(ParquetRange(tuple((p, tuple(g)) for p, g in pieces), rows, size))
            pieces, rows, size = [], 0, 0
        if not pieces or pieces[-1][0] != path:
            pieces.append((path, []))
        pieces[-1][1].append(index)
        rows, size = rows + n, size + nbytes
    if pieces:
        ranges.append(ParquetRange(tuple((p, tuple(g)) for p, g in pieces), rows, size))
    return ranges


class BlockReader:
    """Turns a block of the dataset :func:`read_dataset` planned into the input rows (picklable).

    Planned Parquet reads give blocks of range descriptors (one column, :attr:`COLUMN`): each is
    read here, in the block task, as one table per run of files with the same schema. Any other
    block is the rows already.
    """

    COLUMN = "_fabric_parquet_range"

    def __init__(self, fs: Any = None, scheme: str = "file") -> None:
        self.fs, self.scheme = fs, scheme

    def __call__(self, block: pa.Table) -> list[pa.Table]:
        if self.fs is None or block.column_names != [self.COLUMN]:
            return [block]
        out: list[pa.Table] = []
        for text in block.column(self.COLUMN).to_pylist():
            out.extend(self.read(ParquetRange.from_json(text)))
        return out

    def read(self, piece_range: ParquetRange) -> list[pa.Table]:
        """The tables of one range: one per run of pieces with the same schema.

        Raises:
            SourceError: a file cannot be read; names its URI.
        """
        import pyarrow.parquet as pq

        runs: list[list[pa.Table]] = []
        for path, groups in piece_range.pieces:
            try:
                with self.fs.open_input_file(path) as f:
                    table = pq.ParquetFile(f).read_row_groups(list(groups))
            except (pa.ArrowException, OSError) as exc:
                raise SourceError(f"read: {self.scheme}://{path}: {type(exc).__name__}: {exc}") from None
            if runs and runs[-1][0].schema.equals(table.schema):
                runs[-1].append(table)
            else:
                runs.append([table])
        return [run[0] if len(run) == 1 else pa.concat_tables(run).combine_chunks() for run in runs]


@dataclass(frozen=True)
class ReadPlan:
    """A lazy Ray Data dataset of the input and the :class:`BlockReader` its blocks go through.

    ``batch_size`` is what the block task's ``map_batches`` takes: 1 for planned Parquet (one
    range a call, so a task holds one block's rows at a time), None (whole blocks) otherwise.
    """

    dataset: Any
    reader: BlockReader
    batch_size: int | None
    blocks: int | None = None


def read_dataset(resolved: ResolvedInput, *, block_bytes: int = 16 * 2**20, tasks: int | None = None) -> ReadPlan:
    """Plan reading a resolved input on Ray Data (lazy: nothing but Parquet footers is read here).

    Parquet files (without ``key=value`` folders, which Ray Data turns into columns) are planned
    here: their row groups packed into ranges of about ``block_bytes`` (:func:`plan_parquet`),
    handed out as ``tasks`` Ray Data tasks of consecutive ranges, each range read by the block
    task itself (:class:`BlockReader`). So there is no separate read task, no object-store copy
    of the rows and no sampling of the files, and a task goes through several blocks one after
    the other (fewer task starts, each a scheduling round trip). Other inputs use Ray Data's
    readers: CSV and JSON files are one block each; hive-style Parquet packs row groups.

    Args:
        resolved: what to read.
        block_bytes: target uncompressed bytes per block (a larger Parquet row group is a block of its own).
        tasks: Ray Data tasks for planned Parquet (default: one per range).

    Raises:
        SourceError: a Parquet file cannot be read; names its URI.
    """
    import os

    import ray.data

    if resolved.kafka is not None:
        k = resolved.kafka
        ds = ray.data.read_kafka(
            k["topic"],
            bootstrap_servers=k["bootstrap_servers"],
            start_offset=k["start_offset"],
            end_offset=k["end_offset"],
            consumer_config=k["client"] or None,
        )
        return ReadPlan(ds, BlockReader(), None)
    fs = resolved.location.arrow_filesystem()
    paths = list(resolved.paths)
    if resolved.format == "parquet" and not _hive_folders(resolved):
        ranges = plan_parquet(resolved, block_bytes)
        if ranges:
            n = max(1, min(len(ranges), tasks or len(ranges)))
            items = [{BlockReader.COLUMN: r.to_json()} for r in ranges]
            ds = ray.data.from_items(items, override_num_blocks=n)
            return ReadPlan(ds, BlockReader(fs, resolved.location.scheme), 1, len(ranges))
    if resolved.format == "parquet":
        kwargs: dict[str, Any] = {} if resolved.source == "path" else {"partitioning": None}
        # Ray Data 2.60 packs Parquet row groups into read tasks of this many bytes, read from
        # the environment when the read is planned (here, in this process).
        name = "RAY_DATA_PARQUET_BIN_PACKING_BYTES"
        saved = os.environ.get(name)
        os.environ[name] = str(int(block_bytes))
        try:
            ds = ray.data.read_parquet(paths, filesystem=fs, file_extensions=None, **kwargs)
        finally:
            if saved is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved
        return ReadPlan(ds, BlockReader(), None)
    blocks = max(1, len(paths))
    if resolved.format == "csv":
        return ReadPlan(ray.data.read_csv(paths, filesystem=fs, file_extensions=None, override_num_blocks=blocks), BlockReader(), None)
    return ReadPlan(ray.data.read_json(paths, filesystem=fs, file_extensions=None, override_num_blocks=blocks), BlockReader(), None)


def sample_rows(resolved: ResolvedInput, rows: int, *, max_files: int = 8) -> pa.Table | None:
    """The first ``rows`` input rows, read in this process (no Ray), or ``None`` where only Ray can tell.

    Reads only what it needs: Parquet's first row groups, CSV's first blocks, JSON's first MiB.
    ``None`` for Kafka, and for paths with ``key=value`` folders (Ray Data adds those as columns).
    Files that are empty are skipped (up to ``max_files``).

    Raises:
        pyarrow.ArrowException, OSError: a file cannot be read (the caller names it).
    """
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    if resolved.location is None or not resolved.paths:
        return None
    if _hive_folders(resolved):
        return None
    fs = resolved.location.arrow_filesystem()
    batches: list[pa.RecordBatch] = []
    have = 0
    for path in resolved.paths[:max_files]:
        if resolved.format == "parquet":
            with fs.open_input_file(path) as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=min(rows, 65_536)):
                    batches.append(batch)
                    have += batch.num_rows
                    if have >= rows:
                        break
        elif resolved.format == "csv":
            with fs.open_input_stream(path) as f:
                for batch in pacsv.open_csv(f):
                    batches.append(batch)
                    have += batch.num_rows
                    if have >= rows:
                        break
        else:
            with fs.open_input_stream(path) as f:
                head = f.read(2**20)
            if len(head) == 2**20:  # cut at the last whole line
                head = head[: head.rfind(b"\n") + 1]
            if head.strip():
                table = pajson.read_json(pa.BufferReader(head))
                batches.extend(table.to_batches())
                have += table.num_rows
        if have >= rows:
            break
    if not batches:
        return None
    return pa.Table.from_batches(batches).slice(0, rows) if len({b.schema for b in batches}) == 1 else None


def decode_block(resolved_format: str, source: str, table: pa.Table) -> pa.Table:
    """Turn a block as read into the pipeline's rows: Kafka JSON values become columns.

    For ``kafka`` with format ``json``, each message value is one JSON object; its fields become
    columns, plus ``_partition``, ``_offset`` and ``_timestamp_ms`` of the message. Messages
    without a value (tombstones) are dropped. Other sources pass through.

    Example:
        >>> t = pa.table({"value": [b'{"a": 1}', None, b'{"a": 2,\\n "b": "x"}'], "partition": [0, 0, 1],
        ...               "offset": [5, 6, 0], "timestamp": [1000, 1001, 1002]})
        >>> decode_block("json", "kafka", t).to_pydict()
        {'a': [1, 2], 'b': [None, 'x'], '_partition': [0, 1], '_offset': [5, 0], '_timestamp_ms': [1000, 1002]}
    """
    if source != "kafka" or resolved_format != "json":
        return table
    import pyarrow.compute as pc
    import pyarrow.json as pajson

    table = table.filter(pc.is_valid(table["value"]))
    meta = {
        "_partition": table["partition"].cast(pa.int32()),
        "_offset": table["offset"].cast(pa.int64()),
        "_timestamp_ms": _timestamp_ms(table["timestamp"]),
    }
    if table.num_rows == 0:
        return pa.table(meta)
    # A JSON text holds no raw newline inside strings, so flattening each value keeps it one line.
    lines = b"\n".join(bytes(v).replace(b"\n", b" ").replace(b"\r", b" ") for v in table["value"].to_pylist())
    try:
        decoded = pajson.read_json(pa.BufferReader(lines))
    except pa.ArrowInvalid as exc:
        first, last = meta["_offset"][0].as_py(), meta["_offset"][-1].as_py()
        raise SourceError(f"read.kafka: a message value between offsets {first} and {last} is not a JSON object: {exc}") from None
    for name, column in meta.items():
        decoded = decoded.append_column(name, column)
    return decoded


def _timestamp_ms(column: Any) -> Any:
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("ms")).cast(pa.int64())
    return column.cast(pa.int64())


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAY_WRAPPERS = {"UserCodeException", "RayTaskError", "RayError", "RaySystemError"}
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Invalid|Conflict|Interrupt|Exit|NotImplemented)\w*)(?::\s?(.*))?$")


def _remote_cause(text: str) -> str | None:
    """``Type: message`` of the error raised in a Ray task, from the traceback text Ray sends back.

    The text holds the task's exception chain, innermost first, joined by "The above exception was
    the direct cause ..."; the last link that is not Ray's own wrapper is the most telling (an
    error that names the step, wrapping the user's).
    """
    found = []
    for segment in _ANSI.sub("", text).split("The above exception was the direct cause"):
        lines = [line.rstrip() for line in segment.strip().splitlines()]
        for i in range(len(lines) - 1, -1, -1):
            m = _EXCEPTION_LINE.match(lines[i].strip())
            if m and not lines[i].startswith(" "):
                name = m.group(1).rsplit(".", 1)[-1]
                message = " ".join([m.group(2) or "", *(x.strip() for x in lines[i + 1 :])]).strip()
                if name not in _RAY_WRAPPERS:
                    found.append(f"{name}: {message}" if message else name)
                break
    return found[-1] if found else None


def describe_error(exc: BaseException) -> str:
    """A one-line cause for a run record: the innermost error of Ray's wrappers, type and message.

    Ray Data reports an error raised in a task as a ``RayTaskError`` whose text holds the
    original traceback (the exception object it wraps has lost its cause): the original
    ``Type: message`` is read from there.

    Example:
        >>> describe_error(ValueError("bad row"))
        'ValueError: bad row'
        >>> text = ("ray::Map() (pid=1)\\n  File 'x.py', line 1\\nmod.SomeError: column 'zz'\\n\\n"
        ...         "The above exception was the direct cause of the following exception:\\n\\nUserCodeException: UDF failed")
        >>> describe_error(RuntimeError(text))
        "SomeError: column 'zz'"
    """
    seen: set[int] = set()
    cur: BaseException = exc
    while id(cur) not in seen:
        seen.add(id(cur))
        if "The above exception was the direct cause" in str(cur):
            found = _remote_cause(str(cur))
            if found:
                return found
        inner = getattr(cur, "cause", None)  # ray.exceptions.RayTaskError keeps the wrapped error here
        if isinstance(inner, BaseException):
            cur = inner
            continue
        if cur.__cause__ is not None:
            cur = cur.__cause__
            continue
        break
    text = " ".join(_ANSI.sub("", str(cur)).split())
    name = type(cur).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def json_default(value: Any) -> Any:
    """``json.dumps`` helper for Arrow/NumPy scalars in reports."""
    if hasattr(value, "as_py"):
        return value.as_py()
    if hasattr(value, "item"):
        return value.item()
    return str(value)

