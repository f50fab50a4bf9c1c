"""The Feast bridge: the demo repo's catalog, apply against a real registry and SQLite online store, refusals."""

from __future__ import annotations

import doctest
import os
import pickle
import shutil
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from fabric_ray.config import FabricConfig, StorageConfig
from fabric_ray.demo.payments import USER_PAYMENTS
from fabric_ray.features import feast_repo
from fabric_ray.features.catalog import BatchSource, CatalogError, FeatureService, PushSource
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.features.feast_repo import (
    FEATURE_DATA_ENV,
    FeatureRepoError,
    apply,
    feast_view,
    load_catalog,
    load_definitions,
    repo_config,
)

REPO = Path(__file__).resolve().parents[3] / "feature_store"
DAY_S = 86_400.0


@pytest.fixture
def cfg(tmp_path) -> FabricConfig:
    return FabricConfig(home=tmp_path / "home")


def own_repo(tmp_path: Path, body: str, name: str = "defs.py", header: bool = True) -> Path:
    """A feature repo of our own in ``tmp_path/repo``: ``body`` (after :data:`HEADER`) as ``name``."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (repo / name).write_text((HEADER if header else "") + textwrap.dedent(body))
    return repo


HEADER = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Int32, Int64, String, Bool, UnixTimestamp
src = FileSource(name="src", path="data/x.parquet", timestamp_field="ts")
"""


