"""fabric_ray.features.wire (Feast's HTTP wire format) and the read/push plan of fabric_ray.features.client."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pytest

from fabric_ray.demo.payments import USER_PAYMENTS
from fabric_ray.features.cache import FeatureCache, Lookup
from fabric_ray.features.catalog import BatchSource, Catalog, FeatureService, PushSource
from fabric_ray.features.client import assemble, check_push_target, plan_online, plan_push
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.features.routing import shard_of
from fabric_ray.features.wire import (
    MAX_ENTITIES,
    OnlineRequest,
    RequestError,
    build_response,
    error_content,
    parse_push,
    parse_request,
    parse_write,
)

MERCHANT = FeatureView("merchant_stats", Entity("merchant", "merchant_id", "string"), (Feature("risk", "float64"), Feature("txn_count", "int64")))
USER_EXTRA = FeatureView("user_extra", Entity("user", "user_id"), (Feature("age_days", "int64"), Feature("vip", "bool")))
VIEWS = {"user_payments": USER_PAYMENTS, "merchant_stats": MERCHANT, "user_extra": USER_EXTRA}
CATALOG = Catalog.of(
    VIEWS.values(),
    services=[
        FeatureService("fraud", (("user_payments", "txn_count"), ("merchant_stats", "risk"), ("user_extra", "vip"))),
        FeatureService("clash", (("user_payments", "txn_count"), ("merchant_stats", "txn_count"))),
    ],
    push_sources=[PushSource("user_push", ("user_payments",)), PushSource("both_push", ("user_payments", "user_extra"))],
    batch_sources={"user_extra": BatchSource("file:///data/features/user_extra", "day_ts")},
)


def body(**changes) -> dict:
    b = {"features": ["user_payments:txn_count", "user_payments:amount_sum"], "entities": {"user_id": [1, 2]}}
    b.update(changes)
    return {k: v for k, v in b.items() if v is not ...}


def refuse(b, status: int, *, parse=parse_request, **kwargs) -> str:
    with pytest.raises(RequestError) as err:
        parse(b, CATALOG, **kwargs)
    assert err.value.status == status, str(err.value)
    assert isinstance(err.value, ValueError)
    return str(err.value)


# -- parse_request: accepted -------------------------------------------------------------------
def test_parse_a_valid_request():
    r = parse_request(body(), CATALOG)
    assert r == OnlineRequest(
        {"user_id": [1, 2]}, [("user_payments", "txn_count"), ("user_payments", "amount_sum")], {"user_payments": "user_id"}, False
    )
    assert r.rows == 2 and r.keys_of("user_payments") == [1, 2]


def test_a_plain_mapping_of_views_works_as_the_catalog():
    assert parse_request(body(), VIEWS).refs == [("user_payments", "txn_count"), ("user_payments", "amount_sum")]


def test_parse_keeps_order_and_groups_by_view():
    r = parse_request(
        body(features=["user_extra:vip", "user_payments:txn_count", "user_extra:age_days"], entities={"user_id": [3, 1, 3]}),
        CATALOG,
    )
    assert r.entities == {"user_id": [3, 1, 3]}
    assert r.refs == [("user_extra", "vip"), ("user_payments", "txn_count"), ("user_extra", "age_days")]
    assert r.by_view() == {"user_extra": ["vip", "age_days"], "user_payments": ["txn_count"]}


def test_parse_a_feature_service_spanning_two_entities():
    r = parse_request({"feature_service": "fraud", "entities": {"merchant_id": ["m1", "m2"], "user_id": [1, 2]}}, CATALOG)
    assert r.refs == [("user_payments", "txn_count"), ("merchant_stats", "risk"), ("user_extra", "vip")]
    assert list(r.entities) == ["merchant_id", "user_id"]  # the request's order, which the response keeps
    assert r.keys_of("merchant_stats") == ["m1", "m2"] and r.keys_of("user_extra") == [1, 2]


def test_feast_clients_send_an_empty_feature_list_beside_a_service():
    r = parse_request({"feature_service": "fraud", "features": [], "entities": {"user_id": [1], "merchant_id": ["m"]}}, CATALOG)
    assert len(r.refs) == 3


def test_parse_features_of_two_entities():
    r = parse_request({"features": ["merchant_stats:risk", "user_payments:txn_count"], "entities": {"user_id": [1], "merchant_id": ["m"]}}, CATALOG)
    assert r.join_keys == {"merchant_stats": "merchant_id", "user_payments": "user_id"}


def test_parse_full_feature_names():
    assert parse_request(body(full_feature_names=True), CATALOG).full_feature_names is True
    assert parse_request(body(full_feature_names=False), CATALOG).full_feature_names is False


def test_same_feature_name_in_two_views_is_fine_with_full_names():
    r = parse_request({"feature_service": "clash", "entities": {"user_id": [1], "merchant_id": ["m"]}, "full_feature_names": True}, CATALOG)
    assert r.feature_names() == ["user_payments__txn_count", "merchant_stats__txn_count"]


def test_parse_accepts_the_maximum_number_of_entities_and_a_configured_limit():
    assert parse_request(body(entities={"user_id": list(range(MAX_ENTITIES))}), CATALOG).rows == MAX_ENTITIES
    assert parse_request(body(entities={"user_id": [1, 2, 3]}), CATALOG, max_entities=3).rows == 3


def test_parse_accepts_a_json_decoded_body_and_the_version_flag():
    raw = '{"features": ["user_payments:txn_count"], "entities": {"user_id": [7]}, "full_feature_names": true, "include_feature_view_version_metadata": false}'
    r = parse_request(json.loads(raw), CATALOG)
    assert r.entities == {"user_id": [7]} and r.full_feature_names


def test_int64_keys_at_the_limits():
    assert parse_request(body(entities={"user_id": [-(2**63), 2**63 - 1]}), CATALOG).rows == 2


# -- parse_request: every refusal ---------------------------------------------------------------
@pytest.mark.parametrize(("b", "kind"), [([], "list"), ("x", "str"), (None, "NoneType"), (3, "int")])
def test_body_must_be_an_object(b, kind):
    assert refuse(b, 400) == f"request body must be a JSON object, got {kind}"


def test_unknown_request_fields_are_named():
    assert "unknown request fields ['entity_rows', 'project']" in refuse(body(project="x", entity_rows=[]), 400)


def test_unknown_feature_service_is_404_named_with_feasts_class():
    with pytest.raises(RequestError) as err:
        parse_request({"feature_service": "fraud_v1", "entities": {"user_id": [1]}}, CATALOG)
    assert err.value.status == 404 and err.value.feast_class == "FeatureServiceNotFoundException"
    assert "'fraud_v1'" in str(err.value) and "['clash', 'fraud']" in str(err.value)


@pytest.mark.parametrize("service", ["", 3, ["fraud"]])
def test_feature_service_must_be_a_name(service):
    assert "'feature_service' must be the name" in refuse({"feature_service": service, "entities": {"user_id": [1]}}, 400)


def test_features_and_service_together_are_refused():
    assert "not both" in refuse(body(feature_service="fraud"), 400)


@pytest.mark.parametrize("features", [..., [], "user_payments:txn_count", None, {"a": 1}])
def test_features_must_be_a_non_empty_list(features):
    assert refuse(body(features=features), 400) == (
        "'features' must be a non-empty list of 'view:feature' strings (or give 'feature_service')"
    )


@pytest.mark.parametrize("ref", ["txn_count", "a:b:c", 5, None, ["user_payments:txn_count"]])
def test_feature_reference_shape_is_checked(ref):
    assert refuse(body(features=["user_payments:txn_count", ref]), 400) == f"feature reference {ref!r} must look like 'view:feature'"


def test_unknown_view_is_404_naming_it_and_the_known_views():
    with pytest.raises(RequestError) as err:
        parse_request(body(features=["user_paymnts:txn_count"]), CATALOG)
    msg = str(err.value)
    assert err.value.status == 404 and err.value.feast_class == "FeatureViewNotFoundException"
    assert "unknown feature view 'user_paymnts'" in msg and "'user_paymnts:txn_count'" in msg
    assert "['merchant_stats', 'user_extra', 'user_payments']" in msg


def test_unknown_feature_is_404_naming_it_and_the_views_features():
    msg = refuse(body(features=["user_payments:txn_cnt"]), 404)
    assert "feature view 'user_payments' has no feature 'txn_cnt'" in msg
    assert "'txn_count'" in msg and "'amount_sum_1m'" in msg


def test_colliding_feature_names_are_refused_unless_full_names():
    with pytest.raises(RequestError) as err:
        parse_request({"feature_service": "clash", "entities": {"user_id": [1], "merchant_id": ["m"]}}, CATALOG)
    assert err.value.status == 400 and err.value.feast_class == "FeatureNameCollisionError"
    assert "['txn_count']" in str(err.value) and "full_feature_names" in str(err.value)
    assert "duplicate feature names" in refuse(body(features=["user_payments:txn_count"] * 2, full_feature_names=True), 400)


@pytest.mark.parametrize("entities", [..., [], {}, "user_id", None])
def test_entities_must_be_a_non_empty_object(entities):
    assert refuse(body(entities=entities), 400) == "'entities' must be an object like {'user_id': [values]}"


def test_a_missing_join_key_is_named():
    msg = refuse(body(entities={"customer_id": [1]}), 400)
    assert "lacks the join key(s) ['user_id']" in msg and "['customer_id']" in msg
    msg = refuse({"feature_service": "fraud", "entities": {"user_id": [1]}}, 400)
    assert "['merchant_id']" in msg and "{'user_id': [values], 'merchant_id': [values]}" in msg


def test_an_extra_entity_key_is_named():
    msg = refuse(body(entities={"user_id": [1], "merchant_id": ["m"]}), 400)
    assert "['merchant_id']" in msg and "not join key(s)" in msg


def test_join_keys_of_different_lengths_are_refused():
    msg = refuse({"feature_service": "fraud", "entities": {"user_id": [1, 2], "merchant_id": ["m"]}}, 400)
    assert "entities.merchant_id has 1 values but entities.user_id has 2" in msg


@pytest.mark.parametrize("keys", [[], 1, "1", None, {"a": 1}])
def test_entity_values_must_be_a_non_empty_list(keys):
    assert refuse(body(entities={"user_id": keys}), 400) == "entities.user_id must be a non-empty list"


def test_too_many_entities_is_413_with_the_configured_limit():
    msg = refuse(body(entities={"user_id": list(range(MAX_ENTITIES + 1))}), 413)
    assert f"has {MAX_ENTITIES + 1} values; at most {MAX_ENTITIES}" in msg and "entities.user_id" in msg
    assert "has 4 values; at most 3" in refuse(body(entities={"user_id": [1, 2, 3, 4]}), 413, max_entities=3)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("1", "'1'"), (1.5, "1.5"), (True, "True"), (None, "None"), ([1], "[1]"), (2**63, str(2**63)), (float("nan"), "nan")],
)
def test_entity_value_type_is_checked_naming_its_position(value, shown):
    assert refuse(body(entities={"user_id": [1, 2, value]}), 400) == f"entities.user_id[2]: expected int64, got {shown}"


def test_string_entity_refuses_numbers():
    msg = refuse({"features": ["merchant_stats:risk"], "entities": {"merchant_id": ["m1", 2]}}, 400)
    assert msg == "entities.merchant_id[1]: expected string, got 2"


@pytest.mark.parametrize(("value", "shown"), [("true", "'true'"), (1, "1"), (None, "None")])
def test_flags_must_be_bools(value, shown):
    assert refuse(body(full_feature_names=value), 400) == f"'full_feature_names' must be true or false, got {shown}"
    assert "'include_feature_view_version_metadata' must be true or false" in refuse(body(include_feature_view_version_metadata=value), 400)


def test_request_error_defaults_and_error_bodies():
    assert RequestError("x").status == 400 and RequestError("x", 404).status == 404
    assert error_content(RequestError("bad 'entities'")) == {"detail": "bad 'entities'"}
    feast_style = error_content(RequestError("no view 'v'", 404, "FeatureViewNotFoundException"))
    assert isinstance(feast_style, str)  # Feast's body is a JSON string holding a JSON object
    assert json.loads(feast_style) == {"module": "feast.errors", "class": "FeatureViewNotFoundException", "message": "no view 'v'"}


def test_feasts_client_maps_the_error_body_back_to_its_exception():
    from feast.errors import FeastError, FeatureViewNotFoundException

    body_json = json.loads(json.dumps(error_content(RequestError("unknown feature view 'v'", 404, "FeatureViewNotFoundException"))))
    mapped = FeastError.from_error_detail(body_json)  # what feast.rest_error_handler does with response.json()
    assert isinstance(mapped, FeatureViewNotFoundException) and str(mapped) == "unknown feature view 'v'"


# -- build_response -----------------------------------------------------------------------------
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_build_response_in_feast_format():
    req = parse_request(body(features=["user_payments:amount_sum", "user_payments:txn_count"], entities={"user_id": [1, 2, 3]}), CATALOG)
    lk = Lookup(
        {"amount_sum": [10.5, None, 3.0], "txn_count": [2, None, 1]},
        {"amount_sum": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"], "txn_count": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"]},
        [1_795_660_000_000, None, 0],
    )
    resp = build_response(req, {"user_payments": lk})
    stamps = ["2026-11-26T02:26:40Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"]
    assert resp == {
        "metadata": {"feature_names": ["user_id", "amount_sum", "txn_count"]},
        "results": [
            {"values": [1, 2, 3], "statuses": ["PRESENT"] * 3, "event_timestamps": ["1970-01-01T00:00:00Z"] * 3},
            {"values": [10.5, None, 3.0], "statuses": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"], "event_timestamps": stamps},
            {"values": [2, None, 1], "statuses": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"], "event_timestamps": stamps},
        ],
    }
    json.dumps(resp)  # serializable as is


def test_build_response_lists_every_join_key_first_in_request_order():
    req = parse_request({"feature_service": "fraud", "entities": {"merchant_id": ["m1"], "user_id": [5]}, "full_feature_names": True}, CATALOG)
    resp = build_response(
        req,
        {
            "user_payments": Lookup({"txn_count": [4]}, {"txn_count": ["PRESENT"]}, [1_500]),
            "merchant_stats": Lookup({"risk": [0.5]}, {"risk": ["PRESENT"]}, [86_400_000 + 999]),
            "user_extra": Lookup({"vip": [None]}, {"vip": ["NOT_FOUND"]}, [None]),
        },
    )
    assert resp["metadata"]["feature_names"] == ["merchant_id", "user_id", "user_payments__txn_count", "merchant_stats__risk", "user_extra__vip"]
    assert [r["values"] for r in resp["results"]] == [["m1"], [5], [4], [0.5], [None]]
    assert resp["results"][3]["event_timestamps"] == ["1970-01-02T00:00:00Z"]
    assert resp["results"][2]["event_timestamps"] == ["1970-01-01T00:00:01Z"]


def test_build_response_timestamps_are_iso_utc_with_z():
    req = parse_request(body(features=["user_payments:txn_count"], entities={"user_id": [1, 2]}), CATALOG)
    resp = build_response(req, {"user_payments": Lookup({"txn_count": [1, 1]}, {"txn_count": ["PRESENT"] * 2}, [1_700_000_000_123, 5])})
    stamps = resp["results"][1]["event_timestamps"]
    assert stamps == ["2023-11-14T22:13:20Z", "1970-01-01T00:00:00Z"]
    assert all(ISO_Z.match(s) for s in stamps + resp["results"][0]["event_timestamps"])


# -- the read plan over shards (client.plan_online / assemble) -----------------------------------
def _caches(n: int, rows: dict[str, pa.Table]) -> list[FeatureCache]:
    caches = [FeatureCache(list(VIEWS.values())) for _ in range(n)]
    for view, table in rows.items():
        key = VIEWS[view].entity.join_key
        for i, cache in enumerate(caches):
            mine = [shard_of(k, n) == i for k in table[key].to_pylist()]
            cache.put(view, table.filter(pa.array(mine)))
    return caches


def test_plan_and_assemble_answer_a_two_entity_service_across_shards():
    users = pa.table({"user_id": list(range(10)), "txn_count": list(range(100, 110)), "amount_sum": [1.0] * 10,
                      "txn_count_1m": [0] * 10, "amount_sum_1m": [0.0] * 10, "event_ts_ms": [1000] * 10})
    merchants = pa.table({"merchant_id": [f"m{i}" for i in range(5)], "risk": [0.1 * i for i in range(5)],
                          "txn_count": [1] * 5, "event_ts_ms": [2000] * 5})
    caches = _caches(3, {"user_payments": users, "merchant_stats": merchants})
    req = parse_request({"feature_service": "fraud", "entities": {"user_id": [9, 0, 42, 3], "merchant_id": ["m4", "zz", "m0", "m4"]}}, CATALOG)
    calls = plan_online(req, 3)
    assert len({(c.shard, c.view) for c in calls}) == len(calls)  # one call per shard and view
    doc = assemble(req, calls, [caches[c.shard].get(c.view, c.keys, c.features) for c in calls])
    cols = dict(zip(doc["metadata"]["feature_names"], doc["results"]))
    assert cols["user_id"]["values"] == [9, 0, 42, 3] and cols["merchant_id"]["values"] == ["m4", "zz", "m0", "m4"]
    assert cols["txn_count"]["values"] == [109, 100, None, 103]
    assert cols["txn_count"]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND", "PRESENT"]
    assert cols["risk"]["values"] == [pytest.approx(0.4), None, 0.0, pytest.approx(0.4)]
    assert cols["risk"]["event_timestamps"][1] == "1970-01-01T00:00:00Z" and cols["risk"]["event_timestamps"][0] == "1970-01-01T00:00:02Z"
    assert cols["vip"]["statuses"] == ["NOT_FOUND"] * 4


def test_one_key_is_one_call_without_positions():
    req = parse_request(body(entities={"user_id": [7]}), CATALOG)
    (call,) = plan_online(req, 8)
    assert call.shard == shard_of(7, 8) and call.positions is None and call.keys == [7]


# -- parse_push / parse_write -------------------------------------------------------------------
def push_df(**changes) -> dict:
    df = {"user_id": [1, 2], "txn_count": [3, None], "amount_sum": [4.5, 1], "txn_count_1m": [1, 0],
          "amount_sum_1m": [4.5, 0.0], "event_ts": ["2026-11-26T10:00:00Z", 1_795_660_000]}
    df.update(changes)
    return {k: v for k, v in df.items() if v is not ...}


def test_parse_a_push_into_a_row_table():
    p = parse_push({"push_source_name": "user_push", "df": push_df()}, CATALOG)
    assert p.push_source == "user_push" and p.to == "online" and p.rows == 2
    t = p.tables["user_payments"]
    assert t.column_names == ["user_id", "txn_count", "amount_sum", "txn_count_1m", "amount_sum_1m", "event_ts_ms"]
    assert t.schema.field("amount_sum").type == pa.float64() and t["amount_sum"].to_pylist() == [4.5, 1.0]
    assert t["txn_count"].to_pylist() == [3, None]
    assert t["event_ts_ms"].to_pylist() == [1_795_687_200_000, 1_795_660_000_000]


@pytest.mark.parametrize(
    ("stamp", "ms"),
    [
        ("2026-11-26T10:00:00Z", 1_795_687_200_000),
        ("2026-11-26T10:00:00.250+00:00", 1_795_687_200_250),
        ("2026-11-26 11:00:00+01:00", 1_795_687_200_000),
        ("2026-11-26T10:00:00", 1_795_687_200_000),  # naive: UTC
        (1_795_687_200, 1_795_687_200_000),  # seconds
        (1_795_687_200.5, 1_795_687_200_500),
        (1_795_687_200_000, 1_795_687_200_000),  # milliseconds
        (1_795_687_200_000_000, 1_795_687_200_000),  # microseconds
        (1_795_687_200_000_000_000, 1_795_687_200_000),  # nanoseconds
    ],
)
def test_push_timestamps_in_every_accepted_form(stamp, ms):
    p = parse_push({"push_source_name": "user_push", "df": push_df(event_ts=[stamp, stamp])}, CATALOG)
    assert p.tables["user_payments"]["event_ts_ms"].to_pylist() == [ms, ms]


def test_an_event_ts_ms_column_is_always_milliseconds():
    p = parse_push({"push_source_name": "user_push", "df": push_df(event_ts=..., event_ts_ms=[5, 6])}, CATALOG)
    assert p.tables["user_payments"]["event_ts_ms"].to_pylist() == [5, 6]


def test_a_push_source_feeding_two_views_uses_each_views_timestamp_field():
    df = push_df(age_days=[10, 20], vip=[True, False], day_ts=["2026-11-25T00:00:00Z"] * 2)
    p = parse_push({"push_source_name": "both_push", "df": df, "to": "online"}, CATALOG)
    assert sorted(p.tables) == ["user_extra", "user_payments"]
    assert p.tables["user_extra"]["event_ts_ms"].to_pylist() == [1_795_564_800_000] * 2
    assert p.tables["user_extra"]["vip"].to_pylist() == [True, False]


def test_extra_columns_are_ignored_as_feast_does():
    p = parse_push({"push_source_name": "user_push", "df": push_df(created=["x", "y"]), "allow_registry_cache": False}, CATALOG)
    assert "created" not in p.tables["user_payments"].column_names


def test_unknown_push_source_is_422_with_feasts_class():
    with pytest.raises(RequestError) as err:
        parse_push({"push_source_name": "nope", "df": push_df()}, CATALOG)
    assert err.value.status == 422 and err.value.feast_class == "PushSourceNotFoundException"
    assert "'nope'" in str(err.value) and "['both_push', 'user_push']" in str(err.value)


@pytest.mark.parametrize(
    ("b", "status", "words"),
    [
        ([], 400, ["JSON object"]),
        ({"push_source_name": "user_push", "df": {}, "mode": 1}, 400, ["unknown request fields ['mode']"]),
        ({"df": {}}, 400, ["'push_source_name'"]),
        ({"push_source_name": "user_push", "df": push_df(), "to": "sideways"}, 400, ["'to'", "'sideways'", "online_and_offline"]),
        ({"push_source_name": "user_push", "df": push_df(), "allow_registry_cache": "no"}, 400, ["allow_registry_cache"]),
        ({"push_source_name": "user_push", "df": [1]}, 400, ["'df' must be an object of columns"]),
        ({"push_source_name": "user_push", "df": push_df(txn_count=5)}, 400, ["df.txn_count must be a non-empty list"]),
        ({"push_source_name": "user_push", "df": push_df(txn_count=[1])}, 400, ["df.txn_count has 1 values but df.user_id has 2"]),
        ({"push_source_name": "user_push", "df": push_df(amount_sum=...)}, 400, ["lacks columns ['amount_sum']", "'user_payments'", "'user_push'"]),
        ({"push_source_name": "user_push", "df": push_df(user_id=...)}, 400, ["lacks columns ['user_id']"]),
        ({"push_source_name": "user_push", "df": push_df(event_ts=...)}, 400, ["event timestamp", "'event_ts'"]),
        ({"push_source_name": "user_push", "df": push_df(user_id=[1, "2"])}, 400, ["df.user_id[1]: expected int64, got '2'"]),
        ({"push_source_name": "user_push", "df": push_df(user_id=[1, None])}, 400, ["df.user_id[1]: expected int64, got None"]),
        ({"push_source_name": "user_push", "df": push_df(txn_count=[1, 2.5])}, 400, ["df.txn_count[1]: expected int64 or null, got 2.5"]),
        ({"push_source_name": "user_push", "df": push_df(amount_sum=["x", 1.0])}, 400, ["df.amount_sum[0]: expected float64 or null"]),
        ({"push_source_name": "user_push", "df": push_df(event_ts=["yesterday", 1])}, 400, ["df.event_ts[0]", "ISO 8601", "'yesterday'"]),
        ({"push_source_name": "user_push", "df": push_df(event_ts=[None, 1])}, 400, ["df.event_ts[0]", "None"]),
        ({"push_source_name": "user_push", "df": push_df(event_ts=[True, 1])}, 400, ["df.event_ts[0]", "True"]),
    ],
)
def test_every_push_refusal_names_the_problem(b, status, words):
    msg = refuse(b, status, parse=parse_push)
    for word in words:
        assert word in msg, (word, msg)


def test_too_many_pushed_rows_is_413():
    df = push_df(**{k: v * 3 for k, v in push_df().items()})
    assert "df has 6 rows; at most 5" in refuse({"push_source_name": "user_push", "df": df}, 413, parse=parse_push, max_rows=5)


def test_offline_pushes_are_refused_for_now_saying_where_batch_rows_go():
    df = push_df(age_days=[10, 20], vip=[True, False], day_ts=["2026-11-25T00:00:00Z"] * 2)
    p = parse_push({"push_source_name": "both_push", "df": df, "to": "offline"}, CATALOG)
    with pytest.raises(RequestError) as err:
        check_push_target(p, CATALOG)
    assert err.value.status == 422 and "not supported yet" in str(err.value) and "file:///data/features/user_extra" in str(err.value)
    check_push_target(parse_push({"push_source_name": "user_push", "df": push_df()}, CATALOG), CATALOG)  # online: fine


def test_plan_push_splits_rows_by_the_readers_hash():
    df = {k: v * 20 for k, v in push_df().items()} | {"user_id": list(range(40))}
    p = parse_push({"push_source_name": "user_push", "df": df}, CATALOG)
    parts = plan_push(p, CATALOG, 4)
    assert sum(t.num_rows for _, _, t in parts) == 40
    for shard, view, table in parts:
        assert view == "user_payments" and all(shard_of(k, 4) == shard for k in table["user_id"].to_pylist())


def test_parse_write_as_feasts_remote_store_sends_it():
    # feast/infra/online_stores/remote.py online_write_batch: event_timestamp naive ISO, a created column
    df = push_df(event_ts=..., event_timestamp=["2026-11-26T10:00:00", "2026-11-26T10:00:01.500000"], created=[None, None])
    p = parse_write({"feature_view_name": "user_payments", "df": df, "allow_registry_cache": False}, CATALOG)
    assert p.tables["user_payments"]["event_ts_ms"].to_pylist() == [1_795_687_200_000, 1_795_687_201_500]
    with pytest.raises(RequestError) as err:
        parse_write({"feature_view_name": "nope", "df": df}, CATALOG)
    assert err.value.status == 404 and err.value.feast_class == "FeatureViewNotFoundException"


def test_rows_given_as_an_arrow_table_or_dataframe_push_like_columns():
    import datetime as dt

    import pandas as pd

    from fabric_ray.features.client import _columns

    stamp = dt.datetime(2026, 11, 26, 10, tzinfo=dt.timezone.utc)
    cols = push_df(event_ts=...)
    table = pa.table(cols | {"event_ts": pa.array([stamp] * 2, pa.timestamp("us", tz="UTC"))})
    frame = pd.DataFrame(cols | {"event_ts": [pd.Timestamp(stamp)] * 2})
    for rows in (table, frame, cols | {"event_ts": (stamp, stamp)}):
        p = parse_push({"push_source_name": "user_push", "df": _columns(rows, frozenset({"user_id", "txn_count"}))}, CATALOG)
        t = p.tables["user_payments"]
        assert t["event_ts_ms"].to_pylist() == [1_795_687_200_000] * 2, type(rows)
        assert t["user_id"].to_pylist() == [1, 2] and t["txn_count"].to_pylist() == [3, None]  # pandas made it [3.0, nan]
    with pytest.raises(RequestError, match="dict of columns"):
        _columns([1, 2])
