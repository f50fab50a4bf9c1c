"""Run an ETL pipeline on Ray Data: one pass, staged writes, a quality gate, one atomic publish.

:func:`run_etl` reads the pipeline's input as a Ray Data dataset and sends every block through
one ``map_batches(batch_format="pyarrow")`` task that

0. for Parquet inputs, reads the block itself: the driver packs the files' row groups into
   ranges of about ``etl.block_bytes`` (footers only) and hands a few tasks per CPU a share of
   the ranges, read and processed one at a time (:func:`~fabric_ray.etl.sources.read_dataset`);
1. decodes it (Kafka JSON values become columns) and applies the pipeline's transforms;
2. conforms it to the target dataset's schema (column order, safe casts);
3. **stages** it: :meth:`Dataset.stage <fabric_ray.storage.dataset.Dataset.stage>` writes its data
   files, split by the dataset's partitioning, where no reader looks until a commit names them
   (each task also writes a small marker listing what it staged, so a run that dies half-way can
   still delete every staged file);
4. feeds the block to a quality-gate accumulator and a profile builder, and returns only those
   small partials plus the staged file list: no rows travel back to the driver.

The driver merges the partials as blocks finish (so memory stays bounded by Ray Data's
streaming executor, whatever the input size), then finishes the gate. If it passes, one
:meth:`Dataset.commit` publishes every staged file (``overwrite`` also removes the files of the
version it replaces, in the same commit); if it fails, :meth:`Dataset.abort` deletes them and
nothing is published. Any error (a corrupt file, a schema mismatch, a missing path, an
unreachable endpoint, wrong credentials) aborts the staged files too, and the run is recorded as
``failed`` with the cause, naming the file or URI where one is to blame.

Every run is recorded in the metadata database (:mod:`fabric_ray.etl.runs`).

Ray is reached through :func:`fabric_ray.runtime.ensure_ray`: the configured cluster
(``ray.address``), or a local one started in this process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from fabric_ray.config import FabricConfig
from fabric_ray.etl.pipeline import EtlPipeline, function_modules
from fabric_ray.etl.runs import EtlRunStore, RunRecord
from fabric_ray.etl.sources import (
    BlockReader,
    ReadPlan,
    ResolvedInput,
    SourceError,
    dataset_location,
    decode_block,
    describe_error,
    read_dataset,
    resolve_input,
    sample_rows,
)
from fabric_ray.storage.fs import StorageLocation, open_location

__all__ = ["EtlRunError", "conform", "format_run", "gate_text", "profile_text", "run_etl", "submit_etl"]

log = logging.getLogger(__name__)

ABORTED = "_aborted"  # tombstone in a failed run's staging folder (see _BlockTask._stage)

class EtlRunError(RuntimeError):
    """A run cannot proceed; the message names the pipeline, the dataset, the file or the column."""


def conform(table: pa.Table, schema: pa.Schema, dataset: str) -> pa.Table:
    """``table`` with ``schema``'s columns in its order and types (safe casts).

    Missing nullable columns become nulls; extra columns, missing non-nullable ones and unsafe
    casts raise :class:`EtlRunError` naming the dataset and the columns.

    Example:
        >>> t = pa.table({"b": ["x"], "a": [1]})
        >>> conform(t, pa.schema([("a", pa.float64()), ("b", pa.string()), ("c", pa.int64())]), "d").to_pydict()
        {'a': [1.0], 'b': ['x'], 'c': [None]}
        >>> conform(pa.table({"a": [1], "z": [2]}), pa.schema([("a", pa.int64())]), "d")
        Traceback (most recent call last):
        ...
        fabric_ray.etl.runner.EtlRunError: dataset 'd': column(s) ['z'] are not in its schema ['a']; select them away, or evolve the dataset's schema first
    """
    if table.schema.equals(schema):
        return table
    extra = [c for c in table.column_names if c not in schema.names]
    if extra:
        raise EtlRunError(
            f"dataset {dataset!r}: column(s) {extra} are not in its schema {schema.names}; "
            "select them away, or evolve the dataset's schema first"
        )
    columns = []
    for f in schema:
        if f.name not in table.column_names:
            if not f.nullable:
                raise EtlRunError(f"dataset {dataset!r}: required column {f.name!r} ({f.type}) is missing from the rows")
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        column = table.column(f.name)
        if not column.type.equals(f.type):
            try:
                column = column.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise EtlRunError(f"dataset {dataset!r}: column {f.name!r} is {column.type}, the dataset has {f.type}: {exc}") from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


# -- the per-block task ---------------------------------------------------------------------------

# What a block task returns per block: counts, staged files and small pickled partials, no rows.
_PARTIAL = pa.schema([
    ("rows_in", pa.int64()),
    ("rows_out", pa.int64()),
    ("files", pa.large_string()),
    ("gate", pa.large_binary()),
    ("profile", pa.large_binary()),
    ("seconds", pa.string()),
])


class _BlockTask:
    """What every Ray Data block goes through (see the module docstring); pickled to the workers."""

    def __init__(self, pipeline: EtlPipeline, dataset: Any, schema: pa.Schema, source: str, fmt: str, markers: StorageLocation,
                 reader: BlockReader) -> None:
        self.pipeline = pipeline
        self.dataset = dataset
        self.schema = schema
        self.source = source
        self.format = fmt
        self.markers = markers
        self.reader = reader
        self.gate = pipeline.gate()

    def __call__(self, batch: pa.Table) -> pa.Table:
        clock = time.perf_counter
        t0 = clock()
        tables = self.reader(batch)  # planned Parquet: the block's rows are read here
        read_s = clock() - t0
        del batch
        rows = []
        while tables:  # the list lets go of each block as it is done
            rows.append(self._block(tables.pop(0), 0.0 if rows else read_s))
        return pa.Table.from_pylist(rows, schema=_PARTIAL) if rows else _PARTIAL.empty_table()

    def _block(self, block: pa.Table, read_s: float) -> dict[str, Any]:
        from fabric_ray.etl.profile import ProfileBuilder

        clock = time.perf_counter
        t0 = clock()
        rows_in = block.num_rows
        table = decode_block(self.format, self.source, block)
        del block
        table = conform(self.pipeline.apply_transforms(table), self.schema, self.pipeline.write.dataset)
        t1 = clock()
        gate = self.gate.accumulator()
        gate.update(table)
        t2 = clock()
        profile = ProfileBuilder()
        profile.update(table)
        t3 = clock()
        files = self._stage(table) if table.num_rows else []
        t4 = clock()
        rows_out = table.num_rows
        del table
        # Arrow's allocator keeps freed pages for reuse; handing them back halves a worker's
        # resident memory between blocks, at no measurable cost here.
        pa.default_memory_pool().release_unused()
        seconds = {"read": read_s, "transform": t1 - t0, "check": t2 - t1, "profile": t3 - t2, "stage": t4 - t3}
        return {
            "rows_in": rows_in,
            "rows_out": rows_out,
            "files": json.dumps([f.to_dict() for f in files]),
            "gate": pickle.dumps(gate),
            "profile": pickle.dumps(profile),
            "seconds": json.dumps(seconds),
        }

    def _stage(self, table: pa.Table) -> list[Any]:
        """Stage ``table`` and leave a marker naming its files, even when Ray cancels the task meanwhile.

        Ray Data cancels the tasks in flight when a run fails, with a ``KeyboardInterrupt``: the
        staging goes on in its own thread so that the files it writes are always in a marker.
        Then the aborted-run tombstone is checked *after* the marker is written, and the driver
        writes the tombstone *before* it lists the markers, so every staged file is deleted by
        one of the two (see :func:`_cleanup`).
        """
        box: dict[str, Any] = {}

        def stage() -> None:
            try:
                files = box["files"] = self.dataset.stage(table)
                if files:
                    name = f"{uuid.uuid4().hex}.json"
                    self.markers.write_bytes(name, json.dumps([f.to_dict() for f in files]).encode())
                    if self.markers.exists(ABORTED):  # the run failed meanwhile: nobody will commit these
                        self.dataset.abort(files)
                        self.markers.delete([name])
            except BaseException as exc:  # noqa: BLE001 - handed to the task's thread below
                box["error"] = exc

        worker = threading.Thread(target=stage, name="etl-stage", daemon=True)
        worker.start()
        interrupted: BaseException | None = None
        while worker.is_alive():
            try:
                worker.join()
            except KeyboardInterrupt as exc:  # cancelled: finish staging and record it first
                interrupted = exc
        if "error" in box:
            raise box["error"]
        if interrupted is not None:
            raise interrupted
        return box["files"]


# -- the driver ---------------------------------------------------------------------------------


@dataclass
class _State:
    """What the driver knows while a run goes on (for its record and for cleanup)."""

    resolved: ResolvedInput | None = None
    dataset: Any = None
    markers: StorageLocation | None = None
    staged: list[Any] = field(default_factory=list)
    rows_in: int = 0
    rows_out: int = 0
    blocks: int = 0
    task_seconds: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _data_context(config: FabricConfig) -> Iterator[None]:
    """Ray Data set up for a run, restored afterwards: its own bars and start-up lines off (ours is
    on stderr), no per-operator resource reservation, and the object-store cap of ``etl.object_store_bytes``."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.enable_auto_log_stats, ctx.op_resource_reservation_enabled)
    limits = ctx.execution_options.resource_limits
    if config.etl.object_store_bytes is not None:
        ctx.execution_options.resource_limits = limits.copy(object_store_memory=config.etl.object_store_bytes)
    from ray.util.debug import log_once

    log_once("ray_data_progress_manager_disabled")  # marks Ray Data's "progress bars disabled" warning as shown
    logger = logging.getLogger("ray.data")
    level = logger.level
    ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.enable_auto_log_stats = False, False, False
    # A run is one operator (the read fused with the block task): reserving resources per operator
    # only delays it (Ray Data 2.60 then starts the second task about a second after the first).
    ctx.op_resource_reservation_enabled = False
    logger.setLevel(logging.CRITICAL)  # a failed run's cause goes to its record and summary
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.enable_auto_log_stats, ctx.op_resource_reservation_enabled = saved
        ctx.execution_options.resource_limits = limits
        logger.setLevel(level)


