"""Quality gates: every check at its boundary, tolerance and null semantics, unique across the
whole run, merge equivalence over any split, bounded samples, the JSON and text reports."""

from __future__ import annotations

import datetime as dt
import decimal
import doctest
import json
import math
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_ray.etl import checks as checks_module
from fabric_ray.etl import gate_report as report_module
from fabric_ray.etl.checks import CheckError, Drift, Freshness, Gate, RowCount, RuleCheck, parse_check, parse_checks
from fabric_ray.etl.gate_report import GateReport
from fabric_ray.etl.profile import profile_table
from fabric_ray.quality.rules import NotNull, RuleError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW_S = 1_700_000_000.0


@pytest.mark.parametrize("module", [checks_module, report_module])
def test_doctests_pass(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def run(checks, *batches, samples: int = 5, now_s: float = NOW_S) -> GateReport:
    gate = Gate.parse(checks, samples=samples)
    acc = gate.accumulator()
    for b in batches:
        acc.merge(gate.accumulator().update(b))
    return acc.finish(now_s=now_s)


def one(check, *batches, **kw):
    return run([check], *batches, **kw).results[0]


# -- rules at their boundaries -----------------------------------------------------------------------


def test_between_bounds_are_inclusive_and_nulls_pass():
    t = pa.table({"x": pa.array([0, 10, None], pa.int64())})
    assert one({"between": {"column": "x", "min": 0, "max": 10}}, t).passed
    r = one({"between": {"column": "x", "min": 0, "max": 9}}, t)
    assert (r.passed, r.failing_rows, r.samples) == (False, 1, ({"x": 10},))
    assert not one({"between": {"column": "x", "min": 0, "max": 10, "max_inclusive": False}}, t).passed


def test_not_null_fails_nulls_but_not_nan():
    t = pa.table({"x": [1.0, math.nan, None]})
    r = one({"not_null": "x"}, t)
    assert (r.passed, r.failing_rows, r.failing_share) == (False, 1, pytest.approx(1 / 3))


@pytest.mark.parametrize("failing,passed", [(1, True), (2, False)])
def test_tolerance_boundary(failing, passed):
    t = pa.table({"x": [None] * failing + [1] * (100 - failing)})
    r = one({"not_null": {"column": "x", "tolerance": 0.01}}, t)
    assert (r.passed, r.failing_rows, r.tolerance) == (passed, failing, 0.01)
    assert r.failing_rows == failing  # tolerated rows are still counted and sampled
    assert len(r.samples) == failing


def test_in_set_and_regex_pass_nulls():
    t = pa.table({"c": ["EUR", None, "XXX"], "n": ["1234", None, "12a4"]})
    r = one({"in_set": {"column": "c", "values": ["EUR", "USD"]}}, t)
    assert (r.passed, r.failing_rows, r.samples) == (False, 1, ({"c": "XXX", "n": "12a4"},))
    r = one({"regex": {"column": "n", "pattern": "[0-9]{4}"}}, t)
    assert (r.failing_rows, r.samples[0]["n"]) == (1, "12a4")
    assert one({"in_set": {"column": "c", "values": ["EUR", "XXX"]}}, t).passed


def test_empty_run_passes_row_rules_and_fails_row_count():
    t = pa.table({"x": pa.array([], pa.int64())})
    report = run([{"not_null": "x"}, {"row_count": {"min": 1}}], t)
    assert [r.passed for r in report.results] == [True, False]
    assert report.results[0].failing_share == 0.0


# -- unique across the whole run ------------------------------------------------------------------------


def test_unique_across_batches_not_just_within_one():
    a, b = pa.table({"id": [1, 2, 3]}), pa.table({"id": [3, 4, None, None]})
    # each batch alone is unique; the run is not (3 twice); null keys are ignored
    assert one({"unique": "id"}, a).passed and one({"unique": "id"}, b).passed
    r = one({"unique": "id"}, a, b)
    assert (r.passed, r.failing_rows, r.samples) == (False, 1, ({"id": 3},))


def test_unique_within_a_batch_samples_the_later_rows():
    t = pa.table({"id": ["a", "b", "a", "a"], "v": [1, 2, 3, 4]})
    r = one({"unique": "id"}, t)
    assert r.failing_rows == 2
    assert sorted(s["v"] for s in r.samples) == [3, 4]


def test_unique_across_batches_with_text_and_compound_keys():
    r = one({"unique": "k"}, pa.table({"k": ["x"]}), pa.table({"k": ["x"]}))
    assert r.failing_rows == 1 and set(r.samples[0]) == {"key_hash"}
    t1 = pa.table({"a": [1, 1], "b": ["x", "y"]})
    t2 = pa.table({"a": [1, 2], "b": ["y", "y"]})
    assert one({"unique": ["a", "b"]}, t1, t2).failing_rows == 1


@pytest.mark.parametrize("typ,values", [
    (pa.float64(), [1.5, -2.25]),
    (pa.uint64(), [2**63 + 5, 1]),
    (pa.timestamp("ms"), [dt.datetime(2024, 5, 1, 12, 30), dt.datetime(2024, 5, 2)]),
    (pa.date32(), [dt.date(2024, 5, 1), dt.date(1969, 12, 31)]),
    (pa.bool_(), [True, False]),
    (pa.int32(), [-7, 2**31 - 1]),
])
def test_unique_decodes_keys_repeated_across_batches(typ, values):
    t = pa.table({"k": pa.array(values, typ)})
    r = one({"unique": "k"}, t, t)
    shown = sorted(s["k"] for s in r.samples)
    expect = sorted(v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for v in values)
    assert r.failing_rows == 2 and shown == expect


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.integers(0, 30)), max_size=200), st.lists(st.integers(0, 10**6), max_size=8))
def test_unique_failing_rows_match_pandas_for_any_split(keys, cuts):
    t = pa.table({"k": pa.array(keys, pa.int64())})
    bounds = [0, *sorted(c % (len(keys) + 1) for c in cuts), len(keys)]
    parts = [t.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]
    r = one({"unique": "k"}, *parts, samples=3)
    s = pd.Series(keys, dtype="Int64").dropna()
    assert r.failing_rows == int(s.duplicated().sum())
    assert len(r.samples) == min(3, r.failing_rows) or (r.failing_rows > 0 and 1 <= len(r.samples) <= 3)
    dup_keys = set(s[s.duplicated()].tolist())
    assert all(x["k"] in dup_keys for x in r.samples)


