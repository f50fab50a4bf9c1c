"""The ``fabric`` command line: demo, up, status, down, products, etl, features (in :mod:`fabric_ray.cli_features`).

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

from fabric_ray.cli_features import _add_features_parser
from fabric_ray.config import ConfigError, FabricConfig, load_config
from fabric_ray.streams.stage_latency import stage_line

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


def _last_line(text: str | None) -> str:
    """The last line of an error text (a traceback's is the error itself); ``""`` for none."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


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
    if s.get("reasons"):
        print("dead     " + ", ".join(f"{n:,} {kind}" for kind, n in sorted(s["reasons"].items(), key=lambda kv: -kv[1])))
    if s.get("stages"):
        print("latency  " + stage_line(s["stages"]))
    for name, p in status.get("pipelines", {}).items():
        print(
            f"pipeline {name}: {p['owners']} owners, {p['partitions']} partitions, {p['processed']:,} processed, "
            f"{p['dead_lettered']:,} dead-lettered, lag {p['lag']:,}"
        )
    if s.get("offset_gaps"):
        print(f"WARNING  {s['offset_gaps']:,} offsets skipped: the broker deleted them before they were read (retention)")
    errors = [(o["name"], o["last_error"]) for o in status["stream"]["owners"] if o.get("last_error")]
    for name, error in errors:
        print(f"ERROR    {name}: {_last_line(error)}")
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
    shards = [(f"cache:{c['shard']}", c.get("state", "ready"), c["keys"], _last_line(c.get("last_error"))) for c in status["cache_shards"]]
    _print_table(shards, ("cache shard", "state", "keys", "last error"))
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


# -- products ------------------------------------------------------------------------------------
def _problems(prog: str, lines: Sequence[str], tail: str) -> int:
    for line in lines:
        print(f"{prog}: {line}", file=sys.stderr)
    print(f"{prog}: {tail}", file=sys.stderr)
    return 2


def _metadata_store(config: FabricConfig, create: bool):
    """The metadata store at ``config.metadata_url``; None when it is a SQLite file not made yet and ``create`` is false."""
    from fabric_ray.governance.registry_store import SqlRegistryStore, sqlite_file

    url = config.metadata_url
    path = sqlite_file(url)
    if path is not None and not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
    return SqlRegistryStore(url)


def cmd_products_apply(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.governance.products import ApplyError, ProductError, apply_products, load_products
    from fabric_ray.governance.registry import RegistryError, SchemaRegistry
    from fabric_ray.governance.registry_store import MemoryRegistryStore, StoreError, mask_url

    prog, url = "fabric products apply", mask_url(config.metadata_url)
    try:
        products = load_products(args.dir)
    except ProductError as exc:
        return _problems(prog, exc.problems, f"{len(exc.problems)} problem(s) in {args.dir}; nothing registered")
    try:
        # A dry run against a store not created yet needs no file: an empty one answers the same.
        store = _metadata_store(config, create=not args.dry_run) or MemoryRegistryStore()
    except StoreError as exc:
        return _problems(prog, [str(exc)], "nothing registered")
    try:
        report = apply_products(SchemaRegistry(store), products, dry_run=args.dry_run)
    except ApplyError as exc:
        return _problems(prog, exc.problems, f"{len(exc.problems)} product(s) refused by the schema registry; nothing registered")
    except (RegistryError, ProductError) as exc:
        return _problems(prog, [str(exc)], "nothing registered")
    finally:
        store.close()
    rows = [(r.name, r.subject, r.version, r.schema_id, r.status) for r in report.results]
    _print_table(rows, ("product", "subject", "version", "schema id", "status"))
    changed = sum(r.status != "unchanged" for r in report.results)
    if args.dry_run:
        print(f"dry run: {changed} of {len(rows)} product(s) would change; nothing written to {url}")
    else:
        print(f"applied {len(rows)} product(s), {changed} changed, to {url}")
    return 0


def _stored_products(config: FabricConfig, prog: str):
    """``(products, None)`` from the metadata store, or ``(None, exit code)`` after printing why not."""
    from fabric_ray.governance.products import ProductError, list_products
    from fabric_ray.governance.registry_store import StoreError

    try:
        store = _metadata_store(config, create=False)
    except StoreError as exc:
        return None, _problems(prog, [str(exc)], "cannot read the metadata store")
    if store is None:
        return [], None
    try:
        return list_products(store), None
    except ProductError as exc:
        return None, _problems(prog, exc.problems, "stored products do not validate")
    finally:
        store.close()


def cmd_products_list(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.governance.products import format_duration
    from fabric_ray.governance.registry_store import mask_url

    products, code = _stored_products(config, "fabric products list")
    if products is None:
        return code
    if args.json:
        print(json.dumps([p.to_dict() for p in products], indent=2))
        return 0
    if not products:
        print(f"no data products in {mask_url(config.metadata_url)}; register some with `fabric products apply DIR`")
        return 0
    rows = [
        (
            p.name, p.domain, p.owner, p.topic or "-", p.dataset or "-", p.subject,
            format_duration(p.freshness_s) if p.freshness_s else "-", len(p.rules), ",".join(p.tagged("pii")) or "-",
        )
        for p in products
    ]
    _print_table(rows, ("product", "domain", "owner", "topic", "dataset", "subject", "freshness", "rules", "pii"))
    return 0


def _schema_rows(product) -> list[tuple[str, str]]:
    """``(field, type)`` of the schema's top-level fields, types as compact JSON."""
    if product.schema_type == "AVRO":
        raw = [(f["name"], f["type"]) for f in product.schema.get("fields", [])]
    else:
        raw = [(k, v.get("type", "any") if isinstance(v, dict) else v) for k, v in product.schema.get("properties", {}).items()]
    return [(name, t if isinstance(t, str) else json.dumps(t, separators=(",", ":"))) for name, t in raw]


def cmd_products_show(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.governance.products import format_duration
    from fabric_ray.governance.registry import RegistryError, SchemaRegistry
    from fabric_ray.governance.registry_store import SqlRegistryStore, mask_url

    prog = "fabric products show"
    products, code = _stored_products(config, prog)
    if products is None:
        return code
    product = next((p for p in products if p.name == args.name), None)
    if product is None:
        known = ", ".join(p.name for p in products) or "none"
        return _problems(prog, [f"no data product {args.name!r} in {mask_url(config.metadata_url)} (known: {known})"], "see `fabric products list`")
    store = SqlRegistryStore(config.metadata_url)
    try:
        registered = SchemaRegistry(store).lookup(product.subject, product.schema_text, product.schema_type)
    except RegistryError:
        registered = None  # the subject's schema was deleted since
    finally:
        store.close()
    if args.json:
        data = product.to_dict()
        data["registered"] = None if registered is None else {"version": registered["version"], "id": registered["id"]}
        print(json.dumps(data, indent=2))
        return 0
    where = f"version {registered['version']}, schema id {registered['id']}" if registered else "schema not registered"
    lines = [
        ("product", product.name),
        ("domain", product.domain),
        ("owner", product.owner),
        ("description", " ".join(product.description.split()) or "-"),
        ("topic", product.topic or "-"),
        ("dataset", product.dataset or "-"),
        ("subject", f"{product.subject} ({product.schema_type}, {where})"),
        ("freshness", format_duration(product.freshness_s) if product.freshness_s else "-"),
        ("access", f"{json.dumps(product.access)} (not enforced yet)" if product.access else "-"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    print()
    required = set(product.required)
    _print_table(
        [(n, t, "yes" if n in required else "", ",".join(product.fields.get(n, ()))) for n, t in _schema_rows(product)],
        ("field", "type", "required", "tags"),
    )
    if product.rules:
        print()
        print("rules")
        for rule in product.rules:
            print(f"  {rule}" + (f" (tolerance {rule.tolerance:g})" if rule.tolerance else ""))
    return 0


def _add_products_parser(sub: Any) -> None:
    config_help = "path to fabric.yaml (as before the command); the metadata store is its metadata.url"
    products = sub.add_parser(
        "products",
        help="declare, validate and register data products (apply, list, show)",
        description="Data products are YAML files naming a topic or dataset, its owner and domain, its schema "
        "(Avro or JSON Schema), required fields, quality rules, a freshness SLA and classification tags; see "
        "docs/data-products.md. These commands work on the metadata store (metadata.url, default "
        "<home>/metadata.db) directly: no Ray needed, and safe while a fabric runs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = products.add_subparsers(dest="products_command", required=True, metavar="ACTION")

    apply = actions.add_parser(
        "apply",
        help="validate the products of a folder and register them all, or none",
        description="Read every *.yaml/*.yml of DIR (or one file), validate every product (unknown keys, schema, "
        "columns named by required fields, rules and tags, durations, duplicate names) and print every problem "
        "found. If all are valid, register each product's schema under its subject, with the registry's "
        "compatibility check, and store the products, in one transaction: when any product is refused (e.g. an "
        "incompatible schema evolution, 409), nothing is registered. Exits 2 on any problem.",
    )
    apply.add_argument("dir", metavar="DIR", help="folder of product YAML files, or one YAML file")
    apply.add_argument("--dry-run", action="store_true", help="check everything, including compatibility, and write nothing")
    apply.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    apply.set_defaults(func=cmd_products_apply)

    lister = actions.add_parser(
        "list",
        help="list the registered data products",
        description="Print the data products stored in the metadata store as a table: name, domain, owner, topic, "
        "dataset, subject, freshness SLA, number of rules and PII fields.",
    )
    lister.add_argument("--json", action="store_true", help="print the products' full specs as JSON instead of a table")
    lister.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    lister.set_defaults(func=cmd_products_list)

    show = actions.add_parser(
        "show",
        help="show one data product: schema fields, tags, rules, registered version",
        description="Print one stored data product: owner, domain, topic or dataset, its subject with the registered "
        "version and schema id, freshness SLA, each schema field with its type, whether it is required and its "
        "classification tags, and its quality rules. Exits 2 when there is no such product.",
    )
    show.add_argument("name", metavar="NAME", help="the product's name")
    show.add_argument("--json", action="store_true", help="print the product's spec as JSON, with its registered version")
    show.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    show.set_defaults(func=cmd_products_show)


# -- etl -----------------------------------------------------------------------------------------
def _run_store(config: FabricConfig, create: bool):
    """The ETL run store at ``config.metadata_url``; None when it is a SQLite file not made yet and ``create`` is false."""
    from fabric_ray.etl.runs import EtlRunStore
    from fabric_ray.governance.registry_store import sqlite_file

    path = sqlite_file(config.metadata_url)
    if path is not None and not path.exists() and not create:
        return None
    return EtlRunStore(config.metadata_url)


def _print_gate(gate: Any) -> None:
    from fabric_ray.etl.runner import gate_text

    text = gate_text(gate)
    if text:
        print()
        print(text)


def cmd_etl_run(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.etl.pipeline import EtlPipelineError, load_pipeline
    from fabric_ray.etl.runner import format_run, run_etl, submit_etl
    from fabric_ray.governance.registry_store import StoreError

    prog = "fabric etl run"
    try:
        pipeline = load_pipeline(args.pipeline)
    except EtlPipelineError as exc:
        return _problems(prog, [str(exc)], "nothing ran")
    if args.submit:
        try:
            return submit_etl(
                args.pipeline, config, config_path=args.config, working_dir=args.working_dir,
                address=args.address, json_output=args.json,
            )
        except (ValueError, RuntimeError) as exc:
            return _problems(prog, [str(exc)], "nothing submitted")
    try:
        record = run_etl(pipeline, config, progress=not args.no_progress)
    except StoreError as exc:
        return _problems(prog, [str(exc)], "nothing ran")
    if args.json:
        print(json.dumps(record.to_dict(), default=str))
        return record.exit_code
    print(format_run(record))
    _print_gate(record.gate)
    return record.exit_code


def cmd_etl_runs(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.governance.registry_store import StoreError, mask_url

    try:
        store = _run_store(config, create=False)
    except StoreError as exc:
        return _problems("fabric etl runs", [str(exc)], "cannot read the metadata store")
    records = [] if store is None else store.list(pipeline=args.pipeline, limit=args.limit)
    if store is not None:
        store.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2, default=str))
        return 0
    if not records:
        print(f"no ETL runs in {mask_url(config.metadata_url)}" + (f" for pipeline {args.pipeline!r}" if args.pipeline else ""))
        return 0
    rows = [
        (
            r.run_id[:12], r.pipeline, r.status, r.started_at[:19].replace("T", " "),
            "-" if r.duration_s is None else f"{r.duration_s:.1f}",
            "-" if r.rows_in is None else f"{r.rows_in:,}", "-" if r.rows_out is None else f"{r.rows_out:,}",
            f"{(r.outputs or {}).get('dataset', '-')}" + (f" v{r.outputs['version']}" if (r.outputs or {}).get("version") is not None else ""),
        )
        for r in records
    ]
    _print_table(rows, ("run", "pipeline", "status", "started (UTC)", "seconds", "rows in", "rows out", "output"))
    return 0


def cmd_etl_show(config: FabricConfig, args: argparse.Namespace) -> int:
    from fabric_ray.etl.runner import format_run
    from fabric_ray.governance.registry_store import StoreError, mask_url

    prog = "fabric etl show"
    try:
        store = _run_store(config, create=False)
        record = None if store is None else store.get(args.run_id)
    except (StoreError, LookupError) as exc:
        return _problems(prog, [str(exc)], "see `fabric etl runs`")
    if store is not None:
        store.close()
    if record is None:
        return _problems(prog, [f"no ETL run {args.run_id!r} in {mask_url(config.metadata_url)}"], "see `fabric etl runs`")
    if args.json:
        print(json.dumps(record.to_dict(), indent=2, default=str))
        return 0
    print(format_run(record))
    if record.profile:
        from fabric_ray.etl.runner import profile_text

        print()
        print(profile_text(record.profile))
    _print_gate(record.gate)
    return 0


def _add_etl_parser(sub: Any) -> None:
    config_help = "path to fabric.yaml (as before the command): storage root, metadata store, Kafka and Ray"
    etl = sub.add_parser(
        "etl",
        help="run declarative batch pipelines on Ray Data and list their runs (run, runs, show)",
        description="ETL pipelines are YAML files: read (Parquet/CSV/JSON files under the storage root or any "
        "file:// or s3:// URI, the stream archive, a dataset, or a bounded Kafka range), transforms (built-ins and "
        "module:function on Arrow tables), checks (a quality gate) and write (a partitioned Parquet dataset). A "
        "run publishes its rows in one commit only if every check passes; see docs/etl.md. Runs are recorded in "
        "the metadata store (metadata.url).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = etl.add_subparsers(dest="etl_command", required=True, metavar="ACTION")

    run = actions.add_parser(
        "run",
        help="run one pipeline: read, transform, check, and publish only if the gate passes",
        description="Validate PIPELINE.yaml, run it on Ray Data (the cluster at ray.address, or a local one "
        "started for the run), and print the run summary and the quality gate's table. Every block is staged "
        "(written, unpublished) as it is processed; when every check passes, one commit publishes all of them, "
        "otherwise they are deleted and nothing is published. Exit codes: 0 succeeded, 1 the quality gate "
        "failed, 2 an error (invalid pipeline, unreadable input, storage or metadata store unreachable).",
    )
    run.add_argument("pipeline", metavar="PIPELINE.yaml", help="the pipeline file; module:function transforms are imported from its folder")
    run.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    run.add_argument(
        "--submit", action="store_true",
        help="submit the run as a Ray job to the configured cluster (ray.address, or the dashboard of `fabric up`) "
        "with the working directory uploaded, wait for it, print its output; the exit code is the job's run's",
    )
    run.add_argument("--working-dir", default=".", help="with --submit: the folder uploaded with the job; it must hold the pipeline and config files (default: .)")
    run.add_argument("--address", help="with --submit: the cluster's Ray or dashboard address (default: ray.address, else the fabric started by `fabric up`)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.add_argument("--json", action="store_true", help="print the run record as one JSON line instead of the summary")
    run.set_defaults(func=cmd_etl_run)

    runs = actions.add_parser(
        "runs",
        help="list recorded runs, newest first",
        description="Print the recorded ETL runs as a table: run id (prefix), pipeline, status (succeeded, gate_failed, "
        "failed, running), start time, duration, rows read and written, and the dataset version published.",
    )
    runs.add_argument("--pipeline", metavar="NAME", help="only the runs of this pipeline")
    runs.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    runs.add_argument("--json", action="store_true", help="print the full records as JSON")
    runs.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    runs.set_defaults(func=cmd_etl_runs)

    show = actions.add_parser(
        "show",
        help="show one run: inputs, outputs, error, profile and gate report",
        description="Print one recorded run: status, rows, duration, inputs, the dataset version and files it "
        "published, the error of a failed run, the data profile per column and the quality gate's checks with "
        "sample failing rows. Exits 2 when there is no such run.",
    )
    show.add_argument("run_id", metavar="RUN_ID", help="the run id, or a unique prefix of at least 6 characters")
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    show.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    show.set_defaults(func=cmd_etl_show)


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

    _add_products_parser(sub)
    _add_etl_parser(sub)
    _add_features_parser(sub)
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
