"""``fabric etl``: help texts, validation before any Ray call, listing and showing stored runs, submit errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from fabric_ray.cli import main
from fabric_ray.config import load_config
from fabric_ray.etl.checks import Gate
from fabric_ray.etl.profile import ProfileBuilder
from fabric_ray.etl.runs import EtlRunStore, RunRecord


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("FABRIC_"):
            monkeypatch.delenv(key)
    path = tmp_path / "fabric.yaml"
    path.write_text(f"home: {tmp_path / 'home'}\nstorage: {{root: 'file://{tmp_path / 'storage'}'}}\n")
    return path


def fabric(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["etl", "--help"], ["run", "runs", "show", "quality gate", "metadata store"]),
        (["etl", "run", "--help"], ["PIPELINE.yaml", "--submit", "--working-dir", "--address", "--no-progress", "--json",
                                    "0 succeeded, 1 the quality gate failed, 2 an error", "Ray job"]),
        (["etl", "runs", "--help"], ["--pipeline", "--limit", "--json", "gate_failed"]),
        (["etl", "show", "--help"], ["RUN_ID", "prefix", "profile", "sample failing rows"]),
    ],
)
def test_help_explains_every_option(capsys, args, words):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in words:
        assert word in text, word


def test_an_invalid_pipeline_exits_2_naming_the_step_before_anything_runs(capsys, config_file, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: p\nread: {path: x.parquet}\ntransforms: [{filter: 'a >'}]\nwrite: {dataset: d}\n")
    code, out, err = fabric(capsys, "--config", str(config_file), "etl", "run", str(bad))
    assert code == 2 and out == ""
    assert "transforms[1] (filter)" in err and "nothing ran" in err
    assert not (tmp_path / "home" / "metadata.db").exists()


def test_runs_and_show_on_an_empty_store(capsys, config_file, tmp_path):
    code, out, _ = fabric(capsys, "--config", str(config_file), "etl", "runs")
    assert code == 0 and "no ETL runs" in out
    assert not (tmp_path / "home" / "metadata.db").exists()  # listing creates nothing
    code, _, err = fabric(capsys, "--config", str(config_file), "etl", "show", "abcdef123")
    assert code == 2 and "no ETL run 'abcdef123'" in err


def test_stored_runs_are_listed_and_shown_with_their_gate_table(capsys, config_file):
    config = load_config(str(config_file))
    table = pa.table({"amount": [5.0, -1.0, 3.0]})
    report = Gate.parse([{"between": {"column": "amount", "min": 0}}]).evaluate(table)
    profile = ProfileBuilder().update(table).result()
    store = EtlRunStore(config.metadata_url)
    ok = RunRecord.start("daily", inputs=("file:///x.parquet",), started_at_s=100.0).finish(
        "succeeded", duration_s=2.0, rows_in=3, rows_out=3, outputs={"dataset": "d", "version": 4, "files": ["a.parquet"], "mode": "append"}
    )
    bad = RunRecord.start("daily", started_at_s=200.0).finish(
        "gate_failed", duration_s=1.0, rows_in=3, rows_out=3, gate=json.loads(report.to_json()), profile=profile.to_dict(),
        outputs={"dataset": "d", "version": None, "files": [], "aborted_files": 1},
    )
    other = RunRecord.start("weekly", started_at_s=300.0).finish("failed", error="SourceError: read: file:///in does not exist")
    for r in (ok, bad, other):
        store.put(r)
    store.close()

    code, out, _ = fabric(capsys, "--config", str(config_file), "etl", "runs")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run", "pipeline", "status"]
    assert [line.split()[2] for line in lines[2:]] == ["failed", "gate_failed", "succeeded"]
    assert "d v4" in out
    code, out, _ = fabric(capsys, "--config", str(config_file), "etl", "runs", "--pipeline", "daily", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [bad.run_id, ok.run_id]

    code, out, _ = fabric(capsys, "--config", str(config_file), "etl", "show", bad.run_id[:8])
    assert code == 0
    assert "status    gate_failed" in out and "nothing published (1 staged file(s) deleted)" in out
    assert "quality gate FAILED" in out and '{"amount": -1.0}' in out  # the failing check's sample row
    assert "amount" in out.split("quality gate")[0]  # the profile table comes first
    code, out, _ = fabric(capsys, "--config", str(config_file), "etl", "show", other.run_id, "--json")
    assert json.loads(out)["error"].startswith("SourceError: read: file:///in")


def test_submit_needs_a_cluster_and_files_inside_the_working_dir(capsys, config_file, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: p\nread: {path: x.parquet}\nwrite: {dataset: d}\n")
    code, _, err = fabric(capsys, "--config", str(config_file), "etl", "run", str(pipeline), "--submit", "--working-dir", str(tmp_path))
    assert code == 2 and "--submit needs a cluster" in err
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    code, _, err = fabric(
        capsys, "--config", str(config_file), "etl", "run", str(pipeline), "--submit", "--working-dir", str(elsewhere),
        "--address", "http://127.0.0.1:1",
    )
    assert code == 2 and "outside the working directory" in err
