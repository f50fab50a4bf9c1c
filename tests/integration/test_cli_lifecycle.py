"""``fabric up`` / ``status`` / ``down`` end to end, in subprocesses, with their own Ray cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fabric_ray.demo.payments import expected_features, generate_events
from fabric_ray.demo.run import produce

from ..conftest import free_port
from .kafka_helpers import FEATURES

FABRIC = str(Path(sys.executable).parent / "fabric")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.fixture
def cli(tmp_path):
    """Run ``fabric ...`` with a fresh home and a free port; ``fabric down`` (then SIGKILL) at the end."""
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_") and k != "RAY_ADDRESS"}
    env.update({"FABRIC_HOME": str(home), "FABRIC_SERVING__PORT": str(port), "FABRIC_RAY__NUM_CPUS": "2"})

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([FABRIC, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)

    run.home, run.port = home, port  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        state_file = home / "daemon.json"
        pid = json.loads(state_file.read_text())["pid"] if state_file.exists() else None
        if pid is not None and _alive(pid):
            try:
                run("down", "--timeout", "60", timeout=90)
            except subprocess.TimeoutExpired:
                pass
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _status_json(cli) -> dict:
    r = cli("status", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_up_status_down(cli):
    up = cli("up", "--timeout", "150", timeout=200)
    log = cli.home / "daemon.log"
    assert up.returncode == 0, (up.stdout, up.stderr, log.read_text()[-3000:] if log.exists() else "")
    endpoint = f"http://127.0.0.1:{cli.port}"
    assert endpoint in up.stdout
    state = json.loads((cli.home / "daemon.json").read_text())
    pid = state["pid"]
    assert _alive(pid)
    assert state["endpoint"] == endpoint

    # a second `fabric up` finds the running one instead of starting another
    again = cli("up")
    assert again.returncode == 0 and "already up" in again.stdout and str(pid) in again.stdout

    table = cli("status")
    assert table.returncode == 0, table.stderr[-3000:]
    for p in range(4):
        assert f"partition:payments:{p}" in table.stdout
    assert endpoint in table.stdout

    status = _status_json(cli)
    assert status["endpoint"] == endpoint
    assert sorted(o["name"] for o in status["stream"]["owners"]) == [f"partition:payments:{p}" for p in range(4)]
    assert status["bootstrap_servers"] == state["bootstrap_servers"]

    health = httpx.get(endpoint + "/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"

    ev = generate_events(300, users=20, seed=17, bad_fraction=0.01)
    produce(state["bootstrap_servers"], "payments", ev.keys, ev.payloads, progress=False)
    deadline = time.monotonic() + 90
    while True:
        summary = _status_json(cli)["stream"]["summary"]
        if summary["processed"] + summary["dead_lettered"] >= len(ev) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert summary["processed"] == ev.table.num_rows
    assert summary["dead_lettered"] == ev.bad

    expected = expected_features(ev.table)
    uid = sorted(expected)[0]
    r = httpx.post(endpoint + "/get-online-features", json={"features": FEATURES, "entities": {"user_id": [uid]}}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["results"][1]["values"] == [expected[uid]["txn_count"]]

    down = cli("down", timeout=120)
    assert down.returncode == 0, (down.stdout, down.stderr)
    assert not _alive(pid)
    assert not (cli.home / "daemon.json").exists()
    deadline = time.monotonic() + 30
    while True:  # the Serve proxy goes with the cluster
        try:
            httpx.get(endpoint + "/health", timeout=2)
        except httpx.TransportError:
            break
        assert time.monotonic() < deadline, f"{endpoint} still answers after `fabric down`"
        time.sleep(0.5)
    with pytest.raises(httpx.TransportError):
        httpx.get(endpoint + "/health", timeout=2)

    # status and down with nothing up
    gone = cli("status")
    assert gone.returncode == 2 and "fabric up" in gone.stderr
    assert cli("down").returncode == 0
