"""Checkpoints of one partition: operator state and the next offset, written together in one object.

A checkpoint is a single Arrow IPC file: one row per stateful step (``step``, its state as
Arrow IPC bytes) and, in the schema metadata, the partition's next offset to process. One
object holds everything, so a checkpoint is all there or not there:

* on S3 a PUT makes an object visible whole or not at all;
* on a local file system the file is written under a temporary name and renamed.

Files are named ``ckpt-<sequence>.arrow`` under ``<root>/<pipeline>/<topic>/p=<partition>/``;
the highest sequence that reads back cleanly is the latest (a damaged file is skipped, so the
previous checkpoint is used). The two most recent are kept.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from fabric_ray.storage import open_location
    >>> store = CheckpointStore(open_location(f"file://{tempfile.mkdtemp()}"), "pipe", "topic", 0)
    >>> store.load() is None
    True
    >>> _ = store.save({"win": pa.table({"k": [1, 2]})}, next_offset=42)
    >>> ckpt = store.load()
    >>> ckpt.next_offset, ckpt.state["win"].to_pydict()
    (42, {'k': [1, 2]})
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Mapping

import pyarrow as pa

from fabric_ray.storage.ipc import ipc_bytes, ipc_table
from fabric_ray.storage.fs import StorageLocation

__all__ = ["Checkpoint", "CheckpointStore"]

_KEEP = 2


@dataclass(frozen=True)
class Checkpoint:
    """One partition's saved progress.

    Attributes:
        sequence: increases with every save of the partition.
        next_offset: the first offset not reflected in ``state``.
        state: stateful steps' state by step name.
        created_ms: wall-clock time of the save.
        extra: small JSON-able facts saved alongside (counters).
    """

    sequence: int
    next_offset: int
    state: dict[str, pa.Table]
    created_ms: int
    extra: dict = field(default_factory=dict)




class CheckpointStore:
    """Save and load checkpoints of one partition of one pipeline.

    Args:
        root: the checkpoint root (usually ``<storage root>/checkpoints``).
        pipeline: the pipeline's name.
        topic: the source topic.
        partition: the partition.
    """

    def __init__(self, root: StorageLocation, pipeline: str, topic: str, partition: int) -> None:
        self.location = root.child(pipeline, topic, f"p={int(partition)}")
        self.partition = int(partition)
        self._sequence: int | None = None

    def _files(self) -> list[tuple[int, str]]:
        fs, path = self.location.fs, self.location.path
        fs.invalidate_cache(path)  # s3fs caches listings; another incarnation may have written since
        try:
            names = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if base.startswith("ckpt-") and base.endswith(".arrow"):
                try:
                    out.append((int(base[5:-6]), name))
                except ValueError:
                    continue
        return sorted(out)

    def load(self) -> Checkpoint | None:
        """The latest readable checkpoint, or ``None`` when there is none."""
        files = self._files()
        for seq, name in reversed(files):
            try:
                table = ipc_table(self.location.fs.cat_file(name))
                meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
                state = {s: ipc_table(b) for s, b in zip(table["step"].to_pylist(), table["state"].to_pylist())}
                ckpt = Checkpoint(seq, int(meta["next_offset"]), state, int(meta["created_ms"]), json.loads(meta.get("extra", "{}")))
            except Exception:  # noqa: BLE001 - a damaged checkpoint: fall back to the one before
                continue
            self._sequence = max(self._sequence or 0, files[-1][0])
            return ckpt
        self._sequence = files[-1][0] if files else 0
        return None

    def save(self, state: Mapping[str, pa.Table], next_offset: int, extra: Mapping | None = None) -> Checkpoint:
        """Write a checkpoint atomically and drop all but the latest two.

        Raises:
            OSError: the storage refused the write (the previous checkpoint stays the latest).
        """
        if self._sequence is None:
            self._files_sequence()
        seq = (self._sequence or 0) + 1
        created_ms = int(time.time() * 1000)
        steps = sorted(state)
        meta = {"next_offset": str(int(next_offset)), "created_ms": str(created_ms), "extra": json.dumps(dict(extra or {}))}
        table = pa.table(
            {"step": pa.array(steps, pa.string()), "state": pa.array([ipc_bytes(state[s]) for s in steps], pa.binary())}
        ).replace_schema_metadata(meta)
        data = ipc_bytes(table)
        fs, final = self.location.fs, self.location.join(f"ckpt-{seq:012d}.arrow")
        if self.location.scheme == "file":
            tmp = self.location.join(f".tmp-{uuid.uuid4().hex}")
            fs.pipe_file(tmp, data)
            fs.mv(tmp, final)
        else:
            fs.pipe_file(final, data)
        self._sequence = seq
        for _, old in self._files()[:-_KEEP]:
            try:
                fs.rm_file(old)
            except FileNotFoundError:
                pass
        return Checkpoint(seq, int(next_offset), dict(state), created_ms, dict(extra or {}))

    def _files_sequence(self) -> None:
        files = self._files()
        self._sequence = files[-1][0] if files else 0
