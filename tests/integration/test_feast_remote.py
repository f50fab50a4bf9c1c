"""Feast's own client reads the fabric's features, unchanged, through Feast's ``remote`` online store.

Feast 0.67's ``RemoteOnlineStore`` (``feast/infra/online_stores/remote.py``) sends, for
``FeatureStore.get_online_features(features=[...], entity_rows=[...])``, exactly one request::

    POST {online_store.path}/get-online-features
    {"entities": {"user_id": [..]}, "full_feature_names": false,
     "include_feature_view_version_metadata": false, "features": ["user_payments:txn_count", ..]}

``path`` is joined by plain string concatenation, so a server mounted under a route prefix
(``http://127.0.0.1:PORT/<name>``, as ``make_fabric`` mounts it) works. The client maps the
results by ``metadata.feature_names``, turns each JSON value back into a Feast value by its
Python type, and raises ``RuntimeError("Failed to get online features: <status> <body>")`` on
anything but 200.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path
from types import ModuleType

import yaml

from fabric_ray.demo.payments import USER_PAYMENTS, expected_features, generate_events
from fabric_ray.demo.run import produce

REPO = Path(__file__).resolve().parents[2] / "feature_store"
FEATURES = [f"{USER_PAYMENTS.name}:{name}" for name in USER_PAYMENTS.feature_names]
UNKNOWN_USER = 10**9


def _load_definitions() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fabric_payments_feast_definitions", REPO / "definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _remote_store(tmp_path: Path, url: str):
    """A Feast repo in ``tmp_path`` with our definitions, whose online store is the fabric at ``url``."""
    from feast import FeatureStore

    repo = tmp_path / "feast_remote"
    (repo / "data").mkdir(parents=True)
    shutil.copy(REPO / "definitions.py", repo / "definitions.py")
    config = yaml.safe_load((REPO / "feature_store.yaml").read_text())
    config["online_store"] = {"type": "remote", "path": url}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    defs = _load_definitions()
    store = FeatureStore(repo_path=str(repo))
    store.apply([defs.user, defs.user_payments_source, defs.user_payments_push, defs.user_payments])
    return store


def test_feast_definitions_match_the_fabric_view():
    from feast.types import Float64, Int64

    defs = _load_definitions()
    feast_types = {"int64": Int64, "float64": Float64}
    view = defs.user_payments
    assert view.name == USER_PAYMENTS.name
    assert view.entities == [USER_PAYMENTS.entity.name]
    assert defs.user.join_key == USER_PAYMENTS.entity.join_key
    assert [(f.name, f.dtype) for f in view.features] == [(f.name, feast_types[f.dtype]) for f in USER_PAYMENTS.features]


def test_feast_remote_online_store_reads_the_fabric(make_fabric, tmp_path):
    fabric = make_fabric()
    events = generate_events(3000, users=150, bad_fraction=0.01)
    produce(fabric.bootstrap_servers, fabric.config.stream.topic, events.keys, events.payloads, progress=False)
    fabric.wait_until_consumed(len(events), timeout_s=60)
    expected = expected_features(events.table)
    users = sorted(expected)[:25] + [UNKNOWN_USER]

    store = _remote_store(tmp_path, fabric.config.serving.url)
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
