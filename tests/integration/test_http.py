"""The HTTP feature server on Ray Serve: Feast's wire format, feature services over two entities,
pushes, bearer tokens, the OpenAPI document, and a 4xx (never a 5xx) for bad input."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from fabric_ray.demo.payments import expected_features, generate_events
from fabric_ray.demo.run import produce
from fabric_ray.features.wire import MAX_ENTITIES, RequestError

from .kafka_helpers import FEATURES

UNKNOWN_USER = 987_654_321
NOW = datetime.now(timezone.utc).replace(microsecond=0)
RECENT = (NOW - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
OLD = (NOW - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ")  # past the daily views' 2-day TTL
SERVICE_FEATURES = 4 + 3 + 3  # fraud_model: user_payments, user_daily, merchant_daily
TOKENS = [
    {"name": "fraud-svc", "secret": "fraud-secret-123", "scopes": ["user_payments", "user_daily"]},
    {"name": "admin", "secret": "admin-secret-456", "scopes": ["*"]},
]


@pytest.fixture(scope="module")
def served(make_module_fabric):
    """A fabric that consumed 2,000 events of 60 users and got daily rows pushed; its expected features; a client."""
    fabric = make_module_fabric()
    ev = generate_events(2000, users=60, seed=11, bad_fraction=0)
    produce(fabric.bootstrap_servers, fabric.config.stream.topic, ev.keys, ev.payloads, progress=False)
    fabric.wait_until_consumed(len(ev), timeout_s=120)
    with httpx.Client(base_url=fabric.config.serving.url, timeout=30) as http:
        users = sorted(expected_features(ev.table))
        r = http.post("/push", json={"push_source_name": "user_daily_push", "df": {
            "user_id": users[:5], "txn_count_1d": [1, 2, 3, 4, 5], "amount_sum_1d": [10.0, 20.0, 30.0, 40.0, 50.5],
            "large_txn_count_1d": [0, 0, 1, 0, None], "event_ts": [RECENT] * 4 + [OLD]}})  # fmt: skip
        assert r.status_code == 200, r.text
        r = http.post("/push", json={"push_source_name": "merchant_daily_push", "df": {
            "merchant_id": [7, 8], "txn_count_1d": [70, 80], "amount_mean_1d": [7.5, 8.5], "distinct_users_1d": [17, 18],
            "event_ts": [RECENT, RECENT]}})  # fmt: skip
        assert r.status_code == 200, r.text
        yield fabric, expected_features(ev.table), http


@pytest.fixture(scope="module")
def guarded(served):
    """A second feature app on the same shards, with bearer tokens (as ``serving.tokens`` configures)."""
    from ray import serve

    from serving.features import build_app

    fabric = served[0]
    cfg = fabric.config
    prefix = f"/{cfg.ray.namespace}-guarded"
    name = f"{cfg.ray.namespace}-guarded-{uuid.uuid4().hex[:4]}"
    serving = {**cfg.serving.model_dump(), "tokens": TOKENS}
    app = build_app({"namespace": cfg.ray.namespace, "cache_shards": cfg.stream.cache_shards, "catalog": fabric.catalog, "serving": serving})
    serve.run(app, name=name, route_prefix=prefix)
    with httpx.Client(base_url=f"http://{cfg.serving.host}:{cfg.serving.port}{prefix}", timeout=30) as http:
        yield http
    serve.delete(name)


def _post(http: httpx.Client, body: object, path: str = "/get-online-features", **kw) -> httpx.Response:
    if isinstance(body, bytes):
        return http.post(path, content=body, headers={"content-type": "application/json", **kw.pop("headers", {})}, **kw)
    return http.post(path, json=body, **kw)


def _message(r: httpx.Response) -> str:
    """The error message: ``{"detail": ...}``, or Feast's body (a JSON string holding module, class, message)."""
    doc = r.json()
    if isinstance(doc, str):
        feast_error = json.loads(doc)
        assert feast_error["module"] == "feast.errors" and feast_error["class"]
        return f"{feast_error['class']}: {feast_error['message']}"
    assert set(doc) == {"detail"} and isinstance(doc["detail"], str), doc
    return doc["detail"]


def _columns(body: dict) -> dict[str, dict]:
    return dict(zip(body["metadata"]["feature_names"], body["results"]))


def test_valid_request_returns_feast_format(served):
    fabric, expected, http = served
    known = sorted(expected)[:3]
    users = [known[0], UNKNOWN_USER, known[1], known[2]]
    r = _post(http, {"features": FEATURES, "entities": {"user_id": users}})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
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