def test_unique_keeps_one_hash_per_distinct_key():
    gate = Gate.parse([{"unique": "id"}])
    acc = gate.accumulator()
    for i in range(40):  # more batches than the lazy merge keeps pending
        acc.merge(gate.accumulator().update(pa.table({"id": np.arange(i * 1000, i * 1000 + 1500)})))
    (partial,) = acc.partials
    r = acc.finish()
    assert r.results[0].failing_rows == 39 * 500
    partial._compact()
    assert partial.pending_size == 40 * 1000 + 500


# -- row count, freshness, drift ------------------------------------------------------------------------------


@pytest.mark.parametrize("rows,passed", [(2, False), (3, True), (5, True), (6, False)])
def test_row_count_bounds_are_inclusive(rows, passed):
    r = one({"row_count": {"min": 3, "max": 5}}, pa.table({"x": list(range(rows))}))
    assert (r.passed, r.observed, r.failing_rows) == (passed, rows, None)


@pytest.mark.parametrize("age_s,passed", [(3600.0, True), (3600.001, False), (-50.0, True)])
def test_freshness_boundary(age_s, passed):
    newest = dt.datetime.fromtimestamp(NOW_S - age_s, dt.timezone.utc)
    t = pa.table({"ts": pa.array([newest - dt.timedelta(days=3), newest, None], pa.timestamp("us", tz="UTC"))})
    r = one({"freshness": {"column": "ts", "max_age_s": 3600}}, t)
    assert r.passed == passed
    assert r.observed["age_s"] == pytest.approx(age_s, abs=1e-6)


def test_freshness_on_epoch_numbers_needs_a_unit():
    t = pa.table({"ts_ms": pa.array([int(NOW_S * 1000) - 5000, int(NOW_S * 1000) - 90_000], pa.int64())})
    assert one({"freshness": {"column": "ts_ms", "max_age_s": 10, "unit": "ms"}}, t).passed
    assert not one({"freshness": {"column": "ts_ms", "max_age_s": 4.9, "unit": "ms"}}, t).passed
    with pytest.raises(CheckError, match="give unit"):
        one({"freshness": {"column": "ts_ms", "max_age_s": 10}}, t)
    with pytest.raises(CheckError, match="is string, not a timestamp"):
        one({"freshness": {"column": "s", "max_age_s": 10}}, pa.table({"s": ["x"]}))


