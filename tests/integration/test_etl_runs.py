"""ETL runs on the session's Ray cluster against both storage kinds, a real broker and the ``fabric etl`` command.

Each run goes read -> transforms -> gate -> staged files -> one commit (or an abort); the tests check
what readers of the dataset see, what is left on storage, and what the run record says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fabric_ray.config import StorageConfig, load_config
from fabric_ray.etl.pipeline import EtlPipeline, load_pipeline
from fabric_ray.etl.runner import run_etl
from fabric_ray.etl.runs import EtlRunStore
from fabric_ray.etl.sources import dataset_location
from fabric_ray.storage import open_location
from fabric_ray.storage.dataset import Dataset, DatasetSpec

pytestmark = pytest.mark.integration

TRANSFORMS_MODULE = """
import pyarrow as pa
import pyarrow.compute as pc


def add_tier(table, threshold=50.0):
    return table.append_column("tier", pc.if_else(pc.greater_equal(table["amount"], threshold), "high", "low"))
"""


def make_config(tmp_path, storage_root, **overrides):
    return load_config(
        None,
        home=str(tmp_path / "home"),
        storage=getattr(storage_root, "config", storage_root),
        metadata={"url": f"sqlite:///{tmp_path / 'home' / 'metadata.db'}"},
        ray={"address": "auto", "namespace": f"etl_{uuid.uuid4().hex[:6]}"},
        **overrides,
    )


def payments(n: int, seed: int, start_id: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": pa.array(np.arange(start_id, start_id + n), pa.int64()),
        "user_id": pa.array(rng.integers(1, 50, n), pa.int64()),
        "amount": pa.array(np.round(rng.normal(60, 40, n), 2)),  # some negative
        "ts": pa.array(1_700_000_000_000 + rng.integers(0, 3 * 86_400_000, n), pa.int64()),
    })


def put_parquet(storage_root, rel: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    open_location(storage_root.uri, storage_root.config).write_bytes(rel, sink.getvalue().to_pybytes())


def pipeline_file(tmp_path, body: str) -> str:
    folder = tmp_path / "pipelines"
    folder.mkdir(exist_ok=True)
    module = f"etl_steps_{uuid.uuid4().hex[:8]}"  # a fresh module: shipped to the workers by value
    (folder / f"{module}.py").write_text(TRANSFORMS_MODULE)
    path = folder / "pipeline.yaml"
    path.write_text(textwrap.dedent(body).replace("MODULE", module))
    return str(path)


PASSING = """
    name: clean_payments
    read: {path: "in/*.parquet"}
    transforms:
      - filter: "amount >= 0"
      - derive: {amount_cents: "round(amount * 100)"}
      - cast: {amount_cents: int64}
      - function: {ref: "MODULE:add_tier", kwargs: {threshold: 50.0}}
    checks:
      - not_null: user_id
      - unique: id
      - between: {column: amount, min: 0}
      - row_count: {min: 100}
    write:
      dataset: clean
      partitioning: {type: time, column: ts, granularity: date}
      key: [user_id]
