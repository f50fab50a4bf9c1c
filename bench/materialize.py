"""Benchmark ``materialize``: 10 million offline rows over 1 million entities into Feast's SQLite online store, against ``feast materialize``.

The data (seeded, generated once in a child process and reused from ``--data-dir``): ``--rows``
rows over ``--entities`` users (int64 ``user_id``, each user the same number of rows), columns
``amount_sum`` and ``amount_avg`` (float64, about 1 % null), ``txn_count`` and ``merchants``
(int64), ``event_timestamp`` (UTC, 30 days from 2026-01-01; distinct per user, so that the
latest row of a user is unambiguous for both tools) and ``created`` (a few seconds after the
event). The rows are shuffled and written as ``--files`` Parquet files. Generation is not timed.

- **Feast 0.67**: a temporary feature repo (``provider: local``, ``offline_store: file``, a
  ``FileSource`` over the folder with ``created_timestamp_column``, an ``Entity``, a
  ``FeatureView``; SQLite online store), applied with ``feast apply`` before the clock; timed:
  ``feast materialize START END`` with its default (local) engine, as a subprocess: the
  figure includes the CLI's start and ``import feast`` (about 3 s here, see ``feast_import_s``).
- **fabric_ray**: :func:`fabric_ray.features.materialize.materialize` of the same view over
  the same files into a fresh SQLite online store, on a local Ray cluster of ``--cpus`` CPUs
  started by the benchmark (loopback only) before the clock, with a warm-up run over a small
  file (it starts the worker processes); timed: the call.

Peak memory is sampled every 100 ms (proportional set sizes every 500 ms) as in ``bench/etl.py``:
for Feast, its process; for fabric_ray, the driver plus every Ray process (raylet, GCS, agents,
workers) summed, which counts pages they share once per process; ``peak_pss_mb`` counts shared
pages once.

Equality: ``--sample`` users (and 20 unknown keys) are read back through Feast's own
``FeatureStore.get_online_features`` from both online stores; values and event timestamps must
be equal (``values_equal``), or the benchmark fails.

The last line includes ``ratio_vs_feast`` (Feast's seconds over ours; ``ratio_vs_feast_without_import``
leaves the CLI's start out of Feast's), ``peak_rss_mb`` (ours), ``feast_peak_rss_mb``, ``peak_rss_vs_feast``,
``rows``, ``entities``, ``values_equal``, and our split of the time (``fabric_scan_s``: reading, filtering and
folding on Ray until every latest row is known; ``fabric_write_s``: writing them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

Say = Callable[[str], None]

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SPAN_MS = 30 * 86_400_000
RANGE = (START - dt.timedelta(days=1), START + dt.timedelta(days=31))  # materialized: every row
VIEW = "user_stats"
FEATURES = {"amount_sum": "float64", "amount_avg": "float64", "txn_count": "int64", "merchants": "int64"}
PROJECT = "bench_materialize"


# `python -m bench all --quick` (bench/suite.py): this benchmark's short mode and the figures it compares
QUICK_ARGS = ["--quick"]
KEY_FIGURES = {"fabric_s": "lower", "ratio_vs_feast": "higher", "peak_pss_mb": "lower", "peak_rss_vs_feast": "lower"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000_000, help="offline rows (default 10,000,000)")
    parser.add_argument("--entities", type=int, default=1_000_000, help="distinct users (default 1,000,000)")
    parser.add_argument("--files", type=int, default=20, help="Parquet files (default 20)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (default 2)")
    parser.add_argument("--sample", type=int, default=1000, help="users compared through Feast (default 1,000)")
    parser.add_argument("--data-dir", help="where the input is generated once and reused (default: a folder in the temp dir)")
    parser.add_argument("--quick", action="store_true", help="a small run: 200,000 rows over 20,000 users in 4 files")
    parser.add_argument("--skip-feast", action="store_true", help="fabric_ray only (no ratio)")
    parser.add_argument("--skip-fabric", action="store_true", help="Feast only (no ratio)")


# -- input ----------------------------------------------------------------------------------------


def _write_files(folder: str, rows: int, entities: int, files: int, seed: int) -> None:
    """Generate the rows (in a child process, so that the benchmark's own memory stays small)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    per_entity = -(-rows // entities)
    slot_ms = SPAN_MS // per_entity
    index = np.arange(rows, dtype=np.int64)
    keys = rng.permutation(entities).astype(np.int64) * 7 + 1_000  # sparse, not in row order
    user = keys[index % entities]
    start_ms = int(START.timestamp() * 1000)
    # each user's rows fall in distinct slots: event times are distinct per user
    ts_ms = start_ms + (index // entities) * slot_ms + rng.integers(0, slot_ms - 10_000, rows)
    shuffle = rng.permutation(rows)
    user, ts_ms = user[shuffle], ts_ms[shuffle]
    del index, shuffle
    amount = np.round(rng.gamma(2.0, 40.0, rows), 2)
    per_file = -(-rows // files)
    for i in range(files):
        part = slice(i * per_file, min(rows, (i + 1) * per_file))
        n = part.stop - part.start
        sub = np.random.default_rng(seed + 1 + i)
        ts = pa.array(ts_ms[part], pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("us", tz="UTC"))
        created = pa.array(ts_ms[part] + sub.integers(1, 5_000, n), pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("us", tz="UTC"))
        amounts = amount[part]
        table = pa.table({
            "user_id": pa.array(user[part]),
            "amount_sum": pa.array(amounts * 3, mask=sub.random(n) < 0.01),
            "amount_avg": pa.array(amounts),
            "txn_count": pa.array(sub.integers(1, 500, n), pa.int64()),
            "merchants": pa.array(sub.integers(1, 50, n), pa.int64()),
            "event_timestamp": ts,
            "created": created,
        })
        pq.write_table(table, os.path.join(folder, f"part-{i:03d}.parquet"), row_group_size=256 * 1024)


def generate(folder: Path, rows: int, entities: int, files: int, say: Say, seed: int = 7) -> None:
    """Write the input under ``folder`` unless the same input is there already."""
    done = folder / "_done.json"
    spec = {"rows": rows, "entities": entities, "files": files, "seed": seed, "version": 1}
    if done.exists() and json.loads(done.read_text()) == spec:
        say(f"input: reusing {files} files, {rows:,} rows over {entities:,} users in {folder}")
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.monotonic()
    proc = mp.get_context("spawn").Process(target=_write_files, args=(str(folder), rows, entities, files, seed))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"generating the input failed (exit code {proc.exitcode})")
    done.write_text(json.dumps(spec))
    say(f"input: generated {files} files, {rows:,} rows over {entities:,} users in {folder} ({time.monotonic() - started:.1f} s)")


# -- Feast ----------------------------------------------------------------------------------------


def feast_repo(repo: Path, data: Path, online_db: Path, registry: Path) -> None:
    """A Feast feature repo over ``data`` with a SQLite online store at ``online_db``."""
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(textwrap.dedent(f"""\
        project: {PROJECT}
        provider: local
        registry: {registry}
        online_store:
          type: sqlite
          path: {online_db}
        offline_store:
          type: file
        entity_key_serialization_version: 3
        """))
    fields = ", ".join(f'Field(name="{f}", dtype={"Float64" if t == "float64" else "Int64"})' for f, t in FEATURES.items())
    (repo / "definitions.py").write_text(textwrap.dedent(f"""\
        from datetime import timedelta

        from feast import Entity, FeatureView, Field, FileSource, ValueType
        from feast.types import Float64, Int64

        user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
        source = FileSource(name="user_stats_source", path="{data}", timestamp_field="event_timestamp",
                            created_timestamp_column="created")
        user_stats = FeatureView(name="{VIEW}", entities=[user], ttl=timedelta(days=3650),
                                 schema=[{fields}], source=source, online=True)
        """))


def _env() -> dict[str, str]:
    from fabric_ray.loopback import LOOPBACK_ENV

    return {**os.environ, **LOOPBACK_ENV}


def feast_cli(repo: Path, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "feast"), "-c", str(repo), *args]


def run_feast(repo: Path, say: Say) -> tuple[float, float, float]:
    """``feast materialize`` in a subprocess: seconds, peak RSS and PSS (MiB)."""
    from bench.etl import PeakRss

    fmt = "%Y-%m-%dT%H:%M:%S"
    cmd = feast_cli(repo, "materialize", RANGE[0].strftime(fmt), RANGE[1].strftime(fmt))
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with PeakRss(proc.pid) as peak:
        out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"feast materialize failed ({proc.returncode}):\n{out[-3000:]}")
    return seconds, peak.peak_mb, peak.peak_pss_mb


