"""An agent in another process reads and pushes features through ``fabric_ray.connect().features`` (actor handles, no HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import ray

from fabric_ray import Fabric
from fabric_ray.demo.payments import expected_features, generate_events
from fabric_ray.demo.run import produce

from .conftest import fabric_config
from .kafka_helpers import FEATURES

AGENT = """
import json, os, sys
from fabric_ray import connect
from fabric_ray.features.wire import RequestError
users = json.loads(sys.argv[1])
fabric = connect(os.environ["AGENT_RAY_ADDRESS"], namespace=os.environ["FABRIC_RAY__NAMESPACE"])
body = fabric.get_online_features(json.loads(sys.argv[2]), {"user_id": users})
via_handle = fabric.features.get_online(json.loads(sys.argv[2]), {"user_id": users})
pushed = fabric.features.push("merchant_daily_push", {"merchant_id": [41, 42], "txn_count_1d": [4, 5], "amount_mean_1d": [4.5, None],
                              "distinct_users_1d": [2, 3], "event_ts": [sys.argv[3]] * 2})
service = fabric.features.get_online(feature_service="fraud_model", entities={"user_id": users[:2], "merchant_id": [41, 42]},
                                     full_feature_names=True)
try:
    fabric.features.get_online(["user_payments:nope"], {"user_id": [1]})
    refused = None
except RequestError as exc:
    refused = [exc.status, str(exc)]
print(json.dumps({"body": body, "via_handle": via_handle, "pushed": pushed, "service": service, "refused": refused,
                  "namespace": fabric.config.ray.namespace, "topic": fabric.config.stream.topic}))
"""


def _agent_env(fabric: Fabric, address: str) -> dict[str, str]:
    cfg = fabric.config
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "RAY_ADDRESS"))}
    env.update(
        {
            "AGENT_RAY_ADDRESS": address,
            "RAY_ADDRESS": address,
            "FABRIC_HOME": str(cfg.home),
            "FABRIC_RAY__NAMESPACE": cfg.ray.namespace,
            "FABRIC_KAFKA__BOOTSTRAP_SERVERS": fabric.bootstrap_servers,
            "FABRIC_KAFKA__TOPIC_CREATION": cfg.kafka.topic_creation,
            "FABRIC_STREAM__TOPIC": cfg.stream.topic,
            "FABRIC_STREAM__DEAD_LETTER_TOPIC": cfg.stream.dead_letter_topic,
            "FABRIC_STREAM__CONSUMER_GROUP": cfg.stream.consumer_group,
            "FABRIC_STREAM__CACHE_SHARDS": str(cfg.stream.cache_shards),
            "FABRIC_SERVING__PORT": str(cfg.serving.port),
            "FABRIC_SERVING__ROUTE_PREFIX": cfg.serving.route_prefix,
        }
    )
    if (Path.home() / ".ray" / "auth_token").exists():
        env["RAY_AUTH_MODE"] = "token"
    return env


@pytest.fixture(scope="module")
def fabric_with_data(make_module_fabric):
    fabric = make_module_fabric(cache_shards=3)
    ev = generate_events(1500, users=50, seed=13, bad_fraction=0)
    produce(fabric.bootstrap_servers, fabric.config.stream.topic, ev.keys, ev.payloads, progress=False)
    fabric.wait_until_consumed(len(ev), timeout_s=120)
    return fabric, expected_features(ev.table)


def test_agent_in_another_process_reads_features(fabric_with_data):
    fabric, expected = fabric_with_data
    address = ray.get_runtime_context().gcs_address
    users = sorted(expected)[:10] + [424242]
    stamp = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    proc = subprocess.run(
        [sys.executable, "-c", AGENT, json.dumps(users), json.dumps(FEATURES), stamp],
        env=_agent_env(fabric, address),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["namespace"] == fabric.config.ray.namespace
    assert out["topic"] == fabric.config.stream.topic
    body = out["body"]
    names = body["metadata"]["feature_names"]
    assert names[0] == "user_id"
    assert body["results"][0]["values"] == users
    for col, name in enumerate(names[1:], start=1):
        res = body["results"][col]
        assert res["statuses"] == ["PRESENT"] * 10 + ["NOT_FOUND"], name
        assert res["values"][:10] == pytest.approx([expected[u][name] for u in users[:10]]), name
    # and it is the same body this process gets, through either handle
    assert body == out["via_handle"] == json.loads(json.dumps(fabric.get_online_features(FEATURES, {"user_id": users})))
    # the agent's push is in the cache: the agent and this process read it through the feature service
    assert out["pushed"] == {"push_source_name": "merchant_daily_push", "rows": 2, "views": ["merchant_daily"]}
    service = out["service"]
    cols = dict(zip(service["metadata"]["feature_names"], service["results"]))
    assert cols["merchant_id"]["values"] == [41, 42] and cols["user_id"]["values"] == users[:2]
    assert cols["merchant_daily__amount_mean_1d"]["values"] == [4.5, None]
    assert cols["merchant_daily__amount_mean_1d"]["statuses"] == ["PRESENT", "NULL_VALUE"]
    assert cols["merchant_daily__txn_count_1d"]["event_timestamps"] == [stamp, stamp]
    assert service == json.loads(json.dumps(fabric.features.get_online(
        feature_service="fraud_model", entities={"user_id": users[:2], "merchant_id": [41, 42]}, full_feature_names=True)))
    status, message = out["refused"]
    assert status == 404 and "'nope'" in message


def test_attach_to_namespace_without_fabric_says_fabric_up(ray_cluster, kafka_broker, serve_port, tmp_path):
    cfg = fabric_config("nobody_home", kafka_broker, serve_port, tmp_path)
    with pytest.raises(LookupError, match="fabric up"):
        Fabric(cfg).attach(timeout_s=1)

