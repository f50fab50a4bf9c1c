"""`python -m bench all`: parsing, direction-aware ratios, the >20% marker, the stored baseline (no benchmark runs)."""

from __future__ import annotations

import argparse
import importlib
import json

import pytest

from bench import BENCHMARKS, suite


def test_last_json_is_the_last_object_line():
    text = 'progress {"not": "alone"}\n{"bench": "a", "x": 1}\n[bench] a line\n{"bench": "b", "x": 2}\n  \n'
    assert suite.last_json(text) == {"bench": "b", "x": 2}
    assert suite.last_json('{"broken": \n[1, 2]\nplain') is None
    assert suite.last_json('{"bench": "a"}\n{"cut": ') == {"bench": "a"}


def test_figure_reads_numbers_only():
    result = {"p99_ms": 12.5, "ok": True, "name": "x", "nan": float("nan"), "stages": {"decode": {"p99_ms": 3}}}
    assert suite.figure(result, "p99_ms") == 12.5
    assert suite.figure(result, "stages.decode.p99_ms") == 3.0
    assert suite.figure(result, "ok") is None  # a bool is not a figure
    assert suite.figure(result, "name") is None
    assert suite.figure(result, "nan") is None
    assert suite.figure(result, "stages.read.p99_ms") is None


@pytest.mark.parametrize(
    ("direction", "baseline", "now", "ratio"),
    [
        ("higher", 1000, 1500, 1.5),  # throughput up: better
        ("higher", 1000, 500, 0.5),
        ("lower", 100, 50, 2.0),  # latency halved: better
        ("lower", 100, 200, 0.5),
        ("lower", 100, 0, None),
        ("higher", 0, 5, None),
        ("higher", None, 5, None),
        ("lower", 5, None, None),
    ],
)
def test_better_ratio_is_above_one_when_better(direction, baseline, now, ratio):
    got = suite.better_ratio(direction, baseline, now)
    assert got == (pytest.approx(ratio) if ratio is not None else None)


def test_better_ratio_refuses_an_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        suite.better_ratio("up", 1, 2)


def test_marker_only_past_twenty_percent_worse():
    assert suite.is_regression(0.79)
    assert not suite.is_regression(0.8)
    assert not suite.is_regression(0.95)
    assert not suite.is_regression(3.0)
    assert not suite.is_regression(None)
    # latency 100 -> 126 ms is 0.79: marked; 100 -> 124 ms is 0.81: not
    assert suite.is_regression(suite.better_ratio("lower", 100, 126))
    assert not suite.is_regression(suite.better_ratio("lower", 100, 124))


def _run(**benchmarks):
    return {"commit": "abc", "dirty": False, "started": "2026-12-06T05:00:00+0000", "benchmarks": benchmarks}


def _ok(**figures):
    return {"ok": True, "figures": figures, "error": "", "wall_s": 1.0, "args": []}


def test_compare_and_table():
    specs = {
        "streams": suite.Spec("streams", [], {"events_per_s": "higher", "ratio_vs_bytewax": "higher"}),
        "stream_latency": suite.Spec("stream_latency", [], {"p99_ms": "lower"}),
        "etl": suite.Spec("etl", [], {"fabric_s": "lower"}),
        "windows": suite.Spec("windows", [], {"events_per_s_sliding": "higher"}),
    }
    base = _run(
        streams=_ok(events_per_s=1_000_000, ratio_vs_bytewax=200.0),
        stream_latency=_ok(p99_ms=100.0),
        etl=_ok(fabric_s=4.0),
    )
    now = _run(
        streams=_ok(events_per_s=700_000, ratio_vs_bytewax=190.0),
        stream_latency=_ok(p99_ms=50.0),
        etl={"ok": False, "figures": {}, "error": "exit code 1", "wall_s": 3.0, "args": []},
        windows=_ok(events_per_s_sliding=5e6),
    )
    rows = suite.compare(base, now, specs)
    by = {(r.bench, r.figure): r for r in rows}
    assert by["streams", "events_per_s"].ratio == pytest.approx(0.7)
    assert by["streams", "events_per_s"].regressed
    assert not by["streams", "ratio_vs_bytewax"].regressed
    assert by["stream_latency", "p99_ms"].ratio == pytest.approx(2.0)
    assert by["etl", "-"].note == "FAILED now"
    assert by["windows", "events_per_s_sliding"].note == "no baseline"
    table = suite.format_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:6] == ["benchmark", "figure", "better", "baseline", "now", "ratio"]
    (marked,) = [line for line in lines if suite.MARKER in line]
    assert marked.startswith("streams") and "events_per_s" in marked and "0.70" in marked
    assert "1,000,000" in marked and "700,000" in marked
    assert any("stream_latency" in line and "2.00" in line for line in lines)