def feast_import_s() -> float:
    """Seconds a fresh process takes to ``import feast`` (part of the CLI's time)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import feast"], env=_env(), check=True)
    return time.perf_counter() - started


# -- comparison -----------------------------------------------------------------------------------


def read_back(repo: Path, online_db: Path, keys: list[int]) -> dict[str, list]:
    """``get_online_features`` of the view's features for ``keys`` through Feast, with ``online_db`` as the store."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    config = RepoConfig(
        project=PROJECT, provider="local", registry=str(repo / "data" / "registry.db"),
        online_store={"type": "sqlite", "path": str(online_db)}, offline_store={"type": "file"},
        entity_key_serialization_version=3, repo_path=repo,
    )
    store = FeatureStore(config=config)
    refs = [f"{VIEW}:{f}" for f in FEATURES]
    response = store.get_online_features(features=refs, entity_rows=[{"user_id": k} for k in keys])
    out = response.to_dict(include_event_timestamps=True)
    return out


def sample_keys(data: Path, n: int, seed: int = 11) -> list[int]:
    """``n`` user ids that exist (read from the first file) plus 20 that do not."""
    import pyarrow.parquet as pq

    first = sorted(data.glob("*.parquet"))[0]
    users = np.unique(pq.read_table(first, columns=["user_id"])["user_id"].to_numpy())
    rng = np.random.default_rng(seed)
    chosen = rng.choice(users, size=min(n, len(users)), replace=False)
    return [int(k) for k in chosen] + [-(i + 1) for i in range(20)]


