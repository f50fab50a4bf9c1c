"""The partition processor: read a batch, decode, validate, aggregate, emit, track offsets.

One object owns one or more partitions of one topic through a :class:`Source`. It is plain
Python: ``actors/partition.py`` runs its loop inside a Ray actor, ``fabric_ray.testing`` runs
it in-process with an in-memory source.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import numpy as np
import pyarrow as pa

from fabric_ray.streams.aggregates import KeyedWindowAggregate
from fabric_ray.streams.json_codec import Decoded, JsonDecoder
from fabric_ray.streams.records import DeadLetter, RawBatch

__all__ = [
    "DeadLetterSink",
    "FeatureSink",
    "PartitionProcessor",
    "PartitionStats",
    "Source",
    "WindowedFeaturesSpec",
]


class Source(Protocol):
    """Where a processor reads from: a set of partitions of one topic."""

    topic: str

    def read_batch(self, max_messages: int, timeout_s: float) -> RawBatch:
        """Up to ``max_messages`` messages, waiting at most ``timeout_s`` for the first."""
        ...

    def high_watermarks(self) -> dict[int, int]:
        """Offset after the last message of each owned partition."""
        ...

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        """Record progress where outside tools can see it (a consumer group)."""
        ...

    @property
    def offset_gaps(self) -> int:
        """Offsets skipped because the broker no longer had them (0 where unknown)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class FeatureSink(Protocol):
    """Receives the latest feature values of the keys a batch touched."""

    def write(self, features: pa.Table) -> None:
        """Store ``features`` (one row per key, last value wins)."""
        ...


class DeadLetterSink(Protocol):
    """Receives the messages that could not be processed."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` durably before returning."""
        ...


@dataclass(frozen=True)
class WindowedFeaturesSpec:
    """What a processor computes: per-key count and sum of one value, all-time and windowed.

    Attributes:
        decoder: turns payloads into rows and rejects bad ones.
        key_field: entity key column.
        value_field: column counted and summed.
        event_time_field: event time column, milliseconds since the epoch.
        window_ms: tumbling window size.
        output_names: output column for each aggregate column
            (``key``, ``count``, ``sum``, ``window_count``, ``window_sum``, ``last_event_ms``).
    """

    decoder: JsonDecoder
    key_field: str
    value_field: str
    event_time_field: str
    window_ms: int
    output_names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.decoder.schema.names
        for role in ("key_field", "value_field", "event_time_field"):
            column = getattr(self, role)
            if column not in names:
                raise ValueError(f"{role} {column!r} is not a column of the decoder schema {names}")
            if column not in self.decoder.required:
                raise ValueError(f"{role} {column!r} must be a required field of the decoder")
        unknown = set(self.output_names) - set(KeyedWindowAggregate.COLUMNS)
        if unknown:
            raise ValueError(f"output_names has unknown aggregate columns {sorted(unknown)}")

    def features(self, state: pa.Table) -> pa.Table:
        """Rename and select the aggregate columns named in ``output_names``."""
        cols = [c for c in KeyedWindowAggregate.COLUMNS if c in self.output_names]
        return state.select(cols).rename_columns([self.output_names[c] for c in cols])


