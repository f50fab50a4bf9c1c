"""Benchmark ``spine``: the demo data path against what one would stitch by hand, and against ``feast serve``.

(a) Stream throughput. A Fabric (local Ray, embedded broker, as ``fabric demo`` runs it) consumes
    N demo events while they are produced; the figure is N over the time from the first produce
    call until the fabric has processed or dead-lettered all of them (decode, validate, keyed
    all-time and 1-minute aggregates, writes to the cache shards, dead letters to their topic).
    The peer is a plain single-process Python consumer (confluent-kafka, explicit ``assign``,
    ``json.loads`` per message, a dict fold of count/sum and the 1-minute tumbling window per
    user), started and connected before the same N events are produced to its own topic on the
    same broker, timed the same way. The producer never runs more than ``--max-ahead`` messages
    ahead of the consumer under test, because the embedded broker keeps only 5 MiB per partition.
    Rounds alternate which side goes first; each round uses fresh events that follow the
    previous round's in event time.
(b) HTTP latency. With the fabric holding the features of every round, the same values are
    written to a Feast 0.67 repo (a copy of ``feature_store/``, sqlite online store) with
    ``feast apply`` and ``feast materialize``, and ``feast serve`` runs on a free port. One
    httpx keep-alive client per server sends the same 1-entity and 100-entity
    ``/get-online-features`` requests, alternating rounds between the servers.

Run it as ``python -m bench spine`` (``--help`` for options); ``docs/bench.md`` explains each figure.
The peer consumer runs as ``python -m bench.spine --bootstrap ... --topic ... --expect N ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import mmap
import os
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

Say = Callable[[str], None]

ROOT = Path(__file__).resolve().parents[1]
FEATURE_STORE = ROOT / "feature_store"
START_MS = 1_795_660_000_000  # generate_events' default start; later rounds follow in event time
MEAN_GAP_MS = 10.0
WINDOW_MS = 60_000
PEER_GROUP = "bench-peer"
PRODUCE_CHUNK = 5000
WARMUP_EVENTS = 5000


# `python -m bench all --quick` (bench/suite.py): this benchmark's short mode and the figures it compares
QUICK_ARGS = ["--events", "20000", "--requests", "100", "--rounds", "2"]
KEY_FIGURES = {
    "fabric_eps": "higher",
    "ratio_vs_hand_consumer_eps": "higher",
    "ours_p50_ms_1": "lower",
    "ours_p99_ms_100": "lower",
    "ratio_vs_feast_serve_p50_100": "higher",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench spine``."""
    parser.add_argument("--events", type=int, default=100_000, help="events per throughput round (default 100000)")
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests per server, size and round (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each part (default 3)")
    parser.add_argument("--users", type=int, default=10_000, help="distinct users in the events (default 10000)")
    parser.add_argument(
        "--max-ahead",
        type=int,
        default=50_000,
        help="most messages the producer may be ahead of the consumer under test (default 50000): the embedded "
        "broker keeps only 5 MiB of lz4-compressed batches per partition",
    )
    parser.add_argument("--timeout", type=float, default=120, help="longest wait for one side to consume a round (default 120 s)")


def run(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """Run both parts; return the figures (the caller prints them as the last JSON line)."""
    from fabric_ray.loopback import keep_on_loopback

    if args.events < 1000 or args.requests < 10 or args.rounds < 1 or args.max_ahead < 1:
        raise SystemExit(
            f"need --events >= 1000, --requests >= 10, --rounds >= 1, --max-ahead >= 1; "
            f"got {args.events}, {args.requests}, {args.rounds}, {args.max_ahead}"
        )
    keep_on_loopback()
    with contextlib.ExitStack() as cleanup:
        work = Path(tempfile.mkdtemp(prefix="bench-spine-"))
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        warmup, rounds = _generate(args, say)
        fabric = _start_fabric(work, say)
        cleanup.callback(_stop_fabric, fabric, say)
        say(f"warming the fabric up with {len(warmup):,} events (not timed)")
        _fabric_round(fabric, warmup, args.max_ahead, args.timeout)
        result = _throughput(fabric, [warmup], rounds, work, args, say)
        result.update(_latency(fabric, [warmup, *rounds], work, args, cleanup, say))
    return result


# -- (a) stream throughput ---------------------------------------------------------------------
def _generate(args: argparse.Namespace, say: Say) -> tuple[Any, list[Any]]:
    """The warm-up events, then one batch per round, each later in event time than the one before."""
    from fabric_ray.demo.payments import generate_events

    say(f"generating {args.rounds} x {args.events:,} payment events for {args.users:,} users")
    span_ms = (int(args.events * MEAN_GAP_MS) // WINDOW_MS + 3) * WINDOW_MS
    warmup = generate_events(WARMUP_EVENTS, users=args.users, seed=6, start_ms=START_MS - 3_600_000, mean_gap_ms=MEAN_GAP_MS)
    rounds = [
        generate_events(args.events, users=args.users, seed=7 + r, start_ms=START_MS + r * span_ms, mean_gap_ms=MEAN_GAP_MS)
        for r in range(args.rounds)
    ]
    return warmup, rounds


def _start_fabric(work: Path, say: Say) -> Any:
    from bench import exit_on_sigterm, free_port
    from fabric_ray import Fabric, load_config

    config = load_config(None, home=str(work / "fabric"), ray={"namespace": "bench-spine"}, serving={"port": free_port()})
    say("starting the fabric (local Ray, embedded broker, partition actors, cache shards, HTTP endpoint)")
    t0 = time.monotonic()
    fabric = Fabric(config)
    try:
        fabric.start()
    except BaseException:
        _stop_fabric(fabric, say)
        raise
    finally:
        exit_on_sigterm()  # take SIGTERM back from Ray's driver
    say(f"fabric up in {time.monotonic() - t0:.1f}s: broker {fabric.bootstrap_servers}, endpoint {config.serving.url}")
    return fabric


def _stop_fabric(fabric: Any, say: Say) -> None:
    say("stopping the fabric and its Ray cluster")
    try:
        fabric.stop()
    finally:
        import ray

        if ray.is_initialized():  # stop() returns early only when Ray never came up
            ray.shutdown()
    say("fabric stopped")


def _throughput(fabric: Any, before: list[Any], rounds: list[Any], work: Path, args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """Alternate fabric and peer rounds; ``before``: events the fabric consumed earlier (for the value check)."""
    from fabric_ray.demo.payments import expected_features

    ours: list[float] = []
    peer: list[float] = []
    produce_eps: list[float] = []
    peer_mismatches = 0
    for r, events in enumerate(rounds):
        order = ("fabric", "peer") if r % 2 == 0 else ("peer", "fabric")
        for side in order:
            if side == "fabric":
                eps, p_eps = _fabric_round(fabric, events, args.max_ahead, args.timeout)
                ours.append(eps)
            else:
                eps, p_eps, state = _peer_round(fabric.bootstrap_servers, events, work / f"peer{r}", args.max_ahead, args.timeout)
                peer.append(eps)
                peer_mismatches += _compare_peer(state, expected_features(events.table))
            produce_eps.append(p_eps)
            say(f"round {r + 1}/{len(rounds)} {side:>6}: {len(events):,} events consumed at {eps:,.0f} events/s (produced at {p_eps:,.0f}/s)")
    expected = expected_features(_concat([*before, *rounds]))
    fabric_mismatches = _check_fabric(fabric, expected)
    ours_eps, peer_eps = statistics.median(ours), statistics.median(peer)
    say(
        f"throughput (median of {len(rounds)}): fabric {ours_eps:,.0f} events/s, hand-written consumer {peer_eps:,.0f} events/s; "
        f"served values wrong: {fabric_mismatches}, peer values wrong: {peer_mismatches}"
    )
    return {
        "events_per_round": len(rounds[0]),
        "rounds": len(rounds),
        "max_ahead": args.max_ahead,
        "cpus": os.cpu_count(),
        "fabric_eps": round(ours_eps),
        "hand_consumer_eps": round(peer_eps),
        "fabric_eps_rounds": [round(x) for x in ours],
        "hand_consumer_eps_rounds": [round(x) for x in peer],
        "produce_eps_min": round(min(produce_eps)),
        "fabric_value_mismatches": fabric_mismatches,
        "hand_consumer_value_mismatches": peer_mismatches,
        "ratio_vs_hand_consumer_eps": round(ours_eps / peer_eps, 3),
    }


def _produce_paced(bootstrap: str, topic: str, events: Any, consumed: Callable[[], int], max_ahead: int, client: dict | None = None) -> None:
    """Produce ``events``, never more than ``max_ahead`` messages ahead of ``consumed()``.

    The embedded broker keeps at most 5 MiB per partition (librdkafka's mock cluster deletes
    older messages), so a consumer left far behind could lose messages; pacing also keeps the
    fabric and the peer on equal terms.
    """
    from fabric_ray.demo.run import produce

    seen = 0

    def pace(sent: int) -> None:
        nonlocal seen
        if sent - seen > max_ahead:  # ask only when it may matter: asking the fabric costs actor calls
            while sent - (seen := consumed()) > max_ahead:
                time.sleep(0.02)

    produce(bootstrap, topic, events.keys, events.payloads, client=client, progress=False, chunk=PRODUCE_CHUNK, before_chunk=pace)


def _fabric_round(fabric: Any, events: Any, max_ahead: int, timeout_s: float) -> tuple[float, float]:
    """Produce into the running fabric's topic; time until it has processed or dead-lettered all of it."""

    def done() -> int:
        summary = fabric.status()["stream"]["summary"]
        return summary["processed"] + summary["dead_lettered"]

    cfg = fabric.config
    base = done()
    t0 = time.monotonic()
    _produce_paced(fabric.bootstrap_servers, cfg.stream.topic, events, lambda: done() - base, max_ahead, cfg.kafka.client)
    t_produced = time.monotonic()
    deadline = t0 + timeout_s
    while (n := done() - base) < len(events):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fabric consumed {n:,} of {len(events):,} events in {timeout_s}s")
        time.sleep(0.02)
    t_done = time.monotonic()
    return len(events) / (t_done - t0), len(events) / (t_produced - t0)


def _peer_round(bootstrap: str, events: Any, base: Path, max_ahead: int, timeout_s: float) -> tuple[float, float, dict[str, list]]:
    """Start the hand-written consumer on a fresh topic, produce, time until it has seen every message.

    Returns:
        ``(consume_eps, produce_eps, state)``.
    """
    from fabric_ray.streams.kafka import ensure_topic

    topic = f"payments.peer.{base.name}"
    partitions = ensure_topic(bootstrap, topic, use_admin=False)
    with _peer_process(bootstrap, topic, partitions, len(events), base, timeout_s) as (proc, progress, wait):
        _wait_file(progress.with_suffix(".ready"), proc, 60, "the hand-written consumer did not get ready")
        with open(progress, "rb") as f, mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ) as counter:
            t0 = time.monotonic()
            _produce_paced(bootstrap, topic, events, lambda: struct.unpack("q", counter[:8])[0], max_ahead)
            t_produced = time.monotonic()
        report = wait()
    # Both clocks are CLOCK_MONOTONIC, the same across processes on Linux.
    n = len(events)
    return n / (report["t_done"] - t0), n / (t_produced - t0), report["state"]


@contextlib.contextmanager
def _peer_process(bootstrap: str, topic: str, partitions: int, expect: int, base: Path, timeout_s: float):
    """Run ``python -m bench.spine`` (the peer); yield ``(process, progress_file, wait_for_report)``.

    The peer writes its message count, an int64, to the first 8 bytes of ``progress_file``.
    """
    progress, result = base.with_suffix(".progress"), base.with_suffix(".json")
    progress.write_bytes(bytes(8))
    cmd = [sys.executable, "-m", "bench.spine", "--bootstrap", bootstrap, "--topic", topic, "--partitions", str(partitions),
           "--expect", str(expect), "--progress-file", str(progress), "--result-file", str(result)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)

    def wait() -> dict[str, Any]:
        _wait_file(result, proc, timeout_s, "the hand-written consumer did not finish")
        report = json.loads(result.read_text())
        if report["processed"] + report["rejected"] != expect:
            raise RuntimeError(f"the hand-written consumer saw {report['processed'] + report['rejected']} of {expect} messages")
        return report

    try:
        yield proc, progress, wait
    finally:
        _stop_process(proc)


def _compare_peer(state: dict[str, list], expected: dict[int, dict[str, float]]) -> int:
    wrong = len(set(map(int, state)) ^ set(expected))
    for uid, want in expected.items():
        count, total, _window, wcount, wsum = state.get(str(uid), (None,) * 5)
        got = {"txn_count": count, "amount_sum": total, "txn_count_1m": wcount, "amount_sum_1m": wsum}
        wrong += sum(not _close(got[k], v) for k, v in want.items())
    return wrong


def _close(got: Any, want: float) -> bool:
    return got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6)


def _check_fabric(fabric: Any, expected: dict[int, dict[str, float]], sample: int = 200) -> int:
    from fabric_ray.demo.run import check_features

    users = sorted(random.Random(7).sample(sorted(expected), min(sample, len(expected))))
    mismatches, _ = check_features(fabric.config.serving.url, expected, users)
    return len(mismatches)


def _concat(rounds: list[Any]) -> Any:
    import pyarrow as pa

    return pa.concat_tables([ev.table for ev in rounds])


def _wait_file(path: Path, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: it exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s}s")
        time.sleep(0.002)


def _stop_process(proc: subprocess.Popen, group: bool = False) -> None:
    """Terminate a child we started (and its process group when it leads one), then kill it if it lingers."""
    if proc.poll() is not None:
        return
    send = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    with contextlib.suppress(ProcessLookupError):
        send(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            send(signal.SIGKILL)
        proc.wait(5)


# -- (b) HTTP latency --------------------------------------------------------------------------
def _latency(fabric: Any, rounds: list[Any], work: Path, args: argparse.Namespace, cleanup: contextlib.ExitStack, say: Say) -> dict[str, Any]:
    import httpx

    from bench import percentile_ms
    from fabric_ray.demo.payments import USER_PAYMENTS, expected_features

    events = _concat(rounds)
    expected = expected_features(events)
    feast_url = _start_feast_serve(work / "feast_repo", events, expected, cleanup, say)
    ours_url = fabric.config.serving.url
    features = [f"{USER_PAYMENTS.name}:{name}" for name in USER_PAYMENTS.feature_names]
    rng = random.Random(11)
    users = sorted(expected)
    bodies = {
        size: [{"features": features, "entities": {"user_id": rng.sample(users, size)}} for _ in range(args.requests)]
        for size in (1, 100)
    }
    timings: dict[tuple[str, int], list[float]] = {(s, n): [] for s in ("ours", "feast") for n in (1, 100)}
    with httpx.Client(base_url=ours_url, timeout=30) as ours, httpx.Client(base_url=feast_url, timeout=30) as feast:
        clients = {"ours": ours, "feast": feast}
        mismatches = _compare_servers(ours, feast, bodies[100][0])
        say(f"both servers answer; values that differ between them: {mismatches}")
        for client in clients.values():  # warm both up alike
            for size in (1, 100):
                _timed_posts(client, bodies[size][:20])
        for r in range(args.rounds):
            order = ("ours", "feast") if r % 2 == 0 else ("feast", "ours")
            for size in (1, 100):
                for side in order:
                    timings[(side, size)] += _timed_posts(clients[side], bodies[size])
            say(
                f"latency round {r + 1}/{args.rounds}: p50 1 entity ours {percentile_ms(timings[('ours', 1)], 50)} ms / "
                f"feast {percentile_ms(timings[('feast', 1)], 50)} ms; 100 entities ours "
                f"{percentile_ms(timings[('ours', 100)], 50)} ms / feast {percentile_ms(timings[('feast', 100)], 50)} ms"
            )
    out: dict[str, Any] = {"http_requests_per_server_and_size": args.requests * args.rounds, "served_value_differences": mismatches}
    for size in (1, 100):
        for q in (50, 99):
            o, f = percentile_ms(timings[("ours", size)], q), percentile_ms(timings[("feast", size)], q)
            out[f"ours_p{q}_ms_{size}"], out[f"feast_p{q}_ms_{size}"] = o, f
            out[f"ratio_vs_feast_serve_p{q}_{size}"] = round(f / o, 3)
    say(
        "latency (all rounds): "
        + "; ".join(f"{n} entit{'y' if n == 1 else 'ies'} p{q} ours {out[f'ours_p{q}_ms_{n}']} ms, feast {out[f'feast_p{q}_ms_{n}']} ms"
                    for n in (1, 100) for q in (50, 99))  # fmt: skip
    )
    return out


def _start_feast_serve(repo: Path, events: Any, expected: dict[int, dict[str, float]], cleanup: contextlib.ExitStack, say: Say) -> str:
    """Copy ``feature_store/`` to ``repo``, load the same feature values, run ``feast serve``; return its URL."""
    import httpx

    from bench import free_port

    shutil.copytree(FEATURE_STORE, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    first, last = _write_feature_rows(repo / "data" / "user_payments.parquet", events, expected)
    feast = str(Path(sys.executable).parent / "feast")
    say("feast apply, then feast materialize of the same feature values into its sqlite online store")
    t0 = time.monotonic()
    for cmd in ([feast, "apply"], [feast, "materialize", first, last, "--views", "user_payments"]):
        done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[1:2])} failed ({done.returncode}): {done.stderr[-2000:]}")
    port = free_port()
    cmd = [feast, "serve", "-h", "127.0.0.1", "-p", str(port), "--max-requests", "0", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cleanup.callback(_stop_process, proc, True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"feast serve exited with status {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise TimeoutError("feast serve did not answer /health within 90s")
        time.sleep(0.2)
    say(f"feast serve up at {url} ({time.monotonic() - t0:.1f}s for apply, materialize and start)")
    return url


def _write_feature_rows(path: Path, events: Any, expected: dict[int, dict[str, float]]) -> tuple[str, str]:
    """One row per user with the fabric's values, stamped with the user's latest event; return the time range."""
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    latest = events.group_by("user_id").aggregate([("event_ts", "max")])
    last_ms = dict(zip(latest["user_id"].to_pylist(), latest["event_ts_max"].to_pylist()))
    users = sorted(expected)
    table = pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "txn_count": pa.array([expected[u]["txn_count"] for u in users], pa.int64()),
            "amount_sum": pa.array([expected[u]["amount_sum"] for u in users], pa.float64()),
            "txn_count_1m": pa.array([expected[u]["txn_count_1m"] for u in users], pa.int64()),
            "amount_sum_1m": pa.array([expected[u]["amount_sum_1m"] for u in users], pa.float64()),
            "event_ts": pa.array([last_ms[u] for u in users], pa.timestamp("ms", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    lo, hi = pc.min_max(pc.cast(table["event_ts"], pa.int64())).values()

    def iso(ms: int, shift: timedelta) -> str:
        return (datetime.fromtimestamp(ms / 1000, tz=timezone.utc) + shift).strftime("%Y-%m-%dT%H:%M:%S")

    return iso(lo.as_py(), -timedelta(days=1)), iso(hi.as_py(), timedelta(days=1))


def _compare_servers(ours: Any, feast: Any, body: dict) -> int:
    """Ask both servers the same thing; count the feature values that differ."""

    def columns(client: Any) -> dict[str, list]:
        response = client.post("/get-online-features", json=body)
        response.raise_for_status()
        doc = response.json()
        return {name: res["values"] for name, res in zip(doc["metadata"]["feature_names"], doc["results"])}

    a, b = columns(ours), columns(feast)
    if set(a) != set(b):
        raise RuntimeError(f"the servers name different columns: ours {sorted(a)}, feast {sorted(b)}")
    return sum(not (x == y or (x is not None and y is not None and _close(x, y))) for k in a for x, y in zip(a[k], b[k]))


def _timed_posts(client: Any, bodies: list[dict]) -> list[float]:
    out = []
    for body in bodies:
        t0 = time.perf_counter()
        response = client.post("/get-online-features", json=body)
        out.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise RuntimeError(f"{client.base_url} answered {response.status_code}: {response.text[:300]}")
    return out


# -- the hand-written peer consumer (runs in its own process) ------------------------------------
def consume_and_fold(
    consumer: Any, expect: int, window_ms: int = WINDOW_MS, on_batch: Callable[[int], None] | None = None
) -> tuple[dict[int, list], int, int]:
    """What one writes by hand: poll, ``json.loads``, validate, fold per user until ``expect`` messages.

    Returns:
        ``(state, processed, rejected)`` with ``state[user_id] = [count, sum, window_start_ms,
        window_count, window_sum]``, the window being the one of the user's latest event (an older
        event counts all-time only, as in fabric_ray). ``on_batch`` gets the messages read so far.
    """
    state: dict[int, list] = {}
    processed = rejected = 0
    while processed + rejected < expect:
        for msg in consumer.consume(num_messages=5000, timeout=0.2):
            if msg.error() is not None:
                continue
            try:
                event = json.loads(msg.value())
                uid, amount, ts = event["user_id"], event["amount"], event["event_ts"]
                if type(uid) is not int or type(ts) is not int or type(amount) not in (int, float):
                    raise TypeError("wrong field types")
            except (ValueError, KeyError, TypeError):
                rejected += 1
                continue
            processed += 1
            window = ts - ts % window_ms
            row = state.get(uid)
            if row is None:
                state[uid] = [1, amount, window, 1, amount]
                continue
            row[0] += 1
            row[1] += amount
            if window > row[2]:
                row[2], row[3], row[4] = window, 1, amount
            elif window == row[2]:
                row[3] += 1
                row[4] += amount
        if on_batch is not None:
            on_batch(processed + rejected)
    return state, processed, rejected


def _peer_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spine", description="The hand-written peer consumer of `bench spine`.")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True, help="messages to read before stopping")
    parser.add_argument("--progress-file", type=Path, required=True, help="8-byte file: messages read so far (int64)")
    parser.add_argument("--result-file", type=Path, required=True, help="JSON: t_done (monotonic), counts, state")
    args = parser.parse_args(argv)
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": PEER_GROUP,
            "enable.auto.commit": False,
            # Should the broker have dropped the next offset, go on from its oldest message
            # rather than jump to the end (the default "latest").
            "auto.offset.reset": "earliest",
            # the fabric's partition sources use the same fetch settings
            "fetch.wait.max.ms": 50,
            "queued.max.messages.kbytes": 65536,
        }
    )
    parts = [TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in range(args.partitions)]
    consumer.assign(parts)
    for tp in parts:  # connected to the partition leaders before the clock starts
        consumer.get_watermark_offsets(TopicPartition(args.topic, tp.partition), timeout=10)
    with open(args.progress_file, "r+b") as f, mmap.mmap(f.fileno(), 8) as counter:
        args.progress_file.with_suffix(".ready").write_text("ready")

        def report(n: int) -> None:
            counter[:8] = struct.pack("q", n)

        state, processed, rejected = consume_and_fold(consumer, args.expect, on_batch=report)
    t_done = time.monotonic()
    consumer.close()
    tmp = args.result_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"t_done": t_done, "processed": processed, "rejected": rejected, "state": state}))
    tmp.rename(args.result_file)
    return 0


if __name__ == "__main__":
    sys.exit(_peer_main())