def test_doctests_pass():
    result = doctest.testmod(feast_repo, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- the demo repo's catalog -------------------------------------------------------------------------

def test_the_demo_catalog_has_the_views_with_our_types_and_ttls(cfg):
    cat = load_catalog(cfg)
    user = Entity("user", "user_id", "int64")
    merchant = Entity("merchant", "merchant_id", "int64")
    assert list(cat.views) == ["user_payments", "user_daily", "merchant_daily"]
    assert cat.view("user_payments") == USER_PAYMENTS  # exactly what the stream engine produces, no TTL
    assert cat.view("user_daily") == FeatureView(
        "user_daily", user,
        (Feature("txn_count_1d", "int64"), Feature("amount_sum_1d", "float64"), Feature("large_txn_count_1d", "int64")),
        ttl_s=2 * DAY_S,
    )
    assert cat.view("merchant_daily") == FeatureView(
        "merchant_daily", merchant,
        (Feature("txn_count_1d", "int64"), Feature("amount_mean_1d", "float64"), Feature("distinct_users_1d", "int64")),
        ttl_s=2 * DAY_S,
    )


def test_the_demo_catalog_has_the_service_push_sources_and_batch_sources(cfg):
    cat = load_catalog(cfg)
    refs = [(v.name, f) for v in cat.views.values() for f in v.feature_names]
    assert cat.services == {"fraud_model": FeatureService("fraud_model", tuple(refs))}
    assert len(refs) == 10
    assert cat.push_sources == {
        "user_payments_push": PushSource("user_payments_push", ("user_payments",)),
        "user_daily_push": PushSource("user_daily_push", ("user_daily",)),
        "merchant_daily_push": PushSource("merchant_daily_push", ("merchant_daily",)),
    }
    root = cfg.storage_root
    assert root.startswith("file:///")
    # user_payments is tagged materialize: "false": the stream feeds it, the fabric never materializes it
    assert cat.batch_sources == {
        view: BatchSource(f"{root}/features/{view}", "event_ts", "created_ts") for view in ("user_daily", "merchant_daily")
    }
    assert pickle.loads(pickle.dumps(cat)) == cat


def test_batch_sources_follow_an_s3_storage_root(tmp_path):
    storage = StorageConfig(root="s3://bucket/fabric", endpoint_url="http://127.0.0.1:9", access_key_id="k", secret_access_key="s")
    cfg = FabricConfig(home=tmp_path / "home", storage=storage)
    cat = load_catalog(cfg)
    assert cat.batch_sources["merchant_daily"].path == "s3://bucket/fabric/features/merchant_daily"
    source = feast_view(cfg, "merchant_daily").batch_source
    assert source.path == "s3://bucket/fabric/features/merchant_daily"
    assert source.s3_endpoint_override == "http://127.0.0.1:9"
    # the local-root config still sees its own paths: the cache is per storage root
    local = FabricConfig(home=tmp_path / "home")
    assert feast_view(local, "merchant_daily").batch_source.path == str((tmp_path / "home" / "storage" / "features" / "merchant_daily").resolve())
    assert feast_view(local, "merchant_daily").batch_source.s3_endpoint_override == ""


def test_loading_needs_no_apply_and_restores_the_environment(cfg, monkeypatch):
    monkeypatch.setenv(FEATURE_DATA_ENV, "/somewhere/else")
    cat = load_catalog(cfg)
    assert cat.batch_sources["user_daily"].path.startswith(cfg.storage_root)  # the fabric's root wins while loading
    assert os.environ[FEATURE_DATA_ENV] == "/somewhere/else"
    assert not (cfg.home / "features").exists()  # nothing registered, nothing created


def test_plain_feast_apply_paths_resolve_under_the_repo_data_folder(tmp_path, monkeypatch):
    # `feast apply` in feature_store/ runs the file without the fabric: batch data under data/
    monkeypatch.delenv(FEATURE_DATA_ENV, raising=False)
    import importlib.util

    spec = importlib.util.spec_from_file_location("plain_defs", REPO / "definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.user_daily.batch_source.path == "data/features/user_daily"
    assert module.user_payments.batch_source.path == "data/user_payments.parquet"


def test_load_definitions_returns_fresh_feast_objects_by_kind(cfg):
    first, second = load_definitions(cfg), load_definitions(cfg)
    names = [(type(o).__name__, o.name) for o in first]
    assert ("Entity", "user") in names and ("Entity", "merchant") in names
    assert ("FeatureService", "fraud_model") in names
    assert {n for k, n in names if k == "FeatureView"} == {"user_payments", "user_daily", "merchant_daily"}
    assert {n for k, n in names if k == "PushSource"} == {"user_payments_push", "user_daily_push", "merchant_daily_push"}
    assert {n for k, n in names if k == "FileSource"} == {"user_payments_source", "user_daily_source", "merchant_daily_source"}
    assert all(a is not b and a == b for a, b in zip(first, second))


def test_feast_view_gives_the_feast_object_or_a_404_naming_the_known(cfg):
    fv = feast_view(cfg, "user_daily")
    assert type(fv).__name__ == "FeatureView" and [f.name for f in fv.features] == ["txn_count_1d", "amount_sum_1d", "large_txn_count_1d"]
    assert fv is feast_view(cfg, "user_daily")  # cached
    with pytest.raises(CatalogError) as info:
        feast_view(cfg, "user_weekly")
    assert info.value.status == 404
    assert "'user_weekly'" in str(info.value) and "merchant_daily" in str(info.value)


# -- apply ---------------------------------------------------------------------------------------------

def test_apply_registers_everything_and_creates_the_online_tables(cfg):
    from feast import FeatureStore

    report = apply(cfg)
    assert report.project == "fabric_payments" and report.registry == cfg.feature_registry
    assert report.online_store == f"sqlite {cfg.online_store['path']}"
    assert {(o.kind, o.name) for o in report.objects} >= {
        ("project", "fabric_payments"), ("entity", "user"), ("entity", "merchant"), ("feature service", "fraud_model"),
        ("feature view", "user_daily"), ("data source", "merchant_daily_push"), ("data source", "user_payments_source"),
    }
    assert {o.status for o in report.objects} == {"new"} and report.changed == len(report.objects) == 13
    assert report.online_views == ("user_payments", "user_daily", "merchant_daily")

    store = FeatureStore(config=repo_config(cfg))
    assert sorted(v.name for v in store.list_feature_views()) == ["merchant_daily", "user_daily", "user_payments"]
    assert [s.name for s in store.list_feature_services()] == ["fraud_model"]
    assert sorted(e.name for e in store.list_entities()) == ["merchant", "user"]
    assert store.get_feature_view("user_daily").ttl.total_seconds() == 2 * DAY_S
    with sqlite3.connect(cfg.online_store["path"]) as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    assert {"fabric_payments_user_payments", "fabric_payments_user_daily", "fabric_payments_merchant_daily"} <= tables

    again = apply(cfg)
    assert again.changed == 0 and {o.status for o in again.objects} == {"unchanged"}
    assert again.to_dict()["changed"] == 0 and len(again.to_dict()["objects"]) == 13


def test_apply_deletes_what_the_repo_no_longer_defines(cfg, tmp_path):
    from feast import FeatureStore

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "definitions.py", repo / "definitions.py")
    cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"repo": repo})})
    apply(cfg)
    text = (repo / "definitions.py").read_text()
    cut = text.index("merchant_daily_source = ")
    # keep everything up to merchant_daily; change user_daily's TTL
    (repo / "definitions.py").write_text(text[:cut].replace("timedelta(days=2)", "timedelta(days=3)"))
    report = apply(cfg)
    status = {(o.kind, o.name): o.status for o in report.objects}
    assert status[("feature view", "merchant_daily")] == "deleted"
    assert status[("feature service", "fraud_model")] == "deleted"
    assert status[("data source", "merchant_daily_push")] == "deleted"
    assert status[("feature view", "user_daily")] == "changed"
    assert status[("feature view", "user_payments")] == "unchanged"
    store = FeatureStore(config=repo_config(cfg))
    assert sorted(v.name for v in store.list_feature_views()) == ["user_daily", "user_payments"]
    assert store.list_feature_services() == []
    with sqlite3.connect(cfg.online_store["path"]) as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    assert "fabric_payments_merchant_daily" not in tables and "fabric_payments_user_daily" in tables
    assert load_catalog(cfg).view("user_daily").ttl_s == 3 * DAY_S  # the cache saw the file change


