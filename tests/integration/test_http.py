"""The HTTP feature endpoint on Ray Serve: Feast's wire format, and a 4xx (never a 5xx) for bad input."""

from __future__ import annotations

import json

import httpx
import pytest

from fabric_ray.demo.payments import expected_features, generate_events
from fabric_ray.demo.run import produce
from fabric_ray.features.wire import MAX_ENTITIES, RequestError

from .kafka_helpers import FEATURES

UNKNOWN_USER = 987_654_321


@pytest.fixture(scope="module")
def served(make_module_fabric):
    """A fabric that has consumed 2,000 events of 60 users, its expected features and an HTTP client."""
    fabric = make_module_fabric()
    ev = generate_events(2000, users=60, seed=11, bad_fraction=0)
    produce(fabric.bootstrap_servers, fabric.config.stream.topic, ev.keys, ev.payloads, progress=False)
    fabric.wait_until_consumed(len(ev), timeout_s=120)
    with httpx.Client(base_url=fabric.config.serving.url, timeout=30) as http:
        yield fabric, expected_features(ev.table), http


def _post(http: httpx.Client, body: object) -> httpx.Response:
    if isinstance(body, bytes):
        return http.post("/get-online-features", content=body, headers={"content-type": "application/json"})
    return http.post("/get-online-features", json=body)


def test_valid_request_returns_feast_format(served):
    fabric, expected, http = served
    known = sorted(expected)[:3]
    users = [known[0], UNKNOWN_USER, known[1], known[2]]
    r = _post(http, {"features": FEATURES, "entities": {"user_id": users}})
    assert r.status_code == 200, r.text
    body = r.json()
    names = body["metadata"]["feature_names"]
    assert names == ["user_id", "txn_count", "amount_sum", "txn_count_1m", "amount_sum_1m"]
    results = body["results"]
    assert len(results) == len(names)
    # column-major: one result per feature name, each holding one value per entity, in request order
    assert all(len(res["values"]) == len(users) == len(res["statuses"]) == len(res["event_timestamps"]) for res in results)
    assert results[0]["values"] == users
    assert results[0]["statuses"] == ["PRESENT"] * len(users)
    for col, name in enumerate(names[1:], start=1):
        res = results[col]
        assert res["statuses"] == ["PRESENT", "NOT_FOUND", "PRESENT", "PRESENT"], name
        assert res["values"][1] is None
        for pos in (0, 2, 3):
            assert res["values"][pos] == pytest.approx(expected[users[pos]][name]), (name, users[pos])
    # event timestamps of found users are real ISO times, not the epoch placeholder of NOT_FOUND
    stamps = results[1]["event_timestamps"]
    assert stamps[0].endswith("Z") and not stamps[0].startswith("1970")
    assert stamps[1].startswith("1970")


