"""ETL run records in the metadata database: round trips on SQLite (and PostgreSQL when available)."""

from __future__ import annotations

import pytest

from fabric_ray.etl.runs import EtlRunStore, RunRecord
from fabric_ray.governance.registry_store import StoreError


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'deep' / 'folder' / 'metadata.db'}"
    return request.getfixturevalue("new_postgres_database")("etl")


def finished(pipeline: str, started: float, status: str = "succeeded", **fields) -> RunRecord:
    rec = RunRecord.start(pipeline, inputs=("parquet raw/*.parquet",), started_at_s=started, definition={"name": pipeline})
    return rec.finish(status, duration_s=1.25, rows_in=100, rows_out=90, **fields)


def test_a_record_round_trips(url):
    store = EtlRunStore(url)
    running = RunRecord.start("daily", inputs=("csv a.csv",), started_at_s=1_700_000_000.5)
    store.put(running)
    assert store.get(running.run_id) == running
    done = running.finish(
        "gate_failed",
        duration_s=3.5,
        rows_in=2**40,
        rows_out=7,
        outputs={"dataset": "d", "version": None, "files": [], "aborted_files": 3},
        profile={"rows": 7, "columns": [{"name": "x", "nulls": 0}]},
        gate={"passed": False, "results": [{"check": "x: not null", "passed": False, "samples": [{"x": None}]}]},
        error=None,
    )
    store.put(done)
    store.close()
    again = EtlRunStore(url)  # a new store on the same database sees it
    got = again.get(running.run_id)
    assert got == done
    assert got.gate["results"][0]["samples"] == [{"x": None}]
    assert got.started_at == "2023-11-14T22:13:20.500000+00:00"
    assert RunRecord.from_dict(got.to_dict()) == got
    again.close()


def test_list_is_newest_first_and_filters_by_pipeline(url):
    store = EtlRunStore(url)
    recs = [finished("a", 10.0), finished("b", 20.0, "failed", error="boom"), finished("a", 30.0, "gate_failed")]
    for r in recs:
        store.put(r)
    assert [r.run_id for r in store.list()] == [recs[2].run_id, recs[1].run_id, recs[0].run_id]
    assert [r.run_id for r in store.list(pipeline="a")] == [recs[2].run_id, recs[0].run_id]
    assert [r.run_id for r in store.list(limit=1)] == [recs[2].run_id]
    assert store.list(pipeline="zzz") == []
    assert store.get(recs[1].run_id).error == "boom"
    store.close()


def test_get_takes_a_unique_prefix(tmp_path):
    store = EtlRunStore(f"sqlite:///{tmp_path / 'm.db'}")
    one = RunRecord.start("p", run_id="abcdef0001", started_at_s=1.0)
    two = RunRecord.start("p", run_id="abcdef0002", started_at_s=2.0)
    store.put(one)
    store.put(two)
    assert store.get("abcdef0002") == two
    with pytest.raises(LookupError, match="ambiguous"):
        store.get("abcdef")
    store.put(RunRecord.start("p", run_id="zz_x%9", started_at_s=3.0))
    assert store.get("zz_x%9").run_id == "zz_x%9"
    assert store.get("zz_x%") is None or store.get("zz_x%").run_id == "zz_x%9"
    assert store.get("nothing") is None
    store.close()


def test_exit_codes_and_statuses():
    rec = RunRecord.start("p")
    assert rec.status == "running" and rec.exit_code == 2
    assert rec.finish("succeeded").exit_code == 0
    assert rec.finish("gate_failed").exit_code == 1
    assert rec.finish("failed").exit_code == 2
    with pytest.raises(ValueError, match="status must be one of"):
        rec.finish("done")


def test_a_bad_url_names_it():
    with pytest.raises(StoreError, match="mysql://u:\\*\\*\\*@h/db"):
        EtlRunStore("mysql://u:secret@h/db")
