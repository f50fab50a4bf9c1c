"""Backfill a pipeline from its Parquet archive into fresh state, then switch over to the live stream.

The archive (:mod:`.archive`) holds every decoded, validated event with its partition and offset.
:func:`backfill_from_archive` reads a partition's archived rows (optionally only an event-time
range), runs them through the steps of a pipeline that follow its archive sink, with fresh state,
delivers the results to the given sinks, and, when given a checkpoint store, saves each
partition's state with the next offset after the last archived event. Starting the pipeline on
the fabric afterwards (``Fabric.run_pipeline``) restores those checkpoints, so it continues from
Kafka exactly where the archive ends: that is the switch-over.

Typical use: a new version of a pipeline (another window, another aggregate) gets its state from
history without re-reading Kafka (which may no longer hold it), then takes over the live stream.

Example:
    >>> import tempfile, json, pyarrow as pa
    >>> from fabric_ray.storage import open_location
    >>> from fabric_ray.streams.archive import ParquetArchive
    >>> from fabric_ray.streams.aggregates import RunningTotals
    >>> from fabric_ray.streams.json_codec import JsonDecoder
    >>> from fabric_ray.streams.pipeline import Pipeline
    >>> from fabric_ray.testing import CollectingSink
    >>> root = open_location(f"file://{tempfile.mkdtemp()}")
    >>> archive = ParquetArchive(root.child("archive"), "t", time_column="ts")
    >>> archive.write_from(0, np.arange(3), pa.table({"k": [1, 1, 2], "v": [1.0, 2.0, 5.0], "ts": [0, 1, 2]}))
    >>> _ = archive.flush()
    >>> schema = pa.schema([("k", pa.int64()), ("v", pa.float64()), ("ts", pa.int64())])
    >>> p = (Pipeline("v2").source("t").decode(JsonDecoder(schema)).sink("archive", to="archive", time_column="ts")
    ...      .aggregate(RunningTotals("k", "v", "ts", 60_000, {"key": "k", "sum": "total"})).sink("out"))
    >>> out = CollectingSink()
    >>> report = backfill_from_archive(p, root.child("archive"), sinks={"out": out})
    >>> out.latest("k"), report.partitions[0].next_offset
    ({1: {'k': 1, 'total': 3.0}, 2: {'k': 2, 'total': 5.0}}, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np  # noqa: F401  (the example uses it)
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fabric_ray.storage.fs import StorageLocation
from fabric_ray.streams.archive import OFFSET_COLUMN, archived_files
from fabric_ray.streams.checkpoint import CheckpointStore
from fabric_ray.streams.executor import PipelineRuntime
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PartitionCounters

__all__ = ["BackfillReport", "PartitionBackfill", "backfill_from_archive"]


@dataclass
class PartitionBackfill:
    """What a backfill did with one partition.

    Attributes:
        files: archive files read.
        rows: archived rows in the time range.
        counters: processed, dead-lettered (with reasons) and filtered rows.
        next_offset: the offset after the last archived event: where the live stream continues.
    """

    files: int = 0
    rows: int = 0
    counters: PartitionCounters = field(default_factory=PartitionCounters)
    next_offset: int = 0


@dataclass
class BackfillReport:
    """Per partition, what :func:`backfill_from_archive` did."""

    partitions: dict[int, PartitionBackfill] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions.values())


def _archive_step(pipeline: Pipeline, after: str | None) -> tuple[str, str | None]:
    if after is not None:
        step = pipeline.step(after)
        return step.name, step.options.get("time_column")
    for step in pipeline.steps:
        if step.kind == "sink" and step.options.get("to") == "archive":
            return step.name, step.options.get("time_column")
    raise ValueError(f"pipeline {pipeline.name!r} has no archive sink to backfill from; add .sink('archive', to='archive') or pass after=")


def backfill_from_archive(
    pipeline: Pipeline,
    archive_root: StorageLocation,
    *,
    sinks: Mapping[str, Any],
    start_ms: int | None = None,
    end_ms: int | None = None,
    checkpoints: Callable[[int], CheckpointStore] | None = None,
    after: str | None = None,
    batch_rows: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
) -> BackfillReport:
    """Run ``pipeline`` over its archive with fresh state; see the module docstring.

    Args:
        pipeline: the pipeline (a new version of the one that wrote the archive, or the same).
        archive_root: the archive root (``<storage root>/archive``); the topic's folder is read.
        sinks: sinks for the sink steps after ``after`` (the archive sink itself is not written).
        start_ms: first event time to include (the archive sink's ``time_column``), or everything.
        end_ms: event time to stop before, or everything.
        checkpoints: ``partition -> CheckpointStore`` of the pipeline that will take over: each
            partition's state is saved with the next offset after its last archived event.
        after: the step whose rows the archive holds (default: the pipeline's archive sink).
        batch_rows: rows per step run (bounds memory per partition to the files it reads).
        on_progress: called with the rows done so far.

    Raises:
        ValueError: no archive sink, or a time range without a time column, naming the pipeline.
    """
    after, time_column = _archive_step(pipeline, after)
    if (start_ms is not None or end_ms is not None) and time_column is None:
        raise ValueError(f"pipeline {pipeline.name!r}: a time range needs the archive sink's time_column")
    report = BackfillReport()
    files_by_partition: dict[int, list[str]] = {}
    for path, partition, _first, _last in archived_files(archive_root.child(pipeline.topic)):
        files_by_partition.setdefault(partition, []).append(path)
    done = 0
    for partition, paths in sorted(files_by_partition.items()):
        runtime = PipelineRuntime(pipeline)
        part = report.partitions[partition] = PartitionBackfill(files=len(paths))
        tables = [pq.read_table(archive_root.fs.open(path, "rb")) for path in paths]
        table = pa.concat_tables(tables, promote_options="permissive")
        table = table.sort_by(OFFSET_COLUMN)
        if len(table):
            part.next_offset = int(pc.max(table[OFFSET_COLUMN]).as_py()) + 1
        if time_column is not None and (start_ms is not None or end_ms is not None):
            ts = table[time_column]
            mask = pc.and_(
                pc.greater_equal(ts, start_ms) if start_ms is not None else pc.is_valid(ts),
                pc.less(ts, end_ms) if end_ms is not None else pc.is_valid(ts),
            )
            table = table.filter(mask)
        part.rows = table.num_rows
        offsets = table[OFFSET_COLUMN].to_numpy()
        rows = table.drop_columns([OFFSET_COLUMN])
        for start in range(0, rows.num_rows, batch_rows):
            chunk = rows.slice(start, batch_rows)
            result = runtime.process_rows(chunk, after)
            part.counters.add(result)
            for name, out in result.outputs.items():
                sink = sinks[name]
                if hasattr(sink, "write_from"):
                    sink.write_from(partition, result.source_offsets(name, offsets[start : start + batch_rows]), out)
                else:
                    sink.write(out)
            done += chunk.num_rows
            if on_progress:
                on_progress(done)
        if checkpoints is not None:
            checkpoints(partition).save(runtime.snapshot(), part.next_offset, extra={"counters": part.counters.to_json(), "backfill": True})
    for sink in sinks.values():
        if hasattr(sink, "flush"):
            sink.flush()
    return report
