"""The output guard: Kafka outputs and dead letters produced once across crashes and failed sends.

The topics here are small fakes of the guard's own protocol (``log`` with ``high_watermarks`` and
``read_back``; ``encode``/``produce`` for output sinks; ``send`` for dead letters), not of Kafka;
``tests/integration/test_exactly_once.py`` runs the same code on the real broker.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter

import pyarrow as pa
import pytest

from fabric_ray.storage import open_location
from fabric_ray.streams.checkpoint import CheckpointStore
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.output_guard import OutputGuard
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.streams.records import Produced
from fabric_ray.streams.windows import Tumbling
from fabric_ray.testing import MemorySource, run_local

SCHEMA = pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.int64())])
PIPE = (
    Pipeline("guarded")
    .source("t")
    .decode(JsonDecoder(SCHEMA, required=["user_id", "ts"]))
    .sink("events", to="kafka", topic="out")
    .key_by("user_id")
    .window(Tumbling(20_000), {"n": ("count", None), "total": ("sum", "amount")}, time="ts", emit="close")
    .sink("totals", to="kafka", topic="out")  # the same topic: the sink header tells them apart
)


def events(partition: int, n: int, bad_every: int = 0) -> list[bytes]:
    out = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            out.append(b"not json %d" % i)
        else:
            out.append(json.dumps({"user_id": partition * 1000 + i % 7, "amount": 0.1 * i, "ts": i * 1000}).encode())
    return out


DATA = {0: events(0, 400, bad_every=23), 1: events(1, 300, bad_every=17)}
N_BAD = sum(v.startswith(b"not json") for vals in DATA.values() for v in vals)


class MemoryTopic:
    """A topic in memory, partitioned by key: the guard's ``OutputLog``."""

    def __init__(self, topic: str, partitions: int = 3) -> None:
        self.topic = topic
        self.parts: dict[int, list[Produced]] = {p: [] for p in range(partitions)}

    def append(self, key, value, headers) -> None:
        p = zlib.crc32(key or b"") % len(self.parts)
        decoded = {k: v.decode() for k, v in headers or []}
        self.parts[p].append(Produced(p, len(self.parts[p]), key, value, decoded))

    def high_watermarks(self) -> dict[int, int]:
        return {p: len(msgs) for p, msgs in self.parts.items()}

    def read_back(self, start, end):
        for p, stop in end.items():
            yield from self.parts[p][start.get(p, 0) : stop]

    def messages(self) -> list[Produced]:
        return [m for msgs in self.parts.values() for m in msgs]


class TopicSink:
    """An output sink on a :class:`MemoryTopic`; ``fail_at``: raise after that many more messages."""

    def __init__(self, log: MemoryTopic) -> None:
        self.log = log
        self.fail_at: int | None = None

    def encode(self, table):
        return [(str(r["user_id"] if "user_id" in r else r["key"]).encode(), json.dumps(r).encode()) for r in table.to_pylist()]

    def produce(self, messages) -> None:
        for key, value, headers in messages:
            if self.fail_at is not None:
                if self.fail_at == 0:
                    self.fail_at = None
                    raise ConnectionError("broker went away mid-send")
                self.fail_at -= 1
            self.log.append(key, value, headers)


class LetterSink:
    """A dead-letter sink on a :class:`MemoryTopic`."""

    def __init__(self, log: MemoryTopic) -> None:
        self.log = log
        self.fail = False

    def send(self, letters) -> None:
        for i, letter in enumerate(letters):
            if self.fail and i == len(letters) // 2:
                self.fail = False
                raise ConnectionError("broker went away mid-send")
            self.log.append(letter.key, letter.value, letter.kafka_headers())


class Topics:
    """One output topic and one dead-letter topic, shared by every incarnation of an owner."""

    def __init__(self) -> None:
        self.out = MemoryTopic("out")
        self.dlq = MemoryTopic("dlq")

    def owner(self, stores, *, batch_size: int, pipeline: Pipeline = PIPE, data=DATA) -> PipelineProcessor:
        sink = TopicSink(self.out)
        sinks = {name: sink for name in pipeline.sinks}
        return PipelineProcessor(
            MemorySource("t", data), pipeline, sinks, LetterSink(self.dlq), checkpoints=stores, checkpoint_interval_s=3600, batch_size=batch_size, poll_timeout_s=0
        )

    def rows(self, sink: str) -> Counter:
        return Counter(m.value for m in self.out.messages() if m.headers["fabric.sink"] == sink)

    def letters(self) -> Counter:
        return Counter((m.headers["fabric.source.partition"], m.headers["fabric.source.offset"]) for m in self.dlq.messages())