def _ship_user_modules(pipeline: EtlPipeline) -> None:
    """Send the code of user transform modules with the task, so workers need not import them."""
    import ray.cloudpickle

    for module in function_modules(pipeline):
        with contextlib.suppress(ValueError):  # already registered
            ray.cloudpickle.register_pickle_by_value(module)


def _infer_schema(pipeline: EtlPipeline, plan: ReadPlan, resolved: ResolvedInput, rows: int) -> pa.Schema:
    """The schema of the pipeline's output, from its transforms run on the first ``rows`` input rows.

    The rows are read here when plain file reads give what Ray Data would (no Ray job for a sample);
    else (Kafka, hive-style folders) with Ray Data.
    """
    sample = sample_rows(resolved, rows)
    if sample is None:
        sample = plan.dataset.limit(plan.batch_size or rows).take_batch(plan.batch_size or rows, batch_format="pyarrow")
        if not isinstance(sample, pa.Table):
            sample = pa.Table.from_batches([sample]) if isinstance(sample, pa.RecordBatch) else pa.table(sample)
        sample = plan.reader(sample)[0].slice(0, rows)
    table = pipeline.apply_transforms(decode_block(resolved.format, resolved.source, sample))
    if table.num_rows == 0:
        raise EtlRunError(
            f"pipeline {pipeline.name!r}: cannot infer the schema of new dataset {pipeline.write.dataset!r}: the first "
            f"{rows:,} input rows give no output row; declare write.schema"
        )
    unknown = [f.name for f in table.schema if pa.types.is_null(f.type)]
    if unknown:
        raise EtlRunError(
            f"pipeline {pipeline.name!r}: column(s) {unknown} are null in every sampled row, so their type is unknown; "
            "declare them in write.schema"
        )
    return table.schema


