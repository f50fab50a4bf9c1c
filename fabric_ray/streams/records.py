"""The shapes that move between a source, the processor and its sinks, and the source and sink protocols."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import numpy as np

__all__ = ["DeadLetter", "DeadLetterSink", "Produced", "RawBatch", "Source"]

# Headers on every message the fabric produces (output topics and the dead-letter topic): where it came from.
PIPELINE_HEADER = "fabric.pipeline"
SINK_HEADER = "fabric.sink"
REASON_HEADER = "fabric.reason"
SOURCE_TOPIC_HEADER = "fabric.source.topic"
SOURCE_PARTITION_HEADER = "fabric.source.partition"
SOURCE_OFFSET_HEADER = "fabric.source.offset"


@dataclass(frozen=True)
class RawBatch:
    """Undecoded messages of one topic, columnar.

    Attributes:
        topic: the topic they were read from.
        partitions: partition of each message.
        offsets: offset of each message.
        keys: message keys (``None`` where a message has none).
        values: message payloads (``None`` for a tombstone).
        timestamps_ms: each message's Kafka timestamp (ms since the epoch; produce time for
            ``CreateTime`` topics), or ``None`` where the source has none.

    Example:
        >>> b = RawBatch.from_values("t", 0, [b'{"a": 1}', b'{"a": 2}'], first_offset=10)
        >>> len(b), b.offsets.tolist()
        (2, [10, 11])
    """

    topic: str
    partitions: np.ndarray
    offsets: np.ndarray
    keys: list[bytes | None]
    values: list[bytes | None]
    timestamps_ms: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_values(
        cls,
        topic: str,
        partition: int,
        values: list[bytes | None],
        *,
        first_offset: int = 0,
        keys: list[bytes | None] | None = None,
    ) -> RawBatch:
        """Build a batch of consecutive offsets in one partition (handy in tests)."""
        n = len(values)
        return cls(
            topic=topic,
            partitions=np.full(n, partition, dtype=np.int32),
            offsets=np.arange(first_offset, first_offset + n, dtype=np.int64),
            keys=list(keys) if keys is not None else [None] * n,
            values=list(values),
        )

    def next_offsets(self) -> dict[int, int]:
        """The next offset to read per partition after this batch: ``{partition: max_offset + 1}``."""
        out: dict[int, int] = {}
        for p in np.unique(self.partitions).tolist():
            out[int(p)] = int(self.offsets[self.partitions == p].max()) + 1
        return out


@dataclass(frozen=True)
class DeadLetter:
    """One message that could not be processed, and why.

    Attributes:
        topic: source topic.
        partition: source partition.
        offset: source offset.
        key: original key bytes.
        value: original payload bytes, unchanged.
        reason: what was wrong, naming the field and the value where there is one.
        headers: more headers for the dead-letter topic (the processor adds ``fabric.pipeline``).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    headers: dict[str, str] = field(default_factory=dict)

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Headers for the dead-letter topic: the reason and where the message came from."""
        base = {
            REASON_HEADER: self.reason,
            SOURCE_TOPIC_HEADER: self.topic,
            SOURCE_PARTITION_HEADER: str(self.partition),
            SOURCE_OFFSET_HEADER: str(self.offset),
            **self.headers,
        }
        return [(k, v.encode()) for k, v in base.items()]


@dataclass(frozen=True)
class Produced:
    """A message read back from a topic the fabric writes to (see :mod:`.output_guard`).

    Attributes:
        partition: partition of the output topic.
        offset: offset in that partition.
        key: message key.
        value: message payload.
        headers: headers, decoded as UTF-8 (the last value of a repeated name wins).
    """

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


class Source(Protocol):
    """Where a processor reads from: a set of partitions of one topic."""

    topic: str

    @property
    def partitions(self) -> list[int]:
        """The owned partition ids."""
        ...

    def read_batch(self, max_messages: int, timeout_s: float) -> RawBatch:
        """Up to ``max_messages`` messages, waiting at most ``timeout_s`` for the first."""
        ...

    def seek(self, next_offsets: Mapping[int, int]) -> None:
        """Continue the named partitions from these offsets (a restored checkpoint's)."""
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


class DeadLetterSink(Protocol):
    """Receives the messages that could not be processed."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` durably before returning."""
        ...
