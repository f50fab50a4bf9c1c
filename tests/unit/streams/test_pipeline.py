"""Pipeline definitions: immutable, validated eagerly, errors naming the step."""

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.pipeline import Pipeline, PipelineError

SCHEMA = pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.int64())])
DECODER = JsonDecoder(SCHEMA, required=["user_id", "ts"])


def base() -> Pipeline:
    return Pipeline("p").source("payments").decode(DECODER)


def test_builders_return_new_pipelines_and_leave_the_original_alone():
    p = base()
    q = p.filter(lambda t: pc.greater(t["amount"], 0)).sink("out")
    assert len(p.steps) == 2 and len(q.steps) == 4
    assert q.topic == "payments" and q.sinks == ("out",) and q.dead_letters == "payments.dlq"
    assert q.schema == SCHEMA
    with pytest.raises(Exception):
        q.name = "other"  # frozen


def test_describe_lists_steps_and_columns():
    text = base().sink("out").describe()
    assert "source 'payments'" in text and "user_id, amount, ts" in text


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Pipeline("p").decode(DECODER), "decode must come right after source"),
        (lambda: base().source("again"), "the source must be the first step"),
        (lambda: Pipeline("p").source(""), "topic must be a non-empty string"),
        (lambda: Pipeline("p").source("t").filter(lambda t: t), "add .source(...).decode(...) first"),
        (lambda: base().key_by("nope"), "column 'nope' is not in the schema here"),
        (lambda: base().filter("not callable"), "filter needs a function"),
        (lambda: base().sink("out").sink("out"), "another step is already called 'out'"),
        (lambda: base().decode(object(), name="d2"), "decode must come right after source"),
        (lambda: Pipeline("p").source("t").decode(object()), "decoder must have a decode(values) method"),
        (lambda: base().lookup(pa.table({"k": [1]}), on="user_id"), "lookup table has no column 'user_id'"),
        (lambda: base().lookup(pa.table({"user_id": [1, 1], "x": [1, 2]}), on="user_id"), "duplicate values in 'user_id'"),
        (lambda: base().lookup(pa.table({"user_id": [1], "amount": [2.0]}), on="user_id"), "already exist in the rows"),
        (lambda: Pipeline("bad name!"), "pipeline name must be"),
        (lambda: Pipeline("p", max_message_bytes=0), "max_message_bytes must be positive"),
    ],
)
def test_invalid_definitions_fail_at_once_naming_the_step(build, message):
    with pytest.raises(PipelineError, match="pipeline") as info:
        build()
    assert message in str(info.value)


def test_error_names_the_step_number_and_kind():
    with pytest.raises(PipelineError) as info:
        base().filter(lambda t: t["amount"], name="f").key_by("usr")
    assert str(info.value).startswith("pipeline 'p', step 4 (key_by): column 'usr' is not in the schema here")


def test_unknown_schema_after_an_undeclared_map_defers_column_checks():
    p = base().map(lambda t: t.append_column("x", t["amount"])).key_by("x")  # checked at run time instead
    assert p.schema is None


def test_declared_map_schema_is_checked_downstream():
    out = pa.schema([("user_id", pa.int64()), ("double", pa.float64())])
    p = base().map(lambda t: t, output_schema=out)
    assert p.schema == out
    with pytest.raises(PipelineError, match="'amount' is not in the schema"):
        p.key_by("amount")


def test_lookup_adds_nullable_columns():
    p = base().lookup(pa.table({"user_id": [1], "country": ["FR"]}), on="user_id")
    assert p.schema.field("country").nullable and p.schema.names[-1] == "country"


def test_step_lookup_by_name():
    p = base().sink("out")
    assert p.step("out").kind == "sink"
    with pytest.raises(KeyError, match="no step 'x'"):
        p.step("x")