def test_feature_service_over_two_entities(served):
    _, expected, http = served
    users = sorted(expected)
    # the request's join key order is the response's (as Feast does): merchant first here
    entities = {"merchant_id": [7, 999, 8, 7], "user_id": [users[0], users[1], UNKNOWN_USER, users[4]]}
    r = _post(http, {"feature_service": "fraud_model", "entities": entities, "full_feature_names": True})
    assert r.status_code == 200, r.text
    body = r.json()
    names = body["metadata"]["feature_names"]
    assert names[:2] == ["merchant_id", "user_id"] and len(names) == 2 + SERVICE_FEATURES
    cols = _columns(body)
    assert cols["merchant_id"]["values"] == entities["merchant_id"] and cols["user_id"]["values"] == entities["user_id"]
    assert cols["user_payments__txn_count"]["values"][:2] == [expected[users[0]]["txn_count"], expected[users[1]]["txn_count"]]
    assert cols["user_payments__txn_count"]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND", "PRESENT"]
    assert cols["user_daily__txn_count_1d"]["values"] == [1, 2, None, 5]
    # users[4]'s daily row is 5 days old: past the view's TTL of 2 days
    assert cols["user_daily__txn_count_1d"]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"]
    assert cols["user_daily__large_txn_count_1d"]["statuses"][:2] == ["PRESENT", "PRESENT"]
    assert cols["merchant_daily__amount_mean_1d"]["values"] == [7.5, None, 8.5, 7.5]
    assert cols["merchant_daily__amount_mean_1d"]["statuses"] == ["PRESENT", "NOT_FOUND", "PRESENT", "PRESENT"]
    assert cols["merchant_daily__amount_mean_1d"]["event_timestamps"][0] == RECENT


def test_a_null_feature_value_is_null_value(served):
    _, expected, http = served
    r = _post(http, {"features": ["user_daily:large_txn_count_1d", "user_daily:txn_count_1d"], "entities": {"user_id": [sorted(expected)[4]]}})
    assert r.status_code == 200, r.text
    cols = _columns(r.json())
    assert cols["large_txn_count_1d"]["values"] == [None] and cols["large_txn_count_1d"]["statuses"] == ["NULL_VALUE"]


def test_feature_service_without_full_names_collides_like_feast(served):
    _, _, http = served
    r = _post(http, {"feature_service": "fraud_model", "entities": {"user_id": [1], "merchant_id": [7]}})
    assert r.status_code == 400, r.text
    assert _message(r).startswith("FeatureNameCollisionError: duplicate feature names ['txn_count_1d']")


def test_push_then_read(served):
    fabric, _, http = served
    uid = 555_000_001
    df = {"user_id": [uid], "txn_count": [3], "amount_sum": [42.5], "txn_count_1m": [1], "amount_sum_1m": [12.5], "event_ts": [RECENT]}
    r = _post(http, {"push_source_name": "user_payments_push", "df": df, "to": "online"}, "/push")
    assert r.status_code == 200, r.text
    assert r.json() == {"push_source_name": "user_payments_push", "rows": 1, "views": ["user_payments"]}
    r = _post(http, {"features": FEATURES, "entities": {"user_id": [uid]}})
    cols = _columns(r.json())
    assert [cols[n]["values"][0] for n in ("txn_count", "amount_sum", "txn_count_1m", "amount_sum_1m")] == [3, 42.5, 1, 12.5]
    assert cols["txn_count"]["event_timestamps"] == [RECENT]
    # an older row does not move the value back; a newer one replaces it
    older = {**df, "txn_count": [1], "event_ts": [OLD]}
    assert _post(http, {"push_source_name": "user_payments_push", "df": older}, "/push").status_code == 200
    assert _columns(_post(http, {"features": FEATURES, "entities": {"user_id": [uid]}}).json())["txn_count"]["values"] == [3]
    newer = {**df, "txn_count": [4], "event_ts": [NOW.strftime("%Y-%m-%dT%H:%M:%SZ")]}
    assert _post(http, {"push_source_name": "user_payments_push", "df": newer}, "/push").status_code == 200
    assert _columns(_post(http, {"features": FEATURES, "entities": {"user_id": [uid]}}).json())["txn_count"]["values"] == [4]