def test_freshness_takes_the_newest_across_batches_and_fails_without_values():
    old = pa.table({"d": [dt.date(2000, 1, 1)]})
    new = pa.table({"d": [dt.date.fromtimestamp(NOW_S)]})
    assert one({"freshness": {"column": "d", "max_age_s": 86_400}}, new, old).passed
    r = one({"freshness": {"column": "d", "max_age_s": 86_400}}, pa.table({"d": pa.array([None], pa.date32())}))
    assert (r.passed, r.observed) == (False, None)


def test_freshness_now_defaults_to_the_clock():
    now = dt.datetime.now(dt.timezone.utc)
    report = Gate([Freshness("t", 600)]).evaluate(pa.table({"t": pa.array([now], pa.timestamp("ms", tz="UTC"))}))
    assert report.passed and 0 <= report.results[0].observed["age_s"] < 600


def test_drift_passes_on_the_same_distribution_and_fails_on_a_shift(tmp_path):
    rng = np.random.default_rng(20)
    ref = profile_table(pa.table({"x": rng.normal(0, 1, 20_000)}))
    path = tmp_path / "ref.json"
    path.write_text(ref.to_json())
    check = {"drift": {"column": "x", "reference": str(path), "psi_max": 0.1, "ks_max": 0.05}}
    same = one(check, pa.table({"x": rng.normal(0, 1, 20_000)}))
    moved = one(check, pa.table({"x": rng.normal(0.5, 1, 20_000)}))
    assert same.passed and not moved.passed
    assert set(moved.observed) == {"psi", "ks"} and moved.observed["ks"] > 0.05
    assert "ks" in moved.message and moved.spec["drift"]["reference"] == str(path)


def test_drift_limit_is_inclusive():
    ref = profile_table(pa.table({"x": [float(i) for i in range(100)]}))
    t = pa.table({"x": [float(i) for i in range(100)]})
    assert one(Drift("x", ref, psi_max=0.0, ks_max=0.0025 + 1e-12), t).passed
    assert not one(Drift("x", ref, ks_max=0.002), t).passed


def test_drift_on_categories_and_uri_reference(tmp_path):
    ref = profile_table(pa.table({"c": ["EUR"] * 80 + ["USD"] * 20}))
    (tmp_path / "p.json").write_text(ref.to_json())
    check = Drift("c", f"file://{tmp_path}/p.json", psi_max=0.2)
    assert one(check, pa.table({"c": ["EUR"] * 78 + ["USD"] * 22})).passed
    r = one(check, pa.table({"c": ["GBP"] * 50 + ["EUR"] * 50}))
    assert not r.passed and r.observed["psi"] > 0.2 and "ks" not in r.observed


def test_inline_reference_is_not_copied_into_the_report():
    ref = profile_table(pa.table({"x": [float(i) for i in range(500)]}))
    r = one(Drift("x", ref, psi_max=1.0), pa.table({"x": [1.0, 2.0]}))
    assert r.spec == {"drift": {"column": "x", "reference": "(inline profile)", "psi_max": 1.0}}


def test_all_null_blocks_typed_null_are_nulls_for_every_check():
    ref = profile_table(pa.table({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}))
    nulls = pa.table({"x": pa.nulls(2), "c": pa.nulls(2)})
    real = pa.table({"x": [1.0, 2.0], "c": ["a", "a"]})
    gate = Gate([*parse_checks([{"not_null": "x"}, {"between": {"column": "x", "min": 0}}, {"in_set": {"column": "c", "values": ["a"]}},
                                {"regex": {"column": "c", "pattern": "a"}}, {"unique": "c"}]),
                 Drift("x", ref, psi_max=10.0), Drift("c", ref, psi_max=10.0)])
    acc = gate.accumulator().update(nulls).merge(gate.accumulator().update(real))
    failing = [r.failing_rows for r in acc.finish().results]
    assert failing == [2, 0, 0, 0, 1, None, None]


def test_drift_without_values_fails():
    ref = profile_table(pa.table({"x": [1.0, 2.0]}))
    r = one(Drift("x", ref, psi_max=1.0), pa.table({"x": pa.array([None], pa.float64())}))
    assert (r.passed, r.observed) == (False, None)


