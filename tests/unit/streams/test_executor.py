"""PipelineRuntime: every message is processed or rejected with a reason; user functions cannot stop it."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fabric_ray.streams.executor import PipelineRuntime
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.records import RawBatch

SCHEMA = pa.schema([("user_id", pa.int64()), ("amount", pa.float64())])


def base(**kw) -> Pipeline:
    return Pipeline("p", **kw).source("t").decode(JsonDecoder(SCHEMA, required=["user_id"]))


def batch(*payloads) -> RawBatch:
    return RawBatch.from_values("t", 0, [p if isinstance(p, (bytes, type(None))) else json.dumps(p).encode() for p in payloads])


def accounted(result, n):
    assert result.processed + len(result.rejected) == n
    assert sorted(i for i, _ in result.rejected) == [i for i, _ in result.rejected]


def test_oversize_messages_are_rejected_before_decoding():
    p = base(max_message_bytes=40).sink("out")
    r = PipelineRuntime(p).process(batch({"user_id": 1, "amount": 1.0}, {"user_id": 2, "amount": 1.0, "pad": "x" * 50}))
    assert r.rejected == [(1, "message too large: 90 bytes, over max_message_bytes=40")]
    assert r.outputs["out"]["user_id"].to_pylist() == [1]
    accounted(r, 2)


def test_vectorized_filter_and_map_keep_input_indices():
    p = (
        base()
        .filter(lambda t: pc.greater(t["amount"], 0))
        .map(lambda t: t.append_column("double", pc.multiply(t["amount"], 2)))
        .sink("out")
    )
    r = PipelineRuntime(p).process(batch({"user_id": 1, "amount": -1.0}, b"{", {"user_id": 2, "amount": 3.0}, {"user_id": 3}))
    assert r.outputs["out"].to_pylist() == [{"user_id": 2, "amount": 3.0, "double": 6.0}]
    assert r.output_index["out"].tolist() == [2]
    assert [i for i, _ in r.rejected] == [1]
    assert r.filtered == 2  # amount -1 and amount null
    accounted(r, 4)


def test_failing_vectorized_function_dead_letters_the_rows_it_saw():
    def boom(t):
        raise RuntimeError("enrichment service down")

    r = PipelineRuntime(base().map(boom, name="enrich").sink("out")).process(batch({"user_id": 1}, {"user_id": 2}, b"x"))
    assert [i for i, _ in r.rejected] == [0, 1, 2]
    assert r.rejected[0][1] == "map 'enrich' failed: RuntimeError: enrichment service down"
    assert "out" not in r.outputs
    accounted(r, 3)


def test_map_changing_row_count_is_refused_per_batch():
    r = PipelineRuntime(base().map(lambda t: t.slice(0, 1)).sink("out")).process(batch({"user_id": 1}, {"user_id": 2}))
    assert len(r.rejected) == 2 and "returned 1 rows for 2; use filter to drop rows" in r.rejected[0][1]


def test_per_row_udfs_reject_only_the_failing_rows():
    def check(row):
        if row["user_id"] == 2:
            raise ValueError("user 2 is blocked")
        return row["user_id"] != 3

    def enrich(row):
        return None if row["user_id"] == 4 else {**row, "tier": "gold" if row["user_id"] == 1 else "basic"}

    p = base().filter_rows(check, name="blocked").map_rows(enrich, name="tier").sink("out")
    r = PipelineRuntime(p).process(batch(*({"user_id": i, "amount": 1.0} for i in range(1, 6))))
    assert r.rejected == [(1, "filter 'blocked' failed: ValueError: user 2 is blocked")]
    assert r.outputs["out"].to_pylist() == [
        {"user_id": 1, "amount": 1.0, "tier": "gold"},
        {"user_id": 5, "amount": 1.0, "tier": "basic"},
    ]
    assert r.output_index["out"].tolist() == [0, 4]
    assert r.filtered == 2  # user 3 filtered, user 4 dropped by the map
    accounted(r, 5)


def test_filter_returning_the_wrong_shape_is_a_reason_not_a_crash():
    r = PipelineRuntime(base().filter(lambda t: [True]).sink("out")).process(batch({"user_id": 1}, {"user_id": 2}))
    assert len(r.rejected) == 2 and "one boolean per row (2)" in r.rejected[0][1]


def test_lookup_is_a_left_join():
    ref = pa.table({"user_id": [1, 3], "country": ["FR", "DE"]})
    r = PipelineRuntime(base().lookup(ref, on="user_id").sink("out")).process(batch({"user_id": 1}, {"user_id": 2}, {"user_id": 3}))
    assert r.outputs["out"]["country"].to_pylist() == ["FR", None, "DE"]


def test_decoder_crash_dead_letters_the_whole_batch():
    class Broken:
        schema = SCHEMA
        required = ()

        def decode(self, values):
            raise MemoryError("boom")

    r = PipelineRuntime(Pipeline("p").source("t").decode(Broken()).sink("out")).process(batch({"user_id": 1}, {"user_id": 2}))
    assert r.rejected == [(0, "decoder failed on this batch: MemoryError: boom"), (1, "decoder failed on this batch: MemoryError: boom")]


def test_reasons_are_counted_by_kind():
    p = base(max_message_bytes=30).sink("out")
    r = PipelineRuntime(p).process(batch(b"{", b"[1]", {"user_id": 1, "amount": 1.0, "pad": "xxxxxxxxxxxx"}, {"user_id": 1}))
    assert r.reasons == {"not valid JSON": 1, "expected a JSON object, got list": 1, "message too large": 1}


def test_sinks_at_several_points_see_the_rows_there():
    p = base().sink("raw").filter(lambda t: pc.equal(t["user_id"], 2)).sink("twos")
    r = PipelineRuntime(p).process(batch({"user_id": 1}, {"user_id": 2}))
    assert r.outputs["raw"].num_rows == 2 and r.outputs["twos"]["user_id"].to_pylist() == [2]


def test_unknown_state_is_refused():
    with pytest.raises(ValueError, match="state for unknown stateful steps"):
        PipelineRuntime(base().sink("out"), state={"w": pa.table({"a": [1]})})


def test_empty_batch():
    r = PipelineRuntime(base().sink("out")).process(RawBatch("t", np.empty(0, np.int32), np.empty(0, np.int64), [], []))
    assert r.processed == 0 and r.outputs == {} and r.rejected == []


def test_validate_dead_letters_rows_breaking_the_contract_with_every_reason():
    from fabric_ray.governance.contracts import Contract

    contract = Contract(required=["user_id"], rules=[{"between": {"column": "amount", "min": 0, "max": 100}}], name="payments")
    p = base().validate(contract).sink("out")
    r = PipelineRuntime(p).process(batch({"user_id": 1, "amount": 5.0}, {"user_id": 2, "amount": -3.0}, {"user_id": 3, "amount": 500.0}))
    assert r.outputs["out"]["user_id"].to_pylist() == [1]
    assert [i for i, _ in r.rejected] == [1, 2]
    assert all(reason.startswith("contract: ") and "amount" in reason for _, reason in r.rejected)
    accounted(r, 3)


def test_validate_needs_columns_the_rows_have():
    from fabric_ray.governance.contracts import Contract
    from fabric_ray.streams.pipeline import PipelineError

    with pytest.raises(PipelineError, match="column 'currency' is not in the schema here"):
        base().validate(Contract(rules=[{"in_set": {"column": "currency", "values": ["EUR"]}}]))


def test_validate_accepts_the_demo_data_product():
    from fabric_ray.demo.payments import PAYMENTS_SCHEMA, REQUIRED_FIELDS
    from fabric_ray.governance.products import load_products

    (product,) = load_products(__import__("pathlib").Path(__import__("fabric_ray").__file__).parent / "demo" / "products")
    p = Pipeline("d").source("payments").decode(JsonDecoder(PAYMENTS_SCHEMA, required=REQUIRED_FIELDS)).validate(product).sink("out")
    assert p.step("validate").options["contract"].name == "payments"


# -- windows in a pipeline -------------------------------------------------------------------------
WSCHEMA = pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.int64())])


def windowed(**kw) -> Pipeline:
    from fabric_ray.streams.windows import Tumbling

    return (
        Pipeline("w").source("t").decode(JsonDecoder(WSCHEMA, required=["user_id", "ts"]))
        .key_by("user_id")
        .window(Tumbling(1000), {"n": ("count", None), "total": ("sum", "amount")}, time="ts", **kw)
        .sink("out")
    )


def test_window_step_emits_per_key_and_window_under_the_key_name():
    p = windowed()
    assert p.schema.names == ["user_id", "window_start_ms", "window_end_ms", "n", "total"]
    r = PipelineRuntime(p).process(batch(*({"user_id": u, "amount": 1.0, "ts": t} for u, t in [(1, 0), (1, 500), (2, 999), (1, 1500)])))
    rows = sorted(r.outputs["out"].to_pylist(), key=lambda x: (x["user_id"], x["window_start_ms"]))
    assert rows == [
        {"user_id": 1, "window_start_ms": 0, "window_end_ms": 1000, "n": 2, "total": 2.0},
        {"user_id": 1, "window_start_ms": 1000, "window_end_ms": 2000, "n": 1, "total": 1.0},
        {"user_id": 2, "window_start_ms": 0, "window_end_ms": 1000, "n": 1, "total": 1.0},
    ]
    assert r.output_index["out"].tolist() == [-1, -1, -1]  # aggregates come from no single message
    accounted(r, 4)


def test_late_events_are_dead_lettered_with_a_reason_or_dropped_and_counted():
    events = [{"user_id": 1, "amount": 1.0, "ts": 5000}, {"user_id": 1, "amount": 1.0, "ts": 100}]
    r = PipelineRuntime(windowed()).process(batch(*events))
    assert [i for i, _ in r.rejected] == [1] and r.rejected[0][1].startswith("late event")
    assert r.reasons == {"late event": 1}
    accounted(r, 2)
    r = PipelineRuntime(windowed(late="drop")).process(batch(*events))
    assert r.rejected == [] and r.late_dropped == 1 and r.processed == 2
    r = PipelineRuntime(windowed(allowed_lateness_ms=10_000)).process(batch(*events))
    assert r.rejected == [] and r.late_dropped == 0


def test_null_event_time_is_dead_lettered_before_the_window():
    schema = pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.int64())])
    from fabric_ray.streams.windows import Tumbling

    p = Pipeline("w").source("t").decode(JsonDecoder(schema, required=["user_id"])).key_by("user_id")
    p = p.window(Tumbling(1000), {"n": ("count", None)}, time="ts").sink("out")
    r = PipelineRuntime(p).process(batch({"user_id": 1, "ts": 1}, {"user_id": 1}))
    assert r.rejected == [(1, "window: event time column 'ts' is null")]


def test_window_definitions_are_checked_when_the_pipeline_is_built():
    from fabric_ray.streams.pipeline import PipelineError
    from fabric_ray.streams.windows import Tumbling

    decoded = Pipeline("w").source("t").decode(JsonDecoder(WSCHEMA, required=["user_id", "ts"]))
    with pytest.raises(PipelineError, match="window needs a key: add .key_by"):
        decoded.window(Tumbling(1000), {"n": ("count", None)}, time="ts")
    with pytest.raises(PipelineError, match="column 'when' is not in the schema"):
        decoded.key_by("user_id").window(Tumbling(1000), {"n": ("count", None)}, time="when")
    with pytest.raises(PipelineError, match="late must be one of"):
        decoded.key_by("user_id").window(Tumbling(1000), {"n": ("count", None)}, time="ts", late="ignore")
    with pytest.raises(PipelineError, match=r"step 4 \(window\).*median"):
        decoded.key_by("user_id").window(Tumbling(1000), {"m": ("median", "amount")}, time="ts")