def test_write_to_online_store_as_feasts_remote_store_sends_it(served):
    _, _, http = served
    df = {"merchant_id": [31], "txn_count_1d": [3], "amount_mean_1d": [3.5], "distinct_users_1d": [2],
          "event_timestamp": [(NOW - timedelta(hours=1)).replace(tzinfo=None).isoformat()], "created": [None]}
    r = _post(http, {"feature_view_name": "merchant_daily", "df": df, "allow_registry_cache": False}, "/write-to-online-store")
    assert r.status_code == 200, r.text
    cols = _columns(_post(http, {"features": ["merchant_daily:amount_mean_1d"], "entities": {"merchant_id": [31]}}).json())
    assert cols["amount_mean_1d"]["values"] == [3.5] and cols["amount_mean_1d"]["statuses"] == ["PRESENT"]


def test_python_handle_returns_same_body_as_http(served):
    fabric, expected, http = served
    users = [sorted(expected)[0], UNKNOWN_USER, sorted(expected)[-1]]
    for full in (False, True):
        r = _post(http, {"features": FEATURES, "entities": {"user_id": users}, "full_feature_names": full})
        assert r.status_code == 200, r.text
        assert json.loads(json.dumps(fabric.get_online_features(FEATURES, {"user_id": users}, full_feature_names=full))) == r.json()
        py = fabric.features.get_online(FEATURES, {"user_id": users}, full_feature_names=full)
        assert json.loads(json.dumps(py)) == r.json()
    entities = {"user_id": users, "merchant_id": [7, 8, 9]}
    r = _post(http, {"feature_service": "fraud_model", "entities": entities, "full_feature_names": True})
    py = fabric.features.get_online(feature_service="fraud_model", entities=entities, full_feature_names=True)
    assert json.loads(json.dumps(py)) == r.json()


def test_python_handle_rejects_bad_requests_like_http(served):
    fabric, _, _ = served
    with pytest.raises(RequestError, match="nope") as info:
        fabric.get_online_features(["user_payments:nope"], {"user_id": [1]})
    assert info.value.status == 404
    with pytest.raises(RequestError) as info:
        fabric.features.get_online(feature_service="no_such_service", entities={"user_id": [1]})
    assert info.value.status == 404 and info.value.feast_class == "FeatureServiceNotFoundException"
    with pytest.raises(RequestError) as info:
        fabric.features.push("no_such_push", {"user_id": [1]})
    assert info.value.status == 422


GOOD_ENTITIES = {"user_id": [1]}

