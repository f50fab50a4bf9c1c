"""Benchmark ``serving``: online feature HTTP latency and throughput, fabric_ray against ``feast serve``.

The same feature repo (a copy of ``feature_store/``) and the same values of ``user_payments`` for
``--users`` users are served twice:

- by Feast: ``feast apply``, ``feast materialize --views user_payments`` from a Parquet file into its
  SQLite online store, then ``feast serve`` with one worker and ``--max-requests 0`` (else the
  worker restarts mid-benchmark);
- by fabric_ray: a Fabric (local Ray, embedded broker, stream, cache shards, the feature server on
  Ray Serve) started in its own process, the rows pushed through ``fabric.features.push`` (into
  the cache shards, written behind to its SQLite online store), so reads are answered by the cache.

Ray Serve's HTTP ingress is set by environment variables when Ray starts, so each ingress variant
(``--variants``) gets its own fabric process, one after the other, while ``feast serve`` keeps
running: ``haproxy_throughput`` (what ``serving.ingress: auto`` gives: HAProxy with
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``), ``haproxy`` (HAProxy alone), ``throughput`` (Serve's proxy
with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``) and ``default`` (Serve's proxy). Against each, in
alternating rounds with Feast:

(a) latency: one keep-alive HTTP/1.1 connection per server (a minimal socket client, the same for
    both) sends the same ``/get-online-features`` requests for 1 and for 100 entities (4 features);
    p50 and p99;
(b) throughput: ``--clients`` keep-alive connections (asyncio) send 1-entity requests as fast as
    they are answered for ``--seconds``; requests per second.

Before timing, both servers answer the same 100-entity request and the values are compared.
The last line's top-level figures are those of ``--default-variant`` (the fabric's own default);
``variants`` holds every variant's, and ``best_variant`` names the one with the best geometric mean of
its three ratios to Feast (each measured in that variant's own rounds, so machine noise hits both). Run it as ``python -m bench serving`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.spine import FEATURE_STORE, _stop_process, _wait_file

Say = Callable[[str], None]

ROOT = Path(__file__).resolve().parents[1]
VIEW = "user_payments"
FEATURES = [f"{VIEW}:{f}" for f in ("txn_count", "amount_sum", "txn_count_1m", "amount_sum_1m")]
PUSH_CHUNK = 10_000
VARIANTS = ("haproxy_throughput", "haproxy", "throughput", "default")


# `python -m bench all --quick` (bench/suite.py): this benchmark's short mode and the figures it compares
QUICK_ARGS = ["--variants", "haproxy_throughput", "--requests", "200", "--rounds", "2", "--seconds", "3", "--rps-rounds", "1"]
KEY_FIGURES = {
    "ours_p99_ms_1": "lower",
    "ours_p99_ms_100": "lower",
    "ours_rps_16": "higher",
    "ratio_vs_feast_p50_100": "higher",  # a p99 of 400 requests is too noisy to compare with a peer
    "ratio_vs_feast_rps_16": "higher",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench serving``."""
    parser.add_argument("--users", type=int, default=10_000, help="users with feature values (default 10000)")
    parser.add_argument("--requests", type=int, default=300, help="latency requests per server, size and round (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating latency rounds per variant (default 3)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients for requests/s (default 16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one requests/s run (default 5 s)")
    parser.add_argument("--rps-rounds", type=int, default=2, help="alternating requests/s rounds per variant (default 2)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"Ray Serve ingress variants to measure, comma-separated (default {','.join(VARIANTS)})"
    )
    parser.add_argument("--default-variant", default="haproxy_throughput", help="the variant the top-level figures report (default haproxy_throughput: serving.ingress auto)")


