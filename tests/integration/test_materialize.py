"""Materialization on the session's Ray cluster: latest per entity in range, ties, incremental runs, warming."""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fabric_ray.config import FabricConfig, StorageConfig
from fabric_ray.features.catalog import BatchSource, Catalog
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.features.materialize import MaterializeError, materialize
from fabric_ray.features.online_store import OnlineStore, feast_objects
from fabric_ray.storage.fs import open_location

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
VIEW = FeatureView("user_daily", Entity("user", "user_id", "int64"), (Feature("spend", "float64"), Feature("tier", "string")))


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def rows(*records: tuple) -> pa.Table:
    """(user_id, spend, tier, event hour, created hour or None)"""
    users, spend, tier, ts, created = zip(*records)
    stamp = pa.timestamp("us", tz="UTC")
    return pa.table({
        "user_id": pa.array(users, pa.int64()),
        "spend": pa.array(spend, pa.float64()),
        "tier": pa.array(tier, pa.string()),
        "event_timestamp": pa.array([at(h) for h in ts], stamp),
        "created": pa.array([None if c is None else at(c) for c in created], stamp),
    })


def setup(tmp_path, storage: StorageConfig | None = None) -> tuple[FabricConfig, Catalog, str]:
    """A config with its own Feast project and registry, the view applied there, and the source folder URI."""
    home = tmp_path / "home"
    storage = storage or StorageConfig(root=f"file://{tmp_path / 'storage'}")
    cfg = FabricConfig(
        home=str(home),
        storage=storage,
        ray={"address": "auto"},
        features={"project": f"mat_{uuid.uuid4().hex[:8]}", "registry": str(home / "registry.db"), "repo": str(tmp_path),
                  "materialize_batch_rows": 2},
    )
    folder = open_location(storage.root, storage).child("features", VIEW.name)
    catalog = Catalog.of([VIEW], batch_sources={VIEW.name: BatchSource(folder.uri, "event_timestamp", "created")})
    from feast import FeatureStore, FileSource

    from fabric_ray.features.feast_repo import repo_config

    FeatureStore(config=repo_config(cfg)).apply(
        list(feast_objects(VIEW, FileSource(path=str(tmp_path / "unused.parquet"), timestamp_field="event_timestamp", created_timestamp_column="created"))))
    return cfg, catalog, folder.uri


def put(uri: str, storage: StorageConfig, name: str, table: pa.Table, row_group_size: int | None = None) -> None:
    loc = open_location(uri, storage)
    fs = loc.arrow_filesystem()
    fs.create_dir(loc.path, recursive=True)
    pq.write_table(table, loc.join(name), filesystem=fs, row_group_size=row_group_size)


def stored(cfg: FabricConfig, catalog: Catalog, keys) -> dict:
    got = OnlineStore(cfg, catalog).read(VIEW.name, keys)
    return {r.pop("user_id"): r for r in got.to_pylist()}


def ms(hours: float) -> int:
    return int(at(hours).timestamp() * 1000)


def test_latest_row_per_entity_in_range_with_ties_on_file_and_s3(ray_cluster, tmp_path, storage_root):
    cfg, catalog, uri = setup(tmp_path, storage_root.config)
    put(uri, cfg.storage, "part-0.parquet", rows(
        (1, 1.0, "a", 10, 10), (1, 2.0, "b", 11, 11), (1, 99.0, "late", 13, 13),  # 13:00 is past the end
        (2, 3.0, "c", 9, 9.05), (2, 4.0, "d", 9, 9.1), (2, 0.5, "old", 7, 7),  # tie on time: the latest created wins
        (3, 5.0, "e", 6, 6),  # before the start: not written
        (4, 6.0, "f", 9, 9),
        (5, 7.0, "g", 9, 9), (5, 8.0, None, 9, None),  # a null created loses the tie
    ))
    put(uri, cfg.storage, "part-1.parquet", rows((4, 6.5, "f2", 9, 9), (6, None, "h", 8, 8)))  # full tie: the later file wins
    warmed: list[pa.Table] = []
    report = materialize(cfg, catalog, start=at(8), end=at(12), incremental=False, progress=False,
                         warm=lambda view, t: warmed.append(t) if view == VIEW.name else None)
    v = report.view(VIEW.name)
    assert (v.files, v.rows_read, v.rows_in_range, v.entities_written, v.recorded) == (2, 12, 9, 5, True)
    assert report.entities_written == 5 and report.rows_read == 12
    want = {
        1: {"spend": 2.0, "tier": "b", "event_ts_ms": ms(11)},
        2: {"spend": 4.0, "tier": "d", "event_ts_ms": ms(9)},
        4: {"spend": 6.5, "tier": "f2", "event_ts_ms": ms(9)},
        5: {"spend": 7.0, "tier": "g", "event_ts_ms": ms(9)},
        6: {"spend": None, "tier": "h", "event_ts_ms": ms(8)},
    }
    assert stored(cfg, catalog, [1, 2, 3, 4, 5, 6, 7]) == want
    # the warm callback saw every written row, as row tables, in batches of materialize_batch_rows
    assert all(t.num_rows <= 2 for t in warmed) and sum(t.num_rows for t in warmed) == 5
    assert {r.pop("user_id"): r for t in warmed for r in t.to_pylist()} == want
    assert warmed[0].column_names == ["user_id", "spend", "tier", "event_ts_ms"]