# (id, body (bytes are sent raw), expected status, words the message must contain)
BAD_REQUESTS = [
    ("not_json", b"{features: nope", 400, ["not valid JSON"]),
    ("not_utf8", b'{"features": ["\xff"]}', 400, ["not valid JSON"]),
    ("empty_body", b"", 400, ["not valid JSON"]),
    ("body_list", [{"features": FEATURES, "entities": GOOD_ENTITIES}], 400, ["JSON object", "list"]),
    ("body_string", "user_payments:txn_count", 400, ["JSON object", "str"]),
    ("body_null", b"null", 400, ["JSON object"]),
    ("missing_features", {"entities": GOOD_ENTITIES}, 400, ["features", "feature_service"]),
    ("empty_features", {"features": [], "entities": GOOD_ENTITIES}, 400, ["features", "non-empty"]),
    ("features_not_list", {"features": "user_payments:txn_count", "entities": GOOD_ENTITIES}, 400, ["features"]),
    ("unknown_view", {"features": ["no_such_view:txn_count"], "entities": GOOD_ENTITIES}, 404, ["FeatureViewNotFoundException", "no_such_view"]),
    ("unknown_feature", {"features": ["user_payments:no_such_feature"], "entities": GOOD_ENTITIES}, 404, ["no_such_feature", "txn_count"]),
    ("unknown_service", {"feature_service": "payments_v1", "entities": GOOD_ENTITIES}, 404, ["FeatureServiceNotFoundException", "payments_v1", "fraud_model"]),
    ("service_not_string", {"feature_service": 5, "entities": GOOD_ENTITIES}, 400, ["feature_service"]),
    ("features_and_service", {"features": FEATURES, "feature_service": "fraud_model", "entities": GOOD_ENTITIES}, 400, ["not both"]),
    ("ref_without_colon", {"features": ["user_payments"], "entities": GOOD_ENTITIES}, 400, ["user_payments", "view:feature"]),
    ("ref_two_colons", {"features": ["user_payments:txn_count:x"], "entities": GOOD_ENTITIES}, 400, ["view:feature"]),
    ("ref_not_string", {"features": [7], "entities": GOOD_ENTITIES}, 400, ["7", "view:feature"]),
    ("duplicate_ref", {"features": ["user_payments:txn_count"] * 2, "entities": GOOD_ENTITIES}, 400, ["FeatureNameCollisionError", "txn_count"]),
    ("missing_entities", {"features": FEATURES}, 400, ["entities"]),
    ("entities_list", {"features": FEATURES, "entities": [1, 2]}, 400, ["entities"]),
    ("wrong_entity_key", {"features": FEATURES, "entities": {"customer_id": [1]}}, 400, ["user_id", "customer_id"]),
    ("extra_entity_key", {"features": FEATURES, "entities": {"user_id": [1], "merchant_id": [2]}}, 400, ["merchant_id"]),
    ("service_missing_key", {"feature_service": "fraud_model", "entities": GOOD_ENTITIES, "full_feature_names": True}, 400, ["merchant_id"]),
    ("key_lengths_differ", {"feature_service": "fraud_model", "entities": {"user_id": [1, 2], "merchant_id": [3]}, "full_feature_names": True}, 400, ["merchant_id", "user_id", "one value per entity row"]),
    ("entity_string_for_int64", {"features": FEATURES, "entities": {"user_id": ["1"]}}, 400, ["int64", "'1'"]),
    ("entity_float_for_int64", {"features": FEATURES, "entities": {"user_id": [1.5]}}, 400, ["int64", "1.5"]),
    ("entity_bool_for_int64", {"features": FEATURES, "entities": {"user_id": [True]}}, 400, ["int64", "True"]),
    ("entity_null", {"features": FEATURES, "entities": {"user_id": [None]}}, 400, ["int64", "None"]),
    ("entity_too_big", {"features": FEATURES, "entities": {"user_id": [2**64]}}, 400, ["int64", str(2**64)]),
    ("entity_nested_list", {"features": FEATURES, "entities": {"user_id": [[1]]}}, 400, ["int64"]),
    ("entity_nan", b'{"features": ["user_payments:txn_count"], "entities": {"user_id": [NaN]}}', 400, ["int64"]),
    ("entity_values_not_list", {"features": FEATURES, "entities": {"user_id": 1}}, 400, ["user_id", "list"]),
    ("empty_entity_list", {"features": FEATURES, "entities": {"user_id": []}}, 400, ["user_id", "non-empty"]),
    ("too_many_entities", {"features": FEATURES, "entities": {"user_id": list(range(MAX_ENTITIES + 1))}}, 413, [str(MAX_ENTITIES + 1), str(MAX_ENTITIES)]),
    ("unknown_field", {"features": FEATURES, "entities": GOOD_ENTITIES, "project": "x"}, 400, ["project"]),
    ("full_feature_names_not_bool", {"features": FEATURES, "entities": GOOD_ENTITIES, "full_feature_names": "yes"}, 400, ["full_feature_names"]),
]


@pytest.mark.parametrize("body,status,words", [pytest.param(b, s, w, id=i) for i, b, s, w in BAD_REQUESTS])
def test_bad_request_is_4xx_with_a_message(served, body, status, words):
    _, _, http = served
    r = _post(http, body)
    assert r.status_code == status, r.text
    message = _message(r)
    for word in words:
        assert word in message, (word, message)


