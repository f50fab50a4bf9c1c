"""ETL pipeline definitions: YAML parsing, eager validation naming the step, built-in transforms, round trips."""

from __future__ import annotations

import doctest
import pickle
import sys
import textwrap

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_ray.etl import pipeline as pipeline_module
from fabric_ray.etl import runs as runs_module
from fabric_ray.etl import sources as sources_module
from fabric_ray.etl import transforms as transforms_module
from fabric_ray.etl.pipeline import EtlPipeline, EtlPipelineError, ReadStep, TransformStep, WriteStep, function_modules, load_pipeline
from fabric_ray.etl.transforms import ExpressionError, compile_expression


@pytest.mark.parametrize("module", [pipeline_module, transforms_module, sources_module, runs_module])
def test_doctests_pass(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


BASE = {"name": "p", "read": {"path": "raw/*.parquet"}, "write": {"dataset": "out"}}


def with_(**changes):
    d = dict(BASE)
    d.update(changes)
    return d


# -- validation: every error names the pipeline and the step -------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (with_(extra=1), ["pipeline", "unknown key(s) ['extra']"]),
        ({"name": "p", "write": {"dataset": "d"}}, ["pipeline 'p'", "read is missing"]),
        (with_(name="bad name!"), ["pipeline name", "'bad name!'"]),
        (with_(read={"path": "a", "dataset": "b"}), ["pipeline 'p'", "exactly one of path, archive, dataset, kafka", "'path', 'dataset'"]),
        (with_(read={"path": "a", "format": "xml"}), ["read: format must be one of", "'xml'"]),
        (with_(read={"archive": {"pipeline": "x"}}), ["read.archive: topic must be a non-empty string"]),
        (with_(read={"kafka": {"topic": "t", "start_offset": 10, "end_offset": 5}}), ["read.kafka: end_offset 5 is before start_offset 10"]),
        (with_(read={"kafka": {"topic": "t", "start_offset": "latest"}}), ["read.kafka.start_offset", "'latest'"]),
        (with_(read={"kafka": {"topic": "t", "bootstrap": "x"}}), ["read.kafka: unknown key(s) ['bootstrap']"]),
        (with_(transforms=[{"filter": "a > 1"}, {"explode": "x"}]), ["pipeline 'p', transforms[2]", "'explode'"]),
        (with_(transforms=[{"filter": "a > 1", "select": ["a"]}]), ["transforms[1]", "exactly one of"]),
        (with_(transforms=[{"select": "a"}]), ["transforms[1] (select)", "list of column names"]),
        (with_(transforms=[{"filter": "a >"}]), ["transforms[1] (filter)", "'a >' is not valid"]),
        (with_(transforms=[{"filter": "__import__('os')"}]), ["transforms[1] (filter)", "unknown function"]),
        (with_(transforms=[{"derive": {"y": "x ** 2"}}]), ["transforms[1] (derive)", "operator not allowed"]),
        (with_(transforms=[{"derive": {"y": "x.real"}}]), ["transforms[1] (derive)", "not allowed"]),
        (with_(transforms=[{"cast": {"x": "integer64"}}]), ["transforms[1] (cast)", "unknown Arrow type 'integer64'"]),
        (with_(transforms=[{"rename": {"a": "c", "b": "c"}}]), ["transforms[1] (rename)", "distinct"]),
        (with_(transforms=[{"function": "no_such_module_xyz:fn"}]), ["transforms[1] (function)", "cannot import module 'no_such_module_xyz'"]),
        (with_(transforms=[{"function": "json:no_such_fn"}]), ["transforms[1] (function)", "has no 'no_such_fn'"]),
        (with_(transforms=[{"function": "json"}]), ["transforms[1] (function)", "'module:function'"]),
        (with_(write={"dataset": "d", "mode": "upsert"}), ["pipeline 'p', write: mode must be one of", "'upsert'"]),
        (with_(write={"dataset": "a/b"}), ["write: dataset must be a name", "'a/b'"]),
        (with_(write={"dataset": "d", "partitioning": {"type": "hashh"}}), ["write.partitioning", "'hashh' is unknown"]),
        (with_(write={"dataset": "d", "schema": {"x": "int"}, "key": ["y"]}), ["write: key/time_column ['y'] not in the declared schema"]),
        (with_(write={"dataset": "d", "schema": {"x": "decimal"}}), ["write.schema.x", "unknown Arrow type"]),
        (with_(checks={"not_null": "x"}), ["pipeline 'p', checks: expected a list"]),
    ],
)
def test_invalid_definitions_fail_at_once_naming_the_step(data, words):
    with pytest.raises(EtlPipelineError) as info:
        EtlPipeline.from_dict(data)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_format_comes_from_the_extension_unless_given():
    assert ReadStep.from_dict({"path": "a/b.csv"}).format == "csv"
    assert ReadStep.from_dict({"path": "a/*.jsonl"}).format == "json"
    assert ReadStep.from_dict({"path": "a/folder"}).format == "parquet"
    assert ReadStep.from_dict({"path": "a/x.txt", "format": "csv"}).format == "csv"


