"""Benchmark ``etl``: read, transform, check and write 10 million rows, fabric_ray on Ray Data against pandas in one process.

The input (generated once, reused from ``--data-dir``): ``--rows`` card payments in ``--files``
Parquet files: ``id`` (unique), ``user_id``, ``merchant_id``, ``amount`` (about 2 % negative),
``currency`` (EUR/USD/GBP, 1 % XXX), ``ts`` (epoch ms over 30 days).

The steps, identical on both sides:

1. read every file;
2. keep ``amount > 0 and currency != 'XXX'``; derive ``amount_cents = round(amount * 100)``
   (int64), ``amount_eur = amount * 0.92`` and ``hour = (ts // 3,600,000) % 24``;
3. check: ``user_id`` not null, ``id`` unique across the whole run, ``amount`` between 0 and
   100,000, ``currency`` in {EUR, USD, GBP}, at least one row; publish only if all pass;
4. write Parquet partitioned by day (``date=YYYY-MM-DD`` folders from ``ts``).

- **fabric_ray**: an :class:`~fabric_ray.etl.pipeline.EtlPipeline` run by
  :func:`~fabric_ray.etl.runner.run_etl` on a local Ray cluster of ``--cpus`` CPUs: blocks are
  transformed, staged, checked and profiled in parallel tasks, then published in one commit (it
  also builds the run's data profile and records the run, which pandas does not). Ray is started,
  and a warm-up run over one input file per CPU done (it starts the worker processes), before the
  clock starts. Ray's workers run at ``--worker-niceness`` (default 0, like pandas' process; Ray's
  own default of 15 lets every other process on a busy machine go first).
- **pandas**: ``pd.read_parquet`` of every file, the same filter and columns with NumPy, the
  checks (``duplicated`` for uniqueness), the day as a categorical and
  ``DataFrame.to_parquet(partition_cols=["date"])``; in one process of its own.

Results are compared on both outputs, read back file by file: rows per day, and sums of ``id``,
``amount_cents`` and ``hour`` (equal, or the benchmark fails). Peak memory is sampled every
100 ms (proportional set sizes every 500 ms): for fabric_ray, the resident sets of the driver
plus every Ray process (workers, raylet, GCS, agents; about 1 GiB before any data) summed, which
counts pages they share (the object store, libraries) once per process, and the same sum of
proportional set sizes (``peak_pss_mb``, shared pages counted once); for pandas, its process.
The last line includes ``ratio_vs_pandas`` (pandas seconds over fabric_ray seconds),
``peak_rss_mb`` (fabric_ray's) and ``task_seconds`` (the block tasks' time per step, summed), and
CPU seconds: ``pandas_cpu_s`` (its process), ``fabric_cpu_s`` (the driver and every Ray process,
user + system) and ``cpu_ratio_vs_pandas`` (pandas' over ours), which depend far less than wall
time on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

Say = Callable[[str], None]
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAYS = 30
CURRENCIES = ("EUR", "USD", "GBP")


# `python -m bench all --quick` (bench/suite.py): this benchmark's short mode and the figures it compares
QUICK_ARGS = ["--rows", "2000000", "--files", "8"]
KEY_FIGURES = {"fabric_s": "lower", "fabric_cpu_s": "lower", "ratio_vs_pandas": "higher", "peak_rss_mb": "lower", "peak_pss_mb": "lower"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000_000, help="input rows (default 10,000,000)")
    parser.add_argument("--files", type=int, default=20, help="input Parquet files (default 20)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (default 2)")
    parser.add_argument("--data-dir", help="where the input is generated once and reused (default: a folder in the temp dir)")
    parser.add_argument("--skip-pandas", action="store_true", help="fabric_ray only")
    parser.add_argument(
        "--worker-niceness", type=int, default=0,
        help="niceness of Ray's worker processes (default 0, pandas' own; Ray's default is 15, which on a busy machine "
        "gives the block tasks a fraction of the CPU that pandas gets)",
    )


# -- input ----------------------------------------------------------------------------------------


def _generate(folder: Path, rows: int, files: int, say: Say) -> list[Path]:
    done = folder / "_done.json"
    if done.exists() and json.loads(done.read_text()) == {"rows": rows, "files": files}:
        say(f"input: reusing {files} files, {rows:,} rows in {folder}")
        return sorted(folder.glob("*.parquet"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per_file = -(-rows // files)
    started = time.monotonic()
    for i in range(files):
        n = min(per_file, rows - i * per_file)
        rng = np.random.default_rng(i)
        currency = np.array([*CURRENCIES, "XXX"])[rng.choice(4, n, p=[0.6, 0.3, 0.09, 0.01])]
        table = pa.table({
            "id": pa.array(np.arange(i * per_file, i * per_file + n), pa.int64()),
            "user_id": pa.array(rng.integers(1, 1_000_000, n), pa.int64()),
            "merchant_id": pa.array(rng.integers(1, 20_000, n), pa.int64()),
            "amount": np.round(rng.gamma(2.0, 40.0, n) * np.where(rng.random(n) < 0.02, -1.0, 1.0), 2),
            "currency": pa.array(currency),
            "ts": pa.array(START_MS + rng.integers(0, DAYS * 86_400_000, n), pa.int64()),
        })
        pq.write_table(table, folder / f"payments-{i:03d}.parquet")
    done.write_text(json.dumps({"rows": rows, "files": files}))
    say(f"input: generated {files} files, {rows:,} rows in {folder} ({time.monotonic() - started:.1f} s)")
    return sorted(folder.glob("*.parquet"))


# -- peak memory ------------------------------------------------------------------------------------


class PeakRss:
    """Sample the memory of a process and its descendants in a thread.

    Two sums: resident set sizes every ``interval_s`` (``peak_mb``; pages shared between
    processes, like Ray's object store and libraries, count once per process), and proportional
    set sizes every ``pss_interval_s`` (``peak_pss_mb``; shared pages split between their
    processes, so they count once in all). Reading PSS walks each process's page tables (tens of
    ms for a Ray cluster), so it is sampled less often, to keep the sampler off the CPUs it measures.
    """

    def __init__(self, pid: int, interval_s: float = 0.1, pss_interval_s: float = 0.5) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self.interval_s = interval_s
        self.pss_interval_s = pss_interval_s
        self.peak_bytes = 0
        self.peak_pss_bytes = 0
        self.sampler_cpu_s = 0.0  # the sampling thread's own CPU seconds (PSS reads are not free)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _processes(self) -> list[Any]:
        import psutil

        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return []

    def _sum(self, read: Callable[[Any], int]) -> int:
        import psutil

        total = 0
        for p in self._processes():
            try:
                total += read(p)
            except psutil.Error:
                continue
        return total

    def _update(self, pss: bool) -> None:
        self.peak_bytes = max(self.peak_bytes, self._sum(lambda p: p.memory_info().rss))
        if pss:
            self.peak_pss_bytes = max(self.peak_pss_bytes, self._sum(lambda p: getattr(p.memory_full_info(), "pss", 0)))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def _loop(self) -> None:
        last_pss = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            self._update(pss=now - last_pss >= self.pss_interval_s)
            if now - last_pss >= self.pss_interval_s:
                last_pss = now
            self._stop.wait(self.interval_s)
        self.sampler_cpu_s = time.thread_time()

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._update(pss=True)

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)

    @property
    def peak_pss_mb(self) -> float:
        return round(self.peak_pss_bytes / 2**20, 1)


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of a process and each of its descendants, by pid (those alive now).

    The difference of two readings around a run is the CPU the run took (a process that exits
    in between is missed; Ray's workers, raylet and GCS live through it). Unlike wall time, it
    hardly depends on how busy the machine is.
    """
    import psutil

    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            continue
    return out


