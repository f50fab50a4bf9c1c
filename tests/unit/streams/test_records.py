"""fabric_ray.streams.records: RawBatch and DeadLetter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fabric_ray.streams.records import DeadLetter, RawBatch


def test_from_values_numbers_offsets_consecutively():
    b = RawBatch.from_values("t", 3, [b"a", b"b", None], first_offset=7, keys=[b"k1", None, b"k3"])
    assert len(b) == 3
    assert b.topic == "t"
    assert b.partitions.tolist() == [3, 3, 3] and b.partitions.dtype == np.int32
    assert b.offsets.tolist() == [7, 8, 9] and b.offsets.dtype == np.int64
    assert b.keys == [b"k1", None, b"k3"]
    assert b.values == [b"a", b"b", None]


def test_from_values_without_keys_has_none_keys():
    b = RawBatch.from_values("t", 0, [b"a", b"b"])
    assert b.keys == [None, None]
    assert b.offsets.tolist() == [0, 1]


def test_next_offsets_of_one_partition():
    assert RawBatch.from_values("t", 2, [b"x"] * 5, first_offset=10).next_offsets() == {2: 15}


def test_next_offsets_per_partition_uses_the_highest_offset():
    b = RawBatch(
        "t",
        partitions=np.array([1, 0, 1, 0, 2], np.int32),
        offsets=np.array([40, 7, 39, 5, 0], np.int64),
        keys=[None] * 5,
        values=[b"v"] * 5,
    )
    nxt = b.next_offsets()
    assert nxt == {0: 8, 1: 41, 2: 1}
    assert all(type(k) is int and type(v) is int for k, v in nxt.items())


def test_next_offsets_of_an_empty_batch_is_empty():
    b = RawBatch.from_values("t", 0, [])
    assert len(b) == 0
    assert b.next_offsets() == {}


def test_raw_batch_is_frozen():
    b = RawBatch.from_values("t", 0, [b"a"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.topic = "other"


def test_dead_letter_headers_carry_reason_and_origin():
    letter = DeadLetter("payments", 3, 1234, b"key", b"payload", "not valid JSON: Expecting value at char 0")
    assert letter.kafka_headers() == [
        ("fabric.reason", b"not valid JSON: Expecting value at char 0"),
        ("fabric.source.topic", b"payments"),
        ("fabric.source.partition", b"3"),
        ("fabric.source.offset", b"1234"),
    ]


def test_dead_letter_extra_headers_are_appended_and_utf8():
    letter = DeadLetter("t", 0, 1, None, None, "bad \u20ac amount", headers={"fabric.actor": "partition:t:0"})
    headers = dict(letter.kafka_headers())
    assert headers["fabric.actor"] == b"partition:t:0"
    assert headers["fabric.reason"] == "bad \u20ac amount".encode()
    assert list(headers)[:4] == ["fabric.reason", "fabric.source.topic", "fabric.source.partition", "fabric.source.offset"]
    assert all(isinstance(v, bytes) for v in headers.values())


def test_dead_letter_keeps_the_original_bytes():
    raw = b'{"amount": "twelve"}\xff'
    letter = DeadLetter("t", 0, 1, b"k", raw, "r")
    assert letter.value is raw and letter.key == b"k"
    with pytest.raises(dataclasses.FrozenInstanceError):
        letter.reason = "other"