def test_kafka_offsets_accept_names_numbers_and_per_partition_maps():
    r = ReadStep.from_dict({"kafka": {"topic": "t", "start_offset": {1: 5, 0: 2}, "end_offset": 100}})
    assert r.start_offset == {0: 2, 1: 5} and r.end_offset == 100 and r.format == "json"
    assert r.describe() == "kafka t [{0: 2, 1: 5}, 100)"


# -- round trips -----------------------------------------------------------------------------------

FULL = {
    "name": "daily.payments-v2",
    "description": "clean payments",
    "read": {"kafka": {"topic": "payments", "start_offset": 0, "end_offset": "latest", "format": "json"}},
    "transforms": [
        {"filter": "amount > 0 and currency in ['EUR', 'USD']", "name": "positive"},
        {"derive": {"amount_cents": "round(amount * 100)", "big": "amount >= 1000"}},
        {"cast": {"amount_cents": "int64"}},
        {"rename": {"amount": "amount_eur"}},
        {"select": ["user_id", "amount_eur", "amount_cents", "big"]},
        {"function": {"ref": "fabric_ray.etl.transforms:apply_select", "kwargs": {"columns": ["user_id", "amount_eur"]}}},
    ],
    "write": {
        "dataset": "payments_clean",
        "mode": "overwrite",
        "partitioning": [{"type": "hash", "column": "user_id", "buckets": 4}],
        "schema": {"user_id": "int64", "amount_eur": "float64"},
        "key": ["user_id"],
    },
}


def test_a_pipeline_round_trips_through_its_dict_and_pickle():
    p = EtlPipeline.from_dict(FULL)
    again = EtlPipeline.from_dict(p.to_dict())
    assert again == p and again.to_dict() == p.to_dict()
    assert pickle.loads(pickle.dumps(p)) == p
    assert [t.label for t in p.transforms][0] == "transforms[1] (filter 'positive')"


def test_transforms_run_in_order_on_a_table():
    p = EtlPipeline.from_dict(FULL)
    table = pa.table({
        "user_id": [1, 2, 3, 4],
        "amount": [10.0, -5.0, 2000.0, 3.0],
        "currency": ["EUR", "EUR", "USD", "XXX"],
    })
    out = p.apply_transforms(table)
    assert out.to_pydict() == {"user_id": [1, 3], "amount_eur": [10.0, 2000.0]}
    no_fn = EtlPipeline.from_dict({**FULL, "transforms": FULL["transforms"][:-1]})
    assert no_fn.apply_transforms(table).to_pydict() == {
        "user_id": [1, 3], "amount_eur": [10.0, 2000.0], "amount_cents": [1000, 200000], "big": [False, True]
    }