def _open_dataset(pipeline: EtlPipeline, config: FabricConfig, plan: ReadPlan, resolved: ResolvedInput, sample_rows: int) -> Any:
    from fabric_ray.storage.dataset import Dataset, DatasetError, DatasetSpec

    location = dataset_location(config, pipeline.write.dataset)
    try:
        return Dataset.open(location)
    except DatasetError:
        pass  # a new dataset: create it below
    w = pipeline.write
    schema = w.arrow_schema() or _infer_schema(pipeline, plan, resolved, sample_rows)
    spec = DatasetSpec(w.dataset, schema, w.partitioning_object(), key=tuple(w.key), time_column=w.time_column)
    return Dataset.create(location, spec, exist_ok=True)


_TASKS_PER_CPU = 2  # planned Parquet reads: few tasks (each start waits for a scheduling round), some slack for stragglers


def _read_tasks() -> int:
    """Ray Data tasks for a planned Parquet read: a few per CPU of the cluster (see :func:`read_dataset`)."""
    import ray

    return _TASKS_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 1)))


def _run(pipeline: EtlPipeline, config: FabricConfig, run_id: str, state: _State, progress: bool) -> dict[str, Any]:
    from fabric_ray.etl.profile import ProfileBuilder
    from fabric_ray.runtime import ensure_ray

    state.resolved = resolved = resolve_input(pipeline.read, config)
    ensure_ray(config.ray)
    _ship_user_modules(pipeline)
    with _data_context(config):
        plan = read_dataset(resolved, block_bytes=config.etl.block_bytes, tasks=_read_tasks())
        state.dataset = dataset = _open_dataset(pipeline, config, plan, resolved, config.etl.sample_rows)
        state.markers = open_location(config.storage_root, config.storage).child("_etl", "staging", run_id)
        task = _BlockTask(pipeline, dataset, dataset.spec.schema, resolved.source, resolved.format, state.markers, plan.reader)
        partials = plan.dataset.map_batches(task, batch_format="pyarrow", batch_size=plan.batch_size, zero_copy_batch=True)
        gate = pipeline.gate().accumulator()
        profile = ProfileBuilder()
        from fabric_ray.storage.dataset import DataFile

        bar = _progress_bar(pipeline.name, progress)
        try:
            for batch in partials.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
                for row in batch.to_pylist():
                    state.staged.extend(DataFile.from_dict(d) for d in json.loads(row["files"]))
                    gate.merge(pickle.loads(row["gate"]))
                    profile.merge(pickle.loads(row["profile"]))
                    for step, secs in json.loads(row["seconds"]).items():
                        state.task_seconds[step] = state.task_seconds.get(step, 0.0) + secs
                    state.rows_in += row["rows_in"]
                    state.rows_out += row["rows_out"]
                    state.blocks += 1
                    bar.update(row["rows_in"])
                    bar.set_postfix(blocks=state.blocks, rows_out=f"{state.rows_out:,}", refresh=False)
        finally:
            bar.close()
    result = profile.result()
    report = gate.finish(result)
    out = {"profile": result.to_dict(), "gate": _report_json(report), "report": report}
    if not report.passed:
        out["status"] = "gate_failed"  # the caller deletes the staged files
        return out
    w = pipeline.write
    removed = [f.path for f in dataset.snapshot().files] if w.mode == "overwrite" else []
    commit = dataset.commit(
        state.staged, removed, operation=w.mode, metadata={"etl_run": run_id, "pipeline": pipeline.name}
    )
    out["status"] = "succeeded"
    out["version"] = commit.version
    return out