def test_apply_refuses_an_unservable_repo_before_touching_the_registry(tmp_path):
    repo = own_repo(tmp_path, """
    e = Entity(name="e", join_keys=["e_id"], value_type=ValueType.INT64)
    v = FeatureView(name="v", entities=[e], source=src, schema=[Field(name="tags", dtype=Array(String))])
    """)
    cfg = FabricConfig(home=tmp_path / "home", features={"repo": repo})
    with pytest.raises(FeatureRepoError) as info:
        apply(cfg)
    assert "feature view 'v'" in str(info.value) and "field 'tags'" in str(info.value) and "Array(String)" in str(info.value)
    assert not Path(cfg.feature_registry).exists()


def test_apply_refuses_another_project(tmp_path):
    repo = own_repo(tmp_path, """
    from feast import Project
    p = Project(name="other")
    """)
    cfg = FabricConfig(home=tmp_path / "home", features={"repo": repo})
    with pytest.raises(FeatureRepoError, match="defines project 'other'; features.project is 'fabric_payments'"):
        apply(cfg)


# -- what the catalog refuses or maps ------------------------------------------------------------

def test_narrow_types_map_to_ours_and_an_untyped_key_takes_the_schema_type(tmp_path):
    repo = own_repo(tmp_path, """
    e = Entity(name="e", join_keys=["e_id"])
    v = FeatureView(name="v", entities=[e], source=src, ttl=timedelta(0),
                    schema=[Field(name="e_id", dtype=String), Field(name="a", dtype=Int32),
                            Field(name="b", dtype=Float32), Field(name="c", dtype=Bool)])
    """)
    cat = load_catalog(FabricConfig(home=tmp_path / "home", features={"repo": repo}))
    assert cat.view("v") == FeatureView("v", Entity("e", "e_id", "string"), (Feature("a", "int64"), Feature("b", "float64"), Feature("c", "bool")))
    assert cat.batch_sources["v"] == BatchSource(f"file://{(repo / 'data' / 'x.parquet').resolve()}", "ts", None)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("""
         e = Entity(name="e", join_keys=["e_id"], value_type=ValueType.INT64)
         v = FeatureView(name="v", entities=[e], source=src, schema=[Field(name="when", dtype=UnixTimestamp)])
         """, ["feature view 'v'", "field 'when'", "UnixTimestamp", "Int64, Int32, Float64"]),
        ("""
         e = Entity(name="e", join_keys=["e_id"], value_type=ValueType.INT64)
         f = Entity(name="f", join_keys=["f_id"], value_type=ValueType.INT64)
         v = FeatureView(name="v", entities=[e, f], source=src, schema=[Field(name="x", dtype=Int64)])
         """, ["feature view 'v'", "entities ['e', 'f']", "exactly one entity"]),
        ("""
         e = Entity(name="e", join_keys=["e_id"])
         v = FeatureView(name="v", entities=[e], source=src, schema=[Field(name="x", dtype=Int64)])
         """, ["entity 'e'", "value_type", "'e_id'", "schema of 'v'"]),
    ],
    ids=["timestamp-type", "two-entities", "untyped-key"],
)
def test_what_the_fabric_cannot_serve_is_refused_by_name(tmp_path, body, words):
    repo = own_repo(tmp_path, body)
    with pytest.raises(FeatureRepoError) as info:
        load_catalog(FabricConfig(home=tmp_path / "home", features={"repo": repo}))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_failing_file_is_named(tmp_path):
    repo = own_repo(tmp_path, "from feast import Entity\nuser = Entity(name='user', join_keys=['user_id']\n", "broken.py", header=False)
    with pytest.raises(FeatureRepoError) as info:
        load_definitions(FabricConfig(home=tmp_path / "home", features={"repo": repo}))
    assert str(info.value).startswith(f"feature repo file {repo / 'broken.py'}: SyntaxError")


