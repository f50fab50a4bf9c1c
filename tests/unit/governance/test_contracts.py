"""Contract enforcement on Arrow batches: partition into passed and rejected rows, reasons, counts, speed."""

from __future__ import annotations

import doctest
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fabric_ray.demo
from fabric_ray.demo.payments import PAYMENTS_SCHEMA, generate_events
from fabric_ray.governance import contracts as contracts_module
from fabric_ray.governance.contracts import Contract, ContractResult, enforce
from fabric_ray.governance.products import DataProduct, load_products
from fabric_ray.quality.rules import Between, InSet, NotNull, Regex, RuleError, Unique
from fabric_ray.streams.json_codec import JsonDecoder

DEMO_PRODUCTS = Path(fabric_ray.demo.__file__).parent / "products"
CONTRACT = Contract(required=("user_id",), rules=(Between("amount", 0, 10000), InSet("currency", ["EUR", "USD"])))


def test_doctests_pass():
    result = doctest.testmod(contracts_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def check_partition(table: pa.Table, result: ContractResult) -> None:
    """passed and rejected split the input exactly, both in input order, and passed matches its index."""
    rejected = result.rejected_index
    assert np.all(np.diff(result.passed_index) > 0) and np.all(np.diff(rejected) > 0)
    assert sorted(result.passed_index.tolist() + rejected.tolist()) == list(range(table.num_rows))
    assert result.passed.equals(table.take(pa.array(result.passed_index, pa.int64())))
    assert result.passed_index.dtype == np.int64 and result.rows == table.num_rows


def test_a_row_failing_several_checks_gets_one_reason_naming_all():
    t = pa.table({"user_id": [1, None, 3, 4], "amount": [5.0, -5.0, 1.0, 3.0], "currency": ["EUR", "XXX", None, "GBP"]})
    result = enforce(t, CONTRACT)
    check_partition(t, result)
    assert result.passed.to_pylist() == [
        {"user_id": 1, "amount": 5.0, "currency": "EUR"}, {"user_id": 3, "amount": 1.0, "currency": None}
    ]
    assert result.passed_index.tolist() == [0, 2]
    assert result.rejected == [
        (1, "user_id: required field is null; amount: between 0 and 10000 failed (got -5.0); "
            "currency: in_set ['EUR', 'USD'] failed (got 'XXX')"),
        (3, "currency: in_set ['EUR', 'USD'] failed (got 'GBP')"),
    ]
    assert result.failures == {"user_id: required": 1, "amount: between 0 and 10000": 1, "currency: in_set ['EUR', 'USD']": 2}
    assert not result.ok


def test_all_good_returns_the_input():
    t = pa.table({"user_id": [1, 2], "amount": [1.0, 2.0], "currency": ["EUR", "USD"]})
    result = enforce(t, CONTRACT)
    assert result.ok and result.passed.equals(t) and result.passed_index.tolist() == [0, 1]
    assert result.failures == dict.fromkeys(CONTRACT.checks, 0) and result.over_tolerance == ()


def test_missing_required_column_rejects_every_row_without_raising():
    t = pa.table({"amount": [1.0, -1.0], "currency": ["EUR", "EUR"]})
    result = enforce(t, CONTRACT)
    assert result.passed.num_rows == 0 and result.passed.schema == t.schema and result.passed_index.tolist() == []
    assert result.rejected == [
        (0, "user_id: required field is missing from the batch"),
        (1, "user_id: required field is missing from the batch; amount: between 0 and 10000 failed (got -1.0)"),
    ]
    assert result.failures["user_id: required"] == 2


def test_missing_rule_column_rejects_every_row():
    t = pa.table({"user_id": [1], "amount": [1.0]})
    (row,) = enforce(t, CONTRACT).rejected
    assert row == (0, "currency: in_set ['EUR', 'USD']: column 'currency' is missing from the batch")


def test_a_rule_that_cannot_run_on_the_column_type_rejects_every_row():
    t = pa.table({"user_id": [1, 2], "amount": ["1", "2"], "currency": ["EUR", "EUR"]})
    result = enforce(t, CONTRACT)
    assert [i for i, _ in result.rejected] == [0, 1]
    assert result.rejected[0][1].startswith("amount: between 0 and 10000: cannot be checked (amount is string): ")


def test_record_batches_chunked_tables_and_empty_batches():
    batch = pa.record_batch({"user_id": [1, None], "amount": [1.0, 2.0], "currency": ["EUR", "EUR"]})
    result = enforce(batch, CONTRACT)
    assert isinstance(result.passed, pa.Table) and result.passed_index.tolist() == [0]
    chunked = pa.Table.from_batches([batch, batch, batch])
    result = enforce(chunked, CONTRACT)
    check_partition(chunked, result)
    assert [i for i, _ in result.rejected] == [1, 3, 5]
    empty = enforce(batch.slice(0, 0), CONTRACT)
    assert empty.ok and empty.passed.num_rows == 0 and empty.rows == 0


def test_tolerance_gives_the_gate_verdict_but_rows_are_still_rejected():
    contract = Contract(rules=(NotNull("x", tolerance=0.5), Between("y", 0, 1, tolerance=0.1)))
    t = pa.table({"x": [1, None, 3, 4], "y": [0.5, 0.5, 2.0, 0.5]})
    result = enforce(t, contract)
    assert [i for i, _ in result.rejected] == [1, 2]
    assert result.over_tolerance == ("y: between 0 and 1",)


def test_contract_from_a_product_and_products_directly():
    p = DataProduct.from_dict({
        "name": "p", "domain": "d", "owner": "o", "topic": "t", "required": ["a"],
        "schema": {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]},
        "rules": [{"between": {"column": "a", "min": 0}}],
    })
    contract = Contract.from_product(p)
    assert (contract.name, contract.required, contract.rules) == ("p", ("a",), (Between("a", 0),))
    t = pa.table({"a": [1, -1, None]})
    assert enforce(t, p).rejected == enforce(t, contract).rejected == [
        (1, "a: >= 0 failed (got -1)"), (2, "a: required field is null")
    ]


