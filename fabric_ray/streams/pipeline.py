"""Declarative stream pipelines: an immutable chain of steps, validated as it is built.

A pipeline says *what* to do with a topic; nothing runs and nothing is opened while it is
defined. :func:`fabric_ray.streams.run_local` runs it in-process over in-memory partitions (for
tests); the fabric runs the same definition on partition-owning actors.

Every builder method returns a new pipeline, so a prefix can be shared::

    base = Pipeline("payments").source("payments").decode(JsonDecoder(schema, required=["user_id"]))
    totals = base.key_by("user_id").window(Tumbling(60_000), {"n": ("count", None)}, time="event_ts")

Steps, in the order they usually appear:

========== ==================================================================================
source     the topic to read (one per pipeline)
decode     payload bytes to an Arrow table (JSON, Avro, JSON Schema, raw bytes)
validate   a data product's contract: required fields and quality rules
filter     keep rows: vectorized (``table -> boolean mask``) or per row (``dict -> bool``)
map        change rows: vectorized (``table -> table``, same row count) or per row (``dict -> dict``)
key_by     the entity key column for windows
window     event-time windowed aggregates per key
aggregate  a custom stateful operator (e.g. running totals)
lookup     enrich rows from a reference table by a key column (a left join)
sink       where results go, by name (cache, archive, Kafka topic, or a collector in tests)
========== ==================================================================================

Definitions are checked eagerly: a step that needs a column the schema at that point lacks
fails at once, naming the step and the column.

Example:
    >>> import pyarrow as pa
    >>> from fabric_ray.streams.json_codec import JsonDecoder
    >>> schema = pa.schema([("user_id", pa.int64()), ("amount", pa.float64())])
    >>> p = Pipeline("demo").source("payments").decode(JsonDecoder(schema, required=["user_id"]))
    >>> p = p.filter(lambda t: pc.greater(t["amount"], 0), name="positive").sink("out")
    >>> [s.label for s in p.steps]
    ["source 'payments'", 'decode', "filter 'positive'", "sink 'out'"]
    >>> p.key_by("user")
    Traceback (most recent call last):
    ...
    fabric_ray.streams.pipeline.PipelineError: pipeline 'demo', step 5 (key_by): column 'user' is not in the schema here; columns: ['user_id', 'amount']
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc  # noqa: F401  (used in the docstring example)

__all__ = [
    "Pipeline",
    "PipelineError",
    "Step",
]

LATE_POLICIES = ("dead_letter", "drop")
EMIT_MODES = ("update", "close")


class PipelineError(ValueError):
    """A pipeline definition is invalid; the message names the pipeline, the step and the problem."""


@dataclass(frozen=True)
class Step:
    """One step of a pipeline.

    Attributes:
        kind: ``source``, ``decode``, ``validate``, ``filter``, ``map``, ``key_by``, ``window``,
            ``lookup`` or ``sink``.
        name: the step's name (unique within the pipeline; used in reasons and errors).
        options: what the step needs, by kind (see the builder methods of :class:`Pipeline`).
        schema: the table schema after this step, or ``None`` where it is only known at run time
            (after a map without ``output_schema``).
    """

    kind: str
    name: str
    options: Mapping[str, Any]
    schema: pa.Schema | None = None

    @property
    def label(self) -> str:
        """How errors and reasons refer to the step, e.g. ``"filter 'positive'"``."""
        return self.kind if self.name == self.kind else f"{self.kind} {self.name!r}"


@dataclass(frozen=True)
class Pipeline:
    """An immutable stream pipeline definition; see the module docstring.

    Args:
        name: the pipeline's name (actor and checkpoint names derive from it).
        dead_letter_topic: where rejected messages go when run on the fabric
            (``None``: ``<source topic>.dlq``).
        max_message_bytes: payloads larger than this are dead-lettered before decoding.
        consumer_group: the group owners commit offsets to, for outside tools
            (``None``: ``fabric-<name>``); partitions are assigned explicitly, not by the group.
    """

    name: str
    dead_letter_topic: str | None = None
    max_message_bytes: int = 1_048_576
    consumer_group: str | None = None
    steps: tuple[Step, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise PipelineError(f"pipeline name must be letters, digits, '-', '_' or '.'; got {self.name!r}")
        if self.max_message_bytes <= 0:
            raise PipelineError(f"pipeline {self.name!r}: max_message_bytes must be positive; got {self.max_message_bytes}")

    # ---------------------------------------------------------------- queries

    @property
    def topic(self) -> str:
        """The source topic."""
        return self._find("source").options["topic"]

    @property
    def schema(self) -> pa.Schema | None:
        """The schema after the last step (``None`` where only known at run time)."""
        return self.steps[-1].schema if self.steps else None

    @property
    def sinks(self) -> tuple[str, ...]:
        """Names of the pipeline's sinks, in order."""
        return tuple(s.name for s in self.steps if s.kind == "sink")

    @property
    def dead_letters(self) -> str:
        """The dead-letter topic (default ``<topic>.dlq``)."""
        return self.dead_letter_topic or f"{self.topic}.dlq"

    @property
    def group_id(self) -> str:
        """The consumer group offsets are committed to."""
        return self.consumer_group or f"fabric-{self.name}"

    def step(self, name: str) -> Step:
        """The step called ``name``.

        Raises:
            KeyError: no step has that name.
        """
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"pipeline {self.name!r} has no step {name!r}; steps: {[s.name for s in self.steps]}")

    def describe(self) -> str:
        """One line per step, with the columns after it."""
        lines = [f"pipeline {self.name!r}"]
        for i, s in enumerate(self.steps, 1):
            cols = "raw messages" if s.kind == "source" else "?" if s.schema is None else ", ".join(s.schema.names)
            lines.append(f"  {i}. {s.label:<28} -> [{cols}]")
        return "\n".join(lines)

    # ---------------------------------------------------------------- builders

    def source(self, topic: str) -> Pipeline:
        """Read ``topic`` (every partition; the fabric assigns them to owners).

        Raises:
            PipelineError: not the first step, or the topic name is empty.
        """
        if self.steps:
            raise self._error("source", "the source must be the first step")
        if not isinstance(topic, str) or not topic:
            raise self._error("source", f"topic must be a non-empty string; got {topic!r}")
        return self._add("source", topic, {"topic": topic}, None)

    def decode(self, decoder: Any, *, name: str = "decode") -> Pipeline:
        """Turn payloads into rows with ``decoder``.

        ``decoder`` is anything with ``schema`` (an Arrow schema, or ``None`` when only the
        writer schema will tell), ``required`` and ``decode(values) -> Decoded``: a
        :class:`~fabric_ray.streams.json_codec.JsonDecoder`, an Avro or JSON Schema decoder of
        :mod:`fabric_ray.streams.confluent_codec`, or a ``RawDecoder``.
        """
        self._expect_after(name or "decode", "decode", ("source",))
        if not callable(getattr(decoder, "decode", None)):
            raise self._error(name, f"decoder must have a decode(values) method; got {type(decoder).__name__}")
        schema = getattr(decoder, "schema", None)
        return self._add("decode", name, {"decoder": decoder}, schema if isinstance(schema, pa.Schema) else None)

    def validate(self, contract: Any, *, name: str = "validate") -> Pipeline:
        """Check rows against a data product's contract; failing rows are dead-lettered with the reason.

        Args:
            contract: a :class:`~fabric_ray.governance.contracts.Contract` or a
                :class:`~fabric_ray.governance.products.DataProduct` (its contract is used).
        """
        self._expect_decoded(name, "validate")
        from fabric_ray.governance.contracts import Contract
        from fabric_ray.governance.products import DataProduct

        if isinstance(contract, DataProduct):
            contract = Contract.from_product(contract)
        elif not isinstance(contract, Contract):
            raise self._error(name, f"validate needs a Contract or a DataProduct; got {type(contract).__name__}")
        self._need_columns(name, "validate", contract.columns)
        return self._add("validate", name, {"contract": contract}, self.schema)

    def filter(self, predicate: Callable[[pa.Table], Any], *, name: str = "filter") -> Pipeline:
        """Keep the rows where ``predicate(table)`` (a boolean array, one per row) is true.

        Rows where it is false or null are dropped (not dead-lettered). If the predicate raises,
        the batch's rows are dead-lettered with the error as the reason.
        """
        self._expect_decoded(name, "filter")
        self._callable(name, "filter", predicate)
        return self._add("filter", name, {"fn": predicate, "per_row": False}, self.schema)

    def filter_rows(self, predicate: Callable[[dict[str, Any]], bool], *, name: str = "filter") -> Pipeline:
        """Keep the rows where ``predicate(row_dict)`` is true (a per-row Python UDF: convenient, slower).

        A row for which the predicate raises is dead-lettered with the error as its reason.
        """
        self._expect_decoded(name, "filter")
        self._callable(name, "filter", predicate)
        return self._add("filter", name, {"fn": predicate, "per_row": True}, self.schema)

    def map(self, fn: Callable[[pa.Table], pa.Table], *, name: str = "map", output_schema: pa.Schema | None = None) -> Pipeline:
        """Transform whole batches: ``fn(table) -> table`` with the same number of rows.

        Args:
            output_schema: the schema ``fn`` returns, so later steps are checked now; when
                given, every result is cast to it (a mismatch dead-letters the batch's rows).
        """
        self._expect_decoded(name, "map")
        self._callable(name, "map", fn)
        return self._add("map", name, {"fn": fn, "per_row": False, "output_schema": output_schema}, output_schema)

    def map_rows(self, fn: Callable[[dict[str, Any]], dict[str, Any] | None], *, name: str = "map", output_schema: pa.Schema | None = None) -> Pipeline:
        """Transform row by row: ``fn(row_dict) -> row_dict`` (``None`` drops the row).

        A row for which ``fn`` raises is dead-lettered with the error as its reason.
        """
        self._expect_decoded(name, "map")
        self._callable(name, "map", fn)
        return self._add("map", name, {"fn": fn, "per_row": True, "output_schema": output_schema}, output_schema)

    def key_by(self, column: str, *, name: str = "key_by") -> Pipeline:
        """Use ``column`` as the entity key of the windows that follow."""
        self._expect_decoded(name, "key_by")
        self._need_columns(name, "key_by", [column])
        return self._add("key_by", name, {"column": column}, self.schema)

    def window(
        self,
        window: Any,
        aggs: Mapping[str, tuple[str, str | None]],
        *,
        time: str,
        allowed_lateness_ms: int = 0,
        late: str = "dead_letter",
        emit: str = "update",
        name: str = "window",
    ) -> Pipeline:
        """Aggregate per key over event-time windows (see :mod:`fabric_ray.streams.windows`).

        The rows after this step are results: the key column (under its own name),
        ``window_start_ms``, ``window_end_ms`` and one column per aggregate.

        Args:
            window: ``Tumbling``, ``Hopping``, ``Sliding`` or ``Session``.
            aggs: output column -> ``(aggregate, input column)``; aggregates are ``count``
                (input ``None``), ``sum``, ``mean``, ``min``, ``max``, ``std``, ``last`` and
                ``approx_distinct`` (HyperLogLog).
            time: the event-time column (milliseconds since the epoch).
            allowed_lateness_ms: how far behind the newest event time an event may be.
            late: ``dead_letter`` (late events go to the dead-letter topic with a reason) or
                ``drop`` (counted, not kept).
            emit: ``update`` (every changed window, each batch) or ``close`` (final values of
                windows the watermark closed).
        """
        self._expect_decoded(name, "window")
        key = self._key(name)
        if late not in LATE_POLICIES:
            raise self._error(name, f"late must be one of {LATE_POLICIES}; got {late!r}")
        if emit not in EMIT_MODES:
            raise self._error(name, f"emit must be one of {EMIT_MODES}; got {emit!r}")
        if not isinstance(allowed_lateness_ms, int) or allowed_lateness_ms < 0:
            raise self._error(name, f"allowed_lateness_ms must be a non-negative int; got {allowed_lateness_ms!r}")
        self._need_columns(name, "window", [time] + [col for _, col in aggs.values() if col is not None])
        from fabric_ray.streams.windows import WindowedAggregator

        try:  # builds nothing stateful worth keeping; it validates the window and aggregates
            probe = WindowedAggregator(key, time, window, dict(aggs), allowed_lateness_ms=allowed_lateness_ms, late=late, emit=emit)
        except (TypeError, ValueError) as exc:
            raise self._error(name, str(exc)) from None
        options = {"window": window, "aggs": dict(aggs), "key": key, "time": time, "allowed_lateness_ms": allowed_lateness_ms, "late": late, "emit": emit}
        return self._add("window", name, options, _window_schema(probe, self.schema, key))

    def aggregate(self, operator: Any, *, name: str = "aggregate") -> Pipeline:
        """Fold rows into a custom stateful operator and continue with the rows it emits.

        ``operator`` is an immutable definition with ``columns`` (input columns it reads),
        ``output_schema(input_schema)`` and ``create(state=None)``, which returns an object with
        ``update(table) -> table`` and ``snapshot() -> table`` (checkpointed like window state).
        :class:`~fabric_ray.streams.aggregates.RunningTotals` is one.
        """
        self._expect_decoded(name, "aggregate")
        for attr in ("columns", "output_schema", "create"):
            if not hasattr(operator, attr):
                raise self._error(name, f"aggregate operator {type(operator).__name__} has no {attr!r}")
        self._need_columns(name, "aggregate", list(operator.columns))
        schema = operator.output_schema(self.schema) if self.schema is not None else None
        return self._add("aggregate", name, {"operator": operator}, schema)

    def lookup(self, table: pa.Table, *, on: str, columns: Sequence[str] | None = None, name: str = "lookup") -> Pipeline:
        """Enrich each row with ``columns`` of the row of ``table`` whose ``on`` equals the row's ``on``.

        A left join: rows without a match keep nulls. ``table`` must have unique ``on`` values.
        """
        self._expect_decoded(name, "lookup")
        self._need_columns(name, "lookup", [on])
        if not isinstance(table, pa.Table):
            raise self._error(name, f"lookup table must be a pyarrow.Table; got {type(table).__name__}")
        if on not in table.schema.names:
            raise self._error(name, f"lookup table has no column {on!r}; columns: {table.schema.names}")
        columns = tuple(c for c in table.schema.names if c != on) if columns is None else tuple(columns)
        missing = [c for c in columns if c not in table.schema.names]
        if missing:
            raise self._error(name, f"lookup table has no columns {missing}; columns: {table.schema.names}")
        if table.num_rows and pc.count_distinct(table[on]).as_py() != table.num_rows:
            raise self._error(name, f"lookup table has duplicate values in {on!r}; a lookup needs one row per key")
        clash = [c for c in columns if self.schema is not None and c in self.schema.names]
        if clash:
            raise self._error(name, f"lookup columns {clash} already exist in the rows; select other columns")
        schema = None
        if self.schema is not None:
            schema = self.schema
            for c in columns:
                schema = schema.append(pa.field(c, table.schema.field(c).type, nullable=True))
        return self._add("lookup", name, {"table": table, "on": on, "columns": columns}, schema)

    def sink(self, name: str, *, to: str = "collect", **options: Any) -> Pipeline:
        """Send the rows at this point to the sink called ``name``.

        Args:
            to: what the sink is when the pipeline runs on the fabric:

                * ``cache``: the cache shards (``feature_view=`` a FeatureView; rows need its
                  entity's join key and features; the latest value per key wins);
                * ``archive``: Parquet files on the storage root (``time_column=`` picks the
                  ``date=`` folder), exactly once across restarts;
                * ``kafka``: an output topic (``topic=``), rows as JSON objects;
                * ``collect``: nothing on the fabric; ``run_local`` collects every sink's rows.
            options: the sink's settings, as listed above.
        """
        self._expect_decoded(name, "sink")
        kinds = {"cache": ("feature_view",), "archive": (), "kafka": ("topic",), "collect": ()}
        if to not in kinds:
            raise self._error(name, f"sink to= must be one of {sorted(kinds)}; got {to!r}")
        missing = [k for k in kinds[to] if k not in options]
        if missing:
            raise self._error(name, f"a {to} sink needs {', '.join(missing)}=")
        if to == "cache":
            fv = options["feature_view"]
            self._need_columns(name, "sink", [fv.entity.join_key, *(f.name for f in fv.features)])
        if to == "archive" and options.get("time_column") is not None:
            self._need_columns(name, "sink", [options["time_column"]])
        return self._add("sink", name, {"to": to, **options}, self.schema)

    # ---------------------------------------------------------------- internals

    def _add(self, kind: str, name: str, options: Mapping[str, Any], schema: pa.Schema | None) -> Pipeline:
        if not isinstance(name, str) or not name:
            raise self._error(kind, f"step name must be a non-empty string; got {name!r}")
        if any(s.name == name for s in self.steps):
            raise self._error(name, f"another step is already called {name!r}; pass name=... to tell them apart")
        return replace(self, steps=self.steps + (Step(kind, name, options, schema),))

    def _error(self, what: str, message: str) -> PipelineError:
        return PipelineError(f"pipeline {self.name!r}, step {len(self.steps) + 1} ({what}): {message}")

    def _find(self, kind: str) -> Step:
        for s in self.steps:
            if s.kind == kind:
                return s
        raise PipelineError(f"pipeline {self.name!r} has no {kind} step")

    def _expect_after(self, name: str, kind: str, previous: tuple[str, ...]) -> None:
        if not self.steps or self.steps[-1].kind not in previous:
            raise self._error(name, f"{kind} must come right after {' or '.join(previous)}")

    def _expect_decoded(self, name: str, kind: str) -> None:
        if not any(s.kind == "decode" for s in self.steps):
            raise self._error(name, f"{kind} needs rows: add .source(...).decode(...) first")

    def _callable(self, name: str, kind: str, fn: Any) -> None:
        if not callable(fn):
            raise self._error(name, f"{kind} needs a function; got {type(fn).__name__}")

    def _need_columns(self, name: str, kind: str, columns: Sequence[str]) -> None:
        if self.schema is None:
            return  # only known at run time
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            what = f"column {missing[0]!r} is" if len(missing) == 1 else f"columns {missing} are"
            raise self._error(name if name != kind else kind, f"{what} not in the schema here; columns: {self.schema.names}")

    def _key(self, name: str) -> str:
        for s in reversed(self.steps):
            if s.kind == "key_by":
                return s.options["column"]
            if s.kind == "window":
                break
        raise self._error(name, "window needs a key: add .key_by(column) before it")


def _window_schema(probe: Any, schema: pa.Schema | None, key: str) -> pa.Schema | None:
    """The schema of a window step's output (the key column keeps its name), when the input schema is known."""
    if schema is None:
        return None
    out = probe.schema(schema.field(key).type)
    return out.set(0, pa.field(key, out.field(0).type))