def test_python_api_builds_the_same_pipeline_as_yaml():
    from fabric_ray.etl.transforms import apply_select

    p = EtlPipeline(
        "p",
        ReadStep.files("raw/*.parquet"),
        WriteStep("out"),
        (TransformStep.filter("a > 1"), TransformStep.function(apply_select, columns=["a"])),
    )
    q = EtlPipeline.from_dict(with_(transforms=[{"filter": "a > 1"}, {"function": {"ref": "fabric_ray.etl.transforms:apply_select", "kwargs": {"columns": ["a"]}}}]))
    assert p == q
    assert p.apply_transforms(pa.table({"a": [1, 2], "b": [0, 0]})).to_pydict() == {"a": [2]}


# -- run-time errors name the step ----------------------------------------------------------------


def test_a_missing_column_names_the_step_and_the_column():
    p = EtlPipeline.from_dict(with_(transforms=[{"filter": "a > 0"}, {"select": ["a", "nope"]}]))
    with pytest.raises(EtlPipelineError, match=r"transforms\[2\] \(select\): column\(s\) \['nope'\] not in the table"):
        p.apply_transforms(pa.table({"a": [1]}))
    q = EtlPipeline.from_dict(with_(transforms=[{"filter": "zz > 0"}]))
    with pytest.raises(EtlPipelineError, match=r"transforms\[1\] \(filter\): column 'zz' is not in the table"):
        q.apply_transforms(pa.table({"a": [1]}))


def test_an_unsafe_cast_raises():
    p = EtlPipeline.from_dict(with_(transforms=[{"cast": {"a": "int8"}}]))
    assert p.apply_transforms(pa.table({"a": [1, 2]})).schema.field("a").type == pa.int8()
    with pytest.raises(EtlPipelineError, match=r"transforms\[1\] \(cast\): ArrowInvalid: Integer value 1000 not in range") as info:
        p.apply_transforms(pa.table({"a": [1000]}))
    assert isinstance(info.value.__cause__, pa.ArrowInvalid)