def compare(ours: dict[str, list], theirs: dict[str, list]) -> tuple[bool, int]:
    """Whether both reads are equal (NaN equals NaN), and how many values differ."""
    differ = 0
    for name in theirs:
        for a, b in zip(ours[name], theirs[name]):
            same = a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)
            differ += not same
    return differ == 0 and set(ours) == set(theirs), differ


# -- fabric_ray -----------------------------------------------------------------------------------


def fabric_setup(work: Path, repo: Path, data: Path, cpus: int) -> tuple[Any, Any]:
    from fabric_ray.config import load_config
    from fabric_ray.features.catalog import BatchSource, Catalog
    from fabric_ray.features.definitions import Entity, Feature, FeatureView

    cfg = load_config(
        None,
        home=str(work / "home"),
        ray={"num_cpus": cpus, "namespace": "bench_materialize"},
        features={
            "repo": str(repo),
            "project": PROJECT,
            "registry": str(repo / "data" / "registry.db"),
            "online_store": {"type": "sqlite", "path": str(work / "fabric_online.db")},
        },
    )
    view = FeatureView(VIEW, Entity("user", "user_id", "int64"), tuple(Feature(f, t) for f, t in FEATURES.items()), ttl_s=3650 * 86_400)
    catalog = Catalog.of([view], batch_sources={VIEW: BatchSource(f"file://{data}", "event_timestamp", "created")})
    return cfg, catalog