def run(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """Run the benchmark; return the figures (the caller prints them as the last JSON line)."""
    from fabric_ray.loopback import keep_on_loopback

    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants or args.users < 100 or args.requests < 10 or args.rounds < 1 or args.clients < 1:
        raise SystemExit(
            f"need --variants among {list(VARIANTS)}, --users >= 100, --requests >= 10, --rounds >= 1, --clients >= 1; "
            f"got {args.variants!r}, {args.users}, {args.requests}, {args.rounds}, {args.clients}"
        )
    if args.default_variant not in variants:
        raise SystemExit(f"--default-variant {args.default_variant!r} is not among --variants {variants}")
    keep_on_loopback()
    with contextlib.ExitStack() as cleanup:
        work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        rows = _rows(args.users)
        rows_path = work / "rows.parquet"
        import pyarrow.parquet as pq

        pq.write_table(rows, rows_path)
        feast_url = _start_feast_serve(work / "feast_repo", rows, cleanup, say)
        rng = random.Random(11)
        users = rows["user_id"].to_pylist()
        bodies = {n: [json.dumps({"features": FEATURES, "entities": {"user_id": rng.sample(users, n)}}).encode()
                      for _ in range(args.requests)] for n in (1, 100)}  # fmt: skip
        results = {}
        for variant in variants:
            with _fabric_process(work, variant, rows_path, say) as ours_url:
                results[variant] = _measure(variant, ours_url, feast_url, bodies, args, say)
    out: dict[str, Any] = {"users": args.users, "cpus": os.cpu_count(), "default_variant": args.default_variant}
    out.update({k: v for k, v in results[args.default_variant].items() if k != "variant"})
    out["variants"] = results
    # Each variant is compared with Feast in its own alternating rounds: rank by those ratios, not raw figures.
    def score(v: str) -> float:
        r = results[v]
        return (r["ratio_vs_feast_p99_1"] * r["ratio_vs_feast_p99_100"] * r["ratio_vs_feast_rps_16"]) ** (1 / 3)

    out["best_variant"] = max(results, key=score)
    out["variant_scores"] = {v: round(score(v), 3) for v in results}
    say(
        "; ".join(
            f"{v}: p99 1 {r['ours_p99_ms_1']} ms (feast {r['feast_p99_ms_1']}), p99 100 {r['ours_p99_ms_100']} ms "
            f"(feast {r['feast_p99_ms_100']}), {r['ours_rps_16']} req/s (feast {r['feast_rps_16']})"
            for v, r in results.items()
        )
    )
    return out


# -- data and servers ------------------------------------------------------------------------
def _rows(users: int) -> Any:
    """``user_payments`` rows for users 1..N: the four features and an event time in the last hour."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(5)
    now_ms = int(time.time() * 1000)
    count = rng.integers(1, 500, users)
    return pa.table(
        {
            "user_id": pa.array(np.arange(1, users + 1), pa.int64()),
            "txn_count": pa.array(count, pa.int64()),
            "amount_sum": pa.array(np.round(count * rng.uniform(5, 80, users), 2), pa.float64()),
            "txn_count_1m": pa.array(rng.integers(0, 5, users), pa.int64()),
            "amount_sum_1m": pa.array(np.round(rng.uniform(0, 300, users), 2), pa.float64()),
            "event_ts_ms": pa.array(now_ms - rng.integers(0, 3_600_000, users), pa.int64()),
        }
    )


def _start_feast_serve(repo: Path, rows: Any, cleanup: contextlib.ExitStack, say: Say) -> str:
    """Copy ``feature_store/``, load ``rows`` with ``feast apply`` and ``feast materialize``, run ``feast serve``."""
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench import free_port

    shutil.copytree(FEATURE_STORE, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    table = rows.drop_columns(["event_ts_ms"]).append_column("event_ts", pa.compute.cast(rows["event_ts_ms"], pa.timestamp("ms", tz="UTC")))
    pq.write_table(table, repo / "data" / "user_payments.parquet")
    lo, hi = min(rows["event_ts_ms"].to_pylist()), max(rows["event_ts_ms"].to_pylist())

    def iso(ms: int, shift: timedelta) -> str:
        return (datetime.fromtimestamp(ms / 1000, tz=timezone.utc) + shift).strftime("%Y-%m-%dT%H:%M:%S")

    feast = str(Path(sys.executable).parent / "feast")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}
    env["FEAST_USAGE"] = "False"
    say(f"feast apply, then feast materialize of {rows.num_rows:,} users into its sqlite online store")
    t0 = time.monotonic()
    for cmd in ([feast, "apply"], [feast, "materialize", "--views", VIEW, iso(lo, -timedelta(days=1)), iso(hi, timedelta(minutes=1))]):
        done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"feast {cmd[1]} failed ({done.returncode}): {done.stderr[-2000:]}")
    port = free_port()
    cmd = [feast, "serve", "-h", "127.0.0.1", "-p", str(port), "--workers", "1", "--max-requests", "0", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cleanup.callback(_stop_process, proc, True)
    _wait_health(port, proc, 120, "feast serve")
    say(f"feast serve up on port {port} ({time.monotonic() - t0:.1f}s for apply, materialize and start)")
    return f"http://127.0.0.1:{port}"


def _wait_health(port: int, proc: subprocess.Popen, timeout_s: float, what: str, path: str = "/health") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        with contextlib.suppress(OSError, ValueError):
            conn = _Conn("127.0.0.1", port)
            try:
                if conn.get(path)[0] == 200:
                    return
            finally:
                conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer {path} within {timeout_s}s")
        time.sleep(0.2)


def variant_env(variant: str) -> dict[str, str]:
    """Environment of the Ray cluster for one ingress variant (set before Ray starts)."""
    from fabric_ray.loopback import ingress_env

    if variant == "default":
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "0"}
    if variant == "throughput":
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    env = ingress_env("haproxy")
    env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1" if variant == "haproxy_throughput" else "0"
    return env


@contextlib.contextmanager
def _fabric_process(work: Path, variant: str, rows_path: Path, say: Say):
    """Run ``python -m bench.serving --serve ...`` (a fabric for one variant); yield its URL."""
    ready = work / f"{variant}.ready.json"
    cmd = [sys.executable, "-m", "bench.serving", "--variant", variant, "--home", str(work / f"fabric-{variant}"),
           "--rows", str(rows_path), "--ready-file", str(ready)]  # fmt: skip
    say(f"[{variant}] starting a fabric with this Ray Serve ingress and pushing the same rows")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=open(work / f"{variant}.log", "w"))
    try:
        _wait_file(ready, proc, 300, f"the {variant} fabric did not get ready")
        url = json.loads(ready.read_text())["url"]
        say(f"[{variant}] fabric up with its features in {time.monotonic() - t0:.1f}s at {url}")
        yield url
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.close()  # the child stops its fabric when its stdin closes
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            _stop_process(proc)


# -- measuring ---------------------------------------------------------------------------------
def _measure(variant: str, ours_url: str, feast_url: str, bodies: dict[int, list[bytes]], args: argparse.Namespace, say: Say) -> dict[str, Any]:
    from bench import percentile_ms

    ports = {"ours": _port(ours_url), "feast": _port(feast_url)}
    timings: dict[tuple[str, int], list[float]] = {(s, n): [] for s in ports for n in (1, 100)}
    conns = {side: _Conn("127.0.0.1", port) for side, port in ports.items()}
    try:
        differences = _compare(conns, bodies[100][0])
        say(f"[{variant}] both servers answer; feature values that differ between them: {differences}")
        for conn in conns.values():  # warm both up alike
            for n in (1, 100):
                _timed(conn, bodies[n][:30])
        for r in range(args.rounds):
            order = ("ours", "feast") if r % 2 == 0 else ("feast", "ours")
            for n in (1, 100):
                for side in order:
                    timings[(side, n)] += _timed(conns[side], bodies[n])
    finally:
        for conn in conns.values():
            conn.close()
    out: dict[str, Any] = {"variant": variant, "served_value_differences": differences, "latency_requests": args.requests * args.rounds}
    for n in (1, 100):
        for q in (50, 99):
            out[f"ours_p{q}_ms_{n}"] = percentile_ms(timings[("ours", n)], q)
            out[f"feast_p{q}_ms_{n}"] = percentile_ms(timings[("feast", n)], q)
    rps: dict[str, list[float]] = {"ours": [], "feast": []}
    one = bodies[1]
    for r in range(args.rps_rounds):
        for side in (("ours", "feast") if r % 2 == 0 else ("feast", "ours")):
            rps[side].append(_requests_per_s(ports[side], one, args.clients, args.seconds))
    out["ours_rps_16"], out["feast_rps_16"] = round(statistics.median(rps["ours"])), round(statistics.median(rps["feast"]))
    out["rps_clients"] = args.clients
    for n in (1, 100):
        out[f"ratio_vs_feast_p99_{n}"] = round(out[f"feast_p99_ms_{n}"] / out[f"ours_p99_ms_{n}"], 3)
        out[f"ratio_vs_feast_p50_{n}"] = round(out[f"feast_p50_ms_{n}"] / out[f"ours_p50_ms_{n}"], 3)
    out["ratio_vs_feast_rps_16"] = round(out["ours_rps_16"] / out["feast_rps_16"], 3)
    say(
        f"[{variant}] p50/p99 1 entity: ours {out['ours_p50_ms_1']}/{out['ours_p99_ms_1']} ms, feast "
        f"{out['feast_p50_ms_1']}/{out['feast_p99_ms_1']} ms; 100 entities: ours {out['ours_p50_ms_100']}/{out['ours_p99_ms_100']} ms, "
        f"feast {out['feast_p50_ms_100']}/{out['feast_p99_ms_100']} ms; {args.clients} clients: ours {out['ours_rps_16']} req/s, "
        f"feast {out['feast_rps_16']} req/s"
    )
    return out


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def _compare(conns: dict[str, _Conn], body: bytes) -> int:
    """Ask both servers the same thing; count the feature values that differ."""
    import math

    columns = {}
    for side, conn in conns.items():
        status, payload = conn.post("/get-online-features", body)
        if status != 200:
            raise RuntimeError(f"{side} answered {status}: {payload[:300]!r}")
        doc = json.loads(payload)
        columns[side] = {name: res["values"] for name, res in zip(doc["metadata"]["feature_names"], doc["results"])}
    a, b = columns["ours"], columns["feast"]
    if set(a) != set(b):
        raise RuntimeError(f"the servers name different columns: ours {sorted(a)}, feast {sorted(b)}")
    return sum(not (x == y or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9))) for k in a for x, y in zip(a[k], b[k]))


def _timed(conn: _Conn, bodies: list[bytes]) -> list[float]:
    out = []
    for body in bodies:
        t0 = time.perf_counter()
        status, payload = conn.post("/get-online-features", body)
        out.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"port {conn.port} answered {status}: {payload[:300]!r}")
    return out


def _request(path: str, body: bytes | None) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class _Conn:
    """One keep-alive HTTP/1.1 connection: a request, then its whole response (Content-Length or chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reconnects = 0
        self.sock = self._connect()
        self.buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self._exchange(_request(path, body))

    def get(self, path: str) -> tuple[int, bytes]:
        return self._exchange(_request(path, None))

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            self.sock.sendall(request)
            return self._response()
        except ConnectionError:  # a keep-alive connection the server closed: once more on a new one
            self.reconnects += 1
            self.close()
            self.sock, self.buf = self._connect(), b""
            self.sock.sendall(request)
            return self._response()

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"port {self.port} closed the connection")
        self.buf += chunk

    def _response(self) -> tuple[int, bytes]:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._read()
        head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
        status = int(head[9:12])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:])}
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._read()
            body, self.buf = self.buf[:n], self.buf[n:]
            return status, body
        body = b""
        while True:  # chunked
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._read()
            size = int(self.buf[:eol].split(b";")[0], 16)
            while len(self.buf) < eol + 2 + size + 2:
                self._read()
            body += self.buf[eol + 2: eol + 2 + size]
            self.buf = self.buf[eol + 2 + size + 2:]
            if size == 0:
                return status, body

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _requests_per_s(port: int, bodies: list[bytes], clients: int, seconds: float) -> float:
    """Completed 200 responses per second with ``clients`` keep-alive connections sending back to back."""

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def client(i: int, deadline: float, counts: list[int]) -> None:
        reader, writer = await connect()
        k = i
        try:
            while time.perf_counter() < deadline:
                writer.write(_request("/get-online-features", bodies[k % len(bodies)]))
                k += clients
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):  # the server closed a keep-alive connection
                    writer.close()
                    reader, writer = await connect()
                    continue
                length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                if length:
                    await reader.readexactly(length[0])
                else:  # chunked
                    while (size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)) > 0:
                        await reader.readexactly(size + 2)
                    await reader.readexactly(2)
                if head[9:12] != b"200":
                    raise RuntimeError(f"port {port} answered {head[:12]!r}")
                counts[i] += 1
        finally:
            writer.close()

    async def main() -> float:
        counts = [0] * clients
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, t0 + seconds, counts) for i in range(clients)))
        return sum(counts) / (time.perf_counter() - t0)

    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


