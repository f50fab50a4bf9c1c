"""Feast's own client reads (and writes) the fabric's features, unchanged, through Feast's ``remote`` online store.

Feast 0.67's ``RemoteOnlineStore`` (``feast/infra/online_stores/remote.py``) sends, for
``FeatureStore.get_online_features(features=[...] or a FeatureService, entity_rows=[...])``,
exactly one request::

    POST {online_store.path}/get-online-features
    {"entities": {"user_id": [..]}, "full_feature_names": false,
     "include_feature_view_version_metadata": false, "features": ["user_payments:txn_count", ..]}

(``"feature_service": "<name>"`` instead of ``features`` for a service). ``FeatureStore.push``
and ``write_to_online_store`` send ``POST {path}/write-to-online-store`` with the view's rows.
``path`` is joined by plain string concatenation, so a server mounted under a route prefix
(``http://127.0.0.1:PORT/<name>``, as ``make_fabric`` mounts it) works. The client maps the
results by ``metadata.feature_names``, turns each JSON value back into a Feast value by its
Python type, and for a non-200 answer maps Feast's error body (a JSON string holding module,
class and message) back to that Feast exception. With ``auth: {type: oidc, token: ...}`` it sends
the token as ``Authorization: Bearer``.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import yaml

from fabric_ray.demo.payments import USER_PAYMENTS, expected_features, generate_events
from fabric_ray.demo.run import produce

REPO = Path(__file__).resolve().parents[2] / "feature_store"
FEATURES = [f"{USER_PAYMENTS.name}:{name}" for name in USER_PAYMENTS.feature_names]
UNKNOWN_USER = 10**9
RECENT = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)


def _load_definitions() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fabric_payments_feast_definitions", REPO / "definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _remote_store(path: Path, url: str, token: str | None = None):
    """A Feast repo at ``path`` with our definitions, whose online store is the fabric at ``url``."""
    from feast import FeatureStore

    (path / "data").mkdir(parents=True)
    shutil.copy(REPO / "definitions.py", path / "definitions.py")
    config = yaml.safe_load((REPO / "feature_store.yaml").read_text())
    config["online_store"] = {"type": "remote", "path": url}
    if token is not None:
        config["auth"] = {"type": "oidc", "token": token}
    (path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    defs = _load_definitions()
    store = FeatureStore(repo_path=str(path))
    store.apply([obj for obj in vars(defs).values() if _is_feast_object(obj)])
    return store


def _is_feast_object(obj: object) -> bool:
    from feast import Entity, FeatureService, FeatureView, FileSource, PushSource

    return isinstance(obj, (Entity, FeatureService, FeatureView, FileSource, PushSource))


@pytest.fixture(scope="module")
def remote(make_module_fabric, tmp_path_factory):
    """A fabric that consumed 3,000 events of 150 users, with daily rows pushed; a Feast store reading it."""
    fabric = make_module_fabric()
    events = generate_events(3000, users=150, bad_fraction=0.01)
    produce(fabric.bootstrap_servers, fabric.config.stream.topic, events.keys, events.payloads, progress=False)
    fabric.wait_until_consumed(len(events), timeout_s=60)
    expected = expected_features(events.table)
    users = sorted(expected)[:25]
    stamp = RECENT.strftime("%Y-%m-%dT%H:%M:%SZ")
    fabric.features.push("user_daily_push", {"user_id": users, "txn_count_1d": list(range(25)), "amount_sum_1d": [u * 0.5 for u in users],
                                             "large_txn_count_1d": [1] * 25, "event_ts": [stamp] * 25})  # fmt: skip
    fabric.features.push("merchant_daily_push", {"merchant_id": [1, 2], "txn_count_1d": [10, 20], "amount_mean_1d": [1.5, 2.5],
                                                 "distinct_users_1d": [3, 4], "event_ts": [stamp] * 2})  # fmt: skip
    store = _remote_store(tmp_path_factory.mktemp("feast_remote"), fabric.config.serving.url)
    return fabric, store, expected, users


def test_feast_definitions_match_the_fabric_view():
    from feast.types import Float64, Int64

    defs = _load_definitions()
    feast_types = {"int64": Int64, "float64": Float64}
    view = defs.user_payments
    assert view.name == USER_PAYMENTS.name
    assert view.entities == [USER_PAYMENTS.entity.name]
    assert defs.user.join_key == USER_PAYMENTS.entity.join_key
    assert [(f.name, f.dtype) for f in view.features] == [(f.name, feast_types[f.dtype]) for f in USER_PAYMENTS.features]


def test_feast_remote_online_store_reads_the_fabric(remote):
    _, store, expected, users = remote
    users = users + [UNKNOWN_USER]
    for full_names in (False, True):
        got = store.get_online_features(
            features=FEATURES, entity_rows=[{"user_id": u} for u in users], full_feature_names=full_names
        ).to_dict()
        assert got["user_id"] == users
        for feature in USER_PAYMENTS.features:
            column = got[f"{USER_PAYMENTS.name}__{feature.name}" if full_names else feature.name]
            assert column[-1] is None, f"{feature.name} of an unknown user"
            for uid, value in zip(users[:-1], column[:-1]):
                want = expected[uid][feature.name]
                assert type(value) is type(want), f"user {uid} {feature.name}: {value!r} is not {type(want).__name__}"
                assert math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-6), f"user {uid} {feature.name}: {value!r} != {want!r}"


def test_feast_remote_reads_a_feature_service_over_two_entities(remote):
    _, store, expected, users = remote
    service = store.get_feature_service("fraud_model")
    rows = [{"user_id": users[0], "merchant_id": 1}, {"user_id": users[3], "merchant_id": 2}, {"user_id": UNKNOWN_USER, "merchant_id": 99}]
    response = store.get_online_features(features=service, entity_rows=rows, full_feature_names=True)
    got = response.to_dict()
    assert got["user_id"] == [users[0], users[3], UNKNOWN_USER] and got["merchant_id"] == [1, 2, 99]
    assert got["user_payments__txn_count"][:2] == [expected[users[0]]["txn_count"], expected[users[3]]["txn_count"]]
    assert got["user_payments__txn_count"][2] is None
    assert got["user_daily__txn_count_1d"] == [0, 3, None]
    assert got["user_daily__amount_sum_1d"][:2] == [users[0] * 0.5, users[3] * 0.5]
    assert got["merchant_daily__amount_mean_1d"] == [1.5, 2.5, None]
    # the statuses come through too
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    names = list(response.proto.metadata.feature_names.val)
    statuses = response.proto.results[names.index("merchant_daily__amount_mean_1d")].statuses
    assert list(statuses) == [FieldStatus.PRESENT, FieldStatus.PRESENT, FieldStatus.NOT_FOUND]


def test_feast_remote_push_writes_through_to_the_fabric(remote):
    fabric, store, _, _ = remote
    uid = 770_000_001
    df = pd.DataFrame({"user_id": [uid], "txn_count": [7], "amount_sum": [70.5], "txn_count_1m": [1],
                       "amount_sum_1m": [10.5], "event_ts": [pd.Timestamp(RECENT)]})  # fmt: skip
    store.push("user_payments_push", df)  # Feast's remote online store: POST /write-to-online-store
    got = store.get_online_features(features=FEATURES, entity_rows=[{"user_id": uid}]).to_dict()
    assert got["txn_count"] == [7] and got["amount_sum"] == [70.5]
    body = fabric.features.get_online(FEATURES, {"user_id": [uid]})
    assert body["results"][1]["values"] == [7] and body["results"][1]["event_timestamps"] == [RECENT.strftime("%Y-%m-%dT%H:%M:%SZ")]


def test_feast_remote_gets_feasts_own_exception_for_an_unknown_service(remote):
    from feast import FeatureService
    from feast.errors import FeatureServiceNotFoundException

    _, store, _, users = remote
    ghost = FeatureService(name="ghost_service", features=[_load_definitions().user_payments])  # not in the fabric's repo
    with pytest.raises(FeatureServiceNotFoundException, match="ghost_service"):
        store._get_provider().online_store.get_online_features(  # the remote store's own call
            store.config, ghost, {"user_id": [users[0]]}, store.registry, store.project
        )


def test_feast_remote_with_a_bearer_token(remote, tmp_path):
    from ray import serve

    from serving.features import build_app

    fabric, _, expected, users = remote
    cfg = fabric.config
    name, prefix = f"{cfg.ray.namespace}-tok-{uuid.uuid4().hex[:4]}", f"/{cfg.ray.namespace}-tok"
    serving = {**cfg.serving.model_dump(), "tokens": [{"name": "feast-client", "secret": "feast-secret-789", "scopes": ["user_payments"]}]}
    serve.run(build_app({"namespace": cfg.ray.namespace, "cache_shards": cfg.stream.cache_shards, "catalog": fabric.catalog, "serving": serving}),
              name=name, route_prefix=prefix)  # fmt: skip
    try:
        url = f"http://{cfg.serving.host}:{cfg.serving.port}{prefix}"
        store = _remote_store(tmp_path / "with_token", url, token="feast-secret-789")
        got = store.get_online_features(features=FEATURES, entity_rows=[{"user_id": users[0]}]).to_dict()
        assert got["txn_count"] == [expected[users[0]]["txn_count"]]
        from feast.errors import FeastPermissionError

        with pytest.raises(FeastPermissionError, match="merchant_daily"):  # Feast's own 403 exception
            store.get_online_features(features=["merchant_daily:txn_count_1d"], entity_rows=[{"merchant_id": 1}])
        stranger = _remote_store(tmp_path / "wrong_token", url, token="not-the-secret")
        with pytest.raises(Exception, match="401"):
            stranger.get_online_features(features=FEATURES, entity_rows=[{"user_id": users[0]}])
    finally:
        serve.delete(name)