def test_contract_construction_checks():
    assert Contract(required=["a", "a"], rules=[{"not_null": "b"}]).required == ("a",)
    with pytest.raises(ValueError, match="required must be a list of field names; got 'a'"):
        Contract(required="a")
    with pytest.raises(RuleError, match=r"contract 'c': rules\[0\]: rule between on 'x': min 2 is greater than max 1"):
        Contract(rules=[{"between": {"column": "x", "min": 2, "max": 1}}], name="c")
    with pytest.raises(TypeError, match="expected a pyarrow Table or RecordBatch; got list"):
        enforce([{"a": 1}], Contract())
    with pytest.raises(TypeError, match="expected a Contract or a DataProduct; got dict"):
        enforce(pa.table({"a": [1]}), {"required": ["a"]})


rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(-3, 3)),
        st.one_of(st.none(), st.just(float("nan")), st.floats(-10, 10)),
        st.one_of(st.none(), st.sampled_from(["EUR", "USD", "GBP", "eur"])),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(data=rows, chunk=st.integers(1, 7))
def test_enforce_agrees_with_the_rules_row_by_row(data, chunk):
    t = pa.table(
        {
            "k": pa.array([r[0] for r in data], pa.int64()),
            "x": pa.array([r[1] for r in data], pa.float64()),
            "c": pa.array([r[2] for r in data], pa.string()),
        }
    )
    t = pa.Table.from_batches(t.to_batches(max_chunksize=chunk), schema=t.schema)
    contract = Contract(
        required=("k",), rules=(Between("x", -5, 5), InSet("c", ["EUR", "USD"]), Regex("c", "[A-Z]+"), Unique("k"))
    )
    result = enforce(t, contract)
    check_partition(t, result)
    masks = [np.asarray([r[0] is None for r in data])] + [rule.failures(t) for rule in contract.rules]
    expected = np.logical_or.reduce(masks) if data else np.zeros(0, bool)
    assert result.rejected_index.tolist() == np.flatnonzero(expected).tolist()
    assert list(result.failures.values()) == [int(m.sum()) for m in masks]
    for row, reason in result.rejected:
        assert len(reason.split("; ")) == sum(bool(m[row]) for m in masks)