def expected(sink: str, pipeline: Pipeline = PIPE, data=DATA) -> Counter:
    return Counter(json.dumps(r).encode() for r in run_local(pipeline, data).rows(sink))


def stores_in(tmp_path, name: str = "run"):
    loc = open_location(f"file://{tmp_path}")
    return lambda p: CheckpointStore(loc.child(name), PIPE.name, "t", p)


def drain(proc: PipelineProcessor) -> None:
    while proc.next_batch():
        pass
    proc.close()


def test_crashes_during_the_stream_and_during_the_replay_produce_everything_once(tmp_path):
    topics, stores = Topics(), stores_in(tmp_path)
    first = topics.owner(stores, batch_size=37)
    for _ in range(6):
        first.next_batch()
    first.checkpoint()
    for _ in range(8):  # produced after the checkpoint, then the owner dies
        first.next_batch()
    assert sum(topics.rows("events").values()) == first.stats.processed

    second = topics.owner(stores, batch_size=53)  # another batching: aggregates must not care
    assert second.guards[0].guarded  # it found what the first produced after the checkpoint
    second.next_batch()
    second.checkpoint()  # inside the replay: it keeps the first incarnation's marks
    second.next_batch()
    third = topics.owner(stores, batch_size=29)  # dies again before passing the first crash point
    drain(third)

    assert topics.rows("events") == expected("events")  # each once, nothing lost
    assert topics.rows("totals") == expected("totals")
    assert set(topics.letters().values()) == {1} and sum(topics.letters().values()) == N_BAD
    st = third.stats
    assert st.processed + st.dead_lettered == sum(map(len, DATA.values()))
    assert st.outputs_suppressed > 0 and st.letters_suppressed > 0
    assert all(not g.guarded for g in third.guards)  # every guard dropped once past the crash point


def test_a_crash_before_the_first_periodic_checkpoint_falls_back_on_the_initial_one(tmp_path):
    topics, stores = Topics(), stores_in(tmp_path)
    first = topics.owner(stores, batch_size=50)
    assert stores(0).load() is None
    for _ in range(5):
        first.next_batch()
    assert first.stats.checkpoints == 1  # written before anything was produced
    assert stores(0).load().next_offset == 0 and set(stores(0).load().extra["outputs"]) == {"sink:events", "sink:totals", "dead_letters"}
    drain(topics.owner(stores, batch_size=50))
    assert topics.rows("events") == expected("events") and topics.rows("totals") == expected("totals")
    assert sum(topics.letters().values()) == N_BAD == len(topics.letters())


def test_a_fresh_run_is_not_deduplicated_against_earlier_runs(tmp_path):
    topics = Topics()
    drain(topics.owner(stores_in(tmp_path, "one"), batch_size=100))
    again = topics.owner(stores_in(tmp_path, "two"), batch_size=100)  # fresh: no checkpoints
    drain(again)
    assert topics.rows("events") == expected("events") + expected("events")
    assert again.stats.outputs_suppressed == 0 and again.stats.letters_suppressed == 0


def test_checkpoint_without_marks_is_rewritten_before_processing(tmp_path):
    """A checkpoint from before the guards (or a backfill's) gets marks before anything is produced."""
    topics, stores = Topics(), stores_in(tmp_path)
    drain(topics.owner(stores, batch_size=100, data={0: DATA[0][:100], 1: DATA[1][:100]}))
    for p in (0, 1):
        ckpt = stores(p).load()
        stores(p).save(ckpt.state, ckpt.next_offset, extra={"counters": ckpt.extra["counters"], "backfill": True})
    proc = topics.owner(stores, batch_size=40)
    for _ in range(3):
        proc.next_batch()
    assert "outputs" in stores(0).load().extra and proc.stats.checkpoints == 1
    drain(topics.owner(stores, batch_size=40))  # the crash is covered by the re-written checkpoint
    assert topics.rows("events") == expected("events")


