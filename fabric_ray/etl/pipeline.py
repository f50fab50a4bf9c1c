"""Declarative ETL pipelines: read -> transforms -> checks (a quality gate) -> write (a dataset).

A pipeline is an immutable definition, checked when it is made (every error names the
pipeline and the step), with no I/O. :func:`fabric_ray.etl.runner.run_etl` runs it on Ray Data.
Declared in YAML (``fabric etl run PIPELINE.yaml``)::

    name: payments_clean
    read:
      path: raw/payments/*.parquet     # under the storage root; or file:///..., s3://bucket/...
      format: parquet                  # parquet | csv | json (JSON Lines); default from the extension
    # or: read: {archive: {pipeline: payments, topic: payments}}   the stream archive's Parquet
    # or: read: {dataset: payments_raw}                              a fabric dataset
    # or: read: {kafka: {topic: payments, start_offset: earliest, end_offset: latest}}
    transforms:
      - filter: "amount > 0 and currency != 'XXX'"
      - derive: {amount_eur: "amount * 0.92"}
      - function: my_transforms:add_hour          # module:function, table -> table
      - select: [user_id, amount, amount_eur, ts]
    checks:                                       # the quality gate (fabric_ray.etl.checks)
      - not_null: user_id
      - between: {column: amount, min: 0}
    write:
      dataset: payments_clean
      mode: append                                # append | overwrite
      partitioning: {type: time, column: ts, granularity: date}   # or hash / range / a list
      schema: {user_id: int64, amount: float64}   # optional: inferred from the first run

or in Python with the same objects.

Example:
    >>> p = EtlPipeline.from_dict({
    ...     "name": "clean",
    ...     "read": {"path": "raw/*.csv"},
    ...     "transforms": [{"filter": "amount > 0"}, {"select": ["user_id", "amount"]}],
    ...     "write": {"dataset": "clean"},
    ... })
    >>> p.read.format, [t.label for t in p.transforms], p.write.mode
    ('csv', ['transforms[1] (filter)', 'transforms[2] (select)'], 'append')
    >>> import pyarrow as pa
    >>> p.apply_transforms(pa.table({"user_id": [1, 2], "amount": [5.0, -1.0], "x": [0, 0]})).to_pydict()
    {'user_id': [1], 'amount': [5.0]}
    >>> EtlPipeline.from_dict({"name": "bad", "read": {"path": "a.parquet"}, "transforms": [{"filter": "amount >"}], "write": {"dataset": "d"}})
    Traceback (most recent call last):
    ...
    fabric_ray.etl.pipeline.EtlPipelineError: pipeline 'bad', transforms[1] (filter): expression 'amount >' is not valid: invalid syntax
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa
import yaml

from fabric_ray.etl import transforms as builtins
from fabric_ray.etl.transforms import ExpressionError, compile_expression, parse_type

__all__ = [
    "READ_FORMATS",
    "TRANSFORM_KINDS",
    "WRITE_MODES",
    "EtlPipeline",
    "EtlPipelineError",
    "ReadStep",
    "TransformStep",
    "WriteStep",
    "load_pipeline",
]

READ_FORMATS = ("parquet", "csv", "json")
READ_SOURCES = ("path", "archive", "dataset", "kafka")
KAFKA_FORMATS = ("json", "raw")
TRANSFORM_KINDS = ("function", "select", "rename", "filter", "cast", "derive")
WRITE_MODES = ("append", "overwrite")
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json"}


class EtlPipelineError(ValueError):
    """A pipeline definition is invalid; the message names the pipeline, the step and the value."""


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and name.replace("-", "").replace("_", "").replace(".", "").isalnum()


def _keys(where: str, data: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise EtlPipelineError(f"{where}: expected a mapping; got {data!r}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise EtlPipelineError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}")
    return dict(data)


def _offset(where: str, value: Any, named: str) -> Any:
    if value == named or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    if isinstance(value, Mapping) and all(
        isinstance(p, int) and isinstance(o, int) and not isinstance(o, bool) and o >= 0 for p, o in value.items()
    ):
        return dict(sorted(value.items()))
    raise EtlPipelineError(f"{where}: must be {named!r}, an offset >= 0, or {{partition: offset}}; got {value!r}")


# -- read ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadStep:
    """Where a pipeline's rows come from.

    Attributes:
        source: ``path`` (files), ``archive`` (the stream archive), ``dataset`` (a fabric
            dataset) or ``kafka`` (a bounded offset range).
        path: for ``path``: a file, folder or glob, relative to the storage root or a
            ``file://`` / ``s3://`` URI.
        format: for ``path``: ``parquet``, ``csv`` or ``json`` (JSON Lines); for ``kafka``:
            ``json`` (decode each value as a JSON object) or ``raw`` (Ray's key/value columns).
        pipeline: for ``archive``: the stream pipeline whose archive is read.
        topic: for ``archive`` and ``kafka``: the topic.
        dataset: for ``dataset``: its name.
        start_offset: for ``kafka``: ``"earliest"``, an offset, or ``{partition: offset}``.
        end_offset: for ``kafka``: ``"latest"`` (the end when the run starts), an offset
            (exclusive), or ``{partition: offset}``.
    """

    source: str
    path: str | None = None
    format: str = "parquet"
    pipeline: str | None = None
    topic: str | None = None
    dataset: str | None = None
    start_offset: Any = "earliest"
    end_offset: Any = "latest"

    def __post_init__(self) -> None:
        where = "read"
        if self.source not in READ_SOURCES:
            raise EtlPipelineError(f"{where}: source must be one of {list(READ_SOURCES)}; got {self.source!r}")
        if self.source == "path":
            if not isinstance(self.path, str) or not self.path.strip():
                raise EtlPipelineError(f"{where}: path must be a non-empty string; got {self.path!r}")
            if self.format not in READ_FORMATS:
                raise EtlPipelineError(f"{where}: format must be one of {list(READ_FORMATS)}; got {self.format!r}")
        elif self.source == "archive":
            for key in ("pipeline", "topic"):
                if not isinstance(getattr(self, key), str) or not getattr(self, key):
                    raise EtlPipelineError(f"{where}.archive: {key} must be a non-empty string; got {getattr(self, key)!r}")
        elif self.source == "dataset":
            if not _valid_name(self.dataset):
                raise EtlPipelineError(f"{where}: dataset must be a name of letters, digits, '-', '_' or '.'; got {self.dataset!r}")
        else:
            if not isinstance(self.topic, str) or not self.topic:
                raise EtlPipelineError(f"{where}.kafka: topic must be a non-empty string; got {self.topic!r}")
            if self.format not in KAFKA_FORMATS:
                raise EtlPipelineError(f"{where}.kafka: format must be one of {list(KAFKA_FORMATS)}; got {self.format!r}")
            start = _offset(f"{where}.kafka.start_offset", self.start_offset, "earliest")
            end = _offset(f"{where}.kafka.end_offset", self.end_offset, "latest")
            object.__setattr__(self, "start_offset", start)
            object.__setattr__(self, "end_offset", end)
            if isinstance(start, int) and isinstance(end, int) and end < start:
                raise EtlPipelineError(f"{where}.kafka: end_offset {end} is before start_offset {start}")

    @classmethod
    def files(cls, path: str, format: str | None = None) -> ReadStep:
        """Read files: ``format`` defaults from the extension (``.csv``, ``.json``/``.jsonl``; else parquet)."""
        if format is None and isinstance(path, str):
            format = next((f for ext, f in _EXTENSIONS.items() if path.lower().endswith(ext)), "parquet")
        return cls("path", path=path, format=format or "parquet")

    @classmethod
    def archive(cls, pipeline: str, topic: str) -> ReadStep:
        """Read the stream archive of ``pipeline``'s ``topic`` (``<root>/archive/<pipeline>/<topic>``)."""
        return cls("archive", pipeline=pipeline, topic=topic)

    @classmethod
    def from_dataset(cls, name: str) -> ReadStep:
        """Read the latest version of a fabric dataset."""
        return cls("dataset", dataset=name)

    @classmethod
    def kafka(cls, topic: str, start_offset: Any = "earliest", end_offset: Any = "latest", format: str = "json") -> ReadStep:
        """Read a bounded offset range of ``topic`` with ``ray.data.read_kafka``."""
        return cls("kafka", topic=topic, start_offset=start_offset, end_offset=end_offset, format=format)

    @classmethod
    def from_dict(cls, data: Any) -> ReadStep:
        """Parse the ``read:`` mapping of a pipeline file (see the module docstring)."""
        data = _keys("read", data, ("path", "format", "archive", "dataset", "kafka"))
        given = [k for k in ("path", "archive", "dataset", "kafka") if k in data]
        if len(given) != 1:
            raise EtlPipelineError(f"read: give exactly one of path, archive, dataset, kafka; got {given or 'none'}")
        if "path" in data:
            return cls.files(data["path"], data.get("format"))
        if "format" in data:
            raise EtlPipelineError(f"read: format applies to path only (kafka takes kafka.format); got {data['format']!r}")
        if "archive" in data:
            a = _keys("read.archive", data["archive"], ("pipeline", "topic"))
            return cls.archive(a.get("pipeline"), a.get("topic"))
        if "dataset" in data:
            return cls.from_dataset(data["dataset"])
        k = _keys("read.kafka", data["kafka"], ("topic", "start_offset", "end_offset", "format"))
        return cls.kafka(k.get("topic"), k.get("start_offset", "earliest"), k.get("end_offset", "latest"), k.get("format", "json"))

    def to_dict(self) -> dict[str, Any]:
        """The ``read:`` mapping; :meth:`from_dict` reads it back."""
        if self.source == "path":
            return {"path": self.path, "format": self.format}
        if self.source == "archive":
            return {"archive": {"pipeline": self.pipeline, "topic": self.topic}}
        if self.source == "dataset":
            return {"dataset": self.dataset}
        return {"kafka": {"topic": self.topic, "start_offset": self.start_offset, "end_offset": self.end_offset, "format": self.format}}

    def describe(self) -> str:
        """One line for run records and messages, e.g. ``parquet raw/*.parquet``."""
        if self.source == "path":
            return f"{self.format} {self.path}"
        if self.source == "archive":
            return f"archive {self.pipeline}/{self.topic}"
        if self.source == "dataset":
            return f"dataset {self.dataset}"
        return f"kafka {self.topic} [{self.start_offset}, {self.end_offset})"


# -- transforms ----------------------------------------------------------------------------------


def _pairs(where: str, value: Any, what: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping) or not value:
        raise EtlPipelineError(f"{where}: expected a non-empty mapping of {what}; got {value!r}")
    for k in value:
        if not isinstance(k, str) or not k:
            raise EtlPipelineError(f"{where}: column names must be non-empty strings; got {k!r}")
    return tuple(value.items())


def _resolve_function(where: str, ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise EtlPipelineError(f"{where}: function must be 'module:function'; got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or whatever the module raises while importing
        raise EtlPipelineError(
            f"{where}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); put it next to the "
            "pipeline file or install it"
        ) from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise EtlPipelineError(f"{where}: module {module_name!r} has no {attr!r}")
    if not callable(fn):
        raise EtlPipelineError(f"{where}: {ref!r} is not callable")
    return fn


@dataclass(frozen=True)
class TransformStep:
    """One transform: a built-in (see :mod:`fabric_ray.etl.transforms`) or a user function.

    Build them with the class methods (``TransformStep.filter("amount > 0")``) or from YAML.

    Attributes:
        kind: one of :data:`TRANSFORM_KINDS`.
        args: the kind's arguments, normalised: columns (select), ``(old, new)`` pairs
            (rename), the expression (filter), ``(column, type)`` pairs (cast),
            ``(column, expression)`` pairs (derive), ``(ref, kwargs pairs)`` (function).
        name: an optional name used in messages.
        fn: the resolved function (``function`` only).
    """

    kind: str
    args: Any
    name: str | None = None
    fn: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    position: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in TRANSFORM_KINDS:
            raise EtlPipelineError(f"{self.label}: kind must be one of {list(TRANSFORM_KINDS)}; got {self.kind!r}")
        try:
            self._check()
        except (ExpressionError, ValueError) as exc:
            if isinstance(exc, EtlPipelineError):
                raise
            raise EtlPipelineError(f"{self.label}: {exc}") from None

    @property
    def label(self) -> str:
        """How messages name the step, e.g. ``transforms[2] (filter 'positive')``."""
        what = self.kind if not self.name else f"{self.kind} {self.name!r}"
        return f"transforms[{self.position}] ({what})" if self.position else f"transform ({what})"

    def _check(self) -> None:
        if self.kind == "select":
            if not isinstance(self.args, tuple) or not self.args or not all(isinstance(c, str) and c for c in self.args):
                raise ValueError(f"expected a non-empty list of column names; got {self.args!r}")
        elif self.kind == "rename":
            news = [new for _, new in self.args]
            if not all(isinstance(n, str) and n for n in news) or len(set(news)) != len(news):
                raise ValueError(f"new names must be distinct non-empty strings; got {news!r}")
        elif self.kind == "filter":
            compile_expression(self.args)
        elif self.kind == "cast":
            for _, type_name in self.args:
                parse_type(type_name)
        elif self.kind == "derive":
            for _, text in self.args:
                compile_expression(text)
        elif self.kind == "function":
            ref, _ = self.args
            if self.fn is None:
                object.__setattr__(self, "fn", _resolve_function(self.label, ref))

    # ------------------------------------------------------------------ builders

    @classmethod
    def select(cls, columns: Sequence[str], *, name: str | None = None) -> TransformStep:
        """Keep ``columns`` in this order."""
        return cls("select", tuple(columns) if isinstance(columns, (list, tuple)) else columns, name)

    @classmethod
    def rename(cls, mapping: Mapping[str, str], *, name: str | None = None) -> TransformStep:
        """Rename columns ``{old: new}``."""
        return cls("rename", _pairs("transform (rename)", mapping, "old -> new names"), name)

    @classmethod
    def filter(cls, expression: str, *, name: str | None = None) -> TransformStep:
        """Keep rows where ``expression`` is true."""
        return cls("filter", expression, name)

    @classmethod
    def cast(cls, types: Mapping[str, str], *, name: str | None = None) -> TransformStep:
        """Cast columns ``{column: arrow type name}`` (safe casts)."""
        return cls("cast", _pairs("transform (cast)", types, "column -> type"), name)

    @classmethod
    def derive(cls, columns: Mapping[str, str], *, name: str | None = None) -> TransformStep:
        """Add or replace columns ``{column: expression}``, in order."""
        return cls("derive", _pairs("transform (derive)", columns, "column -> expression"), name)

    @classmethod
    def function(cls, fn: str | Callable[..., pa.Table], *, name: str | None = None, **kwargs: Any) -> TransformStep:
        """A user transform ``fn(table, **kwargs) -> table``: a callable, or ``"module:function"``."""
        if callable(fn):
            ref = f"{fn.__module__}:{fn.__qualname__}"
            return cls("function", (ref, tuple(sorted(kwargs.items()))), name, fn=fn)
        return cls("function", (fn, tuple(sorted(kwargs.items()))), name)

    @classmethod
    def from_dict(cls, data: Any, position: int = 0) -> TransformStep:
        """Parse one entry of a ``transforms:`` list: ``{KIND: ARGS}`` plus an optional ``name``."""
        where = f"transforms[{position}]"
        if not isinstance(data, Mapping):
            raise EtlPipelineError(f"{where}: expected a mapping like {{filter: 'amount > 0'}}; got {data!r}")
        kinds = [k for k in data if k != "name"]
        if len(kinds) != 1 or kinds[0] not in TRANSFORM_KINDS:
            raise EtlPipelineError(f"{where}: give exactly one of {list(TRANSFORM_KINDS)} (plus an optional name); got {kinds}")
        kind, args, name = kinds[0], data[kinds[0]], data.get("name")
        if name is not None and not isinstance(name, str):
            raise EtlPipelineError(f"{where}: name must be a string; got {name!r}")
        where = f"{where} ({kind})"
        if kind == "select":
            if not isinstance(args, list):
                raise EtlPipelineError(f"{where}: expected a list of column names; got {args!r}")
            args = tuple(args)
        elif kind in ("rename", "cast", "derive"):
            args = _pairs(where, args, {"rename": "old -> new names", "cast": "column -> type", "derive": "column -> expression"}[kind])
        elif kind == "filter":
            pass
        else:
            if isinstance(args, str):
                args = (args, ())
            elif isinstance(args, Mapping):
                spec = _keys(where, args, ("ref", "kwargs"))
                kwargs = spec.get("kwargs") or {}
                if not isinstance(spec.get("ref"), str) or not isinstance(kwargs, Mapping):
                    raise EtlPipelineError(f"{where}: expected {{ref: 'module:function', kwargs: {{...}}}}; got {args!r}")
                args = (spec["ref"], tuple(sorted(kwargs.items())))
            else:
                raise EtlPipelineError(f"{where}: expected 'module:function'; got {args!r}")
        return cls(kind, args, name, position=position)

    def to_dict(self) -> dict[str, Any]:
        """The YAML entry; :meth:`from_dict` reads it back."""
        if self.kind == "select":
            out: dict[str, Any] = {"select": list(self.args)}
        elif self.kind in ("rename", "cast", "derive"):
            out = {self.kind: dict(self.args)}
        elif self.kind == "filter":
            out = {"filter": self.args}
        else:
            ref, kwargs = self.args
            out = {"function": {"ref": ref, "kwargs": dict(kwargs)} if kwargs else ref}
        if self.name:
            out["name"] = self.name
        return out

    def apply(self, table: pa.Table) -> pa.Table:
        """Run the transform on ``table``.

        Raises:
            EtlPipelineError: the table lacks a column the step needs, a type does not fit (an
                unsafe cast, text compared with a number), the function raised or did not return
                a ``pyarrow.Table``; names the step and the original error (kept as ``__cause__``).
        """
        try:
            if self.kind == "select":
                return builtins.apply_select(table, self.args)
            if self.kind == "rename":
                return builtins.apply_rename(table, dict(self.args))
            if self.kind == "filter":
                return builtins.apply_filter(table, compile_expression(self.args))
            if self.kind == "cast":
                return builtins.apply_cast(table, {c: parse_type(t) for c, t in self.args})
            if self.kind == "derive":
                return builtins.apply_derive(table, {c: compile_expression(e) for c, e in self.args})
        except (KeyError, ExpressionError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise EtlPipelineError(f"{self.label}: {message}") from None
        except pa.ArrowException as exc:
            raise EtlPipelineError(f"{self.label}: {type(exc).__name__}: {exc}") from exc
        try:
            out = self.fn(table, **dict(self.args[1]))
        except Exception as exc:  # noqa: BLE001 - the user's code: say which step raised what
            raise EtlPipelineError(f"{self.label}: {self.args[0]} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(out, pa.RecordBatch):
            out = pa.Table.from_batches([out])
        if not isinstance(out, pa.Table):
            raise EtlPipelineError(f"{self.label}: {self.args[0]} must return a pyarrow.Table; got {type(out).__name__}")
        return out


# -- write ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteStep:
    """Where a pipeline's rows go: a fabric dataset.

    Attributes:
        dataset: the dataset's name (``<storage root>/datasets/<name>``).
        mode: ``append`` adds the run's files; ``overwrite`` replaces every file of the
            latest version, in the same commit.
        partitioning: a :func:`fabric_ray.storage.partitioning.parse_partitioning` mapping, e.g.
            ``{type: hash, column: user_id, buckets: 8}``, or a list of them (nested in order);
            ``None``: unpartitioned. Used when the run creates the dataset.
        schema: column -> Arrow type name, used when the run creates the dataset
            (``None``: inferred from a sample of the first run's rows).
        key: key columns of a new dataset.
        time_column: time column of a new dataset.
    """

    dataset: str
    mode: str = "append"
    partitioning: Any = field(default=None, hash=False)
    schema: tuple[tuple[str, str], ...] | None = None
    key: tuple[str, ...] = ()
    time_column: str | None = None

    def __post_init__(self) -> None:
        where = "write"
        if not _valid_name(self.dataset):
            raise EtlPipelineError(f"{where}: dataset must be a name of letters, digits, '-', '_' or '.'; got {self.dataset!r}")
        if self.mode not in WRITE_MODES:
            raise EtlPipelineError(f"{where}: mode must be one of {list(WRITE_MODES)}; got {self.mode!r}")
        if self.schema is not None:
            for column, type_name in self.schema:
                try:
                    parse_type(type_name)
                except ValueError as exc:
                    raise EtlPipelineError(f"{where}.schema.{column}: {exc}") from None
        if self.partitioning is not None:
            try:
                self.partitioning_object()
            except ImportError:  # the storage layer is not installed: checked at run time
                pass
            except Exception as exc:  # noqa: BLE001 - the partitioning parser's own error type
                raise EtlPipelineError(f"{where}.partitioning: {exc}") from None
        if not all(isinstance(k, str) and k for k in self.key):
            raise EtlPipelineError(f"{where}: key must be a list of column names; got {list(self.key)!r}")
        if self.schema is not None:
            names = [c for c, _ in self.schema]
            needed = list(self.key) + ([self.time_column] if self.time_column else [])
            missing = [c for c in needed if c not in names]
            if missing:
                raise EtlPipelineError(f"{where}: key/time_column {missing} not in the declared schema {names}")

    def partitioning_object(self) -> Any:
        """The parsed partitioning (``Unpartitioned()`` when none is given)."""
        from fabric_ray.storage.partitioning import Unpartitioned, parse_partitioning

        return Unpartitioned() if self.partitioning is None else parse_partitioning(self.partitioning)

    def arrow_schema(self) -> pa.Schema | None:
        """The declared schema as Arrow, or ``None``."""
        if self.schema is None:
            return None
        return pa.schema([(c, parse_type(t)) for c, t in self.schema])

    @classmethod
    def from_dict(cls, data: Any) -> WriteStep:
        """Parse the ``write:`` mapping of a pipeline file."""
        d = _keys("write", data, ("dataset", "mode", "partitioning", "schema", "key", "time_column"))
        schema = d.get("schema")
        if schema is not None:
            schema = _pairs("write.schema", schema, "column -> type")
        key = d.get("key", ())
        key = (key,) if isinstance(key, str) else tuple(key or ())
        partitioning = d.get("partitioning")
        if partitioning is not None and not isinstance(partitioning, (Mapping, list)):
            raise EtlPipelineError(f"write.partitioning: expected a mapping (or a list of them); got {partitioning!r}")
        return cls(d.get("dataset"), d.get("mode", "append"), partitioning, schema, key, d.get("time_column"))

    def to_dict(self) -> dict[str, Any]:
        """The ``write:`` mapping."""
        out: dict[str, Any] = {"dataset": self.dataset, "mode": self.mode}
        if self.partitioning is not None:
            p = self.partitioning
            out["partitioning"] = [dict(x) for x in p] if isinstance(p, (list, tuple)) else dict(p)
        if self.schema is not None:
            out["schema"] = dict(self.schema)
        if self.key:
            out["key"] = list(self.key)
        if self.time_column:
            out["time_column"] = self.time_column
        return out


# -- pipeline ------------------------------------------------------------------------------------


def _parse_checks(name: str, checks: Any) -> tuple[Any, ...]:
    if not isinstance(checks, (list, tuple)):
        raise EtlPipelineError(f"pipeline {name!r}, checks: expected a list; got {checks!r}")
    if not checks:
        return ()
    from fabric_ray.etl.checks import parse_check

    out = []
    for i, item in enumerate(checks, 1):
        try:
            out.append(parse_check(item))
        except (ValueError, TypeError) as exc:
            raise EtlPipelineError(f"pipeline {name!r}, checks[{i}]: {exc}") from None
    return tuple(out)


@dataclass(frozen=True)
class EtlPipeline:
    """An immutable ETL pipeline definition; see the module docstring.

    Args:
        name: letters, digits, ``-``, ``_`` or ``.``; runs are recorded under it.
        read: where rows come from.
        write: the dataset they go to.
        transforms: applied in order to every block of rows.
        checks: the quality gate's checks (objects of :mod:`fabric_ray.etl.checks`, or their YAML
            mappings); a failing gate publishes nothing.
        description: free text.
    """

    name: str
    read: ReadStep
    write: WriteStep
    transforms: tuple[TransformStep, ...] = ()
    checks: tuple[Any, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise EtlPipelineError(f"pipeline name must be letters, digits, '-', '_' or '.'; got {self.name!r}")
        for attr, kind in (("read", ReadStep), ("write", WriteStep)):
            if not isinstance(getattr(self, attr), kind):
                raise EtlPipelineError(f"pipeline {self.name!r}: {attr} must be a {kind.__name__}; got {getattr(self, attr)!r}")
        steps = []
        for i, t in enumerate(self.transforms, 1):
            if not isinstance(t, TransformStep):
                raise EtlPipelineError(f"pipeline {self.name!r}, transforms[{i}]: expected a TransformStep; got {t!r}")
            steps.append(t if t.position == i else TransformStep(t.kind, t.args, t.name, fn=t.fn, position=i))
        object.__setattr__(self, "transforms", tuple(steps))
        object.__setattr__(self, "checks", _parse_checks(self.name, self.checks))

    @classmethod
    def from_dict(cls, data: Any) -> EtlPipeline:
        """Build a pipeline from a YAML mapping.

        Raises:
            EtlPipelineError: anything invalid; the message names the pipeline and the step.
        """
        d = _keys("pipeline", data, ("name", "description", "read", "transforms", "checks", "write"))
        name = d.get("name")
        if not _valid_name(name):
            raise EtlPipelineError(f"pipeline name must be letters, digits, '-', '_' or '.'; got {name!r}")
        for required in ("read", "write"):
            if required not in d:
                raise EtlPipelineError(f"pipeline {name!r}: {required} is missing")
        try:
            read = ReadStep.from_dict(d["read"])
            write = WriteStep.from_dict(d["write"])
            transforms = d.get("transforms") or []
            if not isinstance(transforms, list):
                raise EtlPipelineError(f"transforms: expected a list; got {transforms!r}")
            steps = tuple(TransformStep.from_dict(t, i) for i, t in enumerate(transforms, 1))
        except EtlPipelineError as exc:
            raise EtlPipelineError(f"pipeline {name!r}, {exc}") from None
        checks = d.get("checks") or []
        if not isinstance(checks, list):
            raise EtlPipelineError(f"pipeline {name!r}, checks: expected a list; got {checks!r}")
        return cls(name, read, write, steps, tuple(checks), str(d.get("description") or ""))

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping; :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["read"] = self.read.to_dict()
        if self.transforms:
            out["transforms"] = [t.to_dict() for t in self.transforms]
        if self.checks:
            out["checks"] = [c.to_dict() for c in self.checks]
        out["write"] = self.write.to_dict()
        return out

    def gate(self) -> Any:
        """The quality gate of the pipeline's checks (a :class:`fabric_ray.etl.checks.Gate`)."""
        from fabric_ray.etl.checks import Gate

        return Gate(list(self.checks))

    def apply_transforms(self, table: pa.Table) -> pa.Table:
        """Run every transform, in order, on one table (what each Ray Data block goes through)."""
        for step in self.transforms:
            table = step.apply(table)
        return table


def load_pipeline(path: str | Path) -> EtlPipeline:
    """Read a pipeline YAML file; ``module:function`` transforms are imported from its folder first.

    Raises:
        EtlPipelineError: the file is missing, not YAML, or the pipeline is invalid; names the file.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EtlPipelineError(f"pipeline file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EtlPipelineError(f"pipeline file {str(path)!r} cannot be read: {exc}") from None
    folder = str(path.resolve().parent)
    added = folder not in sys.path
    if added:  # so that `function: my_module:fn` finds my_module.py beside the pipeline
        sys.path.insert(0, folder)
    try:
        return EtlPipeline.from_dict(data)
    except EtlPipelineError as exc:
        raise EtlPipelineError(f"{path}: {exc}") from None
    finally:
        if added:
            sys.path.remove(folder)


def function_modules(pipeline: EtlPipeline) -> list[Any]:
    """Modules of the pipeline's user functions that live outside installed packages.

    The runner ships their code to Ray workers by value, so workers need not have them on their path.
    """
    out = []
    for step in pipeline.transforms:
        if step.kind != "function" or step.fn is None:
            continue
        module = inspect.getmodule(step.fn)
        file = getattr(module, "__file__", None) or ""
        if module is None or module.__name__ == "__main__" or "site-packages" in file or "dist-packages" in file or module.__name__.split(".")[0] == "fabric_ray":
            continue
        out.append(module)
    return out
