"""fabric_ray.features.definitions: immutable, validated entities, features and views."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from fabric_ray.features.definitions import Entity, Feature, FeatureView

USER = Entity("user", "user_id")


def view(*features: Feature, **kw) -> FeatureView:
    return FeatureView("v", USER, features or (Feature("n", "int64"),), **kw)


@pytest.mark.parametrize(
    ("dtype", "arrow"), [("int64", pa.int64()), ("float64", pa.float64()), ("string", pa.string()), ("bool", pa.bool_())]
)
def test_entity_arrow_type(dtype, arrow):
    assert Entity("e", "k", dtype).arrow_type == arrow


def test_entity_default_dtype_is_int64():
    assert USER.dtype == "int64" and USER.arrow_type == pa.int64()


@pytest.mark.parametrize("name", ["", "1user", "user-id", "user id", "user:id", "usér"])
def test_entity_name_must_be_an_identifier(name):
    with pytest.raises(ValueError, match=f"entity name {name!r} must be an identifier"):
        Entity(name, "k")


@pytest.mark.parametrize("key", ["", "user-id", "9"])
def test_entity_join_key_must_be_an_identifier(key):
    with pytest.raises(ValueError, match=f"entity 'user' join key name {key!r} must be an identifier"):
        Entity("user", key)


def test_entity_dtype_must_be_known():
    with pytest.raises(ValueError, match=r"entity 'user': dtype must be one of \['bool', 'float64', 'int64', 'string'\]; got 'int32'"):
        Entity("user", "user_id", "int32")


@pytest.mark.parametrize("name", ["_private", "A", "a1_b2"])
def test_identifiers_are_accepted(name):
    assert Feature(name, "int64").name == name
    assert Entity(name, name).name == name


def test_feature_name_and_dtype_are_checked():
    with pytest.raises(ValueError, match="feature name 'txn-count' must be an identifier"):
        Feature("txn-count", "int64")
    with pytest.raises(ValueError, match="feature 'n': dtype must be one of .*; got 'decimal'"):
        Feature("n", "decimal")


@pytest.mark.parametrize("kind", ["feature", "entity", "view"])
def test_a_trailing_newline_is_not_an_identifier(kind):
    with pytest.raises(ValueError, match="must be an identifier"):
        if kind == "feature":
            Feature("txn_count\n", "int64")
        elif kind == "entity":
            Entity("user\n", "user_id")
        else:
            FeatureView("v\n", USER, (Feature("n", "int64"),))


def test_view_feature_names_in_order():
    v = view(Feature("b", "int64"), Feature("a", "float64"), Feature("c", "string"))
    assert v.feature_names == ("b", "a", "c")
    assert v.ttl_s is None


def test_view_name_must_be_an_identifier():
    with pytest.raises(ValueError, match="feature view name 'user:payments' must be an identifier"):
        FeatureView("user:payments", USER, (Feature("n", "int64"),))


def test_view_needs_features():
    with pytest.raises(ValueError, match="feature view 'v' has no features"):
        FeatureView("v", USER, ())


def test_view_rejects_duplicate_features():
    with pytest.raises(ValueError, match=r"feature view 'v': duplicate features \['a', 'b'\]"):
        view(Feature("a", "int64"), Feature("b", "int64"), Feature("a", "float64"), Feature("b", "bool"))


def test_view_rejects_a_feature_named_like_the_join_key():
    with pytest.raises(ValueError, match="feature view 'v': feature name 'user_id' clashes with the join key"):
        view(Feature("user_id", "int64"))


def test_definitions_are_frozen_and_hashable():
    f = Feature("n", "int64")
    v = view(f)
    for obj, attr in ((USER, "name"), (f, "dtype"), (v, "ttl_s")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, "x")
    assert hash(v) == hash(view(Feature("n", "int64")))
    assert v == view(Feature("n", "int64"))
    assert v != view(Feature("n", "int64"), ttl_s=5)