"""


def reference(tables: list[pa.Table]) -> pa.Table:
    t = pa.concat_tables(tables)
    t = t.filter(pc.greater_equal(t["amount"], 0))
    t = t.append_column("amount_cents", pc.cast(pc.round(pc.multiply(t["amount"], 100)), pa.int64()))
    return t.append_column("tier", pc.if_else(pc.greater_equal(t["amount"], 50.0), "high", "low"))


def leftover_files(dataset: Dataset) -> set[str]:
    """Data files on storage that no committed version names (staged files that were not cleaned up)."""
    committed = {f.path for v in range(dataset.version + 1) for f in dataset.snapshot(v).files}
    return {n for n in dataset.location.list() if not n.startswith("_") and n not in committed}


def test_a_passing_pipeline_publishes_every_row_in_one_commit(ray_cluster, storage_root, tmp_path):
    config = make_config(tmp_path, storage_root)
    inputs = [payments(1500, seed=i, start_id=i * 1500) for i in range(3)]
    for i, t in enumerate(inputs):
        put_parquet(storage_root, f"in/part-{i}.parquet", t)
    pipeline = load_pipeline(pipeline_file(tmp_path, PASSING))

    record = run_etl(pipeline, config, progress=False)

    assert record.status == "succeeded", record.error
    dataset = Dataset.open(dataset_location(config, "clean"))
    assert dataset.version == record.outputs["version"] == 1
    want = reference(inputs)
    got = dataset.read()
    assert got.sort_by("id").equals(want.select(got.column_names).sort_by("id"))
    assert record.rows_in == 4500 and record.rows_out == want.num_rows
    assert sorted(record.outputs["files"]) == sorted(f.path for f in dataset.snapshot().files)
    assert {f.partition["date"] for f in dataset.snapshot().files} >= {"2023-11-14", "2023-11-15"}
    assert dataset.history()[-1].metadata == {"etl_run": record.run_id, "pipeline": "clean_payments"}
    assert leftover_files(dataset) == set()
    root = open_location(storage_root.uri, storage_root.config)
    assert root.list("_etl") == []  # staging markers are gone, and no tombstone: the run succeeded
    assert record.gate["passed"] and [r["kind"] for r in record.gate["results"]] == ["not_null", "unique", "between", "row_count"]
    assert record.profile["rows"] == want.num_rows
    assert len(record.inputs) == 3 and all(u.endswith(".parquet") for u in record.inputs)
    stored = EtlRunStore(config.metadata_url)
    assert stored.get(record.run_id) == record
    stored.close()


def test_a_failing_gate_publishes_nothing(ray_cluster, storage_root, tmp_path):
    config = make_config(tmp_path, storage_root)
    location = dataset_location(config, "clean")
    spec = DatasetSpec("clean", pa.schema([("id", pa.int64()), ("user_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.int64())]))
    existing = Dataset.create(location, spec)
    existing.write(payments(10, seed=99, start_id=10_000))
    before = existing.snapshot()
    inputs = [payments(800, seed=i, start_id=i * 800) for i in range(2)]
    for i, t in enumerate(inputs):
        put_parquet(storage_root, f"in/part-{i}.parquet", t)
    pipeline = EtlPipeline.from_dict({
        "name": "unchecked",
        "read": {"path": "in"},
        "checks": [{"not_null": "user_id"}, {"between": {"column": "amount", "min": 0}}],
        "write": {"dataset": "clean"},
    })

    record = run_etl(pipeline, config, progress=False)

    assert record.status == "gate_failed" and record.exit_code == 1
    dataset = Dataset.open(location)
    assert dataset.version == before.version == 1 and dataset.snapshot().files == before.files
    assert leftover_files(dataset) == set()  # every staged file was deleted
    assert record.outputs["version"] is None and record.outputs["aborted_files"] >= 1
    negatives = sum(pc.sum(pc.less(t["amount"], 0)).as_py() for t in inputs)
    failed = [r for r in record.gate["results"] if not r["passed"]]
    assert [r["kind"] for r in failed] == ["between"] and failed[0]["failing_rows"] == negatives
    assert failed[0]["samples"] and all(s["amount"] < 0 for s in failed[0]["samples"])
    assert record.rows_in == record.rows_out == 1600


def test_a_corrupt_input_file_fails_the_run_naming_it(ray_cluster, storage_root, tmp_path):
    config = make_config(tmp_path, storage_root)
    put_parquet(storage_root, "in/a.parquet", payments(500, seed=1))
    open_location(storage_root.uri, storage_root.config).write_bytes("in/b.parquet", b"PAR1 this is not parquet at all")
    put_parquet(storage_root, "in/c.parquet", payments(500, seed=2, start_id=500))
    pipeline = EtlPipeline.from_dict({
        "name": "corrupt",
        "read": {"path": "in/*.parquet"},
        "write": {"dataset": "out", "schema": {"id": "int64", "user_id": "int64", "amount": "float64", "ts": "int64"}},
    })

    record = run_etl(pipeline, config, progress=False)

    assert record.status == "failed" and record.exit_code == 2
    print(record.error)
    assert "in/b.parquet" in record.error, record.error
    assert record.outputs["version"] is None
    location = dataset_location(config, "out")
    if location.list("_log"):  # the run created the dataset before the error: nothing is published in it
        dataset = Dataset.open(location)
        assert dataset.version == 0 and leftover_files(dataset) == set()
    assert staging_markers(storage_root) == []


def staging_markers(storage_root) -> list[str]:
    """What is left of runs' staging markers (a failed run's tombstone, ``_aborted``, stays)."""
    return [n for n in open_location(storage_root.uri, storage_root.config).list("_etl") if not n.endswith("/_aborted")]


RAISING_MODULE = """
import pyarrow.compute as pc


