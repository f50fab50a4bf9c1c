"""The quality rule vocabulary: construction checks, vectorized masks, null semantics, YAML round trips."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_ray.quality import rules as rules_module
from fabric_ray.quality.rules import Between, InSet, NotNull, Regex, RuleError, Unique, parse_rule, parse_rules


def test_doctests_pass():
    result = doctest.testmod(rules_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- masks and null semantics ---------------------------------------------------------------------


def test_not_null_flags_nulls_but_not_nan():
    t = pa.table({"x": pa.array([1.0, None, math.nan, 2.0])})
    assert NotNull("x").failures(t).tolist() == [False, True, False, False]


def test_not_null_without_nulls_is_all_false_and_numpy():
    mask = NotNull("x").failures(pa.table({"x": [1, 2, 3]}))
    assert isinstance(mask, np.ndarray) and mask.dtype == bool and not mask.any()


def test_between_inclusive_exclusive_open_and_nulls():
    t = pa.table({"x": pa.array([-1, 0, 5, 10, 11, None])})
    assert Between("x", 0, 10).failures(t).tolist() == [True, False, False, False, True, False]
    assert Between("x", 0, 10, min_inclusive=False, max_inclusive=False).failures(t).tolist() == [
        True, True, False, True, True, False
    ]
    assert Between("x", min=0).failures(t).tolist() == [True, False, False, False, False, False]
    assert Between("x", max=5).failures(t).tolist() == [False, False, False, True, True, False]


def test_between_nan_is_out_of_range():
    t = pa.table({"x": [1.0, math.nan]})
    assert Between("x", 0, 10).failures(t).tolist() == [False, True]


def test_between_float_bounds_on_int_column():
    t = pa.table({"x": pa.array([0, 1, 2], pa.int32())})
    assert Between("x", 0.5, 1.5).failures(t).tolist() == [True, False, True]


def test_in_set_text_numbers_and_nulls():
    t = pa.table({"c": ["EUR", "usd", None, "USD"], "n": pa.array([1, 2, None, 3], pa.int64())})
    assert InSet("c", ["EUR", "USD"]).failures(t).tolist() == [False, True, False, False]
    assert InSet("n", [1, 3]).failures(t).tolist() == [False, True, False, False]


def test_regex_is_a_full_match_and_nulls_pass():
    t = pa.table({"c": ["4000123412341234", "40001234123412345", "x4000123412341234", "", None]})
    assert Regex("c", "[0-9]{16}").failures(t).tolist() == [False, True, True, True, False]
    # An alternation must not escape the anchors.
    assert Regex("c", "4.*|x").failures(pa.table({"c": ["4a", "xy", "x"]})).tolist() == [False, True, False]


def test_unique_flags_later_occurrences_within_the_batch_only():
    t = pa.table({"k": ["a", "b", "a", None, None, "a", "c"]})
    assert Unique("k").failures(t).tolist() == [False, False, True, False, False, True, False]


def test_unique_on_several_columns_and_null_keys():
    t = pa.table({"a": [1, 1, 1, 1, None, None], "b": ["x", "y", "x", None, "x", "x"]})
    assert Unique(["a", "b"]).failures(t).tolist() == [False, False, True, False, False, False]


def test_rules_work_on_record_batches_and_chunked_columns():
    batch = pa.record_batch({"x": [1, None, 30]})
    assert Between("x", 0, 10).failures(batch).tolist() == [False, False, True]
    chunked = pa.Table.from_batches([batch, batch])
    assert Between("x", 0, 10).failures(chunked).tolist() == [False, False, True] * 2
    assert Unique("x").failures(chunked).tolist() == [False, False, False, True, False, True]
    assert NotNull("x").failures(chunked).tolist() == [False, True, False] * 2


def test_empty_batch_gives_empty_mask():
    t = pa.table({"x": pa.array([], pa.int64())})
    for rule in (NotNull("x"), Between("x", 0, 1), InSet("x", [1]), Unique("x")):
        assert rule.failures(t).tolist() == []


def test_missing_column_names_the_rule_and_the_columns():
    with pytest.raises(RuleError, match=r"rule amount: between 0 and 1: column 'amount' is not in the batch \(columns: x\)"):
        Between("amount", 0, 1).failures(pa.table({"x": [1]}))


def test_wrong_column_type_raises_arrow_error():
    with pytest.raises(pa.ArrowException):
        Between("x", 0, 1).failures(pa.table({"x": ["a"]}))
    with pytest.raises(pa.ArrowException):
        Regex("x", "a").failures(pa.table({"x": [1]}))


def test_reasons_name_the_rule_and_the_value():
    t = pa.table({"amount": [1.0, -5.0, 20000.0], "c": ["EUR", "XXX", None]})
    assert Between("amount", 0, 10000).reasons(t, np.array([1])) == ["amount: between 0 and 10000 failed (got -5.0)"]
    assert InSet("c", ["EUR"]).reasons(t, np.array([1])) == ["c: in_set ['EUR'] failed (got 'XXX')"]
    assert NotNull("c").reasons(t, np.array([2])) == ["c: not_null failed (got null)"]
    t2 = pa.table({"a": [1, 1], "b": ["x", "x"]})
    assert Unique(["a", "b"]).reasons(t2, np.array([1])) == ["(a, b): unique failed (got (1, 'x') again)"]


def test_tolerance_is_the_gates_verdict_and_never_hides_rows():
    rule = NotNull("x", tolerance=0.25)
    t = pa.table({"x": [1, None, 3, 4]})
    assert rule.failures(t).sum() == 1
    assert rule.within_tolerance(1, 4) and not rule.within_tolerance(2, 4)
    assert NotNull("x").within_tolerance(0, 0) and not NotNull("x").within_tolerance(1, 1000)


# -- construction checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Between("x", 10, 0), "rule between on 'x': min 10 is greater than max 0"),
        (lambda: Between("x", 1, 1, min_inclusive=False), "admits no value"),
        (lambda: Between("x"), "rule between on 'x': needs min, max or both"),
        (lambda: Between("x", "0", 1), "rule between on 'x': min must be a finite number; got '0'"),
        (lambda: Between("x", 0, math.inf), "max must be a finite number"),
        (lambda: Between("x", True, 2), "min must be a finite number; got True"),
        (lambda: Between("x", 0, 1, min_inclusive="no"), "min_inclusive must be true or false"),
        (lambda: InSet("c", []), "rule in_set on 'c': values must be a non-empty list"),
        (lambda: InSet("c", ["a", None]), "null is not a value"),
        (lambda: InSet("c", ["a", 1]), "values mix number and text"),
        (lambda: InSet("c", [[1]]), "values must be text, finite numbers or booleans"),
        (lambda: Regex("c", "("), r"rule regex on 'c': invalid pattern '\('"),
        (lambda: Regex("c", r"(a)\1"), "not supported by RE2"),
        (lambda: Regex("c", 3), "pattern must be text"),
        (lambda: Unique([]), "rule unique: needs one column or a non-empty list"),
        (lambda: Unique(["a", "a"]), "a column is listed twice"),
        (lambda: NotNull(""), "rule not_null: column must be a non-empty string"),
        (lambda: NotNull("x", tolerance=1.5), "rule not_null: tolerance must be a number from 0 to 1; got 1.5"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(make, message):
    with pytest.raises(RuleError, match=message):
        make()


def test_rules_are_immutable_and_hashable():
    rule = InSet("c", ["EUR", "USD"])
    with pytest.raises(AttributeError):
        rule.column = "d"  # type: ignore[misc]
    assert rule == InSet("c", ("EUR", "USD")) and hash(rule) == hash(InSet("c", ("EUR", "USD")))
    assert issubclass(RuleError, ValueError)


def test_in_set_label_is_shortened_for_long_sets():
    rule = InSet("n", list(range(20)))
    assert str(rule) == "n: in_set [0, 1, 2, 3, 4, 5, 6, 7, ... 12 more]"


# -- YAML forms -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"not_null": "user_id"},
        {"not_null": {"column": "user_id", "tolerance": 0.01}},
        {"unique": "event_id"},
        {"unique": {"columns": ["a", "b"]}},
        {"unique": {"columns": ["a"], "tolerance": 0.5}},
        {"between": {"column": "amount", "min": 0, "max": 10000}},
        {"between": {"column": "amount", "min": 0, "min_inclusive": False}},
        {"between": {"column": "amount", "max": 1.5, "max_inclusive": False}},
        {"in_set": {"column": "currency", "values": ["EUR", "USD"]}},
        {"regex": {"column": "email", "pattern": "[^@]+@[^@]+"}},
    ],
)
def test_rules_print_back_to_the_yaml_they_came_from(spec):
    rule = parse_rule(spec)
    assert rule.to_dict() == spec
    assert parse_rule(rule.to_dict()) == rule


def test_long_and_short_forms_agree():
    assert parse_rule({"not_null": {"column": "x"}}) == parse_rule({"not_null": "x"}) == NotNull("x")
    assert parse_rule({"unique": {"column": "x"}}) == parse_rule({"unique": ["x"]}) == Unique("x")
    assert parse_rule(NotNull("x")) == NotNull("x")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"betwen": {"column": "x"}}, r"unknown rule 'betwen' \(did you mean 'between'\?\)"),
        ({"zzz": 1}, "unknown rule 'zzz'; known rules: not_null, unique, between, in_set, regex"),
        ({"between": {"column": "x", "maxx": 1}}, "rule between: unknown key 'maxx'; expected column, min, max"),
        ({"in_set": {"column": "x"}}, "rule in_set: missing values"),
        ({"in_set": {"column": "x", "values": "EUR"}}, "rule in_set on 'x': values must be a non-empty list; got 'EUR'"),
        ({"regex": "x"}, "rule regex: expected a mapping of arguments"),
        ({"unique": {"column": "a", "columns": ["b"]}}, "give either column or columns"),
        ({"not_null": "a", "unique": "b"}, "a rule is a mapping with one key"),
        ("not_null", "a rule is a mapping with one key"),
    ],
)
def test_bad_yaml_names_the_rule_and_key(spec, message):
    with pytest.raises(RuleError, match=message):
        parse_rule(spec)


def test_parse_rules_names_the_position():
    with pytest.raises(RuleError, match=r"rules\[1\]: rule between on 'x': min 2 is greater than max 1"):
        parse_rules([{"not_null": "x"}, {"between": {"column": "x", "min": 2, "max": 1}}])
    assert parse_rules(None) == ()
    with pytest.raises(RuleError, match="rules must be a list"):
        parse_rules({"not_null": "x"})


# -- property: masks agree with a plain Python reading of the rule --------------------------------


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64)), max_size=40),
    lo=st.floats(-100, 100),
    width=st.floats(0, 100),
    lo_inc=st.booleans(),
    hi_inc=st.booleans(),
)
def test_between_matches_python(values, lo, width, lo_inc, hi_inc):
    hi = lo + width
    if lo == hi and not (lo_inc and hi_inc):
        return
    rule = Between("x", lo, hi, min_inclusive=lo_inc, max_inclusive=hi_inc)

    def fails(v):
        if v is None:
            return False
        above = v >= lo if lo_inc else v > lo
        below = v <= hi if hi_inc else v < hi
        return not (above and below)

    assert rule.failures(pa.table({"x": pa.array(values, pa.float64())})).tolist() == [fails(v) for v in values]


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.integers(0, 5)), max_size=40))
def test_unique_matches_python(values):
    seen, expected = set(), []
    for v in values:
        expected.append(v is not None and v in seen)
        if v is not None:
            seen.add(v)
    assert Unique("k").failures(pa.table({"k": pa.array(values, pa.int64())})).tolist() == expected