def test_drift_construction_errors():
    ref = profile_table(pa.table({"x": [1.0, 2.0], "s": ["a", "b"]}))
    with pytest.raises(CheckError, match="needs psi_max, ks_max or both"):
        Drift("x", ref)
    with pytest.raises(CheckError, match="reference profile has no column 'y'"):
        Drift("y", ref, psi_max=0.1)
    with pytest.raises(CheckError, match="KS needs an ordered"):
        Drift("s", ref, ks_max=0.1)
    with pytest.raises(CheckError, match="ks_max must be a number from 0 to 1; got 2"):
        Drift("x", ref, ks_max=2)
    with pytest.raises(CheckError, match="cannot read the reference profile '/no/such.json'"):
        Drift("x", "/no/such.json", psi_max=0.1)
    many = profile_table(pa.table({"s": [f"v{i}" for i in range(100)]}), max_categories=10)
    with pytest.raises(CheckError, match="too many distinct values"):
        Drift("s", many, psi_max=0.1)


def test_drift_type_mismatch_at_update():
    ref = profile_table(pa.table({"x": [1.0, 2.0]}))
    with pytest.raises(CheckError, match="column 'x' is string, the reference is double"):
        one(Drift("x", ref, psi_max=0.1), pa.table({"x": ["a"]}))


# -- parsing and labels ---------------------------------------------------------------------------------------


def test_labels_are_readable():
    ref = profile_table(pa.table({"x": [1.0, 2.0]}))
    labels = [str(c) for c in parse_checks([
        {"not_null": {"column": "id", "tolerance": 0.005}},
        {"unique": ["a", "b"]},
        {"row_count": {"min": 1000}},
        {"row_count": {"max": 5}},
        {"freshness": {"column": "ts", "max_age_s": 900}},
    ])] + [str(Drift("x", ref, psi_max=0.25))]
    assert labels == ["id: not_null (tolerance 0.5%)", "(a, b): unique", "row_count: >= 1,000", "row_count: <= 5",
                      "ts: newest within 900 s", "x: drift psi <= 0.25"]


@pytest.mark.parametrize("spec,match", [
    ({"row_count": {"min": -1}}, "check row_count: min must be an integer from 0; got -1"),
    ({"row_count": {"min": "10"}}, "min must be an integer from 0; got '10'"),
    ({"row_count": {}}, "needs min, max or both"),
    ({"row_count": {"min": 3, "max": 2}}, "min 3 is greater than max 2"),
    ({"row_count": {"minimum": 3}}, "unknown key 'minimum'; expected min, max"),
    ({"freshness": {"column": "ts"}}, "check freshness: missing max_age_s"),
    ({"freshness": {"column": "ts", "max_age_s": -5}}, "freshness on 'ts': max_age_s must be a number from 0; got -5"),
    ({"freshness": {"column": "ts", "max_age_s": 5, "unit": "h"}}, "unit must be one of s, ms, us, ns; got 'h'"),
    ({"freshnes": {"column": "ts"}}, "unknown check 'freshnes' \\(did you mean 'freshness'\\?\\)"),
    ({"between": {"column": "x", "min": 5, "max": 1}}, "rule between on 'x': min 5 is greater than max 1"),
    ({"drift": {"column": "x", "reference": {"rows": 1}}}, "check drift on 'x': reference is not a profile"),
    ({"drift": {"column": "x"}}, "check drift: missing reference"),
    ("not_null", "a check is a mapping with one key"),
    ({"row_count": 5}, "check row_count: expected a mapping of arguments"),
])
def test_parse_errors_name_the_check_and_value(spec, match):
    with pytest.raises(CheckError, match=match):
        parse_check(spec)


def test_parse_checks_names_the_position_and_errors_are_rule_errors():
    with pytest.raises(CheckError, match=r"checks\[1\]: check row_count"):
        parse_checks([{"not_null": "a"}, {"row_count": {"min": -1}}])
    with pytest.raises(RuleError):
        parse_checks("not a list")
    assert parse_checks(None) == ()


def test_checks_round_trip_through_their_yaml_form(tmp_path):
    ref = profile_table(pa.table({"x": [1.0, 2.0, 3.0]}))
    path = tmp_path / "ref.json"
    path.write_text(ref.to_json())
    checks = parse_checks([
        {"not_null": {"column": "a", "tolerance": 0.1}}, {"unique": ["a", "b"]}, {"between": {"column": "a", "min": 0}},
        {"in_set": {"column": "c", "values": ["x", "y"]}}, {"regex": {"column": "c", "pattern": "[a-z]+"}},
        {"row_count": {"min": 1, "max": 9}}, {"freshness": {"column": "t", "max_age_s": 60, "unit": "s"}},
        {"drift": {"column": "x", "reference": str(path), "psi_max": 0.2, "ks_max": 0.1}},
        {"drift": {"column": "x", "reference": ref.to_dict(), "psi_max": 0.3}},
    ])
    again = parse_checks([c.to_dict() for c in checks])
    assert [c.to_dict() for c in again] == [c.to_dict() for c in checks]
    assert [str(c) for c in again] == [str(c) for c in checks]
    assert again[:7] == checks[:7]
    assert isinstance(checks[0], RuleCheck) and parse_check(NotNull("a")) == RuleCheck(NotNull("a"))