def test_failed_sends_are_retried_without_duplicates(tmp_path):
    topics, stores = Topics(), stores_in(tmp_path)
    proc = topics.owner(stores, batch_size=60)
    proc.next_batch()
    proc.dead_letters.fail = True
    with pytest.raises(ConnectionError):
        while True:
            proc.next_batch()
    proc.sinks["events"].fail_at = 10  # ten rows land, then the send fails
    with pytest.raises(ConnectionError):
        while True:
            proc.next_batch()
    drain(proc)
    assert topics.rows("events") == expected("events")
    assert set(topics.letters().values()) == {1} and len(topics.letters()) == N_BAD
    assert proc.stats.outputs_suppressed == 10
    assert sum(g.rescans for g in proc.guards) == 2


def test_a_non_deterministic_function_only_duplicates_the_replayed_outputs(tmp_path):
    """The guard of a partition is dropped once it passes the crash point: later outputs are never suppressed."""
    runs = iter(range(10**6))
    pipe = (
        Pipeline("guarded").source("t").decode(JsonDecoder(SCHEMA, required=["user_id", "ts"]))
        .map_rows(lambda r: {**r, "run": next(runs)}, output_schema=pa.schema([*SCHEMA, ("run", pa.int64())]))
        .sink("events", to="kafka", topic="out")
    )
    data = {0: events(0, 200)}
    topics, stores = Topics(), stores_in(tmp_path)
    first = topics.owner(stores, batch_size=20, pipeline=pipe, data=data)
    for _ in range(3):
        first.next_batch()
    first.checkpoint()
    for _ in range(2):
        first.next_batch()
    second = topics.owner(stores, batch_size=20, pipeline=pipe, data=data)
    assert second.guards[0].guarded == {0: 99}
    drain(second)
    assert second.stats.outputs_suppressed == 0 and not second.guards[0].guarded
    per_event = Counter((json.loads(v)["user_id"], json.loads(v)["ts"]) for v in topics.rows("events").elements())
    assert sum(per_event.values()) == 200 + 40  # the 40 replayed events twice, every later one once


class Log:
    topic = "out"

    def __init__(self, msgs):
        self.msgs = msgs

    def high_watermarks(self):
        return {0: len(self.msgs)}

    def read_back(self, start, end):
        return self.msgs[start.get(0, 0) : end[0]]


def msg(offset, source_offset, *, pipeline="p", partition=0, sink="s", reason=None, value=b"v"):
    h = {"fabric.pipeline": pipeline, "fabric.source.topic": "t", "fabric.source.partition": str(partition), "fabric.source.offset": str(source_offset)}
    h.update({"fabric.reason": reason} if reason else {"fabric.sink": sink})
    return Produced(0, offset, b"k", value, h)


def test_restore_keeps_only_this_pipelines_sinks_partitions_and_replayed_offsets():
    log = Log([
        msg(0, 50),                        # before the marks: an earlier run
        msg(1, 9),                         # covered by the checkpoint
        msg(2, 10), msg(3, 12, value=b"w"),
        msg(4, 11, pipeline="other"), msg(5, 11, sink="other"), msg(6, 11, partition=5),
        msg(7, 13, reason="bad"),          # a letter, not a row
    ])
    rows = OutputGuard(log, pipeline="p", source_topic="t", sink="s")
    rows.restore({0: (10, {"0": 1})})
    assert rows.guarded == {0: 12}
    assert rows.keep_rows(0, [(b"k", b"v"), (b"k", b"w"), (b"k", b"w"), (b"k", b"x")]) == [False, False, True, True]
    letters = OutputGuard(log, pipeline="p", source_topic="t")
    letters.restore({0: (10, {0: 1})})
    assert letters.guarded == {0: 13} and letters.keep_letters(0, [12, 13]) == [True, False]
    # While a guard is active its checkpoints keep the marks it started from.
    assert rows.marks(0, {0: 8}) == {0: 1}
    rows.advance({0: 13})
    assert rows.guarded == {} and rows.marks(0, {0: 8}) == {0: 8}
