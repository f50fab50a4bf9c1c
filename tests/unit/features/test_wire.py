"""fabric_ray.features.wire: Feast's /get-online-features request and response format."""

from __future__ import annotations

import json
import re

import pytest

from fabric_ray.demo.payments import USER_PAYMENTS
from fabric_ray.features.cache import Lookup
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.features.wire import MAX_ENTITIES, OnlineRequest, RequestError, build_response, parse_request

MERCHANT = FeatureView("merchant_stats", Entity("merchant", "merchant_id", "string"), (Feature("risk", "float64"),))
USER_EXTRA = FeatureView("user_extra", Entity("user", "user_id"), (Feature("age_days", "int64"), Feature("vip", "bool")))
VIEWS = {"user_payments": USER_PAYMENTS, "merchant_stats": MERCHANT, "user_extra": USER_EXTRA}


def body(**changes) -> dict:
    b = {"features": ["user_payments:txn_count", "user_payments:amount_sum"], "entities": {"user_id": [1, 2]}}
    b.update(changes)
    return {k: v for k, v in b.items() if v is not ...}


def refuse(b, status: int) -> str:
    with pytest.raises(RequestError) as err:
        parse_request(b, VIEWS)
    assert err.value.status == status
    assert isinstance(err.value, ValueError)
    return str(err.value)


# -- parse_request: accepted -------------------------------------------------------------------
def test_parse_a_valid_request():
    r = parse_request(body(), VIEWS)
    assert r == OnlineRequest("user_id", [1, 2], [("user_payments", "txn_count"), ("user_payments", "amount_sum")], False)


def test_parse_keeps_order_and_groups_by_view():
    r = parse_request(
        body(features=["user_extra:vip", "user_payments:txn_count", "user_extra:age_days"], entities={"user_id": [3, 1, 3]}),
        VIEWS,
    )
    assert r.keys == [3, 1, 3]
    assert r.refs == [("user_extra", "vip"), ("user_payments", "txn_count"), ("user_extra", "age_days")]
    assert r.by_view() == {"user_extra": ["vip", "age_days"], "user_payments": ["txn_count"]}


def test_parse_full_feature_names():
    assert parse_request(body(full_feature_names=True), VIEWS).full_feature_names is True
    assert parse_request(body(full_feature_names=False), VIEWS).full_feature_names is False


def test_parse_string_keys():
    r = parse_request({"features": ["merchant_stats:risk"], "entities": {"merchant_id": ["m1", "m2"]}}, VIEWS)
    assert (r.join_key, r.keys) == ("merchant_id", ["m1", "m2"])


def test_parse_accepts_the_maximum_number_of_entities():
    assert len(parse_request(body(entities={"user_id": list(range(MAX_ENTITIES))}), VIEWS).keys) == MAX_ENTITIES


def test_parse_accepts_a_json_decoded_body():
    raw = '{"features": ["user_payments:txn_count"], "entities": {"user_id": [7]}, "full_feature_names": true}'
    r = parse_request(json.loads(raw), VIEWS)
    assert r.keys == [7] and r.full_feature_names


# -- parse_request: every refusal ---------------------------------------------------------------
@pytest.mark.parametrize(("b", "kind"), [([], "list"), ("x", "str"), (None, "NoneType"), (3, "int")])
def test_body_must_be_an_object(b, kind):
    assert refuse(b, 400) == f"request body must be a JSON object, got {kind}"


def test_unknown_request_fields_are_named():
    msg = refuse(body(project="x", entity_rows=[]), 400)
    assert "unknown request fields ['entity_rows', 'project']" in msg


def test_feature_service_is_404_and_named():
    msg = refuse({"feature_service": "fraud_v1", "entities": {"user_id": [1]}}, 404)
    assert "'fraud_v1'" in msg and "feature service" in msg


@pytest.mark.parametrize("features", [..., [], "user_payments:txn_count", None, {"a": 1}])
def test_features_must_be_a_non_empty_list(features):
    msg = refuse(body(features=features), 400)
    assert msg == "'features' must be a non-empty list of 'view:feature' strings"


@pytest.mark.parametrize("ref", ["txn_count", "a:b:c", 5, None, ["user_payments:txn_count"]])
def test_feature_reference_shape_is_checked(ref):
    msg = refuse(body(features=["user_payments:txn_count", ref]), 400)
    assert msg == f"feature reference {ref!r} must look like 'view:feature'"


def test_unknown_view_is_404_naming_it_and_the_known_views():
    msg = refuse(body(features=["user_paymnts:txn_count"]), 404)
    assert "unknown feature view 'user_paymnts'" in msg
    assert "'user_paymnts:txn_count'" in msg
    assert "['merchant_stats', 'user_extra', 'user_payments']" in msg


def test_unknown_feature_is_404_naming_it_and_the_views_features():
    msg = refuse(body(features=["user_payments:txn_cnt"]), 404)
    assert "feature view 'user_payments' has no feature 'txn_cnt'" in msg
    assert "'txn_count'" in msg and "'amount_sum_1m'" in msg


def test_features_of_different_entities_are_refused():
    msg = refuse(body(features=["user_payments:txn_count", "merchant_stats:risk"]), 400)
    assert "features must share one entity" in msg and "['merchant_id', 'user_id']" in msg


@pytest.mark.parametrize("entities", [..., [], {}, "user_id", None])
def test_entities_must_be_a_non_empty_object(entities):
    msg = refuse(body(entities=entities), 400)
    assert msg == "'entities' must be an object like {'user_id': [values]}"


@pytest.mark.parametrize("entities", [{"customer_id": [1]}, {"user_id": [1], "merchant_id": ["m"]}])
def test_entities_must_hold_exactly_the_join_key(entities):
    msg = refuse(body(entities=entities), 400)
    assert msg.startswith("'entities' must hold exactly the join key 'user_id'; got ")
    assert repr(sorted(entities)) in msg