def check_ids(table):
    if pc.max(table["id"]).as_py() >= 80_000:
        raise ValueError("id out of range in this block")
    return table
"""


def test_a_block_that_fails_mid_run_leaves_no_staged_file(ray_cluster, storage_root, tmp_path):
    config = make_config(tmp_path, storage_root, etl={"block_bytes": 2**20})  # about one block per file
    for i in range(3):
        put_parquet(storage_root, f"in/part-{i}.parquet", payments(40_000, seed=i, start_id=i * 40_000))
    module = f"raising_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(RAISING_MODULE)
    (tmp_path / "p.yaml").write_text(
        f"name: raising\nread: {{path: in}}\ntransforms: [{{function: '{module}:check_ids', name: ids}}]\n"
        "write: {dataset: out, partitioning: {type: time, column: ts}, "
        "schema: {id: int64, user_id: int64, amount: float64, ts: int64}}\n"
    )
    pipeline = load_pipeline(tmp_path / "p.yaml")

    record = run_etl(pipeline, config, progress=False)

    assert record.status == "failed"
    assert f"transforms[1] (function 'ids'): {module}:check_ids raised ValueError: id out of range" in record.error
    dataset = Dataset.open(dataset_location(config, "out"))
    assert dataset.version == 0 and leftover_files(dataset) == set()
    assert staging_markers(storage_root) == []


def test_a_missing_input_fails_the_run_naming_the_uri(ray_cluster, storage_root, tmp_path):
    config = make_config(tmp_path, storage_root)
    pipeline = EtlPipeline.from_dict({"name": "missing", "read": {"path": "nowhere/*.csv"}, "write": {"dataset": "out"}})
    record = run_etl(pipeline, config, progress=False)
    assert record.status == "failed"
    assert f"{storage_root.uri.rstrip('/')}/nowhere/*.csv" in record.error


def test_a_bounded_kafka_range_is_read_once(ray_cluster, kafka_broker, tmp_path):
    from confluent_kafka import Producer

    (tmp_path / "storage").mkdir()  # the local kind is enough here: the Kafka read is what is tested
    storage = StorageConfig(root=f"file://{tmp_path / 'storage'}")
    config = make_config(tmp_path, storage, kafka={"bootstrap_servers": kafka_broker, "topic_creation": "metadata"})
    topic = f"etl_{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_broker})
    for i in range(300):
        producer.produce(topic, key=str(i % 7).encode(), value=json.dumps({"id": i, "amount": i * 0.5}).encode())
    assert producer.flush(30) == 0
    pipeline = EtlPipeline.from_dict({
        "name": "from_kafka",
        "read": {"kafka": {"topic": topic, "start_offset": "earliest", "end_offset": "latest"}},
        "transforms": [{"derive": {"double": "amount * 2"}}],
        "checks": [{"unique": "id"}, {"row_count": {"min": 300, "max": 300}}],
        "write": {"dataset": "kafka_out"},
    })

    record = run_etl(pipeline, config, progress=False)

    assert record.status == "succeeded", record.error
    got = Dataset.open(dataset_location(config, "kafka_out")).read().sort_by("id")
    assert got["id"].to_pylist() == list(range(300))
    assert got["double"].to_pylist() == [i * 1.0 for i in range(300)]
    assert set(got.column_names) >= {"_partition", "_offset", "_timestamp_ms"}
    assert record.rows_in == 300 and record.inputs[0].startswith(f"kafka://{kafka_broker}/{topic}")


def test_the_cli_runs_a_pipeline_on_the_sessions_cluster(ray_cluster, tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    home = tmp_path / "home"
    namespace = f"etlcli_{uuid.uuid4().hex[:6]}"
    config_file = tmp_path / "fabric.yaml"
    config_file.write_text(
        f"home: {home}\nstorage: {{root: 'file://{storage}'}}\nray: {{address: auto, namespace: {namespace}}}\n"
    )
    sink = pa.BufferOutputStream()
    table = payments(2000, seed=5)
    pq.write_table(table, sink)
    (storage / "in").mkdir()
    (storage / "in" / "p.parquet").write_bytes(sink.getvalue().to_pybytes())
    path = pipeline_file(tmp_path, PASSING)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "RAY_ADDRESS"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))

    def fabric(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "fabric_ray.cli", "--config", str(config_file), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)

    run = fabric("etl", "run", path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "status    succeeded" in run.stdout and "quality gate passed" in run.stdout.lower()
    assert "etl clean_payments" in run.stderr  # the progress bar
    listed = fabric("etl", "runs", "--json")
    records = json.loads(listed.stdout)
    assert [r["status"] for r in records] == ["succeeded"] and records[0]["rows_in"] == 2000
    shown = fabric("etl", "show", records[0]["run_id"][:10])
    assert shown.returncode == 0 and "clean version 1" in shown.stdout and "user_id" in shown.stdout
    bad = pipeline_file(tmp_path, PASSING.replace("min: 100}", "min: 100000}"))
    gate = fabric("etl", "run", bad, "--no-progress")
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "gate_failed" in gate.stdout and "row_count" in gate.stdout


def test_the_archive_and_datasets_are_inputs_and_overwrite_replaces(ray_cluster, storage_root, tmp_path):
    from fabric_ray.streams.archive import ParquetArchive

    config = make_config(tmp_path, storage_root)
    root = open_location(storage_root.uri, storage_root.config)
    archive = ParquetArchive(root.child("archive", "payments"), "events", time_column="ts")
    events = payments(600, seed=3)
    archive.write_from(0, np.arange(600), events)
    archive.flush()
    from_archive = EtlPipeline.from_dict({
        "name": "from_archive",
        "read": {"archive": {"pipeline": "payments", "topic": "events"}},
        "transforms": [{"select": ["id", "user_id", "amount", "ts", "_offset"]}],
        "checks": [{"unique": "_offset"}],
        "write": {"dataset": "archived"},
    })
    first = run_etl(from_archive, config, progress=False)
    assert first.status == "succeeded", first.error
    got = Dataset.open(dataset_location(config, "archived")).read().sort_by("id")
    assert got.column_names == ["id", "user_id", "amount", "ts", "_offset"]  # no `date` column from the folders
    assert got["id"].to_pylist() == events["id"].to_pylist() and got["_offset"].to_pylist() == list(range(600))

    copy = EtlPipeline.from_dict({
        "name": "copy",
        "read": {"dataset": "archived"},
        "transforms": [{"filter": "amount >= 0"}],
        "write": {"dataset": "copied", "mode": "overwrite"},
    })
    runs = [run_etl(copy, config, progress=False) for _ in range(2)]
    assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.error for r in runs]
    copied = Dataset.open(dataset_location(config, "copied"))
    assert copied.version == 2 and runs[1].outputs["version"] == 2
    want = pc.sum(pc.greater_equal(events["amount"], 0)).as_py()
    assert copied.read().num_rows == want  # the second overwrite replaced the first run's rows
    assert {f.path for f in copied.snapshot().files} == set(runs[1].outputs["files"])
    assert runs[1].inputs[0].endswith(".parquet") and "/datasets/archived/" in runs[1].inputs[0]