# -- the demo product -----------------------------------------------------------------------------


def test_the_demo_contract_passes_every_good_event_and_rejects_the_decodable_bad_ones():
    (product,) = load_products(DEMO_PRODUCTS)
    events = generate_events(20_000, users=500, seed=11, bad_fraction=0.02)
    good = enforce(events.table, product)
    assert good.ok, good.rejected[:5]
    assert good.passed.num_rows == events.table.num_rows
    # A lenient decoder (no required fields) lets the decodable bad events through to the contract:
    # those without user_id. Truncated JSON, text amounts and arrays do not decode at all.
    decoded = JsonDecoder(PAYMENTS_SCHEMA).decode(events.payloads)
    result = enforce(decoded.table, product)
    bad_payloads = {i for i, p in enumerate(events.payloads) if _object_without_user(p)}
    assert len(bad_payloads) > 0
    assert {int(decoded.kept[i]) for i, _ in result.rejected} == bad_payloads
    assert {reason for _, reason in result.rejected} == {"user_id: required field is null"}
    assert len(decoded.rejected) + len(result.rejected) == events.bad
    assert result.passed.equals(events.table)


def _object_without_user(payload: bytes) -> bool:
    try:
        event = json.loads(payload)
    except ValueError:
        return False
    return isinstance(event, dict) and "user_id" not in event


def test_demo_contract_catches_values_outside_its_rules():
    (product,) = load_products(DEMO_PRODUCTS)
    t = generate_events(5, users=5, bad_fraction=0).table
    broken = t.set_column(t.schema.get_field_index("amount"), "amount", pa.array([1.0, -5.0, 0.0, 20000.0, 2.0]))
    broken = broken.set_column(broken.schema.get_field_index("currency"), "currency", pa.array(["EUR", "EUR", "JPY", "USD", "EUR"]))
    result = enforce(broken, product)
    assert result.rejected == [
        (1, "amount: > 0 and <= 10000 failed (got -5.0)"),
        (2, "amount: > 0 and <= 10000 failed (got 0.0); currency: in_set ['EUR', 'USD', 'GBP', 'CHF'] failed (got 'JPY')"),
        (3, "amount: > 0 and <= 10000 failed (got 20000.0)"),
    ]


# -- speed (measured and printed, not asserted) ---------------------------------------------------


def test_a_million_rows_with_three_rules(capsys):
    n = 1_000_000
    rng = np.random.default_rng(1)
    amount = rng.gamma(2.0, 25.0, n)
    currency = np.array(["EUR", "USD", "GBP", "CHF"], dtype=object)[rng.integers(0, 4, n)]
    user_null = np.zeros(n, dtype=bool)
    bad = rng.choice(n, n // 1000, replace=False)  # 0.1% bad rows, a third per rule
    third = len(bad) // 3
    amount[bad[:third]] = -5.0
    currency[bad[third: 2 * third]] = "XXX"
    user_null[bad[2 * third:]] = True
    t = pa.table(
        {
            "user_id": pa.array(rng.integers(1, 10_000, n), mask=user_null),
            "amount": amount,
            "currency": pa.array(currency, pa.string()),
            "event_ts": np.arange(n, dtype=np.int64),
        }
    )
    contract = Contract(
        required=("user_id", "event_ts"),
        rules=(Between("amount", 0, 10000), InSet("currency", ["EUR", "USD", "GBP", "CHF"]), NotNull("user_id")),
    )
    enforce(t, contract)  # warm up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = enforce(t, contract)
        best = min(best, time.perf_counter() - start)
    assert len(result.rejected) == len(bad) and result.passed.num_rows == n - len(bad)
    with capsys.disabled():
        print(f"\nenforce: {n:,} rows, 3 rules + 2 required, 0.1% bad: {best * 1000:.1f} ms, {n / best / 1e6:.1f} M rows/s")