@dataclass
class PartitionStats:
    """Counters of one processor since it (re)started.

    Attributes:
        read: messages read from the source.
        processed: messages decoded, validated and folded into state.
        dead_lettered: messages sent to the dead-letter sink.
        batches: batches handled.
        next_offsets: next offset to process, per partition.
        started_at: wall-clock start time (seconds since the epoch).
        busy_s: seconds spent handling batches (not waiting for messages).
    """

    read: int = 0
    processed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    next_offsets: dict[int, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    busy_s: float = 0.0


@dataclass
class _Outputs:
    """What one batch must still emit (kept across a sink failure)."""

    read: int
    processed: int
    letters: list[DeadLetter]
    features: pa.Table | None
    next_offsets: dict[int, int]
    started: float
    dead_lettered: int = 0

    def __post_init__(self) -> None:
        self.dead_lettered = len(self.letters)  # letters is emptied once sent


class PartitionProcessor:
    """Process the partitions of one source a batch at a time.

    Args:
        source: the owned partitions.
        spec: what to compute.
        features: sink for the latest feature values.
        dead_letters: sink for rejected messages.
        batch_size: most messages per batch.
        poll_timeout_s: longest wait for a batch in :meth:`next_batch`.

    Example:
        >>> from fabric_ray.testing import MemorySource, CollectingSink
        >>> from fabric_ray.demo.payments import PAYMENTS_SPEC
        >>> src = MemorySource("payments", {0: [b'{"event_id": "e1", "user_id": 1, "amount": 2.0, "event_ts": 5}', b'oops']})
        >>> out, dlq = CollectingSink(), CollectingSink()
        >>> proc = PartitionProcessor(src, PAYMENTS_SPEC, out, dlq)
        >>> proc.next_batch(), proc.stats.processed, proc.stats.dead_lettered
        (2, 1, 1)
        >>> out.rows()[0]["txn_count"], dlq.items[0].reason
        (1, 'not valid JSON: Expecting value at char 0')
    """

    def __init__(
        self,
        source: Source,
        spec: WindowedFeaturesSpec,
        features: FeatureSink,
        dead_letters: DeadLetterSink,
        *,
        batch_size: int = 5000,
        poll_timeout_s: float = 0.2,
    ) -> None:
        self.source = source
        self.spec = spec
        self.features = features
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.state = KeyedWindowAggregate(spec.window_ms)
        self.stats = PartitionStats()
        self._pending: _Outputs | None = None

    def next_batch(self) -> int:
        """Handle at most one batch; return how many messages it held (0: nothing arrived).

        If a sink fails, the batch's outputs are kept and retried by the next call before
        anything new is read, so a failing sink neither loses messages nor counts them twice.

        Raises:
            Exception: whatever a sink raised; the call may simply be repeated.
        """
        if self._pending is not None:
            pending = self._pending
            self._emit(pending)
            return pending.read
        raw = self.source.read_batch(self.batch_size, self.poll_timeout_s)
        if len(raw) == 0:
            return 0
        t0 = time.perf_counter()
        try:
            decoded = self.spec.decoder.decode(raw.values)
        except Exception as exc:  # a decoder bug must not lose the batch: dead-letter it whole
            reason = f"decoder failed on this batch: {type(exc).__name__}: {exc}"[:500]
            decoded = Decoded(self.spec.decoder.schema.empty_table(), np.empty(0, np.int64), [(i, reason) for i in range(len(raw))])
        letters = [
            DeadLetter(
                topic=raw.topic,
                partition=int(raw.partitions[i]),
                offset=int(raw.offsets[i]),
                key=raw.keys[i],
                value=raw.values[i],
                reason=reason,
            )
            for i, reason in decoded.rejected
        ]
        table = decoded.table
        features = None
        if table.num_rows:
            state = self.state.update(
                table[self.spec.key_field].combine_chunks(),
                table[self.spec.value_field].combine_chunks(),
                table[self.spec.event_time_field].combine_chunks(),
            )
            features = self.spec.features(state)
        self._pending = _Outputs(len(raw), table.num_rows, letters, features, raw.next_offsets(), t0)
        self._emit(self._pending)
        return len(raw)

    def _emit(self, out: _Outputs) -> None:
        # Each step is marked done as it succeeds, so a retry redoes only what failed.
        if out.letters:
            self.dead_letters.send(out.letters)
            out.letters = []
        if out.features is not None:
            self.features.write(out.features)
            out.features = None
        self.source.commit(out.next_offsets)
        s = self.stats
        s.read += out.read
        s.processed += out.processed
        s.dead_lettered += out.dead_lettered
        s.batches += 1
        s.next_offsets.update(out.next_offsets)
        s.busy_s += time.perf_counter() - out.started
        self._pending = None

    def lag(self) -> dict[int, int]:
        """Messages not yet processed per partition: high watermark minus next offset."""
        highs = self.source.high_watermarks()
        return {p: max(0, high - self.stats.next_offsets.get(p, 0)) for p, high in highs.items()}

    def snapshot(self) -> dict[str, object]:
        """State and offsets together (what a checkpoint will store)."""
        return {"state": self.state.snapshot(), "next_offsets": dict(self.stats.next_offsets)}

    def close(self) -> None:
        """Close the source."""
        self.source.close()