def _worker_niceness(pid: int) -> list[int]:
    """The niceness values of the Ray worker processes below ``pid`` (``ray::...`` process titles)."""
    import psutil

    values = set()
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if p.name().startswith("ray::") or any(a.startswith("ray::") for a in p.cmdline()[:1]):
                values.add(p.nice())
        except psutil.Error:
            continue
    return sorted(values)


# -- comparison ------------------------------------------------------------------------------------


def summarize(root: Path) -> dict[str, Any]:
    """Rows per day and column sums of a day-partitioned Parquet output, read one file at a time."""
    per_day: dict[str, int] = {}
    sums = {"id": 0, "amount_cents": 0, "hour": 0}
    for path in sorted(root.rglob("*.parquet")):
        day = next((p.split("=", 1)[1] for p in path.relative_to(root).parts if p.startswith("date=")), None)
        if day is None or any(part.startswith(("_", ".")) for part in path.relative_to(root).parts):
            continue
        t = pq.read_table(path, columns=list(sums), partitioning=None)
        per_day[day] = per_day.get(day, 0) + t.num_rows
        for c in sums:
            sums[c] += int(np.asarray(t[c].combine_chunks(), dtype=np.int64).sum())
    return {"rows": sum(per_day.values()), "per_day": dict(sorted(per_day.items())), **{f"sum_{c}": v for c, v in sums.items()}}


