"""Payloads that trip Python or Arrow internals are dead-lettered one by one; a decoder bug never loses a batch."""

import json

import pyarrow as pa

from fabric_ray.demo.payments import PAYMENTS_DECODER
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.testing import CollectingSink, MemorySource

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])


def good(i: int) -> bytes:
    return json.dumps({"id": f"e{i}", "n": i}).encode()


def test_deep_nesting_is_rejected_not_raised():
    deep = b"[" * 100_000 + b"]" * 100_000
    out = JsonDecoder(SCHEMA, ["id"]).decode([good(0), deep, good(2)])
    assert out.kept.tolist() == [0, 2]
    assert out.rejected == [(1, "not valid JSON: nested too deeply")]


def test_deep_nesting_in_an_ignored_field_is_still_a_valid_event():
    # Arrow's reader parses it (Python's json would hit its recursion limit); the event's own fields are fine.
    deep = b'{"id": "x", "n": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    out = JsonDecoder(SCHEMA, ["id"]).decode([good(0), deep, good(2)])
    assert out.kept.tolist() == [0, 1, 2]
    assert out.table["id"].to_pylist() == ["e0", "x", "e2"]


def test_lone_surrogate_is_rejected_with_the_field_named():
    bad = b'{"id": "\\ud800", "n": 1}'
    out = JsonDecoder(SCHEMA, ["id"]).decode([good(0), bad])
    assert out.kept.tolist() == [0]
    assert out.rejected[0][0] == 1 and "'id'" in out.rejected[0][1]


class ExplodingDecoder(JsonDecoder):
    def decode(self, values):
        raise RuntimeError("boom")


def test_a_decoder_bug_dead_letters_the_whole_batch_instead_of_losing_it():
    decoder = ExplodingDecoder(PAYMENTS_DECODER.schema, PAYMENTS_DECODER.required)
    pipeline = Pipeline("payments").source("payments").decode(decoder).sink("out")
    dead = CollectingSink()
    source = MemorySource("payments", {0: [b"{}", b"{}", b"{}"]})
    proc = PipelineProcessor(source, pipeline, {"out": CollectingSink()}, dead, poll_timeout_s=0, checkpoint_interval_s=0)
    assert proc.next_batch() == 3
    assert [d.offset for d in dead.items] == [0, 1, 2]
    assert all("decoder failed" in d.reason and "boom" in d.reason for d in dead.items)
    assert proc.stats.dead_lettered == 3 and source.committed == {0: 3}


def test_deep_nesting_in_an_ignored_field_gets_the_same_verdict_next_to_a_bad_message():
    deep = b'{"id": "x", "n": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    out = JsonDecoder(SCHEMA, ["id"]).decode([b"not json", deep])
    assert out.kept.tolist() == [1]
    assert out.table["id"].to_pylist() == ["x"]


def test_a_batch_full_of_bad_messages_is_judged_message_by_message():
    values = [good(i) if i % 2 else b'{"id": 1, "n": "x"}' for i in range(5000)]
    out = JsonDecoder(SCHEMA, ["id"]).decode(values)
    assert out.kept.tolist() == list(range(1, 5000, 2))
    assert [i for i, _ in out.rejected] == list(range(0, 5000, 2))


def test_arrow_row_hints_point_at_the_bad_message_even_when_off_by_one():
    values = [good(i) for i in range(3000)]
    values[1234] = b'{"id": "a"} trailing'  # Arrow reports the row after this one
    values[2500] = b'{"id": "b", "n": 1.5}'  # a conversion error names no row at all
    out = JsonDecoder(SCHEMA, ["id"]).decode(values)
    assert [i for i, _ in out.rejected] == [1234, 2500]
    assert out.kept.tolist() == [i for i in range(3000) if i not in (1234, 2500)]
