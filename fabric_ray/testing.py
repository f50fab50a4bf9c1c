"""Test helpers shipped with the library: an in-memory source, a collecting sink, ``run_local``.

They drive the same :class:`~fabric_ray.streams.processor.PipelineProcessor` the actors run,
without Kafka or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.streams.records import DeadLetter, RawBatch

__all__ = ["CollectingSink", "LocalRun", "MemorySource", "run_local"]


class MemorySource:
    """Partitions held in memory: ``{partition: [payload, ...]}``, offsets from 0.

    Example:
        >>> src = MemorySource("t", {0: [b"a", b"b"], 1: [b"c"]})
        >>> b = src.read_batch(10, 0)
        >>> sorted(b.values), src.high_watermarks()
        ([b'a', b'b', b'c'], {0: 2, 1: 1})
    """

    def __init__(self, topic: str, partitions: Mapping[int, Sequence[bytes | None]], start_offsets: Mapping[int, int] | None = None) -> None:
        self.topic = topic
        self._data = {p: list(v) for p, v in partitions.items()}
        self._next = {p: (start_offsets or {}).get(p, 0) for p in self._data}
        self.committed: dict[int, int] = {}
        self.closed = False
        self.offset_gaps = 0

    def append(self, partition: int, payloads: Sequence[bytes | None]) -> None:
        """Add messages to the end of a partition."""
        self._data.setdefault(partition, []).extend(payloads)
        self._next.setdefault(partition, 0)

    @property
    def partitions(self) -> list[int]:
        """The partition ids held."""
        return sorted(self._data)

    def seek(self, next_offsets: Mapping[int, int]) -> None:
        """Continue each named partition from the given offset."""
        self._next.update({int(p): int(o) for p, o in next_offsets.items()})

    def read_batch(self, max_messages: int, timeout_s: float) -> RawBatch:
        parts, offs, vals = [], [], []
        for p in sorted(self._data):
            start = self._next[p]
            take = self._data[p][start : start + max_messages - len(vals)]
            parts += [p] * len(take)
            offs += range(start, start + len(take))
            vals += take
            self._next[p] = start + len(take)
        return RawBatch(self.topic, np.asarray(parts, np.int32), np.asarray(offs, np.int64), [None] * len(vals), vals)

    def high_watermarks(self) -> dict[int, int]:
        return {p: len(v) for p, v in self._data.items()}

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        self.committed.update(next_offsets)

    def close(self) -> None:
        self.closed = True


class CollectingSink:
    """Collects whatever is written or sent to it: feature tables and dead letters."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def write(self, features: pa.Table) -> None:
        self.items.append(features)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        self.items.extend(letters)

    def rows(self) -> list[dict[str, Any]]:
        """All written feature rows, in order."""
        return [row for t in self.items if isinstance(t, pa.Table) for row in t.to_pylist()]

    def latest(self, key_column: str) -> dict[Any, dict[str, Any]]:
        """The last row written per key."""
        return {row[key_column]: row for row in self.rows()}


@dataclass
class LocalRun:
    """What :func:`run_local` produced.

    Attributes:
        sinks: a collector per sink step name.
        dead_letters: every dead-lettered message (with its reason).
        processor: the processor, drained and closed (its ``stats`` and ``runtime(p)``).
    """

    sinks: dict[str, CollectingSink]
    dead_letters: CollectingSink
    processor: PipelineProcessor

    def rows(self, sink: str) -> list[dict[str, Any]]:
        """All rows written to ``sink``, in order."""
        return self.sinks[sink].rows()

    def latest(self, sink: str, key_column: str) -> dict[Any, dict[str, Any]]:
        """The last row written to ``sink`` per key."""
        return self.sinks[sink].latest(key_column)


def run_local(
    pipeline: Pipeline,
    partitions: Mapping[int, Sequence[bytes | None]],
    *,
    batch_size: int = 1000,
) -> LocalRun:
    """Run a pipeline over in-memory partitions until they are drained: no Kafka, no Ray.

    Every sink step collects its rows, whatever its ``to=``.

    Example:
        >>> from fabric_ray.demo.payments import payments_pipeline
        >>> run = run_local(payments_pipeline(), {0: [b'{"event_id":"evt-1-00000001","user_id":1,"amount":1,"event_ts":0}', b'oops']})
        >>> run.latest("features", "user_id")[1]["amount_sum"], [d.reason for d in run.dead_letters.items]
        (1.0, ['not valid JSON: Expecting value at char 0'])
    """
    sinks = {name: CollectingSink() for name in pipeline.sinks}
    dead = CollectingSink()
    source = MemorySource(pipeline.topic, partitions)
    proc = PipelineProcessor(source, pipeline, sinks, dead, batch_size=batch_size, poll_timeout_s=0)
    while proc.next_batch():
        pass
    proc.close()
    return LocalRun(sinks, dead, proc)