PUSH_DF = {"user_id": [1], "txn_count": [1], "amount_sum": [1.0], "txn_count_1m": [1], "amount_sum_1m": [1.0], "event_ts": [RECENT]}
BAD_PUSHES = [
    ("not_json", b"{push", 400, ["not valid JSON"]),
    ("unknown_source", {"push_source_name": "nope", "df": PUSH_DF}, 422, ["PushSourceNotFoundException", "nope", "user_payments_push"]),
    ("bad_to", {"push_source_name": "user_payments_push", "df": PUSH_DF, "to": "sideways"}, 400, ["'to'", "sideways"]),
    ("offline", {"push_source_name": "user_payments_push", "df": PUSH_DF, "to": "offline"}, 422, ["not supported yet", "'online'"]),
    ("online_and_offline", {"push_source_name": "user_daily_push", "to": "online_and_offline", "df": {
        "user_id": [1], "txn_count_1d": [1], "amount_sum_1d": [1.0], "large_txn_count_1d": [0], "event_ts": [RECENT]}},
     422, ["not supported yet", "features/user_daily"]),
    ("df_not_object", {"push_source_name": "user_payments_push", "df": [1]}, 400, ["'df'"]),
    ("null_column", {"push_source_name": "user_payments_push", "df": {**PUSH_DF, "amount_sum": None}}, 400, ["df.amount_sum", "list"]),
    ("missing_column", {"push_source_name": "user_payments_push", "df": {k: v for k, v in PUSH_DF.items() if k != "amount_sum"}}, 400, ["amount_sum", "user_payments"]),
    ("missing_timestamp", {"push_source_name": "user_payments_push", "df": {k: v for k, v in PUSH_DF.items() if k != "event_ts"}}, 400, ["event timestamp"]),
    ("bad_timestamp", {"push_source_name": "user_payments_push", "df": {**PUSH_DF, "event_ts": ["soon"]}}, 400, ["df.event_ts[0]", "'soon'"]),
    ("wrong_key_type", {"push_source_name": "user_payments_push", "df": {**PUSH_DF, "user_id": ["u1"]}}, 400, ["df.user_id[0]", "int64"]),
    ("wrong_feature_type", {"push_source_name": "user_payments_push", "df": {**PUSH_DF, "txn_count": ["x"]}}, 400, ["df.txn_count[0]", "int64"]),
    ("ragged", {"push_source_name": "user_payments_push", "df": {**PUSH_DF, "txn_count": [1, 2]}}, 400, ["df.txn_count has 2 values"]),
    ("too_many_rows", {"push_source_name": "user_payments_push", "df": {k: v * (MAX_ENTITIES + 1) for k, v in PUSH_DF.items()}}, 413, [str(MAX_ENTITIES)]),
]


@pytest.mark.parametrize("body,status,words", [pytest.param(b, s, w, id=i) for i, b, s, w in BAD_PUSHES])
def test_bad_push_is_4xx_with_a_message(served, body, status, words):
    _, _, http = served
    r = _post(http, body, "/push")
    assert r.status_code == status, r.text
    message = _message(r)
    for word in words:
        assert word in message, (word, message)


def test_deeply_nested_body_is_4xx_not_5xx(served):
    _, _, http = served
    r = _post(http, b"[" * 100_000 + b"]" * 100_000)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert "JSON" in _message(r)


def test_wrong_method_is_4xx(served):
    _, _, http = served
    assert http.get("/get-online-features").status_code == 405
    assert http.get("/push").status_code == 405


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
    assert body["feature_views"] == ["merchant_daily", "user_daily", "user_payments"]
    # every shard runs on this one node: the server reads them all over their local socket
    assert body["local_reads"] == fabric.config.stream.cache_shards


