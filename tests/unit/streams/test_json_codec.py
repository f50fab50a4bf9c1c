"""fabric_ray.streams.json_codec: batch JSON decoding with a reason for every rejected message."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from fabric_ray.streams.json_codec import Decoded, JsonDecoder

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("user_id", pa.int64()),
        ("amount", pa.float64()),
        ("flag", pa.bool_()),
        ("ts", pa.int64()),
    ]
)


@pytest.fixture
def decoder() -> JsonDecoder:
    return JsonDecoder(SCHEMA, required=["id", "user_id", "amount", "ts"])


def row(i: int, **changes) -> dict:
    base = {"id": f"e{i}", "user_id": i % 97, "amount": i * 0.5, "flag": i % 2 == 0, "ts": 1000 + i}
    base.update(changes)
    return base


def enc(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def good(n: int, start: int = 0) -> list[bytes]:
    return [enc(row(i)) for i in range(start, start + n)]


def assert_consistent(out: Decoded, n: int) -> None:
    """Every input index is either kept or rejected, exactly once, and the table matches kept."""
    kept = out.kept.tolist()
    rejected = [i for i, _ in out.rejected]
    assert sorted(kept + rejected) == list(range(n))
    assert kept == sorted(kept)
    assert rejected == sorted(rejected)
    assert out.table.num_rows == len(kept)
    assert out.table.schema == SCHEMA
    assert out.kept.dtype == np.int64


# -- construction --------------------------------------------------------------------------------
def test_required_field_must_be_in_schema():
    with pytest.raises(ValueError, match=r"required fields \['nope'\] are not in the schema"):
        JsonDecoder(SCHEMA, required=["id", "nope"])


# -- fast path -----------------------------------------------------------------------------------
def test_all_good_rows_decode_in_order(decoder):
    out = decoder.decode(good(50))
    assert_consistent(out, 50)
    assert out.rejected == []
    assert out.kept.tolist() == list(range(50))
    assert out.table.to_pylist() == [row(i) for i in range(50)]


def test_empty_batch(decoder):
    out = decoder.decode([])
    assert out.table.num_rows == 0 and out.table.schema == SCHEMA
    assert out.kept.tolist() == [] and out.rejected == []


def test_unknown_fields_are_ignored(decoder):
    payload = enc({**row(1), "extra": {"deep": [1, 2, {"x": None}]}, "other": "text"})
    out = decoder.decode([payload])
    assert out.rejected == []
    assert out.table.to_pylist() == [row(1)]
    assert out.table.column_names == SCHEMA.names


def test_unknown_fields_ignored_on_the_slow_path_too(decoder):
    out = decoder.decode([enc({**row(1), "extra": [1]}), b"junk"])
    assert out.table.to_pylist() == [row(1)]
    assert [i for i, _ in out.rejected] == [1]


def test_field_order_in_payload_does_not_matter(decoder):
    r = row(3)
    payload = enc(dict(reversed(list(r.items()))))
    assert decoder.decode([payload]).table.to_pylist() == [r]


def test_optional_field_may_be_missing_or_null(decoder):
    a = row(1)
    del a["flag"]
    b = row(2, flag=None)
    out = decoder.decode([enc(a), enc(b)])
    assert out.rejected == []
    assert [r["flag"] for r in out.table.to_pylist()] == [None, None]


def test_int_is_accepted_for_a_float_field(decoder):
    out = decoder.decode([enc(row(1, amount=3))])
    assert out.rejected == []
    assert out.table["amount"].to_pylist() == [3.0]


def test_pretty_printed_multiline_json_is_accepted(decoder):
    pretty = json.dumps(row(5), indent=2).encode()
    assert b"\n" in pretty
    out = decoder.decode([enc(row(4)), pretty, enc(row(6)), pretty])
    assert out.rejected == []
    assert out.kept.tolist() == [0, 1, 2, 3]
    assert out.table.to_pylist() == [row(4), row(5), row(6), row(5)]


def test_pretty_printed_json_is_accepted_next_to_a_bad_message(decoder):
    pretty = json.dumps(row(5), indent=2).encode()
    out = decoder.decode([pretty, b"nope"])
    assert out.table.to_pylist() == [row(5)]
    assert [i for i, _ in out.rejected] == [1]


@pytest.mark.parametrize("payload", [enc(row(1)) + b"\n", b"  " + enc(row(1)), enc(row(1)) + b" \t"])
def test_surrounding_whitespace_is_valid_json(decoder, payload):
    out = decoder.decode([payload, enc(row(2))])
    assert out.rejected == []
    assert out.table.to_pylist() == [row(1), row(2)]


# -- each kind of rejection -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not valid JSON: Expecting value at char 0"),
        (b'{"id": "e1", ', "not valid JSON: Expecting property name enclosed in double quotes at char 13"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"text"', "expected a JSON object, got str"),
        (b"42", "expected a JSON object, got int"),
        (b"true", "expected a JSON object, got bool"),
        (None, "empty payload (tombstone)"),
        (b"\xc3\x28", "not valid JSON: not UTF-8"),
    ],
)
def test_payload_rejections(decoder, payload, reason):
    out = decoder.decode([enc(row(0)), payload, enc(row(2))])
    assert out.rejected == [(1, reason)]
    assert out.kept.tolist() == [0, 2]
    assert out.table.to_pylist() == [row(0), row(2)]


def test_json_null_payload_in_the_middle_is_rejected(decoder):
    out = decoder.decode([enc(row(0)), b"null", enc(row(2))])
    assert [i for i, _ in out.rejected] == [1]
    assert out.table.to_pylist() == [row(0), row(2)]


def test_json_null_payload_is_rejected_on_the_slow_path(decoder):
    out = decoder.decode([b"junk", b"null"])
    assert out.rejected == [(0, "not valid JSON: Expecting value at char 0"), (1, "expected a JSON object, got NoneType")]


def test_json_null_payload_is_not_a_row_without_required_fields():
    d = JsonDecoder(SCHEMA)
    out = d.decode([enc(row(0)), b"null", enc(row(2))])
    assert out.rejected == [(1, "expected a JSON object, got NoneType")]
    assert out.table.num_rows == 2


_NULL_FIRST = """
import pyarrow as pa
from fabric_ray.streams.json_codec import JsonDecoder
d = JsonDecoder(pa.schema([("i", pa.int64())]), required=["i"])
out = d.decode([b"null", b'{"i": 2}'])
print(out.rejected, out.kept.tolist())
"""


def test_json_null_payload_first_in_a_batch_does_not_crash_the_process():
    proc = subprocess.run([sys.executable, "-c", _NULL_FIRST], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-500:]}"
    assert proc.stdout.strip() == "[(0, 'expected a JSON object, got NoneType')] [1]"


def test_empty_bytes_payload_is_rejected(decoder):
    out = decoder.decode([enc(row(0)), b"", enc(row(2))])
    assert [i for i, _ in out.rejected] == [1]
    assert out.rejected[0][1].startswith("not valid JSON")
    assert out.table.to_pylist() == [row(0), row(2)]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"user_id": "12"}, "field 'user_id': expected int64, got '12'"),
        ({"user_id": 1.5}, "field 'user_id': expected int64, got 1.5"),
        ({"user_id": 1.0}, "field 'user_id': expected int64, got 1.0"),
        ({"user_id": True}, "field 'user_id': expected int64, got True"),
        ({"amount": "twelve"}, "field 'amount': expected double, got 'twelve'"),
        ({"amount": False}, "field 'amount': expected double, got False"),
        ({"amount": [1.0]}, "field 'amount': expected double, got [1.0]"),
        ({"id": 5}, "field 'id': expected string, got 5"),
        ({"id": {"a": 1}}, "field 'id': expected string, got {'a': 1}"),
        ({"flag": 1}, "field 'flag': expected bool, got 1"),
        ({"flag": "true"}, "field 'flag': expected bool, got 'true'"),
    ],
)
def test_wrong_type_is_rejected_naming_field_and_value(decoder, changes, reason):
    out = decoder.decode([enc(row(0)), enc(row(1, **changes)), enc(row(2))])
    assert out.rejected == [(1, reason)]
    assert out.table.to_pylist() == [row(0), row(2)]


@pytest.mark.parametrize("changes", [{"user_id": "12"}, {"amount": "x"}, {"id": 5}, {"flag": 0}])
def test_wrong_type_alone_in_a_batch_is_rejected(decoder, changes):
    out = decoder.decode([enc(row(1, **changes))])
    assert out.table.num_rows == 0
    assert [i for i, _ in out.rejected] == [0]


@pytest.mark.parametrize("field", ["id", "user_id", "amount", "ts"])
def test_missing_required_field(decoder, field):
    r = row(1)
    del r[field]
    out = decoder.decode([enc(row(0)), enc(r), enc(row(2))])
    assert out.rejected == [(1, f"missing required field {field!r}")]
    assert out.table.to_pylist() == [row(0), row(2)]


@pytest.mark.parametrize("field", ["user_id", "amount"])
def test_null_required_field_counts_as_missing(decoder, field):
    out = decoder.decode([enc(row(1, **{field: None}))])
    assert out.rejected == [(0, f"missing required field {field!r}")]
    assert out.table.num_rows == 0


def test_missing_required_field_on_the_slow_path(decoder):
    r = row(1)
    del r["ts"]
    out = decoder.decode([b"junk", enc(r), enc(row(2))])
    assert out.rejected == [(0, "not valid JSON: Expecting value at char 0"), (1, "missing required field 'ts'")]
    assert out.kept.tolist() == [2]


def test_first_missing_required_field_is_named(decoder):
    out = decoder.decode([enc({"amount": 1.0, "ts": 1})])
    assert out.rejected == [(0, "missing required field 'id'")]


def test_no_required_fields_keeps_rows_with_nulls():
    d = JsonDecoder(SCHEMA)
    out = d.decode([b"{}", enc({"user_id": 3})])
    assert out.rejected == []
    assert out.table["user_id"].to_pylist() == [None, 3]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_amount_is_rejected_on_the_slow_path(decoder, text):
    payload = enc(row(1)).replace(b'"amount":0.5', b'"amount":' + text.encode())
    assert text.encode() in payload
    out = decoder.decode([payload, b"junk"])  # the bad neighbour forces the message-by-message path
    assert [i for i, _ in out.rejected] == [0, 1]
    assert out.rejected[0][1].startswith("field 'amount': expected a finite number, got ")


def test_overflowing_float_literal_is_rejected(decoder):
    payload = enc(row(1)).replace(b'"amount":0.5', b'"amount":1e400')
    out = decoder.decode([payload])
    assert out.rejected == [(0, "field 'amount': expected a finite number, got inf")]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1" + "0" * 400], ids=["NaN", "Infinity", "-Infinity", "int-1e400"])
def test_non_finite_amount_is_rejected_on_the_fast_path(decoder, text):
    payload = enc(row(1)).replace(b'"amount":0.5', b'"amount":' + text.encode())
    out = decoder.decode([enc(row(0)), payload])
    assert [i for i, _ in out.rejected] == [1]
    assert out.rejected[0][1].startswith("field 'amount': expected a finite number, got ")
    assert out.table.num_rows == 1


def test_invalid_utf8_inside_a_string_is_rejected_on_the_fast_path(decoder):
    payload = enc(row(1)).replace(b'"e1"', b'"e\xff"')
    out = decoder.decode([enc(row(0)), payload])
    out.table.validate(full=True)
    assert [i for i, _ in out.rejected] == [1]


def test_invalid_utf8_inside_a_string_is_rejected_on_the_slow_path(decoder):
    payload = enc(row(1)).replace(b'"e1"', b'"e\xff"')
    out = decoder.decode([payload, b"junk"])
    assert out.rejected[0] == (0, "not valid JSON: not UTF-8")
    out.table.validate(full=True)


def test_integer_beyond_int64_is_rejected_not_raised(decoder):
    payload = enc(row(1)).replace(b'"user_id":1', b'"user_id":9223372036854775808')
    out = decoder.decode([enc(row(0)), payload])
    assert [i for i, _ in out.rejected] == [1]
    assert out.table.to_pylist() == [row(0)]


def test_huge_integer_for_a_float_field_is_rejected_not_raised(decoder):
    payload = enc(row(1)).replace(b'"amount":0.5', b'"amount":1' + b"0" * 400)
    out = decoder.decode([b"junk", payload])  # the bad neighbour forces the message-by-message path
    assert [i for i, _ in out.rejected] == [0, 1]


# -- messages that hold more (or less) than one line ---------------------------------------------
def test_payload_with_two_objects_on_two_lines_is_rejected(decoder):
    two = enc(row(1)) + b"\n" + enc(row(2))
    out = decoder.decode([enc(row(0)), two, enc(row(3))])
    assert out.kept.tolist() == [0, 2]
    assert out.table.to_pylist() == [row(0), row(3)]
    assert len(out.rejected) == 1
    index, reason = out.rejected[0]
    assert index == 1 and reason.startswith("not valid JSON: Extra data")


def test_payload_with_two_objects_alone_is_rejected(decoder):
    out = decoder.decode([enc(row(1)) + b"\n" + enc(row(2))])
    assert out.table.num_rows == 0
    assert out.rejected[0][0] == 0 and "Extra data" in out.rejected[0][1]


def test_two_objects_on_one_line_are_rejected(decoder):
    out = decoder.decode([enc(row(1)) + enc(row(2)), enc(row(3))])
    assert out.kept.tolist() == [1]
    assert out.rejected[0][0] == 0 and "Extra data" in out.rejected[0][1]


@pytest.mark.parametrize("blank", [b" ", b"\n", b"\t\n "])
def test_whitespace_only_payload_is_rejected(decoder, blank):
    out = decoder.decode([enc(row(0)), blank, enc(row(2))])
    assert out.kept.tolist() == [0, 2]
    assert out.table.to_pylist() == [row(0), row(2)]
    assert [i for i, _ in out.rejected] == [1]


@pytest.mark.parametrize("blank", [b" ", b"\n"])
def test_two_object_payload_next_to_a_blank_payload_are_both_rejected(decoder, blank):
    out = decoder.decode([enc(row(1)) + b"\n" + enc(row(2)), blank])
    assert out.table.num_rows == 0
    assert [i for i, _ in out.rejected] == [0, 1]


# -- bisection over big batches ----------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_at",
    [(0, 1, 2), (0, 5000, 9999), (4999, 5000, 5001), (9997, 9998, 9999), (17, 4242, 8191)],
)
def test_big_batch_with_a_few_bad_rows(decoder, bad_at):
    n = 10_000
    values = good(n)
    for i in bad_at:
        values[i] = b"{broken"
    out = decoder.decode(values)
    assert_consistent(out, n)
    assert [i for i, _ in out.rejected] == list(bad_at)
    assert all(reason.startswith("not valid JSON") for _, reason in out.rejected)
    expected_kept = [i for i in range(n) if i not in bad_at]
    assert out.kept.tolist() == expected_kept
    assert out.table["id"].to_pylist() == [f"e{i}" for i in expected_kept]
    assert out.table["amount"].to_pylist() == [i * 0.5 for i in expected_kept]


def test_bisection_checks_few_messages_one_by_one(decoder, monkeypatch):
    """A few bad messages in a large batch cost a few extra parses, not a message-by-message pass."""
    seen: list[int] = []
    original = JsonDecoder._decode_slow

    def counting(self, values):
        seen.append(len(values))
        return original(self, values)

    monkeypatch.setattr(JsonDecoder, "_decode_slow", counting)
    values = good(10_000)
    for i in (3, 6000, 9990):
        values[i] = b"nope"
    out = decoder.decode(values)
    assert [i for i, _ in out.rejected] == [3, 6000, 9990]
    # each bad message costs at most a couple of small one-by-one checks around it
    assert 1 <= len(seen) <= 3 * 2
    assert sum(seen) <= 3 * JsonDecoder.SLOW_PATH_ROWS


def test_big_batch_with_mixed_rejection_kinds(decoder):
    rng = random.Random(11)
    n = 3000
    values: list[bytes | None] = good(n)
    bad_kinds = {
        "json": b"{x",
        "array": b"[]",
        "type": enc(row(0, user_id="1")),
        "missing": enc({"id": "z", "amount": 1.0, "ts": 1}),
        "tombstone": None,
        "nan": enc(row(0)).replace(b'"amount":0.0', b'"amount":NaN'),
    }
    assert b"NaN" in bad_kinds["nan"]
    positions = sorted(rng.sample(range(n), 60))
    expected_bad = {}
    for k, pos in enumerate(positions):
        kind = list(bad_kinds)[k % len(bad_kinds)]
        values[pos] = bad_kinds[kind]
        expected_bad[pos] = kind
    out = decoder.decode(values)
    assert_consistent(out, n)
    rejected = dict(out.rejected)
    # every bad message is rejected, with the right kind of reason
    for pos, kind in expected_bad.items():
        assert pos in rejected, (pos, kind)
        reason = rejected[pos]
        assert {
            "json": reason.startswith("not valid JSON"),
            "array": reason == "expected a JSON object, got list",
            "type": reason == "field 'user_id': expected int64, got '1'",
            "missing": reason == "missing required field 'user_id'",
            "tombstone": reason == "empty payload (tombstone)",
            "nan": "'amount'" in reason and "nan" in reason.lower(),
        }[kind], (pos, kind, reason)
    good_positions = [i for i in range(n) if i not in expected_bad]
    assert set(good_positions) <= set(out.kept.tolist())
    kept_ids = dict(zip(out.kept.tolist(), out.table["id"].to_pylist()))
    assert all(kept_ids[i] == f"e{i}" for i in good_positions)


def test_all_bad_batch(decoder):
    out = decoder.decode([b"x"] * 100)
    assert_consistent(out, 100)
    assert out.table.num_rows == 0
    assert [i for i, _ in out.rejected] == list(range(100))


def test_tombstones_everywhere(decoder):
    values = [None if i % 3 == 0 else enc(row(i)) for i in range(200)]
    out = decoder.decode(values)
    assert_consistent(out, 200)
    assert [i for i, _ in out.rejected] == [i for i in range(200) if i % 3 == 0]
    assert out.table["id"].to_pylist() == [f"e{i}" for i in range(200) if i % 3]