def test_known_args_drops_options_an_old_commit_lacks():
    args = ["--events", "25000", "--skip-quix", "--skip-pathway", "--rounds=3"]
    kept, dropped = suite.known_args(args, {"--events", "--skip-quix", "--rounds"})
    assert kept == ["--events", "25000", "--skip-quix", "--rounds=3"]
    assert dropped == ["--skip-pathway"]
    assert suite.known_args(args, None) == (args, [])


def test_baseline_save_and_load(tmp_path, monkeypatch):
    monkeypatch.setenv("FABRIC_BENCH_BASELINE_DIR", str(tmp_path / "cache"))
    path = suite.baseline_path(suite.baseline_dir(), "host-a", quick=True)
    assert path == tmp_path / "cache" / "host-a-quick.json"
    assert suite.load_run(path) is None
    first = _run(etl=_ok(fabric_s=4.0), spine=_ok(fabric_eps=70_000))
    suite.save_run(path, first)
    assert suite.load_run(path) == first
    # a benchmark that fails in the next saved run keeps its last good figures
    second = _run(etl={"ok": False, "figures": {}, "error": "boom", "wall_s": 1.0, "args": []}, spine=_ok(fabric_eps=80_000))
    suite.save_run(path, second, previous=first)
    stored = suite.load_run(path)
    assert stored["benchmarks"]["spine"]["figures"]["fabric_eps"] == 80_000
    assert stored["benchmarks"]["etl"]["figures"] == {"fabric_s": 4.0}
    assert stored["benchmarks"]["etl"]["kept_from"] == first["started"]
    path.write_text("{not json")
    assert suite.load_run(path) is None


def _main_args(**kw):
    base = dict(quick=True, save=False, strict=False, with_peers=False, baseline_commit=None, only="etl,streams", timeout=None)
    return argparse.Namespace(**{**base, **kw})


def test_main_first_run_saves_then_compares(tmp_path, monkeypatch, capsys):
    """The suite's flow with run_benchmark faked: the first run saves itself, the next compares and marks."""
    monkeypatch.setenv("FABRIC_BENCH_BASELINE_DIR", str(tmp_path))
    monkeypatch.setattr(suite.socket, "gethostname", lambda: "box")

    def check(self, names):  # what the probe subprocess reports of a tree: each benchmark's options
        self.probe = {"paths": {}, "options": {"etl": ["--rows", "--files"], "streams": ["--events", "--batch-size", "--rounds", "--skip-quix"]}}

    monkeypatch.setattr(suite.TreeRun, "check", check)
    figures = {"etl": {"fabric_s": 4.0, "ratio_vs_pandas": 2.5, "peak_rss_mb": 2000, "peak_pss_mb": 1500},
               "streams": {"events_per_s": 1e6, "sliding_events_per_s": 1.5e6, "ratio_vs_bytewax": 200}}
    calls = []

    def fake_run(name, args, **kw):
        calls.append((name, args))
        return suite.Outcome(name, True, figures=dict(figures[name]), wall_s=1.0, args=args)

    monkeypatch.setattr(suite, "run_benchmark", fake_run)
    assert suite.main(_main_args()) == 0
    assert (tmp_path / "box-quick.json").exists()
    assert "saved this run as the baseline" in capsys.readouterr().out
    streams_args = dict(calls)["streams"]
    assert "--skip-quix" in streams_args and "--skip-pathway" not in streams_args  # unknown to the fake tree: left out

    figures["streams"]["events_per_s"] = 5e5  # half the throughput
    figures["etl"]["fabric_s"] = 3.0
    assert suite.main(_main_args()) == 0  # only prints
    out = capsys.readouterr().out
    (marked,) = [line for line in out.splitlines() if suite.MARKER in line]
    assert "events_per_s" in marked and "0.50" in marked
    assert "baseline unchanged" in out
    assert suite.main(_main_args(strict=True)) == 1
    assert json.loads((tmp_path / "box-quick.json").read_text())["benchmarks"]["streams"]["figures"]["events_per_s"] == 1e6

    monkeypatch.setattr(suite, "run_benchmark", lambda name, args, **kw: suite.Outcome(name, False, error="exit code 1; last lines:\nboom", args=args))
    assert suite.main(_main_args()) == 1  # a crashed benchmark
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_benchmark_declares_a_quick_mode(name):
    module = importlib.import_module(f"bench.{name}")
    assert module.KEY_FIGURES and set(module.KEY_FIGURES.values()) <= {"higher", "lower"}
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    spec = suite.spec_of(name, quick=True, with_peers=False)
    parser.parse_args(spec.args)  # every quick option is one the benchmark knows
