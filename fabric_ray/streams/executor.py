"""Run a :class:`~fabric_ray.streams.pipeline.Pipeline` over raw batches: decode, check, transform, window, route.

:class:`PipelineRuntime` is the stateful, plain-Python half of a running pipeline; the
partition processor feeds it raw batches and delivers what it returns. Every input message
ends up in exactly one of three places, and :class:`BatchResult` says which:

* **rejected** (dead-lettered): over the size limit, undecodable, failing the contract, late
  under ``late="dead_letter"``, or hit by a failing user function; each with a reason;
* **processed**: everything else, including rows a filter dropped and late rows dropped under
  ``late="drop"`` (those are also counted in ``filtered`` / ``late_dropped``);
* nothing is pending once :meth:`PipelineRuntime.process` returns.

Example:
    >>> import pyarrow as pa
    >>> from fabric_ray.streams.json_codec import JsonDecoder
    >>> from fabric_ray.streams.pipeline import Pipeline
    >>> from fabric_ray.streams.records import RawBatch
    >>> p = (Pipeline("p").source("t").decode(JsonDecoder(pa.schema([("x", pa.int64())]), required=["x"]))
    ...      .filter(lambda t: pc.greater(t["x"], 1)).sink("out"))
    >>> result = PipelineRuntime(p).process(RawBatch.from_values("t", 0, [b'{"x": 1}', b'{"x": 2}', b'{']))
    >>> result.outputs["out"].to_pylist(), result.rejected, result.processed, result.filtered
    ([{'x': 2}], [(2, 'not valid JSON: Expecting property name enclosed in double quotes at char 1')], 2, 1)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.streams.codec import DecoderUnavailable
from fabric_ray.streams.pipeline import Pipeline, Step
from fabric_ray.streams.records import RawBatch

__all__ = ["BatchResult", "PipelineRuntime"]

_REASON_LIMIT = 500


@dataclass
class BatchResult:
    """What one raw batch turned into.

    Attributes:
        outputs: rows per sink name (only sinks that received rows).
        output_index: per sink, each output row's input index (-1 for aggregate rows).
        rejected: ``(input index, reason)`` for every dead-lettered message, by input index.
        processed: input messages not rejected.
        filtered: processed messages a filter or a per-row map dropped.
        late_dropped: processed messages dropped as late under ``late="drop"``.
        reasons: rejected messages per reason kind (the text before the first ``:``).
        decode_s, steps_s: time spent decoding, and in the steps after decoding.
    """

    outputs: dict[str, pa.Table] = field(default_factory=dict)
    output_index: dict[str, np.ndarray] = field(default_factory=dict)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    processed: int = 0
    filtered: int = 0
    late_dropped: int = 0
    decode_s: float = 0.0
    steps_s: float = 0.0

    def source_offsets(self, sink: str, offsets: np.ndarray) -> np.ndarray:
        """The input offset of each row sent to ``sink`` (``offsets`` per input index; -1 for aggregate rows)."""
        index = self.output_index[sink]
        return np.where(index >= 0, offsets[np.maximum(index, 0)], -1)

    @property
    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.rejected:
            kind = reason.split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts


class _Rows:
    """The rows in flight: a table and, per row, its input index (-1 for aggregate rows)."""

    def __init__(self, table: pa.Table, index: np.ndarray) -> None:
        self.table = table
        self.index = index

    def keep(self, mask: np.ndarray) -> None:
        self.table = self.table.filter(pa.array(mask))
        self.index = self.index[mask]


class PipelineRuntime:
    """The running state of one pipeline on one owner: its window operators and step functions.

    Args:
        pipeline: the definition.
        state: a :meth:`snapshot` to continue from (window state by step name).

    Raises:
        ValueError: ``state`` names a window step the pipeline does not have.
    """

    def __init__(self, pipeline: Pipeline, state: Mapping[str, pa.Table] | None = None) -> None:
        self.pipeline = pipeline
        self._windows: dict[str, Any] = {}
        state = dict(state or {})
        for step in pipeline.steps:
            if step.kind == "aggregate":
                self._windows[step.name] = step.options["operator"].create(state.pop(step.name, None))
                continue
            if step.kind != "window":
                continue
            from fabric_ray.streams.windows import WindowedAggregator

            o = step.options
            args = (o["key"], o["time"], o["window"], o["aggs"])
            kwargs = {"allowed_lateness_ms": o["allowed_lateness_ms"], "late": o["late"], "emit": o["emit"]}
            if step.name in state:
                self._windows[step.name] = WindowedAggregator.restore(state.pop(step.name))
            else:
                self._windows[step.name] = WindowedAggregator(*args, **kwargs)
        if state:
            raise ValueError(f"pipeline {pipeline.name!r}: state for unknown stateful steps {sorted(state)}")
        self._decoder = pipeline._find("decode").options["decoder"]

    def snapshot(self) -> dict[str, pa.Table]:
        """Every stateful step's state (windows and aggregates), by step name (Arrow tables, for a checkpoint)."""
        return {name: op.snapshot() for name, op in self._windows.items()}

    def window(self, name: str) -> Any:
        """The window operator of step ``name`` (to read current values)."""
        return self._windows[name]

    def process(self, raw: RawBatch) -> BatchResult:
        """Run one raw batch through every step; see the module docstring for the accounting.

        Raises:
            DecoderUnavailable: the decoder cannot work now (its schema registry is away); no
                state changed, so the same batch can be processed again later.
        """
        result = BatchResult()
        values = raw.values
        limit = self.pipeline.max_message_bytes
        if None in values:  # tombstones are rare: the common case stays in C
            sizes = np.fromiter((0 if v is None else len(v) for v in values), np.int64, len(values))
        else:
            sizes = np.fromiter(map(len, values), np.int64, len(values))
        fits = np.flatnonzero(sizes <= limit)
        for i in np.flatnonzero(sizes > limit):
            result.rejected.append((int(i), f"message too large: {sizes[i]} bytes, over max_message_bytes={limit}"))
        started = time.perf_counter()
        rows = self._decode(values, fits, result)
        decoded = time.perf_counter()
        self._run_steps(self.pipeline.steps[2:], rows, result)
        result.decode_s, result.steps_s = decoded - started, time.perf_counter() - decoded
        result.processed = len(values) - len(result.rejected)
        return result

    def process_rows(self, table: pa.Table, after: str) -> BatchResult:
        """Run already-decoded rows through the steps that follow step ``after`` (a replay).

        Row ``i`` of ``table`` is input index ``i`` (rejections and ``output_index`` refer to it).
        The rows are what the pipeline had right after ``after``, e.g. the Parquet archive's rows
        for ``after="archive"``.

        Raises:
            KeyError: the pipeline has no step ``after``.
        """
        steps = self.pipeline.steps
        at = next((i for i, s in enumerate(steps) if s.name == after), None)
        if at is None:
            raise KeyError(f"pipeline {self.pipeline.name!r} has no step {after!r}; steps: {[s.name for s in steps]}")
        result = BatchResult()
        self._run_steps(steps[at + 1 :], _Rows(table, np.arange(table.num_rows, dtype=np.int64)), result)
        result.processed = table.num_rows - len(result.rejected)
        return result

    def _run_steps(self, steps: tuple[Step, ...], rows: _Rows, result: BatchResult) -> None:
        for step in steps:
            if rows.table.num_rows == 0 and step.kind != "sink":
                continue
            getattr(self, f"_{step.kind}")(step, rows, result)
        result.rejected.sort()

    # ------------------------------------------------------------------ steps

    def _decode(self, values: list, fits: np.ndarray, result: BatchResult) -> _Rows:
        chosen = values if len(fits) == len(values) else [values[i] for i in fits]
        try:
            decoded = self._decoder.decode(chosen)
            table, kept, rejected = decoded.table, np.asarray(decoded.kept, np.int64), decoded.rejected
        except DecoderUnavailable:
            raise  # nothing is wrong with the messages (the registry is away): the caller retries
        except Exception as exc:  # a decoder bug must not lose the batch: dead-letter it whole
            schema = getattr(self._decoder, "schema", None) or pa.schema([])
            reason = _clip(f"decoder failed on this batch: {type(exc).__name__}: {exc}")
            table, kept, rejected = schema.empty_table(), np.empty(0, np.int64), [(i, reason) for i in range(len(chosen))]
        result.rejected.extend((int(fits[i]), reason) for i, reason in rejected)
        return _Rows(table, fits[kept] if len(kept) else np.empty(0, np.int64))

    def _reject(self, rows: _Rows, mask: np.ndarray, reasons: list[str] | str, result: BatchResult) -> None:
        """Dead-letter the rows under ``mask`` (only rows that came from input messages can be)."""
        idx = rows.index[mask]
        if isinstance(reasons, str):
            reasons = [reasons] * len(idx)
        result.rejected.extend((int(i), r) for i, r in zip(idx, reasons) if i >= 0)
        rows.keep(~mask)

    def _validate(self, step: Step, rows: _Rows, result: BatchResult) -> None:
        from fabric_ray.governance.contracts import enforce

        checked = enforce(rows.table, step.options["contract"])
        if not checked.rejected:
            return
        rejected = sorted(checked.rejected)  # _reject pairs reasons with rows in row order
        mask = np.zeros(rows.table.num_rows, bool)
        mask[[i for i, _ in rejected]] = True
        self._reject(rows, mask, [_clip(f"contract: {reason}") for _, reason in rejected], result)

    def _filter(self, step: Step, rows: _Rows, result: BatchResult) -> None:
        fn = step.options["fn"]
        n = rows.table.num_rows
        if step.options["per_row"]:
            keep = np.zeros(n, bool)
            failed = np.zeros(n, bool)
            reasons = []
            for i, row in enumerate(rows.table.to_pylist()):
                try:
                    keep[i] = bool(fn(row))
                except Exception as exc:  # noqa: BLE001 - the row is dead-lettered with the error
                    failed[i] = True
                    reasons.append(_clip(f"{step.label} failed: {type(exc).__name__}: {exc}"))
            if failed.any():
                keep = keep[~failed]
                self._reject(rows, failed, reasons, result)
        else:
            try:
                mask = fn(rows.table)
                keep = _to_mask(mask, n)
            except Exception as exc:  # noqa: BLE001
                self._reject(rows, np.ones(n, bool), _clip(f"{step.label} failed: {type(exc).__name__}: {exc}"), result)
                return
        result.filtered += int((~keep).sum())
        rows.keep(keep)

    def _map(self, step: Step, rows: _Rows, result: BatchResult) -> None:
        fn, schema = step.options["fn"], step.options["output_schema"]
        n = rows.table.num_rows
        if step.options["per_row"]:
            out, keep, failed, reasons = [], np.zeros(n, bool), np.zeros(n, bool), []
            for i, row in enumerate(rows.table.to_pylist()):
                try:
                    new = fn(row)
                except Exception as exc:  # noqa: BLE001
                    failed[i] = True
                    reasons.append(_clip(f"{step.label} failed: {type(exc).__name__}: {exc}"))
                    continue
                if new is not None:
                    keep[i] = True
                    out.append(new)
            result.filtered += int((~keep & ~failed).sum())
            try:
                table = pa.Table.from_pylist(out, schema=schema) if out else (schema or rows.table.schema).empty_table()
            except (pa.ArrowException, TypeError, ValueError) as exc:
                self._reject(rows, np.ones(n, bool), _clip(f"{step.label} returned rows that do not fit: {exc}"), result)
                return
            result.rejected.extend((int(i), r) for i, r in zip(rows.index[failed], reasons) if i >= 0)
            rows.table, rows.index = table, rows.index[keep]
            return
        try:
            table = fn(rows.table)
            if isinstance(table, pa.RecordBatch):
                table = pa.Table.from_batches([table])
            if not isinstance(table, pa.Table):
                raise TypeError(f"returned {type(table).__name__}, not a pyarrow.Table")
            if table.num_rows != n:
                raise ValueError(f"returned {table.num_rows} rows for {n}; use filter to drop rows")
            if schema is not None:
                table = table.select(schema.names).cast(schema)
        except Exception as exc:  # noqa: BLE001
            self._reject(rows, np.ones(n, bool), _clip(f"{step.label} failed: {type(exc).__name__}: {exc}"), result)
            return
        rows.table = table

    def _key_by(self, step: Step, rows: _Rows, result: BatchResult) -> None:
        column = step.options["column"]
        if column not in rows.table.schema.names:
            self._reject(rows, np.ones(rows.table.num_rows, bool), f"key_by: no column {column!r} in the rows", result)
            return
        nulls = rows.table[column].is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            self._reject(rows, nulls, f"key_by: key column {column!r} is null", result)

    def _window(self, step: Step, rows: _Rows, result: BatchResult) -> None:
        op = self._windows[step.name]
        time_col = step.options["time"]
        nulls = rows.table[time_col].is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            self._reject(rows, nulls, f"{step.label}: event time column {time_col!r} is null", result)
        if rows.table.num_rows == 0:
            rows.index = np.empty(0, np.int64)
            return
        update = op.update(rows.table)
        late = np.asarray(update.late_rows, np.int64)
        if len(late):
            reasons = update.late_reasons.to_pylist()
            result.rejected.extend((int(rows.index[i]), _clip(r)) for i, r in zip(late, reasons) if rows.index[i] >= 0)
        result.late_dropped += int(update.late_dropped)
        out = update.rows
        rows.table = out.rename_columns([step.options["key"], *out.column_names[1:]])
        rows.index = np.full(out.num_rows, -1, np.int64)

    def _aggregate(self, step: Step, rows: _Rows, result: BatchResult) -> None:
        for column in step.options["operator"].columns:  # an operator folds values, never nulls
            nulls = rows.table[column].is_null().to_numpy(zero_copy_only=False)
            if nulls.any():
                self._reject(rows, nulls, f"{step.label}: column {column!r} is null", result)
        if rows.table.num_rows == 0:
            rows.index = np.empty(0, np.int64)
            return
        table = self._windows[step.name].update(rows.table)
        rows.table = table
        rows.index = np.full(table.num_rows, -1, np.int64)

    def _lookup(self, step: Step, rows: _Rows, result: BatchResult) -> None:
        o = step.options
        ref: pa.Table = o["table"]
        pos = pc.index_in(rows.table[o["on"]], value_set=ref[o["on"]])
        table = rows.table
        for c in o["columns"]:
            table = table.append_column(c, ref[c].take(pos))
        rows.table = table

    def _sink(self, step: Step, rows: _Rows, result: BatchResult) -> None:
        if rows.table.num_rows:
            result.outputs[step.name] = rows.table
            result.output_index[step.name] = rows.index


def _to_mask(mask: Any, n: int) -> np.ndarray:
    """A filter's result as a NumPy bool array of length ``n`` (null counts as false)."""
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    if isinstance(mask, pa.Array):
        mask = mask.fill_null(False).to_numpy(zero_copy_only=False)
    arr = np.asarray(mask)
    if arr.dtype != bool or arr.shape != (n,):
        raise TypeError(f"must return one boolean per row ({n}); got {arr.dtype} of shape {arr.shape}")
    return arr


def _clip(reason: str) -> str:
    return reason if len(reason) <= _REASON_LIMIT else reason[: _REASON_LIMIT - 3] + "..."
