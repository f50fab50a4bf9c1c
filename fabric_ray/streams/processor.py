"""The pipeline processor: one owner of some partitions, running a pipeline with exactly-once state.

For each owned partition it keeps a :class:`~fabric_ray.streams.executor.PipelineRuntime`
(window state is per partition, as in Kafka Streams' tasks, so partitions can move between
owners) and, when a checkpoint store is given, restores it from the partition's latest
checkpoint and seeks the source to the checkpoint's next offset.

One batch: read, split by partition, run each part, then deliver: dead letters first, then
each sink. If a delivery fails the batch's undelivered outputs are kept and retried by the next
call before anything new is read (nothing lost, nothing counted twice).

Checkpoints: every ``checkpoint_interval_s`` (and on :meth:`PipelineProcessor.checkpoint`),
offset-aware sinks flush (the Parquet archive writes its files; other sinks with a ``sync()``
or ``flush()``, such as the cache writer, make what they buffered durable), then each partition's state,
next offset and counters are saved in one object, then the offsets are committed to the
consumer group. After a crash the owner resumes from the last checkpoint: state and counters
as they were, and the messages after it processed again. Sinks make that exactly-once:

* the cache keeps the latest value per key: re-processing writes the same values again;
* the archive deletes files an uncommitted incarnation wrote (see :mod:`.archive`);
* a checkpoint ahead of the partition's high watermark (the topic was recreated) is ignored;
* Kafka output topics and the dead-letter topic have an output guard each
  (:mod:`.output_guard`): every message names its source partition and offset in headers, each
  checkpoint records the topics' high watermarks, and after a restart what the dead incarnation
  produced from the replayed offsets is read back and not produced again. With guards, a new
  run checkpoints before it processes anything.

Example:
    >>> import pyarrow as pa
    >>> from fabric_ray.streams.json_codec import JsonDecoder
    >>> from fabric_ray.streams.pipeline import Pipeline
    >>> from fabric_ray.testing import MemorySource, CollectingSink
    >>> p = Pipeline("p").source("t").decode(JsonDecoder(pa.schema([("x", pa.int64())]), required=["x"])).sink("out")
    >>> out, dlq = CollectingSink(), CollectingSink()
    >>> proc = PipelineProcessor(MemorySource("t", {0: [b'{"x": 1}', b'oops']}), p, {"out": out}, dlq)
    >>> proc.next_batch(), proc.stats.processed, proc.stats.dead_lettered, out.rows()
    (2, 1, 1, [{'x': 1}])
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import pyarrow as pa

from fabric_ray.streams.checkpoint import Checkpoint, CheckpointStore
from fabric_ray.streams.executor import BatchResult, PipelineRuntime
from fabric_ray.streams.output_guard import OutputGuard
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.records import PIPELINE_HEADER, DeadLetter, DeadLetterSink, RawBatch, Source
from fabric_ray.streams.stage_latency import StageLatencies

__all__ = ["PartitionCounters", "PipelineProcessor", "ProcessorStats", "Sink"]


class Sink(Protocol):
    """Receives a sink step's rows. Offset-aware sinks also have ``write_from``, ``flush``, ``recover``."""

    def write(self, table: pa.Table) -> None:
        """Store ``table`` durably before returning."""
        ...