def test_full_feature_names(served):
    _, expected, http = served
    uid = sorted(expected)[0]
    r = _post(http, {"features": ["user_payments:txn_count", "user_payments:amount_sum"], "entities": {"user_id": [uid]}, "full_feature_names": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["user_id", "user_payments__txn_count", "user_payments__amount_sum"]
    assert body["results"][1]["values"] == [expected[uid]["txn_count"]]


def test_request_order_of_features_is_kept(served):
    _, expected, http = served
    uid = sorted(expected)[1]
    r = _post(http, {"features": ["user_payments:amount_sum_1m", "user_payments:txn_count"], "entities": {"user_id": [uid]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"]["feature_names"] == ["user_id", "amount_sum_1m", "txn_count"]
    assert body["results"][2]["values"] == [expected[uid]["txn_count"]]


def test_python_handle_returns_same_body_as_http(served):
    fabric, expected, http = served
    users = [sorted(expected)[0], UNKNOWN_USER, sorted(expected)[-1]]
    for full in (False, True):
        r = _post(http, {"features": FEATURES, "entities": {"user_id": users}, "full_feature_names": full})
        assert r.status_code == 200, r.text
        py = fabric.get_online_features(FEATURES, {"user_id": users}, full_feature_names=full)
        assert json.loads(json.dumps(py)) == r.json()


def test_python_handle_rejects_bad_request(served):
    fabric, _, _ = served
    with pytest.raises(RequestError, match="nope") as info:
        fabric.get_online_features(["user_payments:nope"], {"user_id": [1]})
    assert info.value.status == 404


GOOD_ENTITIES = {"user_id": [1]}

# (id, body (bytes are sent raw), expected status, words the detail must contain)
BAD_REQUESTS = [
    ("not_json", b"{features: nope", 400, ["not valid JSON"]),
    ("not_utf8", b'{"features": ["\xff"]}', 400, ["not valid JSON"]),
    ("body_list", [{"features": FEATURES, "entities": GOOD_ENTITIES}], 400, ["JSON object", "list"]),
    ("body_string", "user_payments:txn_count", 400, ["JSON object", "str"]),
    ("body_null", b"null", 400, ["JSON object"]),
    ("missing_features", {"entities": GOOD_ENTITIES}, 400, ["features"]),
    ("empty_features", {"features": [], "entities": GOOD_ENTITIES}, 400, ["features", "non-empty"]),
    ("features_not_list", {"features": "user_payments:txn_count", "entities": GOOD_ENTITIES}, 400, ["features"]),
    ("unknown_view", {"features": ["no_such_view:txn_count"], "entities": GOOD_ENTITIES}, 404, ["no_such_view"]),
    ("unknown_feature", {"features": ["user_payments:no_such_feature"], "entities": GOOD_ENTITIES}, 404, ["no_such_feature"]),
    ("ref_without_colon", {"features": ["user_payments"], "entities": GOOD_ENTITIES}, 400, ["user_payments", "view:feature"]),
    ("ref_two_colons", {"features": ["user_payments:txn_count:x"], "entities": GOOD_ENTITIES}, 400, ["view:feature"]),
    ("ref_not_string", {"features": [7], "entities": GOOD_ENTITIES}, 400, ["7", "view:feature"]),
    ("missing_entities", {"features": FEATURES}, 400, ["entities"]),
    ("entities_list", {"features": FEATURES, "entities": [1, 2]}, 400, ["entities"]),
    ("wrong_entity_key", {"features": FEATURES, "entities": {"customer_id": [1]}}, 400, ["user_id", "customer_id"]),
    ("extra_entity_key", {"features": FEATURES, "entities": {"user_id": [1], "merchant_id": [2]}}, 400, ["merchant_id"]),
    ("entity_string_for_int64", {"features": FEATURES, "entities": {"user_id": ["1"]}}, 400, ["int64", "'1'"]),
    ("entity_float_for_int64", {"features": FEATURES, "entities": {"user_id": [1.5]}}, 400, ["int64", "1.5"]),
    ("entity_bool_for_int64", {"features": FEATURES, "entities": {"user_id": [True]}}, 400, ["int64", "True"]),
    ("entity_null", {"features": FEATURES, "entities": {"user_id": [None]}}, 400, ["int64", "None"]),
    ("entity_nested_list", {"features": FEATURES, "entities": {"user_id": [[1]]}}, 400, ["int64"]),
    ("entity_nan", b'{"features": ["user_payments:txn_count"], "entities": {"user_id": [NaN]}}', 400, ["int64"]),
    ("entity_values_not_list", {"features": FEATURES, "entities": {"user_id": 1}}, 400, ["user_id", "list"]),
    ("empty_entity_list", {"features": FEATURES, "entities": {"user_id": []}}, 400, ["user_id", "non-empty"]),
    ("too_many_entities", {"features": FEATURES, "entities": {"user_id": list(range(MAX_ENTITIES + 1))}}, 413, [str(MAX_ENTITIES + 1), str(MAX_ENTITIES)]),
    ("unknown_field", {"features": FEATURES, "entities": GOOD_ENTITIES, "project": "x"}, 400, ["project"]),
    ("full_feature_names_not_bool", {"features": FEATURES, "entities": GOOD_ENTITIES, "full_feature_names": "yes"}, 400, ["full_feature_names"]),
    ("feature_service", {"feature_service": "payments_v1", "entities": GOOD_ENTITIES}, 404, ["payments_v1", "feature service"]),
]


@pytest.mark.parametrize("body,status,words", [pytest.param(b, s, w, id=i) for i, b, s, w in BAD_REQUESTS])
def test_bad_request_is_4xx_with_detail(served, body, status, words):
    _, _, http = served
    r = _post(http, body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail, (word, detail)


def test_deeply_nested_body_is_4xx_not_5xx(served):
    _, _, http = served
    r = _post(http, b"[" * 100_000 + b"]" * 100_000)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert "JSON" in r.json()["detail"]


def test_wrong_method_is_4xx(served):
    _, _, http = served
    r = http.get("/get-online-features")
    assert r.status_code == 405


def test_unknown_path_is_404(served):
    fabric, _, http = served
    assert http.post("/no-such-route", json={}).status_code == 404
    # outside every Serve application: the proxy answers
    r = httpx.get(f"http://{fabric.config.serving.host}:{fabric.config.serving.port}/no-such-app-{fabric.config.ray.namespace}/x")
    assert r.status_code == 404


def test_health(served):
    fabric, _, http = served
    r = http.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["cache_shards"] == fabric.config.stream.cache_shards
    assert body["feature_views"] == ["user_payments"]