def test_openapi_document_describes_the_wire_format(served):
    _, _, http = served
    r = http.get("/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    paths = doc["paths"]
    assert {"/get-online-features", "/push", "/write-to-online-store", "/health"} <= set(paths)
    read = paths["/get-online-features"]["post"]
    body_schema = read["requestBody"]["content"]["application/json"]["schema"]
    assert {"entities", "features", "feature_service", "full_feature_names"} <= set(body_schema["properties"])
    assert body_schema["required"] == ["entities"]
    ok = read["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/OnlineFeaturesResponse"}
    assert {"400", "401", "403", "404", "413"} <= set(read["responses"])
    assert "FeatureVector" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    push = paths["/push"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"push_source_name", "df", "to"} <= set(push["properties"])
    assert "security" not in paths["/health"]["get"]
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_status_shows_cache_stats(served):
    fabric, _, http = served
    _post(http, {"features": FEATURES, "entities": {"user_id": [UNKNOWN_USER]}})
    shards = fabric.status()["cache_shards"]
    assert [s["shard"] for s in shards] == list(range(fabric.config.stream.cache_shards))
    assert sum(s["keys"] for s in shards) > 60
    assert all({"hits", "misses", "evictions", "bytes"} <= set(s) for s in shards)
    assert sum(s["hits"] for s in shards) > 0 and sum(s["misses"] for s in shards) > 0


# -- bearer tokens ------------------------------------------------------------------------------
def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


READ = {"features": ["user_payments:txn_count"], "entities": {"user_id": [1]}}


def test_without_a_valid_token_every_endpoint_but_health_is_401(guarded):
    for headers in ({}, _bearer("wrong-secret-000"), {"Authorization": "Basic YWRtaW46YWRtaW4="}):
        r = _post(guarded, READ, headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert "wrong-secret" not in r.text
        assert _post(guarded, {"push_source_name": "user_payments_push", "df": PUSH_DF}, "/push", headers=headers).status_code == 401
        assert _post(guarded, {"feature_view_name": "user_payments", "df": PUSH_DF}, "/write-to-online-store", headers=headers).status_code == 401
    assert "missing bearer token" in _message(_post(guarded, READ))
    # no catalog details leak before authentication
    assert "known views" not in _post(guarded, {"features": ["nope:x"], "entities": {"user_id": [1]}}).text
    assert guarded.get("/health").status_code == 200


def test_a_token_reads_the_views_its_scopes_cover(guarded, served):
    _, expected, http = served
    uid = sorted(expected)[0]
    body = {"features": FEATURES, "entities": {"user_id": [uid]}}
    for secret in ("fraud-secret-123", "admin-secret-456"):
        r = _post(guarded, body, headers=_bearer(secret))
        assert r.status_code == 200, r.text
        assert r.json() == _post(http, body).json()


def test_a_token_without_the_scope_is_403_naming_the_views(guarded):
    entities = {"user_id": [1], "merchant_id": [7]}
    r = _post(guarded, {"feature_service": "fraud_model", "entities": entities, "full_feature_names": True}, headers=_bearer("fraud-secret-123"))
    assert r.status_code == 403, r.text
    assert _message(r) == (
        "FeastPermissionError: token 'fraud-svc' may not use feature view(s) ['merchant_daily']; "
        "its scopes: ['user_daily', 'user_payments']"
    )
    r = _post(guarded, {"feature_service": "fraud_model", "entities": entities, "full_feature_names": True}, headers=_bearer("admin-secret-456"))
    assert r.status_code == 200, r.text
    push = {"push_source_name": "merchant_daily_push", "df": {"merchant_id": [1], "txn_count_1d": [1], "amount_mean_1d": [1.0],
                                                             "distinct_users_1d": [1], "event_ts": [RECENT]}}  # fmt: skip
    assert _post(guarded, push, "/push", headers=_bearer("fraud-secret-123")).status_code == 403
    assert _post(guarded, push, "/push", headers=_bearer("admin-secret-456")).status_code == 200


def test_autoscaling_settings_come_from_the_serving_config(served):
    from serving.features import build_app

    fabric = served[0]
    args = {"namespace": "x", "cache_shards": 1, "catalog": fabric.catalog}
    auto = build_app({**args, "serving": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 8}})
    config = auto._bound_deployment._deployment_config
    assert config.autoscaling_config.min_replicas == 1 and config.autoscaling_config.max_replicas == 3
    assert config.autoscaling_config.target_ongoing_requests == 8
    fixed = build_app({**args, "serving": {"replicas": 2}})._bound_deployment._deployment_config
    assert fixed.autoscaling_config is None and fixed.num_replicas == 2


def test_a_burst_of_keep_alive_requests_all_succeed(served):
    _, expected, http = served
    users = sorted(expected)
    for i in range(50):
        r = _post(http, {"features": FEATURES, "entities": {"user_id": users[i % 10: i % 10 + 5]}})
        assert r.status_code == 200 and len(r.json()["results"][0]["values"]) == 5


def test_reads_survive_a_cache_shard_restart(served):
    """Last in the module: it restarts a shard. Reads go on (503 at worst, never a 5xx of another kind, never a
    wrong value), the restarted shard answers from the online store (read-through), and the server's local
    socket to it is opened again."""
    import ray

    fabric, expected, http = served
    users = sorted(expected)[:30]
    body = {"features": FEATURES, "entities": {"user_id": users}}
    before = _post(http, body).json()
    ray.kill(fabric._shards[0], no_restart=False)
    answers = []
    for _ in range(600):
        r = _post(http, body)
        answers.append(r.status_code)
        if r.status_code == 200:
            assert r.json() == before  # the same values, read through from the online store
            if len(answers) > 20:
                break
        time.sleep(0.05)
    assert set(answers) <= {200, 503}, answers
    assert answers[-1] == 200
    for _ in range(100):  # the local socket to the new shard process is opened again
        if http.get("/health").json()["local_reads"] == fabric.config.stream.cache_shards:
            break
        time.sleep(0.2)
    assert http.get("/health").json()["local_reads"] == fabric.config.stream.cache_shards
    assert _post(http, body).json() == before
    stats = fabric.status()["cache_shards"][0]
    assert stats["restarted"] is True and stats["read_through_rows"] > 0
