"""The output guard: Kafka outputs and dead letters that a restart does not produce twice, on any broker.

An owner restarts from its last checkpoint (state and next offsets) and processes the messages
after it again; without a guard their outputs and dead letters would be produced a second time.
Kafka transactions cannot help here (the checkpoint lives in object storage, and the embedded
broker does not filter aborted transactions), so outputs are made idempotent instead, keyed by
the source offsets they came from:

1. Every message the fabric produces names its origin in headers: ``fabric.pipeline``,
   ``fabric.sink`` (output rows) or ``fabric.reason`` (dead letters), ``fabric.source.topic``,
   ``fabric.source.partition`` and ``fabric.source.offset`` (for a row made by a window or an
   aggregate: the last offset of the batch that emitted it).
2. Each checkpoint records, per guarded topic, the topic's high watermarks (its *marks*), read in
   the loop thread when every earlier output has been acknowledged. A new run checkpoints before
   it processes anything, so every restart has marks to start from, and a fresh run never looks
   at the outputs of earlier runs (they lie before its marks).
3. On restore the guard reads each topic from the marks to its end and collects, for messages of
   its pipeline and sink, of the owner's partitions, from source offsets at or after the
   checkpoint: the dead-lettered offsets, and a multiset of the output rows' ``(key, value)``.
   While a partition is replayed, a letter whose offset is in the set is not sent again, and an
   output row still in the multiset is not produced again (it is taken out). Once the
   partition's next offset passes the highest source offset found, its guard is dropped, so a
   non-deterministic function cannot suppress later outputs for ever.

While a partition's guard is active its checkpoints keep the marks the guard started from (not
the topic's current end), so a second crash during the replay still finds the first
incarnation's outputs. A failed send (some of its messages may have landed) makes the guard read
the topic again before the retry, from the same marks, keeping only offsets from the retried
batch on.

Requirement: outputs must be a deterministic function of the input: the same messages, from the
same state, give the same rows, byte for byte. The windows and aggregates here do not depend on
how the stream is cut into batches, except ``emit="update"`` windows, which emit each batch's
current values: after a restart such a sink may carry other intermediate updates, but each
window's last value is right.

Example:
    >>> from fabric_ray.streams.records import Produced
    >>> class Log:  # a topic holding one output and one dead letter of offsets 7 and 8 of partition 0
    ...     topic = "out"
    ...     msgs = [Produced(0, 0, b"k", b"v", {"fabric.pipeline": "p", "fabric.sink": "s", "fabric.source.topic": "t",
    ...                                          "fabric.source.partition": "0", "fabric.source.offset": "7"})]
    ...     def high_watermarks(self): return {0: 1}
    ...     def read_back(self, start, end): return self.msgs
    >>> guard = OutputGuard(Log(), pipeline="p", source_topic="t", sink="s")
    >>> guard.restore({0: (5, {0: 0})})   # partition 0 restarts from offset 5, marks {0: 0}
    >>> guard.guarded
    {0: 7}
    >>> guard.keep_rows(0, [(b"k", b"v"), (b"k", b"v")])   # produced once already: the first is dropped
    [False, True]
    >>> guard.advance({0: 8}); guard.guarded
    {}
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol, Sequence

from fabric_ray.streams.records import (
    PIPELINE_HEADER,
    REASON_HEADER,
    SINK_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
    Produced,
)

__all__ = ["DEAD_LETTERS", "OutputGuard", "OutputLog", "digest"]

DEAD_LETTERS = "dead_letters"
"""The guard key of the dead-letter topic (output sinks use ``sink:<name>``)."""


class OutputLog(Protocol):
    """A topic the fabric produces to, read back (Kafka: :class:`~fabric_ray.streams.kafka.TopicLog`)."""

    topic: str

    def high_watermarks(self) -> dict[int, int]:
        """Offset after the last message of every partition (``{}``: no such topic yet)."""
        ...

    def read_back(self, start: Mapping[int, int], end: Mapping[int, int]) -> Iterable[Produced]:
        """The messages from ``start`` (default 0) up to ``end`` of each partition in ``end``."""
        ...


def digest(key: bytes | None, value: bytes | None) -> bytes:
    """A 128-bit digest of a message's key and value (the same in every process).

    Example:
        >>> digest(b"a", b"bc") != digest(b"ab", b"c") and digest(None, b"") != digest(b"", b"")
        True
    """
    h = hashlib.blake2b(digest_size=16)
    for part in (key, value):
        if part is None:
            h.update(b"\x00")
        else:
            h.update(b"\x01" + len(part).to_bytes(8, "little"))
            h.update(part)
    return h.digest()


@dataclass
class _Seen:
    """What one source partition's earlier incarnations produced from its replayed offsets."""

    max_offset: int = -1
    letters: set[int] = field(default_factory=set)
    rows: Counter = field(default_factory=Counter)