# -- pandas ---------------------------------------------------------------------------------------


def pandas_steps(files: list[str], out: str) -> dict[str, Any]:
    """The steps in pandas, in this process; returns seconds per step and the check results."""
    import pandas as pd

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    t1 = time.perf_counter()
    df = df[(df["amount"] > 0) & (df["currency"] != "XXX")].reset_index(drop=True)
    df["amount_cents"] = np.round(df["amount"].to_numpy() * 100).astype(np.int64)
    df["amount_eur"] = df["amount"] * 0.92
    df["hour"] = (df["ts"] // 3_600_000) % 24
    t2 = time.perf_counter()
    checks = {
        "not_null": bool(df["user_id"].notna().all()),
        "unique": not bool(df["id"].duplicated().any()),
        "between": bool(df["amount"].between(0, 100_000).all()),
        "in_set": bool(df["currency"].isin(CURRENCIES).all()),
        "row_count": len(df) >= 1,
    }
    t3 = time.perf_counter()
    if all(checks.values()):
        # The day of each row as a categorical over the few distinct days: ~50x faster than
        # formatting 10 million dates with .dt.strftime, which would dominate pandas' time.
        days, codes = np.unique(df["ts"].to_numpy() // 86_400_000, return_inverse=True)
        labels = [(dt.date(1970, 1, 1) + dt.timedelta(days=int(d))).isoformat() for d in days]
        df["date"] = pd.Categorical.from_codes(codes.reshape(-1), categories=labels)
        df.to_parquet(out, partition_cols=["date"], index=False)
    t4 = time.perf_counter()
    return {"read_s": t1 - t0, "transform_s": t2 - t1, "check_s": t3 - t2, "write_s": t4 - t3, "total_s": t4 - t0, "checks": checks,
            "cpu_s": time.process_time() - cpu0}


def _pandas_child(files: list[str], out: str, conn: Any) -> None:
    conn.send(pandas_steps(files, out))
    conn.close()


def run_pandas(files: list[Path], out: Path) -> tuple[dict[str, Any], float]:
    """Run :func:`pandas_steps` in a fresh process; return its result and peak RSS (MiB)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_pandas_child, args=([str(f) for f in files], str(out), child))
    proc.start()
    with PeakRss(proc.pid) as peak:
        result = parent.recv()
        proc.join()
    return result, peak.peak_mb  # one process: its RSS


# -- fabric_ray -----------------------------------------------------------------------------------


def pipeline(input_uri: str, dataset: str) -> Any:
    from fabric_ray.etl.pipeline import EtlPipeline

    return EtlPipeline.from_dict({
        "name": f"bench_{dataset}",
        "read": {"path": input_uri, "format": "parquet"},
        "transforms": [
            {"filter": "amount > 0 and currency != 'XXX'"},
            {"derive": {"amount_cents": "round(amount * 100)", "amount_eur": "amount * 0.92", "hour": "ts // 3600000 % 24"}},
            {"cast": {"amount_cents": "int64"}},
        ],
        "checks": [
            {"not_null": "user_id"},
            {"unique": "id"},
            {"between": {"column": "amount", "min": 0, "max": 100_000}},
            {"in_set": {"column": "currency", "values": list(CURRENCIES)}},
            {"row_count": {"min": 1}},
        ],
        "write": {"dataset": dataset, "partitioning": {"type": "time", "column": "ts", "granularity": "date"}},
    })


def run(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    from bench import exit_on_sigterm
    from fabric_ray.config import load_config
    from fabric_ray.etl.runner import run_etl
    from fabric_ray.etl.sources import dataset_location
    from fabric_ray.runtime import ensure_ray

    data = Path(args.data_dir or Path(tempfile.gettempdir()) / f"fabric-bench-etl-{args.rows}-{args.files}")
    files = _generate(data, args.rows, args.files, say)
    work = Path(tempfile.mkdtemp(prefix="fabric-bench-etl-out-"))
    out: dict[str, Any] = {"rows": args.rows, "files": args.files, "cpus": args.cpus}
    try:
        if not args.skip_pandas:
            say(f"pandas: read, transform, check, write (one process; load {os.getloadavg()[0]:.1f} before)")
            result, pandas_peak = run_pandas(files, work / "pandas")
            assert all(result["checks"].values()), f"pandas checks failed: {result['checks']}"
            steps = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in result.items() if k.endswith("_s") and k not in ("total_s", "cpu_s"))
            say(f"pandas: {result['total_s']:.1f} s ({steps}), CPU {result['cpu_s']:.1f} s, peak RSS {pandas_peak:,.0f} MiB")
            out.update(pandas_s=round(result["total_s"], 2), pandas_cpu_s=round(result["cpu_s"], 2), pandas_peak_rss_mb=pandas_peak)

        config = load_config(None, home=str(work / "home"), storage={"root": f"file://{work / 'storage'}"}, ray={"num_cpus": args.cpus})
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)  # read by the raylet that ensure_ray starts
        ensure_ray(config.ray)
        exit_on_sigterm()
        # one small file per CPU, so that every worker process is started before the clock starts
        warm_input = work / "warmup-input"
        warm_input.mkdir()
        for f in files[: args.cpus]:
            (warm_input / f.name).symlink_to(f)
        warm = run_etl(pipeline(f"file://{warm_input}", "warmup"), config, progress=False)
        assert warm.status == "succeeded", warm.error
        niceness = _worker_niceness(os.getpid())
        say(f"fabric_ray: Ray up with {args.cpus} CPUs (workers at niceness {niceness}), warm-up run done; running the pipeline")
        load_1m = os.getloadavg()[0]
        cpu_before = tree_cpu_seconds(os.getpid())
        with PeakRss(os.getpid()) as peak:
            started = time.perf_counter()
            record = run_etl(pipeline(f"file://{data}", "payments"), config, progress=False)
            fabric_s = time.perf_counter() - started
        cpu_after = tree_cpu_seconds(os.getpid())
        # less the memory sampler's own CPU, which runs in this process
        fabric_cpu_s = sum(t - cpu_before.get(pid, 0.0) for pid, t in cpu_after.items()) - peak.sampler_cpu_s
        assert record.status == "succeeded", f"fabric_ray run {record.status}: {record.error or record.gate}"
        say(
            f"fabric_ray: {fabric_s:.1f} s, {record.rows_in:,} rows in, {record.rows_out:,} out, "
            f"{len(record.outputs['files'])} files, CPU {fabric_cpu_s:.1f} s (driver + Ray processes; load {load_1m:.1f} before), peak memory (driver + Ray processes) {peak.peak_mb:,.0f} MiB RSS, "
            f"{peak.peak_pss_mb:,.0f} MiB PSS"
        )
        out.update(
            fabric_s=round(fabric_s, 2), fabric_cpu_s=round(fabric_cpu_s, 2), load_1m_before=round(load_1m, 1), worker_niceness=niceness, rows_out=record.rows_out, files_written=len(record.outputs["files"]),
            peak_rss_mb=peak.peak_mb, peak_pss_mb=peak.peak_pss_mb, task_seconds=record.outputs["task_seconds"],
        )

        fabric_summary = summarize(Path(dataset_location(config, "payments").path))
        assert fabric_summary["rows"] == record.rows_out
        if not args.skip_pandas:
            pandas_summary = summarize(work / "pandas")
            equal = fabric_summary == pandas_summary
            assert equal, f"outputs differ: fabric {json.dumps(fabric_summary)[:300]} pandas {json.dumps(pandas_summary)[:300]}"
            say(f"outputs equal: {fabric_summary['rows']:,} rows over {len(fabric_summary['per_day'])} days, same sums")
            out.update(rows_equal=equal, ratio_vs_pandas=round(out["pandas_s"] / fabric_s, 2),
                       cpu_ratio_vs_pandas=round(out["pandas_cpu_s"] / fabric_cpu_s, 2))
        out.update(target_ratio=2, target_peak_rss_mb=2048)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
