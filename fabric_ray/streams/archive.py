"""Archive decoded events to Parquet, one file per partition and offset range, never duplicated.

Rows are buffered and written when the owner checkpoints (:meth:`ParquetArchive.flush`), to
``<root>/<topic>/date=YYYY-MM-DD/<topic>-p<partition>-<first offset>-<last offset>.parquet``
(hive-style by the event date, or the processing date without a time column).

Why a re-run never duplicates a file: a file is written before the checkpoint that covers its
offsets. If the owner dies in between, the restarted owner resumes from the older checkpoint and
first calls :meth:`ParquetArchive.recover`, which deletes this partition's files that start at
or after the checkpoint's next offset (written by the incarnation that died); the events are
then archived again. A file covered by a checkpoint is never touched.

Example:
    >>> import tempfile, numpy as np, pyarrow as pa
    >>> from fabric_ray.storage import open_location
    >>> arch = ParquetArchive(open_location(f"file://{tempfile.mkdtemp()}"), "payments", 0, time_column="ts")
    >>> arch.write_from(0, np.array([10, 11]), pa.table({"ts": [0, 86_400_000], "v": [1, 2]}))
    >>> [p.rsplit("/", 2)[-2:] for p in arch.flush()]
    [['date=1970-01-01', 'payments-p0-00000000000000000010-00000000000000000010.parquet'], ['date=1970-01-02', 'payments-p0-00000000000000000011-00000000000000000011.parquet']]
"""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fabric_ray.storage.fs import StorageLocation

__all__ = ["ParquetArchive", "archived_files"]

OFFSET_COLUMN = "_offset"
PARTITION_COLUMN = "_partition"


class ParquetArchive:
    """Buffer and write archived rows of some partitions of one topic.

    Args:
        root: the archive root (usually ``<storage root>/archive``).
        topic: the source topic.
        partitions: unused, kept for symmetry; any partition may be written.
        time_column: event time column (ms since the epoch) choosing the ``date=`` folder;
            ``None``: the date of the flush.
    """

    def __init__(self, root: StorageLocation, topic: str, partitions: object = None, *, time_column: str | None = None) -> None:
        self.location = root.child(topic)
        self.topic = topic
        self.time_column = time_column
        self._buffer: dict[int, list[pa.Table]] = {}

    def write_from(self, partition: int, offsets: np.ndarray, table: pa.Table) -> None:
        """Buffer ``table`` whose rows came from ``offsets`` of ``partition`` (rows without an offset: -1)."""
        keep = offsets >= 0
        table = table.filter(pa.array(keep)) if not keep.all() else table
        table = table.append_column(OFFSET_COLUMN, pa.array(offsets[keep], pa.int64()))
        self._buffer.setdefault(int(partition), []).append(table)

    def flush(self) -> list[str]:
        """Write everything buffered; return the paths written."""
        return self.write_detached(self.detach())

    def detach(self) -> dict[int, list[pa.Table]]:
        """Take the buffered rows (to write with :meth:`write_detached`, maybe on another thread)."""
        detached, self._buffer = self._buffer, {}
        return detached

    def reattach(self, detached: dict[int, list[pa.Table]]) -> None:
        """Put detached rows back in front of the buffer (their write failed)."""
        for partition, tables in detached.items():
            self._buffer[partition] = tables + self._buffer.get(partition, [])

    def write_detached(self, detached: dict[int, list[pa.Table]]) -> list[str]:
        """Write rows taken by :meth:`detach`; return the paths written."""
        written = []
        for partition, tables in sorted(detached.items()):
            table = pa.concat_tables(tables, promote_options="permissive")
            for date, part in self._by_date(table):
                offs = part[OFFSET_COLUMN]
                first, last = pc.min(offs).as_py(), pc.max(offs).as_py()
                name = f"{self.topic}-p{partition}-{first:020d}-{last:020d}.parquet"
                path = self.location.join(f"date={date}", name)
                self._put(path, part)
                written.append(path)
        return written

    def recover(self, partition: int, next_offset: int) -> list[str]:
        """Delete ``partition``'s files starting at or after ``next_offset`` (see the module docstring)."""
        removed = []
        for path, p, first, _last in archived_files(self.location):
            if p == partition and first >= next_offset:
                self.location.fs.rm_file(path)
                removed.append(path)
        self._buffer.pop(int(partition), None)
        return removed

    def _by_date(self, table: pa.Table) -> list[tuple[str, pa.Table]]:
        if self.time_column is None or self.time_column not in table.schema.names:
            return [(dt.datetime.now(dt.timezone.utc).date().isoformat(), table)]
        ts = table[self.time_column].combine_chunks()
        ms = ts.cast(pa.int64()).to_numpy(zero_copy_only=False) if not pa.types.is_timestamp(ts.type) else pc.cast(ts, pa.timestamp("ms")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        days = np.floor_divide(ms, 86_400_000)
        out = []
        for day in np.unique(days):
            date = (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()
            out.append((date, table.filter(pa.array(days == day))))
        return out

    def _put(self, path: str, table: pa.Table) -> None:
        fs = self.location.fs
        if self.location.scheme == "file":  # write then rename, so a reader never sees half a file
            tmp = path.rsplit("/", 1)[0] + f"/.tmp-{uuid.uuid4().hex}"
            with fs.open(tmp, "wb") as f:
                pq.write_table(table, f)
            fs.mv(tmp, path)
        else:  # one PUT: the object appears whole
            with fs.open(path, "wb") as f:
                pq.write_table(table, f)


def archived_files(location: StorageLocation) -> list[tuple[str, int, int, int]]:
    """``(path, partition, first offset, last offset)`` of every archive file under a topic folder."""
    fs = location.fs
    fs.invalidate_cache()  # every level: s3fs caches each folder listing separately
    try:
        paths = fs.find(location.path)
    except FileNotFoundError:
        return []
    out = []
    for path in paths:
        base = path.rsplit("/", 1)[-1]
        if not base.endswith(".parquet"):
            continue
        try:
            stem = base[: -len(".parquet")]
            head, first, last = stem.rsplit("-", 2)
            partition = int(head.rsplit("-p", 1)[1])
            out.append((path, partition, int(first), int(last)))
        except (ValueError, IndexError):
            continue
    return sorted(out, key=lambda r: (r[1], r[2]))