class OutputGuard:
    """Keep one output topic (or the dead-letter topic) of one pipeline owner idempotent across restarts.

    Plain logic over an :class:`OutputLog`; the processor calls it (see the module docstring).

    Args:
        log: the topic, read back.
        pipeline: the pipeline's name (messages of other pipelines are ignored).
        source_topic: the pipeline's source topic.
        sink: the sink step's name; ``None``: this guards the dead letters.
    """

    def __init__(self, log: OutputLog, *, pipeline: str, source_topic: str, sink: str | None = None) -> None:
        self.log = log
        self.pipeline = pipeline
        self.source_topic = source_topic
        self.sink = sink
        self._seen: dict[int, _Seen] = {}
        self._marks: dict[int, dict[int, int]] = {}
        self._stale: set[int] = set()
        self.rescans = 0
        self.base_headers = [(PIPELINE_HEADER, pipeline.encode())]
        if sink is not None:
            self.base_headers.append((SINK_HEADER, sink.encode()))
        self.base_headers.append((SOURCE_TOPIC_HEADER, source_topic.encode()))

    @property
    def key(self) -> str:
        """Where this guard's marks live in a checkpoint: ``dead_letters`` or ``sink:<name>``."""
        return DEAD_LETTERS if self.sink is None else f"sink:{self.sink}"

    @property
    def guarded(self) -> dict[int, int]:
        """Source partitions with an active guard, and the highest source offset it found."""
        return {p: s.max_offset for p, s in sorted(self._seen.items())}

    def row_headers(self, partition: int, offsets: Sequence[int]) -> list[list[tuple[str, bytes]]]:
        """The headers of output rows of ``partition`` from ``offsets``."""
        base = [*self.base_headers, (SOURCE_PARTITION_HEADER, str(int(partition)).encode())]
        return [[*base, (SOURCE_OFFSET_HEADER, b"%d" % o)] for o in offsets]

    # ------------------------------------------------------------------ checkpoints

    def capture(self) -> dict[int, int]:
        """The topic's high watermarks now (call when every earlier output was acknowledged)."""
        return {int(p): int(o) for p, o in self.log.high_watermarks().items()}

    def marks(self, partition: int, captured: Mapping[int, int]) -> dict[int, int]:
        """The marks to save in ``partition``'s checkpoint: ``captured``, or while its guard is active the marks it started from."""
        if partition not in self._seen or partition not in self._marks:
            self._marks[partition] = dict(captured)
        return dict(self._marks[partition])

    def restore(self, starts: Mapping[int, tuple[int, Mapping[int, int]]]) -> None:
        """Read back what was produced for the given partitions since their checkpoints.

        Args:
            starts: per source partition, ``(next offset of its checkpoint, the checkpoint's marks)``.
        """
        starts = {int(p): (int(first), {int(k): int(v) for k, v in marks.items()}) for p, (first, marks) in starts.items()}
        for p, (_, marks) in starts.items():
            self._seen.pop(p, None)
            self._marks[p] = marks
            self._stale.discard(p)
        if not starts:
            return
        end = self.capture()
        begin = {op: min(m.get(op, 0) for _, m in starts.values()) for op in end}
        for msg in self.log.read_back(begin, end):
            h = msg.headers
            if h.get(PIPELINE_HEADER) != self.pipeline or h.get(SOURCE_TOPIC_HEADER) != self.source_topic:
                continue
            if (REASON_HEADER in h) if self.sink is not None else (REASON_HEADER not in h):
                continue
            if self.sink is not None and h.get(SINK_HEADER) != self.sink:
                continue
            try:
                p, offset = int(h[SOURCE_PARTITION_HEADER]), int(h[SOURCE_OFFSET_HEADER])
            except (KeyError, ValueError):
                continue
            if p not in starts:
                continue
            first, marks = starts[p]
            if offset < first or msg.offset < marks.get(msg.partition, 0):
                continue  # covered by the checkpoint, or produced before it (another run)
            seen = self._seen.setdefault(p, _Seen())
            seen.max_offset = max(seen.max_offset, offset)
            if self.sink is None:
                seen.letters.add(offset)
            else:
                seen.rows[digest(msg.key, msg.value)] += 1

    def invalidate(self, partition: int) -> None:
        """A send for ``partition`` failed: some of it may have landed; read the topic again before the retry."""
        self._stale.add(int(partition))

    def refresh(self, partition: int, first_offset: int) -> None:
        """Before sending for ``partition`` from a batch starting at ``first_offset``: re-read after a failure."""
        if partition in self._stale:
            self._stale.discard(partition)
            if partition in self._marks:
                self.rescans += 1
                self.restore({partition: (first_offset, self._marks[partition])})

    # ------------------------------------------------------------------ filtering

    def keep_letters(self, partition: int, offsets: Sequence[int]) -> list[bool]:
        """Per dead letter of ``partition``: send it (not dead-lettered already)."""
        seen = self._seen.get(partition)
        if seen is None:
            return [True] * len(offsets)
        return [int(o) not in seen.letters for o in offsets]

    def keep_rows(self, partition: int, messages: Sequence[tuple[bytes | None, bytes | None]]) -> list[bool]:
        """Per ``(key, value)`` of ``partition``: produce it (not produced already; a match is used up)."""
        seen = self._seen.get(partition)
        if seen is None or not seen.rows:
            return [True] * len(messages)
        keep = []
        for key, value in messages:
            d = digest(key, value)
            n = seen.rows.get(d, 0)
            if n:
                seen.rows[d] = n - 1
            keep.append(not n)
        return keep

    def advance(self, next_offsets: Mapping[int, int]) -> None:
        """Drop the guard of each partition whose next offset passed the highest source offset found."""
        for p, nxt in next_offsets.items():
            seen = self._seen.get(p)
            if seen is not None and nxt > seen.max_offset:
                del self._seen[p]

    def close(self) -> None:
        """Close the log's connection, if it has one."""
        close = getattr(self.log, "close", None)
        if close is not None:
            close()