def test_two_objects_of_one_kind_with_one_name_are_refused(tmp_path):
    own_repo(tmp_path, "from feast import Entity, ValueType\nuser = Entity(name='user', join_keys=['a'], value_type=ValueType.INT64)\n", "a.py", header=False)
    repo = own_repo(tmp_path, "from feast import Entity, ValueType\nuser = Entity(name='user', join_keys=['b'], value_type=ValueType.INT64)\n", "b.py", header=False)
    with pytest.raises(FeatureRepoError) as info:
        load_definitions(FabricConfig(home=tmp_path / "home", features={"repo": repo}))
    assert "a second entity named 'user'" in str(info.value) and str(repo / "a.py") in str(info.value)


def test_a_missing_repo_says_which_setting_to_fix(tmp_path):
    with pytest.raises(FeatureRepoError, match="is not a folder; set features.repo"):
        load_catalog(FabricConfig(home=tmp_path / "home", features={"repo": tmp_path / "nope"}))


def test_feastignore_is_honoured_like_feast_apply(tmp_path):
    own_repo(tmp_path, "raise RuntimeError('should be ignored')\n", "scratch.py", header=False)
    repo = own_repo(tmp_path, """
    e = Entity(name="e", join_keys=["e_id"], value_type=ValueType.INT64)
    v = FeatureView(name="v", entities=[e], source=src, schema=[Field(name="x", dtype=Int64)])
    """)
    (repo / ".feastignore").write_text("scratch.py\n")
    assert list(load_catalog(FabricConfig(home=tmp_path / "home", features={"repo": repo})).views) == ["v"]


def test_online_store_settings_feast_refuses_are_named(tmp_path):
    cfg = FabricConfig(home=tmp_path / "home", features={"online_store": {"type": "sqlite", "paht": "x.db"}})
    with pytest.raises(FeatureRepoError) as info:
        apply(cfg)
    message = str(info.value)
    assert message.startswith("Feast refuses the feature store settings features.online_store (sqlite)")
    assert "paht" in message and "Extra inputs are not permitted" in message and "\n" not in message
    assert not Path(cfg.feature_registry).exists()


def test_repo_files_may_import_each_other_and_are_reread_fresh(tmp_path):
    own_repo(tmp_path, "from feast import Entity, ValueType\ncustomer = Entity(name='customer', join_keys=['customer_id'], value_type=ValueType.INT64)\n",
             "entities.py", header=False)
    repo = own_repo(tmp_path, """
    from entities import customer
    v = FeatureView(name="v", entities=[customer], source=src, schema=[Field(name="x", dtype=Int64)])
    """, "views.py")
    cfg = FabricConfig(home=tmp_path / "home", features={"repo": repo})
    assert load_catalog(cfg).view("v").entity == Entity("customer", "customer_id", "int64")
    names = [o.name for o in load_definitions(cfg)]
    assert names.count("customer") == 1  # imported into views.py too, collected once
    assert "entities" not in sys.modules and str(repo) not in sys.path
    (repo / "entities.py").write_text((repo / "entities.py").read_text().replace("INT64", "STRING") + "\n")
    assert load_catalog(cfg).view("v").entity.dtype == "string"


def test_a_repo_file_named_like_an_installed_module_is_refused(tmp_path):
    repo = own_repo(tmp_path, "x = 1\n", "json.py", header=False)
    with pytest.raises(FeatureRepoError, match="'json' .* has the name of the installed module 'json'; rename it"):
        load_definitions(FabricConfig(home=tmp_path / "home", features={"repo": repo}))
    import json

    assert sys.modules["json"] is json