# -- the fabric side (runs in its own process) -------------------------------------------------
def _serve_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description="One fabric of `bench serving`, until stdin closes.")
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--home", required=True)
    parser.add_argument("--rows", required=True, help="Parquet file of user_payments rows to push")
    parser.add_argument("--ready-file", required=True, type=Path)
    args = parser.parse_args(argv)
    os.environ.update(variant_env(args.variant))  # before Ray starts: its processes inherit them
    import pyarrow.parquet as pq

    from bench import exit_on_sigterm, free_port
    from fabric_ray import Fabric, load_config

    config = load_config(None, home=args.home, ray={"namespace": "bench-serving"}, serving={"port": free_port(), "ingress": "default"})
    fabric = Fabric(config)
    try:
        fabric.start()
        exit_on_sigterm()
        rows = pq.read_table(args.rows)
        for start in range(0, rows.num_rows, PUSH_CHUNK):
            fabric.features.push("user_payments_push", rows.slice(start, PUSH_CHUNK))
        _wait_health(config.serving.port, _Alive(), 120, "the fabric's feature server")
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": config.serving.url}))
        tmp.rename(args.ready_file)
        sys.stdin.read()  # until the benchmark closes our stdin (or dies)
    finally:
        fabric.stop()
        import ray

        if ray.is_initialized():
            ray.shutdown()
    return 0


class _Alive:
    """A stand-in for a process that is running (for :func:`_wait_health` in the fabric's own process)."""

    returncode = None

    def poll(self) -> None:
        return None


if __name__ == "__main__":
    sys.exit(_serve_main())