def run(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    from fabric_ray.loopback import keep_on_loopback

    keep_on_loopback()
    if args.quick:
        args.rows, args.entities, args.files = 200_000, 20_000, 4
    data = Path(args.data_dir or Path(tempfile.gettempdir()) / f"fabric-bench-materialize-{args.rows}-{args.entities}-{args.files}")
    generate(data, args.rows, args.entities, args.files, say)
    work = Path(tempfile.mkdtemp(prefix="fabric-bench-materialize-"))
    out: dict[str, Any] = {"rows": args.rows, "entities": args.entities, "files": args.files, "cpus": args.cpus}
    try:
        repo = work / "repo"
        feast_db = work / "feast_online.db"
        feast_repo(repo, data, feast_db, repo / "data" / "registry.db")
        (repo / "data").mkdir(exist_ok=True)
        applied = subprocess.run(feast_cli(repo, "apply"), env=_env(), capture_output=True, text=True)
        if applied.returncode != 0:
            raise RuntimeError(f"feast apply failed:\n{applied.stdout[-2000:]}{applied.stderr[-2000:]}")
        say(f"Feast repo applied in {repo}")
        if not args.skip_feast:
            say("Feast: feast materialize (local engine, subprocess)")
            feast_s, feast_rss, feast_pss = run_feast(repo, say)
            imp = feast_import_s()
            say(f"Feast: {feast_s:.1f} s (of which starting the CLI and import feast about {imp:.1f} s), "
                f"peak RSS {feast_rss:,.0f} MiB, PSS {feast_pss:,.0f} MiB")
            out.update(feast_s=round(feast_s, 2), feast_import_s=round(imp, 2), feast_peak_rss_mb=feast_rss, feast_peak_pss_mb=feast_pss)
        if not args.skip_fabric:
            out.update(run_fabric(args, work, repo, data, say))
        if not args.skip_feast and not args.skip_fabric:
            keys = sample_keys(data, args.sample)
            theirs = read_back(repo, feast_db, keys)
            ours = read_back(repo, work / "fabric_online.db", keys)
            equal, differ = compare(ours, theirs)
            found = sum(v is not None for v in theirs[next(iter(FEATURES))])
            say(f"read back through Feast: {len(keys)} keys ({found} found), {'all values equal' if equal else f'{differ} values differ'}")
            assert equal, f"{differ} values differ between Feast's and fabric_ray's online stores"
            out.update(
                values_equal=equal, compared_keys=len(keys), ratio_vs_feast=round(out["feast_s"] / out["fabric_s"], 2),
                # the same, without the CLI's start and `import feast` in Feast's time
                ratio_vs_feast_without_import=round((out["feast_s"] - out["feast_import_s"]) / out["fabric_s"], 2),
                peak_rss_vs_feast=round(out["peak_rss_mb"] / out["feast_peak_rss_mb"], 2),
            )
        out.update(target_ratio=3, target_peak_rss_vs_feast=0.5)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_fabric(args: argparse.Namespace, work: Path, repo: Path, data: Path, say: Say) -> dict[str, Any]:
    """Start Ray, warm it up on a small file, then time :func:`materialize` over the input."""
    import pyarrow.parquet as pq
    import ray

    from bench import exit_on_sigterm
    from bench.etl import PeakRss
    from fabric_ray.features.catalog import BatchSource, Catalog
    from fabric_ray.features.materialize import materialize
    from fabric_ray.runtime import ensure_ray

    cfg, catalog = fabric_setup(work, repo, data, args.cpus)
    started = time.perf_counter()
    ensure_ray(cfg.ray)  # a local cluster of --cpus CPUs, loopback only (keep_on_loopback)
    exit_on_sigterm()
    try:
        small = work / "warmup"
        small.mkdir()
        pq.write_table(pq.ParquetFile(sorted(data.glob("*.parquet"))[0]).read_row_group(0).slice(0, 20_000), small / "part.parquet")
        warm_cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"online_store": {"type": "sqlite", "path": str(work / "warmup.db")}})})
        warm_catalog = Catalog.of(catalog.views.values(), batch_sources={VIEW: BatchSource(f"file://{small}", "event_timestamp", "created")})
        materialize(warm_cfg, warm_catalog, start=RANGE[0], end=RANGE[1], incremental=False, progress=False)
        say(f"fabric_ray: Ray up with {args.cpus} CPUs and warmed up in {time.perf_counter() - started:.1f} s; materializing")
        with PeakRss(os.getpid()) as peak:
            began = time.perf_counter()
            report = materialize(cfg, catalog, start=RANGE[0], end=RANGE[1], incremental=False, progress=False)
            fabric_s = time.perf_counter() - began
    finally:
        ray.shutdown()
    v = report.view(VIEW)
    say(f"fabric_ray: {fabric_s:.1f} s, {v.rows_read:,} rows read, {v.entities_written:,} entities written, "
        f"peak memory (driver + Ray processes) {peak.peak_mb:,.0f} MiB RSS, {peak.peak_pss_mb:,.0f} MiB PSS")
    assert v.entities_written == args.entities, f"wrote {v.entities_written:,} entities, expected {args.entities:,}"
    say(f"fabric_ray: scan and fold on Ray {v.scan_seconds:.1f} s, writes {v.write_seconds:.1f} s")
    return {"fabric_s": round(fabric_s, 2), "fabric_scan_s": round(v.scan_seconds, 2), "fabric_write_s": round(v.write_seconds, 2),
            "peak_rss_mb": peak.peak_mb, "peak_pss_mb": peak.peak_pss_mb, "rows_read": v.rows_read, "entities_written": v.entities_written}