def _report_json(report: Any) -> Any:
    text = report.to_json()
    return json.loads(text) if isinstance(text, (str, bytes)) else text


def _progress_bar(name: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(desc=f"etl {name}", unit=" rows", unit_scale=True, file=sys.stderr, disable=not progress, dynamic_ncols=True)


def _cleanup(state: _State, *, keep: set[str], tombstone: bool = False) -> int:
    """Delete staged files not in ``keep`` (those listed by markers too), then the markers; return how many.

    With ``tombstone`` (a run that failed while tasks may still be staging), the aborted-run
    tombstone is written first: a task that writes its marker after the listing below sees it
    and deletes its own files (see :meth:`_BlockTask._stage`). The tombstone stays.
    """
    if state.dataset is None:
        return 0
    staged = {f.path: f for f in state.staged}
    markers: list[str] = []
    if state.markers is not None:
        with contextlib.suppress(Exception):  # a store that refuses now refused before; the error is recorded
            if tombstone:
                state.markers.write_bytes(ABORTED, b"")
            markers = [m for m in state.markers.list() if m != ABORTED]
            from fabric_ray.storage.dataset import DataFile

            for name in markers:
                for d in json.loads(state.markers.read_bytes(name)):
                    staged.setdefault(d["path"], DataFile.from_dict(d))
    orphans = [f for p, f in staged.items() if p not in keep]
    if orphans:
        state.dataset.abort(orphans)
    if markers:
        state.markers.delete(markers)
    return len(orphans)


def run_etl(
    pipeline: EtlPipeline,
    config: FabricConfig,
    *,
    progress: bool = True,
    store: EtlRunStore | None = None,
) -> RunRecord:
    """Run ``pipeline`` once on Ray Data and record the run.

    Args:
        pipeline: the pipeline.
        config: where the storage root, the metadata database, Kafka and Ray are.
        progress: a progress bar (rows, blocks) on stderr.
        store: where to record the run (default: ``config.metadata_url``).

    Returns:
        The run's record: ``succeeded`` (published as ``outputs["version"]``), ``gate_failed``
        (nothing published; ``gate`` holds the failed checks with sample rows) or ``failed``
        (nothing published; ``error`` holds the cause). Errors during the run are recorded,
        not raised.

    Raises:
        fabric_ray.governance.registry_store.StoreError: the metadata database cannot be opened.
        KeyboardInterrupt: after recording the run as failed and deleting its staged files.
    """
    own_store = store is None
    store = store or EtlRunStore(config.metadata_url)
    record = RunRecord.start(pipeline.name, inputs=(pipeline.read.describe(),), definition=pipeline.to_dict())
    store.put(record)
    started = time.monotonic()
    state = _State()
    outputs: dict[str, Any] = {"dataset": pipeline.write.dataset, "mode": pipeline.write.mode, "version": None, "files": []}
    try:
        out = _run(pipeline, config, record.run_id, state, progress)
        final = record.finish(out["status"], profile=out["profile"], gate=out["gate"])
        if out["status"] == "succeeded":
            published = {f.path for f in state.staged}
            outputs.update(version=out["version"], files=sorted(published))
            try:  # published already: a failure to tidy up must not turn the run into a failed one
                _cleanup(state, keep=published)
            except Exception as exc:  # noqa: BLE001
                log.warning("ETL run %s: deleting its staging markers failed: %s", record.run_id, describe_error(exc))
        else:
            outputs["aborted_files"] = _cleanup(state, keep=set())
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded; interrupts are re-raised below
        cause = _cause(exc, state)
        try:
            outputs["aborted_files"] = _cleanup(state, keep=set(), tombstone=True)
        except Exception as cleanup_exc:  # noqa: BLE001
            cause += f" (and deleting the staged files failed: {describe_error(cleanup_exc)}; `Dataset.vacuum` removes them later)"
        final = record.finish("failed", error=cause)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            _finish(store, final, state, outputs, started, own_store)
            raise
    return _finish(store, final, state, outputs, started, own_store)


def _finish(store: EtlRunStore, final: RunRecord, state: _State, outputs: dict[str, Any], started: float, own_store: bool) -> RunRecord:
    if state.dataset is not None:
        outputs["uri"] = state.dataset.location.uri
    outputs["blocks"] = state.blocks
    # Seconds the block tasks spent per step, summed over blocks (read: planned Parquet ranges only;
    # other inputs are read by Ray Data's own tasks, not counted here).
    outputs["task_seconds"] = {k: round(v, 3) for k, v in state.task_seconds.items()}
    inputs = tuple(state.resolved.uris) if state.resolved is not None else final.inputs
    final = final.finish(
        final.status,
        duration_s=round(time.monotonic() - started, 3),
        rows_in=state.rows_in,
        rows_out=state.rows_out,
        inputs=inputs,
        outputs=outputs,
    )
    try:
        store.put(final)
    finally:
        if own_store:
            store.close()
    return final


def _cause(exc: BaseException, state: _State) -> str:
    """The recorded cause of a failed run, naming the input file when the error came from one."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    text = describe_error(exc)
    resolved = state.resolved
    if resolved is None or not resolved.paths or isinstance(exc, SourceError):
        return text
    named = [p for p in resolved.paths if p in text or p.rsplit("/", 1)[-1] in text]
    if named:
        return text
    culprit = _find_bad_file(resolved)
    return f"{resolved.uri_of(culprit)}: {text}" if culprit else text


def _find_bad_file(resolved: ResolvedInput) -> str | None:
    """The first input file that cannot be read (Parquet: its footer; CSV/JSON: the whole file)."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    fs = resolved.location.arrow_filesystem()
    for path in resolved.paths[:1000]:
        try:
            if resolved.format == "parquet":
                pq.ParquetFile(fs.open_input_file(path)).metadata  # noqa: B018 - reading the footer is the check
            elif resolved.format == "csv":
                with fs.open_input_stream(path) as f:
                    pacsv.read_csv(f)
            else:
                with fs.open_input_stream(path) as f:
                    pajson.read_json(f)
        except Exception:  # noqa: BLE001 - any failure names the file
            return path
    return None


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def format_run(record: RunRecord) -> str:
    """A few readable lines about a run: status, rows, duration, output version, error."""
    lines = [
        f"run       {record.run_id}  ({record.pipeline})",
        f"status    {record.status}",
        f"started   {record.started_at}  ({record.duration_s if record.duration_s is not None else '?'} s)",
        f"rows      {_n(record.rows_in)} in, {_n(record.rows_out)} out",
    ]
    inputs = list(record.inputs)
    lines.append(f"inputs    {inputs[0] if inputs else '-'}" + (f"  (+{len(inputs) - 1} more)" if len(inputs) > 1 else ""))
    out = record.outputs or {}
    if out:
        where = out.get("uri") or out.get("dataset")
        if record.status == "succeeded":
            lines.append(f"output    {out.get('dataset')} version {out.get('version')} ({len(out.get('files') or [])} file(s), {out.get('mode')}) at {where}")
        else:
            lines.append(f"output    {out.get('dataset')}: nothing published ({out.get('aborted_files', 0)} staged file(s) deleted)")
    if record.error:
        lines.append(f"error     {record.error}")
    return "\n".join(lines)


def profile_text(profile: Any) -> str:
    """The stored profile (``Profile.to_dict()``) as a readable table."""
    from fabric_ray.etl.profile import Profile

    return Profile.from_dict(profile).to_text()


def gate_text(gate: Any) -> str:
    """The stored gate report (its JSON) as the readable table of ``GateReport.to_text()``; '' for none."""
    if not gate:
        return ""
    from fabric_ray.etl.gate_report import GateReport

    return GateReport.from_dict(gate).to_text()


# -- submitting as a Ray job ---------------------------------------------------------------------

_JOB_EXCLUDES = [".git", ".venv", "venv", "__pycache__", "*.pyc", ".fabric", ".pytest_cache", ".hypothesis", "node_modules"]
_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def _job_address(config: FabricConfig, address: str | None) -> str:
    if address:
        return address
    if config.ray.address:
        return config.ray.address
    from fabric_ray.daemon import read_daemon_state

    state = read_daemon_state(config.home)
    if state and state.get("dashboard_url"):
        return state["dashboard_url"]
    raise ValueError(
        "--submit needs a cluster: set ray.address (FABRIC_RAY__ADDRESS), pass --address, or start one with `fabric up`"
    )


def _inside(path: str, folder: Path) -> str:
    rel = os.path.relpath(Path(path).resolve(), folder)
    if rel.startswith(".."):
        raise ValueError(f"{path} is outside the working directory {folder}; pass --working-dir to a folder holding it")
    return rel


def submit_etl(
    pipeline_path: str,
    config: FabricConfig,
    *,
    config_path: str | None = None,
    working_dir: str = ".",
    address: str | None = None,
    json_output: bool = False,
    poll_s: float = 1.0,
) -> int:
    """Run ``fabric etl run`` as a Ray job on the configured cluster, wait, and print its output.

    The working directory (pipeline, config, transform modules) is uploaded with the job
    (``runtime_env.working_dir``); the job's driver connects to the cluster it runs on
    (``FABRIC_RAY__ADDRESS=auto``) and records the run in its configured metadata store.

    Returns:
        The run's exit code (0 succeeded, 1 gate failed, 2 error), read from the job's last line.

    Raises:
        ValueError: no cluster address, or a file outside the working directory.
        RuntimeError: the job could not be submitted (the message names the address).
    """
    import shlex

    from ray.job_submission import JobSubmissionClient

    from fabric_ray.runtime import _enable_token_auth_if_token_exists

    folder = Path(working_dir).resolve()
    entry = ["python", "-m", "fabric_ray.cli"]
    if config_path:
        entry += ["--config", _inside(config_path, folder)]
    entry += ["etl", "run", _inside(pipeline_path, folder), "--json", "--no-progress"]
    target = _job_address(config, address)
    _enable_token_auth_if_token_exists()
    try:
        client = JobSubmissionClient(target)
        job_id = client.submit_job(
            entrypoint=shlex.join(entry),
            runtime_env={"working_dir": str(folder), "excludes": _JOB_EXCLUDES, "env_vars": {"FABRIC_RAY__ADDRESS": "auto"}},
            metadata={"fabric": "etl", "pipeline_file": _inside(pipeline_path, folder)},
        )
    except Exception as exc:  # noqa: BLE001 - connection errors, HTTP errors, runtime_env upload errors
        raise RuntimeError(f"cannot submit the run to the Ray cluster at {target!r}: {type(exc).__name__}: {exc}") from None
    print(f"submitted Ray job {job_id} to {target}", file=sys.stderr)
    while str(client.get_job_status(job_id).value) not in _TERMINAL:
        time.sleep(poll_s)
    status = str(client.get_job_status(job_id).value)
    logs = client.get_job_logs(job_id)
    lines = [line for line in logs.splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if line.startswith("{") and '"run_id"' in line), None)
    if last is None:
        print(logs, file=sys.stderr)
        print(f"Ray job {job_id} ended {status} without a run record", file=sys.stderr)
        return 2
    record = RunRecord.from_dict(json.loads(last))
    if json_output:
        print(last)
    else:
        print(format_run(record))
        text = gate_text(record.gate)
        if text:
            print()
            print(text)
        print(f"\nRay job {job_id}: {status}")
    return record.exit_code