def test_a_function_that_raises_is_named(tmp_path, monkeypatch):
    (tmp_path / "raising_mod_etl.py").write_text("def fn(t):\n    raise KeyError('amount_usd')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = EtlPipeline.from_dict(with_(transforms=[{"function": "raising_mod_etl:fn", "name": "convert"}]))
    with pytest.raises(EtlPipelineError, match=r"transforms\[1\] \(function 'convert'\): raising_mod_etl:fn raised KeyError: 'amount_usd'"):
        p.apply_transforms(pa.table({"a": [1]}))


def test_a_function_must_return_a_table(tmp_path, monkeypatch):
    (tmp_path / "bad_mod_etl.py").write_text("def fn(t):\n    return t.to_pydict()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = EtlPipeline.from_dict(with_(transforms=[{"function": "bad_mod_etl:fn"}]))
    with pytest.raises(EtlPipelineError, match=r"transforms\[1\] \(function\): bad_mod_etl:fn must return a pyarrow.Table; got dict"):
        p.apply_transforms(pa.table({"a": [1]}))


def test_a_filter_on_a_non_boolean_is_refused():
    p = EtlPipeline.from_dict(with_(transforms=[{"filter": "a + 1"}]))
    with pytest.raises(EtlPipelineError, match="must be true/false"):
        p.apply_transforms(pa.table({"a": [1]}))


# -- loading files --------------------------------------------------------------------------------


def test_load_pipeline_imports_modules_beside_the_file(tmp_path):
    (tmp_path / "my_etl_steps_x1.py").write_text(
        "import pyarrow.compute as pc\n\ndef double(t, factor=2):\n    return t.set_column(0, 'a', pc.multiply(t['a'], factor))\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""
        name: beside
        read: {path: raw/in.csv}
        transforms:
          - function: {ref: "my_etl_steps_x1:double", kwargs: {factor: 3}}
        write: {dataset: out}
    """))
    p = load_pipeline(path)
    assert str(tmp_path) not in sys.path  # the folder is only on the path while loading
    assert p.apply_transforms(pa.table({"a": [1, 2]})).to_pydict() == {"a": [3, 6]}
    assert [m.__name__ for m in function_modules(p)] == ["my_etl_steps_x1"]  # shipped to workers by value
    assert function_modules(EtlPipeline.from_dict(FULL)) == []  # fabric_ray's own functions are installed


def test_load_pipeline_names_the_file(tmp_path):
    with pytest.raises(EtlPipelineError, match="does not exist"):
        load_pipeline(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(EtlPipelineError, match="bad.yaml.*cannot be read"):
        load_pipeline(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: w\nread: {path: x}\nwrite: {dataset: d, mode: merge}\n")
    with pytest.raises(EtlPipelineError, match=r"wrong.yaml: pipeline 'w', write: mode"):
        load_pipeline(wrong)


def test_the_demo_pipeline_is_valid():
    from importlib import resources

    folder = resources.files("fabric_ray.demo") / "etl"
    p = load_pipeline(folder / "payments_daily.yaml")
    assert p.name == "payments_daily" and p.checks and p.transforms


# -- the expression language ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=1, max_size=30),
    st.integers(-50, 50).filter(lambda d: d != 0),
    st.sampled_from(["+", "-", "*", "//", "%", "/"]),
)
def test_arithmetic_matches_python(values, divisor, op):
    table = pa.table({"x": pa.array(values, pa.int64())})
    got = compile_expression(f"x {op} {divisor}")(table).to_pylist()
    want = [eval(f"v {op} {divisor}") for v in values]  # noqa: S307 - the reference is Python itself
    assert got == pytest.approx(want)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=1, max_size=30), st.integers(-5, 5), st.integers(-5, 5))
def test_filters_follow_sql_null_semantics(values, lo, hi):
    table = pa.table({"x": pa.array(values, pa.int64())})
    p = TransformStep.filter(f"{lo} <= x < {hi} or x is None")
    kept = p.apply(table)["x"].to_pylist()
    assert kept == [v for v in values if v is None or lo <= v < hi]
    q = TransformStep.filter(f"not (x in [{lo}, {hi}])")
    assert q.apply(table)["x"].to_pylist() == [v for v in values if v is not None and v not in (lo, hi)]


def test_string_functions_and_coalesce():
    t = pa.table({"s": ["Ab", None, "cde"], "n": [None, 2.0, 3.0]})
    assert compile_expression("length(lower(s))")(t).to_pylist() == [2, None, 3]
    assert compile_expression("coalesce(n, -1.0)")(t).to_pylist() == [-1.0, 2.0, 3.0]
    assert compile_expression("upper(col('s')) == 'AB'")(t).to_pylist() == [True, None, False]
    with pytest.raises(ExpressionError, match="col\\(\\) takes one quoted column name"):
        compile_expression("col(s)")


# -- checks ---------------------------------------------------------------------------------------


def test_checks_parse_into_the_gate_and_bad_ones_name_their_position():
    p = EtlPipeline.from_dict(with_(checks=[{"not_null": "a"}, {"unique": "a"}, {"row_count": {"min": 1}}]))
    report = p.gate().evaluate(pa.table({"a": [1, 1, None]}))
    assert not report.passed
    assert [r.kind for r in report.failed] == ["not_null", "unique"]
    assert EtlPipeline.from_dict(p.to_dict()) == p
    with pytest.raises(EtlPipelineError, match=r"pipeline 'p', checks\[2\]: unknown check 'row_cnt'"):
        EtlPipeline.from_dict(with_(checks=[{"not_null": "a"}, {"row_cnt": {"min": 1}}]))
    with pytest.raises(EtlPipelineError, match=r"checks\[1\].*between"):
        EtlPipeline.from_dict(with_(checks=[{"between": {"column": "a", "min": 5, "max": 1}}]))