def test_incremental_runs_continue_from_the_last_recorded_end(ray_cluster, tmp_path):
    from feast import FeatureStore

    from fabric_ray.features.feast_repo import repo_config

    cfg, catalog, uri = setup(tmp_path)
    put(uri, cfg.storage, "part-0.parquet", rows((1, 1.0, "a", 1, 1), (2, 2.0, "b", 2, 2), (3, 3.0, "c", 3, 3), (4, 4.0, "d", 4, 4)), row_group_size=2)
    first = materialize(cfg, catalog, end=at(10), progress=False).view(VIEW.name)  # no TTL, no record: from the beginning
    assert (first.start, first.end, first.entities_written, first.recorded) == (None, at(10), 4, True)

    # new rows arrive in a new file, plus one stamped before the last end (it belongs to the run that is over)
    put(uri, cfg.storage, "part-1.parquet", rows((2, 20.0, "B", 11, 11), (5, 5.0, "e", 12, 12), (3, 30.0, "late", 9, 12)))
    second = materialize(cfg, catalog, end=at(20), progress=False).view(VIEW.name)
    assert second.start == at(10) and second.end == at(20)
    assert (second.row_groups, second.row_groups_read) == (3, 1)  # part-0's row groups are all before at(10): not read
    assert (second.rows_read, second.rows_in_range, second.entities_written) == (3, 2, 2)
    assert stored(cfg, catalog, [1, 2, 3, 5]) == {
        1: {"spend": 1.0, "tier": "a", "event_ts_ms": ms(1)},
        2: {"spend": 20.0, "tier": "B", "event_ts_ms": ms(11)},
        3: {"spend": 3.0, "tier": "c", "event_ts_ms": ms(3)},
        5: {"spend": 5.0, "tier": "e", "event_ts_ms": ms(12)},
    }
    # Feast sees the same bookkeeping as after its own runs
    fv = FeatureStore(config=repo_config(cfg)).registry.get_feature_view(VIEW.name, cfg.features.project, allow_cache=False)
    assert [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in fv.materialization_intervals] == [
        (dt.datetime(1970, 1, 1, tzinfo=UTC), at(10)), (at(10), at(20))]
    assert fv.most_recent_end_time.astimezone(UTC) == at(20)
    # nothing new: a run up to the same end does nothing
    again = materialize(cfg, catalog, end=at(20), progress=False).view(VIEW.name)
    assert (again.rows_read, again.entities_written, again.recorded) == (0, 0, False)


def test_errors_name_the_view_and_the_file(ray_cluster, tmp_path):
    cfg, catalog, uri = setup(tmp_path)
    put(uri, cfg.storage, "part-0.parquet", rows((1, 1.0, "a", 1, 1)).drop_columns(["tier"]))
    with pytest.raises(MaterializeError, match=r"part-0.parquet has no column\(s\) \['tier'\]"):
        materialize(cfg, catalog, end=at(10), progress=False)
    # a type error found by a scan task on Ray comes back as our error, naming the file and column
    put(uri, cfg.storage, "part-0.parquet", rows((1, 1.0, "a", 1, 1)).set_column(1, "spend", pa.array(["x"])))
    with pytest.raises(MaterializeError, match=r"part-0.parquet: column 'spend' is string, the view has double"):
        materialize(cfg, catalog, end=at(10), progress=False)
    unapplied = Catalog.of([FeatureView("other", VIEW.entity, VIEW.features)], batch_sources={"other": catalog.batch_sources[VIEW.name]})
    with pytest.raises(MaterializeError, match="'other' is not in the Feast registry"):
        materialize(cfg, unapplied, end=at(10), progress=False)
    with pytest.raises(MaterializeError, match="has no batch source"):
        materialize(cfg, Catalog.of([VIEW]), [VIEW.name], progress=False)
