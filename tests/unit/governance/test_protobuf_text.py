"""proto_text prints a compiled schema as .proto text that protoc compiles back to the same descriptor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_ray.governance.protobuf import compare, parse_protobuf
from fabric_ray.governance.protobuf_text import proto_text

DATA = Path(__file__).parent / "confluent_protobuf"

EVERYTHING_PROTO2 = r'''syntax = "proto2";
package kitchen.sink;

import "google/protobuf/descriptor.proto";
import public "google/protobuf/timestamp.proto";

option java_package = "sink.java";
option optimize_for = CODE_SIZE;

extend google.protobuf.FieldOptions {
  optional string label = 50001;
  repeated int32 tags = 50002;
}

message Sink {
  option deprecated = true;
  reserved 4, 8 to 10, 1000 to max;
  reserved "gone", "old";
  extensions 100 to 199;

  required string id = 1 [(label) = "the \"id\"\n", (tags) = 1, (tags) = 2];
  optional double ratio = 2 [default = -inf];
  optional bytes raw = 3 [default = "\001\377"];
  optional Color color = 5 [default = GREEN, deprecated = true];
  optional string snake_case = 6 [json_name = "custom"];
  repeated int32 packed = 7 [packed = true];
  optional group Result = 11 {
    optional string url = 12;
  }
  map<int64, Sink> children = 13;
  oneof choice {
    string a = 14;
    google.protobuf.Timestamp b = 15;
  }
  optional string text = 16 [default = "tab\there é"];

  enum Color {
    option allow_alias = true;
    reserved 50 to 60;
    reserved "PURPLE";
    RED = 0;
    GREEN = 1 [deprecated = true];
    VERDE = 1;
  }

  extend Sink {
    optional int32 extra = 100;
  }
}

service Kitchen {
  option deprecated = true;
  rpc Wash (Sink) returns (stream Sink);
  rpc Dry (stream Sink) returns (Sink) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
}
'''


def _all_texts() -> list[tuple[str, str, dict[str, str]]]:
    out = [("kitchen sink", EVERYTHING_PROTO2, {})]
    for name in ("TestProto.proto", "TestProto2.proto", "NestedTestProto.proto", "NestedNoMapTestProto.proto",
                 "DecimalValue.proto", "DecimalValue2.proto"):
        out.append((name, (DATA / name).read_text(), {}))
    for i, case in enumerate(json.loads((DATA / "diff-schema-examples.json").read_text())):
        for side in ("original", "update"):
            deps = {d["name"]: d["dependency"] for d in case.get(f"{side}_dependencies", []) if "dependency" in d}
            out.append((f"diff case {i} {side}", case[f"{side}_schema"], deps))
    return out


CASES = _all_texts()


@pytest.mark.parametrize(("label", "text", "deps"), CASES, ids=[c[0] for c in CASES])
def test_printed_text_compiles_to_the_same_descriptor(label, text, deps):
    schema = parse_protobuf(text, deps)
    printed = proto_text(schema)
    again = parse_protobuf(printed, deps)
    assert again.identity() == schema.identity(), printed
    assert compare(schema, again) == []
    assert proto_text(again) == printed  # a fixed point


def test_kitchen_sink_reads_as_written():
    printed = proto_text(parse_protobuf(EVERYTHING_PROTO2))
    for line in [
        'import public "google/protobuf/timestamp.proto";',
        "  reserved 4, 8 to 10, 1000 to max;",
        '  required string id = 1 [(kitchen.sink.label) = "the \\"id\\"\\n", (kitchen.sink.tags) = 1, (kitchen.sink.tags) = 2];',
        "  optional double ratio = 2 [default = -inf];",
        '  optional string snake_case = 6 [json_name = "custom"];',
        "  optional group Result = 11 {",
        "  map<int64, .kitchen.sink.Sink> children = 13;",
        "  oneof choice {",
        "  rpc Wash (.kitchen.sink.Sink) returns (stream .kitchen.sink.Sink);",
        "    option idempotency_level = NO_SIDE_EFFECTS;",
    ]:
        assert line in printed.splitlines(), (line, printed)