def test_gate_validates_samples_and_accepts_dicts():
    with pytest.raises(CheckError, match="samples must be an integer from 0 to 1000; got -1"):
        Gate([], samples=-1)
    gate = Gate([{"row_count": {"min": 1}}, RowCount(max=3)])
    assert [c.kind for c in gate.checks] == ["row_count", "row_count"]
    assert gate.to_list() == [{"row_count": {"min": 1}}, {"row_count": {"max": 3}}]


# -- errors on the data ---------------------------------------------------------------------------------------


def test_missing_column_names_the_check():
    with pytest.raises(CheckError, match=r"check amount: not_null: column 'amount' is not in the batch \(columns: x\)"):
        one({"not_null": "amount"}, pa.table({"x": [1]}))
    with pytest.raises(CheckError, match="column 'k' is not in the batch"):
        one({"unique": "k"}, pa.table({"x": [1]}))


def test_wrong_type_names_the_check_and_type():
    with pytest.raises(CheckError, match="check x: between 0 and 1: cannot run on this data \\(x is string\\)"):
        one({"between": {"column": "x", "min": 0, "max": 1}}, pa.table({"x": ["a"]}))


def test_finish_refuses_a_profile_of_other_rows():
    gate = Gate.parse([{"row_count": {"min": 1}}])
    acc = gate.accumulator().update(pa.table({"x": [1, 2]}))
    assert acc.finish(profile_table(pa.table({"x": [1, 2]}))).passed
    with pytest.raises(CheckError, match="profile counts 3 rows but the gate saw 2"):
        acc.finish(profile_table(pa.table({"x": [1, 2, 3]})))


def test_merging_accumulators_of_different_gates_is_refused():
    a = Gate.parse([{"row_count": {"min": 1}}]).accumulator()
    with pytest.raises(CheckError, match="different gates"):
        a.merge(Gate.parse([{"row_count": {"min": 2}}]).accumulator())


# -- merge equivalence, samples, reports ----------------------------------------------------------------------

GATE_SPECS = [
    {"not_null": {"column": "i", "tolerance": 0.05}},
    {"between": {"column": "f", "min": -100.0, "max": 100.0}},
    {"in_set": {"column": "s", "values": ["a", "b", "cc"]}},
    {"regex": {"column": "s", "pattern": "[a-c]+"}},
    {"unique": "i"},
    {"unique": ["i", "s"]},
    {"row_count": {"min": 5, "max": 80}},
    {"freshness": {"column": "t", "max_age_s": 1e6}},
]


@st.composite
def tables(draw) -> pa.Table:
    n = draw(st.integers(0, 100))
    ints = draw(st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=n, max_size=n))
    floats = draw(st.lists(st.one_of(st.none(), st.floats(-150, 150), st.just(math.nan)), min_size=n, max_size=n))
    strs = draw(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "cc", "x", "abc"])), min_size=n, max_size=n))
    ts = draw(st.lists(st.one_of(st.none(), st.integers(int(NOW_S - 2e6), int(NOW_S))), min_size=n, max_size=n))
    return pa.table({"i": pa.array(ints, pa.int64()), "f": pa.array(floats, pa.float64()), "s": pa.array(strs, pa.string()),
                     "t": pa.array(ts, pa.timestamp("s"))})


def comparable(report: GateReport) -> dict:
    """The report, less the unique checks' samples (which depend on where batches split)."""
    d = report.to_dict()
    for r in d["results"]:
        if r["kind"] == "unique":
            r["samples"] = len(r["samples"]) > 0
    return d


