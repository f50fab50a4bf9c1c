"""The ``fabric`` command line: demo, up, status, down.

Every command reads the configuration from ``--config`` (or ``$FABRIC_CONFIG``) and ``FABRIC_*``
environment variables; with neither, everything runs embedded on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from fabric_ray.config import ConfigError, FabricConfig, load_config

__all__ = ["main"]

EPILOG = """\
configuration: fabric.yaml (--config or $FABRIC_CONFIG) plus FABRIC_* environment variables,
e.g. FABRIC_SERVING__PORT=9000 or FABRIC_KAFKA__BOOTSTRAP_SERVERS=broker:9092.
docs: README.md and docs/ in the repository.
"""


def _print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


# -- demo ----------------------------------------------------------------------------------------
def cmd_demo(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.demo.run import DemoOptions, run_demo

    options = DemoOptions(
        events=args.events,
        sample=args.sample,
        users=args.users,
        seed=args.seed,
        bad_fraction=args.bad_fraction,
        timeout_s=args.timeout,
        progress=not args.no_progress,
    )
    result = run_demo(config, options)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


# -- up / down / status --------------------------------------------------------------------------
def cmd_up(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.daemon import DAEMON_FILE, read_daemon_state

    home = config.home
    home.mkdir(parents=True, exist_ok=True)
    running = read_daemon_state(home)
    if running:
        print(f"the fabric is already up (pid {running['pid']}), endpoint {running['endpoint']}; `fabric down` stops it")
        return 0
    if config.ray.address is not None:
        print("fabric up starts a local cluster; with ray.address set, run `fabric demo` or use Fabric(config).start()", file=sys.stderr)
        return 2
    (home / "daemon.failed").unlink(missing_ok=True)
    log = open(home / "daemon.log", "ab")
    cmd = [sys.executable, "-m", "fabric_ray.daemon"] + (["--config", args.config] if args.config else [])
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + args.timeout
    print("starting the fabric in the background", end="", flush=True)
    while not (home / DAEMON_FILE).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print()
            if proc.poll() is None:
                proc.terminate()
            print(f"the fabric did not come up; see {home / 'daemon.log'}", file=sys.stderr)
            return 1
        print(".", end="", flush=True)
        time.sleep(1)
    state = json.loads((home / DAEMON_FILE).read_text())
    print(" up")
    print(f"  endpoint      {state['endpoint']}  (POST /get-online-features, GET /health)")
    if state.get("schema_registry"):
        print(f"  schemas       {state['schema_registry']}  (Confluent Schema Registry API)")
    print(f"  ray address   {state['ray_address']}  (fabric_ray.connect(address))")
    if state.get("dashboard_url"):
        print(f"  jobs          ray job submit --address {state['dashboard_url']} -- python ...")
    print(f"  kafka         {state['bootstrap_servers']}  (topic {config.stream.topic})")
    print(f"  log           {home / 'daemon.log'}")
    print("`fabric status` shows progress; `fabric down` stops it")
    return 0


def _connect(config: FabricConfig, address: str | None):
    from fabric_ray.daemon import read_daemon_state
    from fabric_ray.fabric import connect

    if address is None:
        address = config.ray.address
    if address is None:
        state = read_daemon_state(config.home)
        if state is None:
            raise LookupError(f"no fabric is up under {config.home}/ (start one with `fabric up`, or pass --address)")
        address = state["ray_address"]
    return connect(address, namespace=config.ray.namespace, config=config)


def cmd_status(config: FabricConfig, args: argparse.Namespace) -> int:
    fabric = _connect(config, args.address)
    status = fabric.status()
    if args.json:
        print(json.dumps(status, default=str, indent=2))
        return 0
    s = status["stream"]["summary"]
    print(f"fabric   namespace {status['namespace']}, endpoint {status['endpoint']}, kafka {status['bootstrap_servers']}")
    if status.get("schema_registry"):
        print(f"schemas  {status['schema_registry']}")
    print(
        f"stream   topic {status['stream']['topic']}: {s['owners']} owners, {s['partitions']} partitions, "
        f"{s['processed']:,} processed, {s['dead_lettered']:,} dead-lettered, lag {s['lag']:,}"
    )
    if s.get("offset_gaps"):
        print(f"WARNING  {s['offset_gaps']:,} offsets skipped: the broker deleted them before they were read (retention)")
    errors = [(o["name"], o["last_error"]) for o in status["stream"]["owners"] if o.get("last_error")]
    for name, error in errors:
        print(f"ERROR    {name}: {error.strip().splitlines()[-1]}")
    print()
    rows = [
        (
            o["name"],
            o["state"],
            ",".join(str(p) for p in o["partitions"]),
            f"{o['processed']:,}",
            f"{o['dead_lettered']:,}",
            ",".join(f"{p}:{o['next_offsets'].get(p, 0)}" for p in o["partitions"]),
            f"{sum(o['lag'].values()):,}",
            f"{o['throughput_eps']:,.0f}",
            o["restarts"],
        )
        for o in status["stream"]["owners"]
    ]
    _print_table(rows, ("actor", "state", "partitions", "processed", "dead", "next offsets", "lag", "events/s", "restarts"))
    print()
    _print_table([(f"cache:{c['shard']}", c["keys"]) for c in status["cache_shards"]], ("cache shard", "keys"))
    return 0


def cmd_down(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.daemon import read_daemon_state

    state = read_daemon_state(config.home)
    if state is None:
        print(f"no fabric is up under {config.home}/")
        return 0
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    print("stopping the fabric", end="", flush=True)
    while read_daemon_state(config.home) is not None or _alive(int(state["pid"])):
        if time.monotonic() > deadline:
            print(f"\nstill stopping after {args.timeout}s; sending SIGKILL to pid {state['pid']}", file=sys.stderr)
            os.kill(int(state["pid"]), signal.SIGKILL)
            return 1
        print(".", end="", flush=True)
        time.sleep(0.5)
    print(" down")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a finished child of ours is a zombie until reaped
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return True


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fabric`` command."""
    parser = argparse.ArgumentParser(
        prog="fabric",
        description="fabric_ray: Kafka streams and object storage turned into real-time features on Ray.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="path to fabric.yaml (default: $FABRIC_CONFIG, else built-in defaults)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the end-to-end demo on embedded defaults and check every served value",
        description="Start the fabric, produce synthetic card-payment events to Kafka, wait until the partition "
        "actors have processed or dead-lettered every one, read the features of a sample of users over HTTP, "
        "compare them with values computed directly from the events, stop, and print a JSON summary as the "
        "last line. Exits 1 on any mismatch.",
    )
    demo.add_argument("--events", type=int, default=100_000, help="events to produce (default 100000)")
    demo.add_argument("--sample", type=int, default=200, help="users whose features are checked over HTTP (default 200)")
    demo.add_argument("--users", type=int, default=10_000, help="distinct users in the events (default 10000)")
    demo.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    demo.add_argument("--bad-fraction", type=float, default=0.001, help="share of malformed events, dead-lettered (default 0.001)")
    demo.add_argument("--timeout", type=float, default=600, help="seconds to wait for the stream to catch up (default 600)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    up = sub.add_parser(
        "up",
        help="start a long-running local fabric in the background and return",
        description="Start a local Ray cluster with the fabric (embedded broker unless kafka.bootstrap_servers "
        "is set, partition actors, cache shards, HTTP endpoint) in a background process, wait until it answers, "
        "print where to reach it and return. State lives under the home folder (default .fabric/).",
    )
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for start-up (default 180)")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser(
        "status",
        help="show actors, partitions, consumer lag and the endpoint",
        description="Connect to the running fabric and print its partition owners (offsets, lag, throughput, "
        "restarts), cache shards and endpoint URL as a table.",
    )
    status.add_argument("--address", help="Ray address (default: the one `fabric up` wrote under the home folder)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(func=cmd_status)

    down = sub.add_parser(
        "down",
        help="stop the fabric started by `fabric up`",
        description="Stop the partition actors cleanly, remove the actors and the HTTP application, and shut "
        "down the local Ray cluster that `fabric up` started.",
    )
    down.add_argument("--timeout", type=float, default=90, help="seconds to wait before killing it (default 90)")
    down.set_defaults(func=cmd_down)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fabric`` command."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        return args.func(config, args)
    except (ConfigError, LookupError, ConnectionError, TimeoutError) as exc:
        print(f"fabric {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
