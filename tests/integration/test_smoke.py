import httpx

from fabric_ray.demo.payments import generate_events, expected_features
from fabric_ray.demo.run import produce


def test_fabric_serves_features_computed_from_kafka(make_fabric):
    fabric = make_fabric()
    ev = generate_events(5000, users=200, bad_fraction=0.01)
    produce(fabric.bootstrap_servers, fabric.config.stream.topic, ev.keys, ev.payloads, progress=False)
    summary = fabric.wait_until_consumed(len(ev), timeout_s=60)
    assert summary["processed"] == ev.table.num_rows
    assert summary["dead_lettered"] == ev.bad
    exp = expected_features(ev.table)
    r = httpx.post(fabric.config.serving.url + "/get-online-features",
                   json={"features": ["user_payments:txn_count"], "entities": {"user_id": [1, 2]}})
    assert r.status_code == 200, r.text
    assert r.json()["results"][1]["values"] == [exp[1]["txn_count"], exp[2]["txn_count"]]