@pytest.mark.parametrize("keys", [[], 1, "1", None, {"a": 1}])
def test_entity_values_must_be_a_non_empty_list(keys):
    assert refuse(body(entities={"user_id": keys}), 400) == "entities.user_id must be a non-empty list"


def test_too_many_entities_is_413():
    msg = refuse(body(entities={"user_id": list(range(MAX_ENTITIES + 1))}), 413)
    assert f"has {MAX_ENTITIES + 1} values; at most {MAX_ENTITIES}" in msg and "entities.user_id" in msg


@pytest.mark.parametrize(("value", "shown"), [("1", "'1'"), (1.5, "1.5"), (True, "True"), (None, "None"), ([1], "[1]")])
def test_entity_value_type_is_checked_naming_its_position(value, shown):
    msg = refuse(body(entities={"user_id": [1, 2, value]}), 400)
    assert msg == f"entities.user_id[2]: expected int64, got {shown}"


def test_string_entity_refuses_numbers():
    msg = refuse({"features": ["merchant_stats:risk"], "entities": {"merchant_id": ["m1", 2]}}, 400)
    assert msg == "entities.merchant_id[1]: expected string, got 2"


@pytest.mark.parametrize(("value", "shown"), [("true", "'true'"), (1, "1"), (None, "None")])
def test_full_feature_names_must_be_a_bool(value, shown):
    assert refuse(body(full_feature_names=value), 400) == f"'full_feature_names' must be true or false, got {shown}"


def test_request_error_defaults_to_400():
    assert RequestError("x").status == 400
    assert RequestError("x", 404).status == 404


# -- build_response -----------------------------------------------------------------------------
def lookup(values: dict, statuses: dict, event_ms: list) -> Lookup:
    return Lookup(values, statuses, event_ms)


ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_build_response_in_feast_format():
    req = parse_request(body(features=["user_payments:amount_sum", "user_payments:txn_count"], entities={"user_id": [1, 2, 3]}), VIEWS)
    lk = lookup(
        {"amount_sum": [10.5, None, 3.0], "txn_count": [2, None, 1]},
        {"amount_sum": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"], "txn_count": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"]},
        [1_795_660_000_000, None, 0],
    )
    resp = build_response(req, {"user_payments": lk})
    assert resp == {
        "metadata": {"feature_names": ["user_id", "amount_sum", "txn_count"]},
        "results": [
            {"values": [1, 2, 3], "statuses": ["PRESENT"] * 3, "event_timestamps": ["1970-01-01T00:00:00Z"] * 3},
            {
                "values": [10.5, None, 3.0],
                "statuses": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"],
                "event_timestamps": ["2026-11-26T02:26:40Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"],
            },
            {
                "values": [2, None, 1],
                "statuses": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"],
                "event_timestamps": ["2026-11-26T02:26:40Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"],
            },
        ],
    }
    json.dumps(resp)  # serializable as is


def test_build_response_full_feature_names_and_several_views():
    req = parse_request(
        body(features=["user_extra:vip", "user_payments:txn_count"], entities={"user_id": [5]}, full_feature_names=True), VIEWS
    )
    resp = build_response(
        req,
        {
            "user_payments": lookup({"txn_count": [4]}, {"txn_count": ["PRESENT"]}, [1_500]),
            "user_extra": lookup({"vip": [True]}, {"vip": ["PRESENT"]}, [86_400_000 + 999]),
        },
    )
    assert resp["metadata"]["feature_names"] == ["user_id", "user_extra__vip", "user_payments__txn_count"]
    assert resp["results"][1] == {"values": [True], "statuses": ["PRESENT"], "event_timestamps": ["1970-01-02T00:00:00Z"]}
    assert resp["results"][2] == {"values": [4], "statuses": ["PRESENT"], "event_timestamps": ["1970-01-01T00:00:01Z"]}


def test_build_response_timestamps_are_iso_utc_with_z():
    req = parse_request(body(features=["user_payments:txn_count"], entities={"user_id": [1, 2]}), VIEWS)
    resp = build_response(req, {"user_payments": lookup({"txn_count": [1, 1]}, {"txn_count": ["PRESENT"] * 2}, [1_700_000_000_123, 5])})
    stamps = resp["results"][1]["event_timestamps"]
    assert stamps == ["2023-11-14T22:13:20Z", "1970-01-01T00:00:00Z"]
    assert all(ISO_Z.match(s) for s in stamps + resp["results"][0]["event_timestamps"])


def test_build_response_join_key_column_has_one_entry_per_key():
    keys = list(range(50))
    req = parse_request(body(features=["user_payments:txn_count"], entities={"user_id": keys}), VIEWS)
    resp = build_response(req, {"user_payments": lookup({"txn_count": [None] * 50}, {"txn_count": ["NOT_FOUND"] * 50}, [None] * 50)})
    first, second = resp["results"]
    assert first["values"] == keys and len(first["statuses"]) == len(first["event_timestamps"]) == 50
    assert second["event_timestamps"] == ["1970-01-01T00:00:00Z"] * 50
    assert second["statuses"] == ["NOT_FOUND"] * 50


def test_feast_clients_version_metadata_flag_is_accepted():
    from fabric_ray.demo.payments import USER_PAYMENTS
    from fabric_ray.features.wire import parse_request

    body = {
        "features": ["user_payments:txn_count"],
        "entities": {"user_id": [1]},
        "full_feature_names": False,
        "include_feature_view_version_metadata": False,
    }
    assert parse_request(body, {"user_payments": USER_PAYMENTS}).keys == [1]