@dataclass
class PartitionCounters:
    """What happened to one partition's messages; saved in its checkpoints, so exact across restarts.

    ``processed + dead_lettered`` equals the messages read before ``next_offset``.
    ``outputs_suppressed`` / ``letters_suppressed``: output rows and dead letters not produced
    again after a restart because the output guard found them already produced.
    """

    processed: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    late_dropped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    outputs_suppressed: int = 0
    letters_suppressed: int = 0

    def add(self, result: BatchResult) -> None:
        self.processed += result.processed
        self.dead_lettered += len(result.rejected)
        self.filtered += result.filtered
        self.late_dropped += result.late_dropped
        for kind, n in result.reasons.items():
            self.reasons[kind] = self.reasons.get(kind, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "dead_lettered": self.dead_lettered,
            "filtered": self.filtered,
            "late_dropped": self.late_dropped,
            "reasons": dict(self.reasons),
            "outputs_suppressed": self.outputs_suppressed,
            "letters_suppressed": self.letters_suppressed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartitionCounters:
        return cls(
            int(data.get("processed", 0)),
            int(data.get("dead_lettered", 0)),
            int(data.get("filtered", 0)),
            int(data.get("late_dropped", 0)),
            dict(data.get("reasons", {})),
            int(data.get("outputs_suppressed", 0)),
            int(data.get("letters_suppressed", 0)),
        )


@dataclass
class ProcessorStats:
    """Counters of one owner: per partition (exact across restarts) and of this incarnation."""

    partitions: dict[int, PartitionCounters] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    read: int = 0
    batches: int = 0
    checkpoints: int = 0
    restored_from: dict[int, int] = field(default_factory=dict)
    discarded_checkpoints: dict[int, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    busy_s: float = 0.0
    stages: StageLatencies = field(default_factory=StageLatencies)

    @property
    def processed(self) -> int:
        return sum(c.processed for c in self.partitions.values())

    @property
    def dead_lettered(self) -> int:
        return sum(c.dead_lettered for c in self.partitions.values())

    @property
    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.partitions.values():
            for kind, n in c.reasons.items():
                out[kind] = out.get(kind, 0) + n
        return out

    @property
    def outputs_suppressed(self) -> int:
        return sum(c.outputs_suppressed for c in self.partitions.values())

    @property
    def letters_suppressed(self) -> int:
        return sum(c.letters_suppressed for c in self.partitions.values())


@dataclass
class _CheckpointJob:
    """What one checkpoint writes: detached archive rows, then state snapshots; then offsets to commit."""

    detached: dict[str, Any]
    saves: list[tuple[CheckpointStore, dict[str, pa.Table], int, dict]]
    offsets: dict[int, int]
    written: set[str] = field(default_factory=set)
    done: bool = False
    error: BaseException | None = None
    flushes: list[str] = field(default_factory=list)  # sinks to flush() first (cache writers' write-behind rows)


@dataclass
class _Inflight:
    """A batch read but not fully run (its decoder was unavailable for some partition)."""

    raw: RawBatch
    parts: list[tuple[int, RawBatch]]
    started: float
    first_offsets: dict[int, int]
    stamps_ms: np.ndarray | None = None
    results: dict[int, BatchResult] = field(default_factory=dict)
    letters: list[DeadLetter] = field(default_factory=list)
    outputs: dict[str, list[tuple[int, np.ndarray, pa.Table]]] = field(default_factory=dict)


@dataclass
class _Pending:
    """One batch's deliveries not yet made (kept across a sink failure)."""

    read: int
    letters: list[DeadLetter]
    outputs: dict[str, list[tuple[int, np.ndarray, pa.Table]]]
    results: dict[int, BatchResult]
    next_offsets: dict[int, int]
    started: float
    first_offsets: dict[int, int] = field(default_factory=dict)
    stamps_ms: np.ndarray | None = None  # the messages' produce times, for the end-to-end latency


class PipelineProcessor:
    """Run ``pipeline`` over the partitions of ``source``; see the module docstring.

    Args:
        source: the owned partitions.
        pipeline: what to do.
        sinks: a sink per sink step name of the pipeline.
        dead_letters: sink for rejected messages.
        checkpoints: ``partition -> CheckpointStore`` (``None``: no checkpoints; state restarts empty).
        checkpoint_interval_s: time between checkpoints.
        batch_size: most messages per batch.
        poll_timeout_s: longest wait for a batch in :meth:`next_batch`.
        start_offsets: where a partition without a checkpoint starts (default: the source's
            start, the beginning of the log); a replay from chosen offsets.
        background_checkpoints: write periodic checkpoints on a background thread, so a slow
            storage write does not hold up batches (the actors do; tests may keep it simple).

    Sinks with a ``log`` (read back) and ``encode``/``produce`` (Kafka output topics), and a
    dead-letter sink with a ``log``, get an output guard each (:mod:`.output_guard`).

    Raises:
        ValueError: a sink step has no sink.
    """

    def __init__(
        self,
        source: Source,
        pipeline: Pipeline,
        sinks: Mapping[str, Sink],
        dead_letters: DeadLetterSink,
        *,
        checkpoints: Callable[[int], CheckpointStore] | None = None,
        checkpoint_interval_s: float = 5.0,
        batch_size: int = 5000,
        poll_timeout_s: float = 0.2,
        start_offsets: Mapping[int, int] | None = None,
        background_checkpoints: bool = False,
    ) -> None:
        missing = [s for s in pipeline.sinks if s not in sinks]
        if missing:
            raise ValueError(f"pipeline {pipeline.name!r}: no sink given for sink steps {missing}")
        self.source = source
        self.pipeline = pipeline
        self.sinks = dict(sinks)
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.stats = ProcessorStats()
        self._runtimes: dict[int, PipelineRuntime] = {}
        self._stores: dict[int, CheckpointStore] = {}
        self._pending: _Pending | None = None
        self._inflight: _Inflight | None = None
        self._writer: threading.Thread | None = None
        self._writer_job: _CheckpointJob | None = None
        self.background_checkpoints = background_checkpoints
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        self._guards = {
            name: OutputGuard(sink.log, pipeline=pipeline.name, source_topic=pipeline.topic, sink=name)
            for name, sink in self.sinks.items()
            if getattr(sink, "log", None) is not None and hasattr(sink, "encode") and hasattr(sink, "produce")
        }
        self._letter_guard = None
        if getattr(dead_letters, "log", None) is not None:
            self._letter_guard = OutputGuard(dead_letters.log, pipeline=pipeline.name, source_topic=pipeline.topic)
        highs = source.high_watermarks()
        partitions = list(getattr(source, "partitions", []) or highs)
        seek: dict[int, int] = {}
        restored: dict[int, Checkpoint] = {}
        for p in partitions:
            state = None
            if checkpoints is not None:
                store = self._stores[p] = checkpoints(p)
                ckpt = store.load()
                if ckpt is not None and ckpt.next_offset > highs.get(p, ckpt.next_offset):
                    # The log is shorter than the checkpoint: the topic was recreated (or the
                    # embedded broker restarted). The checkpoint describes another log.
                    self.stats.discarded_checkpoints[p] = ckpt.next_offset
                    ckpt = None
                if ckpt is not None:
                    restored[p] = ckpt
                    state = ckpt.state
                    seek[p] = ckpt.next_offset
                    self.stats.next_offsets[p] = ckpt.next_offset
                    self.stats.restored_from[p] = ckpt.next_offset
                    self.stats.partitions[p] = PartitionCounters.from_json(ckpt.extra.get("counters", {}))
            if p not in seek and start_offsets and p in start_offsets:
                seek[p] = self.stats.next_offsets[p] = int(start_offsets[p])
            for sink in self.sinks.values():
                if hasattr(sink, "recover"):
                    sink.recover(p, seek.get(p, 0))
            self._runtimes[p] = PipelineRuntime(pipeline, state)
            self.stats.partitions.setdefault(p, PartitionCounters())
        if seek:
            source.seek(seek)
        self._needs_marks = self._restore_guards(partitions, restored)
        if self._needs_marks:
            for p in partitions:  # the first checkpoint covers every partition, from where it starts
                self.stats.next_offsets.setdefault(p, seek.get(p, 0))

    @property
    def guards(self) -> list[OutputGuard]:
        """The output guards: one per Kafka output sink, and the dead letters' (when guarded)."""
        return [*self._guards.values(), *([self._letter_guard] if self._letter_guard is not None else [])]

    def _restore_guards(self, partitions: list[int], restored: Mapping[int, Checkpoint]) -> bool:
        """Read back what was produced since each restored checkpoint; true when some partition has no marks yet."""
        missing = False
        for guard in self.guards:
            starts = {}
            for p in partitions:
                marks = restored[p].extra.get("outputs", {}).get(guard.key) if p in restored else None
                if marks is None:
                    missing = True
                else:
                    starts[p] = (restored[p].next_offset, marks)
            guard.restore(starts)
        return missing

    # ------------------------------------------------------------------ the loop

    def next_batch(self) -> int:
        """Handle at most one batch; return how many messages it held (0: nothing arrived).

        A batch whose decoder raised :class:`~fabric_ray.streams.codec.DecoderUnavailable` (the
        schema registry is away) is kept, and decoded again by the next call.

        Raises:
            Exception: whatever a sink raised, or DecoderUnavailable; the call may simply be repeated.
        """
        if self._needs_marks:
            # A new run (or a checkpoint from before the guards) has no marks to find its outputs
            # by after a crash: checkpoint before producing anything.
            self.checkpoint()
        if self._pending is not None:
            pending = self._pending
            self._deliver(pending)
            return pending.read
        if self._inflight is None:
            raw = self.source.read_batch(self.batch_size, self.poll_timeout_s)
            if len(raw) == 0:
                self._maybe_checkpoint()
                return 0
            stamps = _produce_times(raw)
            if stamps is not None:
                waits = time.time() * 1000 - stamps
                self.stats.stages.record("queue", waits)
                if getattr(self.source, "last_read_waited", False):  # read by an idle owner: the broker's share alone
                    self.stats.stages.record("broker", waits)
            parts = [(p, raw if len(rows) == len(raw) else _take(raw, rows)) for p, rows in _split(raw)]
            self._inflight = _Inflight(raw, parts, time.perf_counter(), {p: int(part.offsets[0]) for p, part in parts}, stamps)
        inflight = self._inflight
        while inflight.parts:  # partitions already run are not run again after a retry
            p, part = inflight.parts[0]
            runtime = self._runtimes.get(p) or self._runtimes.setdefault(p, PipelineRuntime(self.pipeline))
            result = runtime.process(part)  # DecoderUnavailable leaves this part for the next call
            inflight.parts.pop(0)
            inflight.results[p] = result
            self.stats.stages.record("decode", result.decode_s * 1000)
            self.stats.stages.record("steps", result.steps_s * 1000)
            origin = {PIPELINE_HEADER: self.pipeline.name}
            inflight.letters.extend(
                DeadLetter(topic=part.topic, partition=p, offset=int(part.offsets[i]), key=part.keys[i], value=part.values[i], reason=reason, headers=origin)
                for i, reason in result.rejected
            )
            for name, table in result.outputs.items():
                inflight.outputs.setdefault(name, []).append((p, result.source_offsets(name, part.offsets), table))
        raw = inflight.raw
        self._inflight = None
        self._pending = _Pending(
            len(raw), inflight.letters, inflight.outputs, inflight.results, raw.next_offsets(), inflight.started, inflight.first_offsets,
            inflight.stamps_ms,
        )
        self._deliver(self._pending)
        return len(raw)

    def _deliver(self, out: _Pending) -> None:
        # Each delivery is marked done as it succeeds, so a retry redoes only what failed.
        s = self.stats
        if out.letters:
            self._send_letters(out)
            out.letters = []
        for name in list(out.outputs):
            sink = self.sinks[name]
            parts = out.outputs[name]
            began = time.perf_counter()
            guard = self._guards.get(name)
            if guard is not None:
                while parts:
                    self._produce(guard, sink, out, *parts[0])
                    parts.pop(0)
            elif hasattr(sink, "write_from"):
                while parts:
                    sink.write_from(*parts[0])
                    parts.pop(0)
            else:
                sink.write(parts[0][2] if len(parts) == 1 else pa.concat_tables([t for _, _, t in parts], promote_options="permissive"))
            del out.outputs[name]
            s.stages.record(f"sink:{name}", (time.perf_counter() - began) * 1000)
        if out.stamps_ms is not None:
            s.stages.record("end_to_end", time.time() * 1000 - out.stamps_ms)
        for p, result in out.results.items():
            s.partitions.setdefault(p, PartitionCounters()).add(result)
        s.read += out.read
        s.batches += 1
        s.next_offsets.update(out.next_offsets)
        s.busy_s += time.perf_counter() - out.started
        for guard in self.guards:
            guard.advance(out.next_offsets)
        self._pending = None
        self._dirty = True
        self._maybe_checkpoint()

    def _send_letters(self, out: _Pending) -> None:
        """Send the batch's dead letters, less those the dead incarnation already sent."""
        guard, letters = self._letter_guard, out.letters
        if guard is None:
            self.dead_letters.send(letters)
            return
        parts = sorted({letter.partition for letter in letters})
        for p in parts:
            guard.refresh(p, out.first_offsets.get(p, 0))
        keep = {p: iter(guard.keep_letters(p, [x.offset for x in letters if x.partition == p])) for p in parts}
        kept = [x for x in letters if next(keep[x.partition])]
        try:
            self.dead_letters.send(kept)
        except Exception:
            for p in parts:
                guard.invalidate(p)
            raise
        for p in parts:
            n = sum(1 for x in letters if x.partition == p) - sum(1 for x in kept if x.partition == p)
            self.stats.partitions.setdefault(p, PartitionCounters()).letters_suppressed += n

    def _produce(self, guard: OutputGuard, sink: Any, out: _Pending, p: int, offsets: np.ndarray, table: pa.Table) -> None:
        """Produce one partition's rows for a guarded sink, less those the dead incarnation already produced."""
        guard.refresh(p, out.first_offsets.get(p, 0))
        # An aggregate row comes from no single message: it is labelled with the batch's last offset.
        origin = np.where(offsets >= 0, offsets, out.next_offsets[p] - 1).tolist()
        encoded = sink.encode(table)
        keep = guard.keep_rows(p, encoded)
        headers = guard.row_headers(p, origin)
        messages = [(k, v, h) for (k, v), h, ok in zip(encoded, headers, keep) if ok]
        try:
            sink.produce(messages)
        except Exception:
            guard.invalidate(p)
            raise
        self.stats.partitions.setdefault(p, PartitionCounters()).outputs_suppressed += len(encoded) - len(messages)

    def _maybe_checkpoint(self) -> None:
        self._finish_background()
        if self._dirty and self._writer is None and time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s:
            self.checkpoint(wait=not self.background_checkpoints)

    def checkpoint(self, wait: bool = True) -> None:
        """Flush offset-aware sinks, save every partition's state with its next offset, commit offsets.

        What to save is taken at once, between batches: the archive's buffered rows, each
        partition's state snapshot, offsets and counters. Writing it (Parquet files first, then
        the checkpoints) is slow I/O, so with ``wait=False`` it happens on a background thread
        while batches go on; the offsets are committed to the consumer group once it is done.
        If the write fails, the archive rows go back into the buffer and the next checkpoint
        writes them again (nothing is lost; the error is raised by the next call).
        Without a checkpoint store only the archive flush and the consumer-group commit happen.
        """
        if self._pending is not None:
            self._deliver(self._pending)
        self._join_background()
        detached = {name: sink.detach() for name, sink in self.sinks.items() if hasattr(sink, "detach")}
        flushes = [name for name, sink in self.sinks.items() if hasattr(sink, "flush") and not hasattr(sink, "write_from")]
        offsets = dict(self.stats.next_offsets)
        # Every earlier output is acknowledged (sends are synchronous): what lies past these
        # watermarks was produced from the offsets after this checkpoint.
        captured = [(guard, guard.capture()) for guard in self.guards]
        saves = [
            (
                self._stores[p],
                self._runtimes[p].snapshot(),
                offsets[p],
                {"counters": self.stats.partitions[p].to_json(), "outputs": {g.key: g.marks(p, hw) for g, hw in captured}},
            )
            for p in self._stores
            if p in offsets
        ]
        if not self._stores:
            for guard, hw in captured:  # no checkpoints: the marks still serve a retry after a failed send
                for p in self._runtimes:
                    guard.marks(p, hw)
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        job = _CheckpointJob(detached, saves, offsets, flushes=flushes)
        if wait:
            self._write(job)
            self._finish(job)
        else:
            self._writer = threading.Thread(target=self._write, args=(job,), name="checkpoint-writer", daemon=True)
            self._writer_job = job
            self._writer.start()

    def _write(self, job: _CheckpointJob) -> None:
        try:
            for name in job.flushes:  # everything written before this checkpoint is durable before it commits
                sink = self.sinks[name]
                getattr(sink, "sync", sink.flush)()  # sync: wait for the sink's own flush, add no writes
            for name, part in job.detached.items():
                self.sinks[name].write_detached(part)
                job.written.add(name)
            for store, state, offset, extra in job.saves:
                store.save(state, offset, extra=extra)
            job.done = True
        except BaseException as exc:  # noqa: BLE001 - handed to the loop thread
            job.error = exc

    def _finish(self, job: _CheckpointJob) -> None:
        """In the loop thread, after a write: commit, or put the archive rows back and raise."""
        if job.error is not None:
            for name, part in job.detached.items():
                if name not in job.written:
                    self.sinks[name].reattach(part)
            self._dirty = True
            raise job.error
        if job.offsets:
            self.source.commit(job.offsets)
        self.stats.checkpoints += 1
        self._needs_marks = False

    def _finish_background(self) -> None:
        if self._writer is not None and not self._writer.is_alive():
            self._join_background()

    def _join_background(self) -> None:
        if self._writer is None:
            return
        self._writer.join()
        job, self._writer, self._writer_job = self._writer_job, None, None
        self._finish(job)

    # ------------------------------------------------------------------ queries

    def lag(self) -> dict[int, int]:
        """Messages not yet processed per partition: high watermark minus the next offset to process.

        A source with ``cached_high_watermarks`` (Kafka's: the watermarks of its last fetch
        responses) answers without a broker round trip, so asking does not stall the loop.
        """
        highs = getattr(self.source, "cached_high_watermarks", self.source.high_watermarks)()
        return {p: max(0, high - self.stats.next_offsets.get(p, 0)) for p, high in highs.items()}

    def runtime(self, partition: int) -> PipelineRuntime:
        """The pipeline state of ``partition`` (to read window values)."""
        return self._runtimes[partition]

    def close(self, checkpoint: bool = True) -> None:
        """Checkpoint (unless told not to), then close the source and the guards' read-back connections."""
        self._join_background()
        if checkpoint and (self._dirty or self._pending is not None):
            self.checkpoint()
        self.source.close()
        for guard in self.guards:
            guard.close()


def _split(raw: RawBatch) -> list[tuple[int, np.ndarray]]:
    """``(partition, row indices)`` of a batch, partitions in first-seen order."""
    parts = raw.partitions
    if len(parts) == 0:
        return []
    first = int(parts[0])
    if (parts == first).all():
        return [(first, np.arange(len(parts)))]
    return [(int(p), np.flatnonzero(parts == p)) for p in dict.fromkeys(parts.tolist())]


def _produce_times(raw: RawBatch) -> np.ndarray | None:
    """The batch's known produce times in ms (Kafka timestamps; unknown ones, -1 or 0, left out)."""
    stamps = raw.timestamps_ms
    if stamps is None or len(stamps) == 0:
        return None
    known = stamps[stamps > 0]
    return known.astype(np.float64) if len(known) else None


def _take(raw: RawBatch, rows: np.ndarray) -> RawBatch:
    stamps = None if raw.timestamps_ms is None else raw.timestamps_ms[rows]
    return RawBatch(raw.topic, raw.partitions[rows], raw.offsets[rows], [raw.keys[i] for i in rows], [raw.values[i] for i in rows], stamps)