@SETTINGS
@given(tables(), st.lists(st.integers(0, 10**6), max_size=8), st.lists(st.integers(0, 50), max_size=8), st.integers(0, 4))
def test_any_split_and_merge_order_gives_the_same_report(table, cuts, order, samples):
    ref = profile_table(pa.table({"f": np.linspace(-100, 100, 500)}))
    gate = Gate([*parse_checks(GATE_SPECS), Drift("f", ref, psi_max=0.5, ks_max=0.3)], samples=samples)
    one_pass = gate.evaluate(table, now_s=NOW_S)
    bounds = [0, *sorted(c % (table.num_rows + 1) for c in cuts), table.num_rows]
    accs = [pickle.loads(pickle.dumps(gate.accumulator().update(table.slice(a, b - a)))) for a, b in zip(bounds[:-1], bounds[1:])]
    i = 0
    while len(accs) > 1:
        j = order[i % len(order)] % (len(accs) - 1) if order else 0
        a, b = accs.pop(j), accs.pop(j)
        accs.insert(j, a.merge(b))
        i += 1
    merged = accs[0].finish(now_s=NOW_S)
    assert comparable(merged) == comparable(one_pass)
    for r in merged.results:
        assert len(r.samples) <= samples
        if r.failing_rows is not None and r.kind != "unique":
            assert len(r.samples) == min(samples, r.failing_rows)


def test_samples_are_bounded_whatever_the_failures():
    n = 200_000
    gate = Gate.parse([{"not_null": "x"}, {"between": {"column": "y", "max": 0}}], samples=3)
    acc = gate.accumulator().update(pa.table({"x": pa.nulls(n, pa.int64()), "y": np.arange(n)}))
    assert len(pickle.dumps(acc)) < 10_000
    report = acc.finish()
    assert [r.failing_rows for r in report.results] == [n, n - 1]
    assert all(len(r.samples) == 3 for r in report.results)


def test_sample_values_are_json_values():
    t = pa.table({"x": pa.array([None], pa.int64()), "t": pa.array([dt.datetime(2024, 1, 2, 3, 4)], pa.timestamp("ms")),
                  "f": [math.inf], "d": pa.array([None], pa.decimal128(5, 2))})
    t = t.append_column("dec", pa.array([decimal.Decimal("1.00")], pa.decimal128(5, 2)))
    r = one({"not_null": "x"}, t)
    assert r.samples == ({"x": None, "t": "2024-01-02T03:04:00", "f": "inf", "d": None, "dec": "1.00"},)


def test_report_json_is_stable_documented_and_round_trips():
    ref = profile_table(pa.table({"x": [1.0, 2.0, 3.0]}))
    t = pa.table({"x": [1.0, None, 50.0], "t": pa.array([dt.datetime(2023, 11, 14, 22)] * 3, pa.timestamp("s"))})
    gate = Gate([*parse_checks([{"not_null": "x"}, {"row_count": {"min": 1}}, {"freshness": {"column": "t", "max_age_s": 60}}]),
                 Drift("x", ref, psi_max=0.1)])
    report = gate.evaluate(t, now_s=NOW_S)
    text = report.to_json()
    d = json.loads(text)
    assert list(d) == ["version", "passed", "rows", "checks", "failed", "results"]
    assert list(d["results"][0]) == ["check", "kind", "passed", "observed", "failing_rows", "failing_share", "tolerance",
                                     "message", "samples", "spec"]
    assert (d["passed"], d["rows"], d["checks"], d["failed"]) == (False, 3, 4, 3)
    assert GateReport.from_json(text) == report
    assert gate.evaluate(t, now_s=NOW_S).to_json() == text  # same data, same text
    assert [r.kind for r in report.failed] == ["not_null", "freshness", "drift"]


def test_text_table_has_each_check_and_verdict():
    t = pa.table({"amount": [5.0, -1.0, None], "currency": ["EUR", "XXX", "USD"]})
    report = run([{"between": {"column": "amount", "min": 0, "max": 10000}}, {"in_set": {"column": "currency", "values": ["EUR", "USD"]}},
                  {"row_count": {"min": 1}}], t)
    text = report.to_text()
    lines = text.splitlines()
    assert lines[0] == "quality gate FAILED: 2 of 3 checks failed on 3 rows"
    for i, r in enumerate(report.results, 1):
        row = next(line for line in lines if line.startswith(f"{i:>3}  "))
        assert r.check in row and ("pass" if r.passed else "FAIL") in row
    assert '{"amount": -1.0, "currency": "XXX"}' in text
    assert "3 rows" in lines[5]
    ok = run([{"row_count": {"min": 1}}], t).to_text()
    assert ok.startswith("quality gate passed: 0 of 1 checks failed") and "failed checks" not in ok


def test_report_result_lookup():
    report = run([{"not_null": "x"}, {"row_count": {"min": 1}}], pa.table({"x": [1]}))
    assert report.result("row_count").observed == 1 and report.result("x: not_null").passed
    with pytest.raises(KeyError, match="no check 'nope'"):
        report.result("nope")
