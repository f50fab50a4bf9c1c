"""``fabric demo`` end to end in a subprocess: its own Ray cluster, embedded broker, HTTP checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import free_port

FABRIC = str(Path(sys.executable).parent / "fabric")


def test_demo_runs_and_reports_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_") and k != "RAY_ADDRESS"}
    env.update({"FABRIC_HOME": str(tmp_path / "home"), "FABRIC_SERVING__PORT": str(free_port()), "FABRIC_RAY__NUM_CPUS": "2"})
    proc = subprocess.run(
        [FABRIC, "demo", "--events", "3000", "--sample", "20", "--no-progress", "--timeout", "120"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("events", "processed", "dead_lettered", "features_checked", "mismatches", "throughput_eps", "serve_p50_ms", "serve_p99_ms"):
        assert key in result, key
    assert result["events"] == 3000
    assert result["mismatches"] == 0
    assert result["features_checked"] == 20 * 4
    assert result["processed"] + result["dead_lettered"] == result["events"]
    assert result["dead_lettered"] == result["dead_lettered_expected"] == 3  # 0.1 % of 3,000
    assert result["throughput_eps"] > 0
    assert 0 < result["serve_p50_ms"] <= result["serve_p99_ms"]
    assert result["batch_entities_written"] > 0
    assert result["batch_values_checked"] == 10 * 6  # --sample 20: 10 (user, merchant) pairs, 6 daily features
    assert result["batch_mismatches"] == 0
    assert result["ok"] is True
