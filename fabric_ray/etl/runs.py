"""ETL run records in the metadata database (table ``etl_runs``, SQLAlchemy on ``config.metadata_url``).

Every run of :func:`fabric_ray.etl.runner.run_etl` is recorded: a ``running`` row when it starts,
replaced by its outcome when it ends (``succeeded``, ``gate_failed`` or ``failed``) with its
inputs, outputs (dataset, version, files), row counts, duration, error, profile and gate report.
The database is the one the schema registry and data products use (SQLite or PostgreSQL); the
engine is opened the same way (WAL and a busy timeout on SQLite), so several processes share it.

Example:
    >>> import tempfile, os
    >>> store = EtlRunStore("sqlite:///" + os.path.join(tempfile.mkdtemp(), "metadata.db"))
    >>> rec = RunRecord.start("daily", inputs=("parquet raw/*.parquet",), started_at_s=0.0)
    >>> store.put(rec)
    >>> done = rec.finish("succeeded", rows_in=10, rows_out=8, duration_s=1.5,
    ...                   outputs={"dataset": "clean", "version": 1, "files": ["date=1970-01-01/a.parquet"]})
    >>> store.put(done)
    >>> got = store.get(rec.run_id)
    >>> got.status, got.rows_out, got.outputs["version"], got.started_at
    ('succeeded', 8, 1, '1970-01-01T00:00:00+00:00')
    >>> [r.run_id for r in store.list(pipeline="daily")] == [rec.run_id]
    True
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

import sqlalchemy as sa

from fabric_ray.governance.registry_store import StoreError, _open_engine, mask_url, open_error, sqlite_file

__all__ = ["RUN_STATUSES", "EtlRunStore", "RunRecord"]

RUN_STATUSES = ("running", "succeeded", "gate_failed", "failed")

_META = sa.MetaData()
_RUNS = sa.Table(
    "etl_runs", _META,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("pipeline", sa.Text, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at_s", sa.Float, nullable=False, index=True),
    sa.Column("duration_s", sa.Float, nullable=True),
    sa.Column("rows_in", sa.BigInteger, nullable=True),
    sa.Column("rows_out", sa.BigInteger, nullable=True),
    sa.Column("inputs_json", sa.Text, nullable=False),
    sa.Column("outputs_json", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("profile_json", sa.Text, nullable=True),
    sa.Column("gate_json", sa.Text, nullable=True),
    sa.Column("definition_json", sa.Text, nullable=True),
)


@dataclass(frozen=True)
class RunRecord:
    """One ETL run.

    Attributes:
        run_id: unique id (hex).
        pipeline: the pipeline's name.
        status: ``running``, ``succeeded``, ``gate_failed`` (the gate refused the rows; nothing
            published) or ``failed`` (an error; nothing published).
        started_at_s: start time, seconds since the epoch.
        duration_s: seconds the run took (``None`` while running).
        rows_in: rows read; rows_out: rows after the transforms (written when it succeeded).
        inputs: what was read (descriptions and URIs).
        outputs: ``{"dataset", "uri", "version", "files", "mode"}``; version and files are set
            when the run published (``version`` is then the committed version).
        error: the cause of a failed run (names the file or URI when one is to blame).
        profile: the run's data profile (``Profile.to_dict()``), or ``None``.
        gate: the gate report (``GateReport`` as JSON), or ``None``.
        definition: the pipeline as YAML-ready dict, for reruns and audits.
    """

    run_id: str
    pipeline: str
    status: str
    started_at_s: float
    duration_s: float | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    inputs: tuple[str, ...] = ()
    outputs: Mapping[str, Any] | None = field(default=None, hash=False)
    error: str | None = None
    profile: Mapping[str, Any] | None = field(default=None, hash=False)
    gate: Mapping[str, Any] | None = field(default=None, hash=False)
    definition: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ValueError(f"run {self.run_id}: status must be one of {list(RUN_STATUSES)}; got {self.status!r}")

    @classmethod
    def start(
        cls,
        pipeline: str,
        *,
        inputs: tuple[str, ...] = (),
        definition: Mapping[str, Any] | None = None,
        started_at_s: float | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """A new ``running`` record."""
        return cls(
            run_id or uuid.uuid4().hex,
            pipeline,
            "running",
            time.time() if started_at_s is None else started_at_s,
            inputs=tuple(inputs),
            definition=definition,
        )

    def finish(self, status: str, **fields: Any) -> RunRecord:
        """A copy with the outcome ``status`` and ``fields`` (``rows_in=``, ``error=``, ...)."""
        return replace(self, status=status, **fields)

    @property
    def started_at(self) -> str:
        """The start time in ISO 8601, UTC."""
        return dt.datetime.fromtimestamp(self.started_at_s, dt.timezone.utc).isoformat()

    @property
    def exit_code(self) -> int:
        """``fabric etl run``'s exit code: 0 succeeded, 1 gate failed, 2 failed (or still running)."""
        return {"succeeded": 0, "gate_failed": 1}.get(self.status, 2)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``started_at`` in ISO 8601 added)."""
        out = asdict(self)
        out["inputs"] = list(self.inputs)
        for key in ("outputs", "profile", "gate", "definition"):
            out[key] = None if out[key] is None else json.loads(json.dumps(out[key], default=str))
        out["started_at"] = self.started_at
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Read back :meth:`to_dict`."""
        d = {k: v for k, v in data.items() if k != "started_at"}
        d["inputs"] = tuple(d.get("inputs") or ())
        return cls(**d)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class EtlRunStore:
    """Run records in table ``etl_runs`` of the metadata database.

    Args:
        url: SQLAlchemy URL (``config.metadata_url``). A SQLite file's folder is created when
            missing; the table is created when missing.

    Raises:
        StoreError: bad URL, missing driver or unreachable database; names the URL (password masked).
    """

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        try:
            path = sqlite_file(url)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._engine = _open_engine(url)
        try:
            with self._write() as conn:
                _META.create_all(conn)
        except sa.exc.SQLAlchemyError as exc:
            self._engine.dispose()
            raise open_error(url, exc) from None

    def _write(self) -> Any:
        conn = self._engine.connect().execution_options(fabric_write=True)
        return _Transaction(conn)

    def put(self, record: RunRecord) -> None:
        """Insert ``record``, or replace the stored record with the same run id."""
        row = {
            "pipeline": record.pipeline,
            "status": record.status,
            "started_at_s": record.started_at_s,
            "duration_s": record.duration_s,
            "rows_in": record.rows_in,
            "rows_out": record.rows_out,
            "inputs_json": json.dumps(list(record.inputs)),
            "outputs_json": _dumps(record.outputs),
            "error": record.error,
            "profile_json": _dumps(record.profile),
            "gate_json": _dumps(record.gate),
            "definition_json": _dumps(record.definition),
        }
        with self._write() as conn:
            updated = conn.execute(_RUNS.update().where(_RUNS.c.run_id == record.run_id).values(**row)).rowcount
            if not updated:
                conn.execute(_RUNS.insert().values(run_id=record.run_id, **row))

    def get(self, run_id: str) -> RunRecord | None:
        """The record of ``run_id`` (a unique prefix of at least 6 characters works too), or ``None``."""
        c = _RUNS.c
        with self._engine.connect() as conn:
            rows = list(conn.execute(sa.select(_RUNS).where(c.run_id == run_id)))
            if not rows and len(run_id) >= 6:
                rows = list(conn.execute(sa.select(_RUNS).where(c.run_id.startswith(run_id, autoescape=True)).limit(2)))
                if len(rows) > 1:
                    raise LookupError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        return _record(rows[0]) if rows else None

    def list(self, *, pipeline: str | None = None, limit: int = 50) -> list[RunRecord]:
        """The newest ``limit`` records (of ``pipeline``, if given), newest first."""
        stmt = sa.select(_RUNS).order_by(_RUNS.c.started_at_s.desc()).limit(limit)
        if pipeline is not None:
            stmt = stmt.where(_RUNS.c.pipeline == pipeline)
        with self._engine.connect() as conn:
            return [_record(r) for r in conn.execute(stmt)]

    def close(self) -> None:
        """Release the connection pool."""
        self._engine.dispose()

    def __enter__(self) -> EtlRunStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _Transaction:
    """A write transaction on ``conn`` (SQLite: ``BEGIN IMMEDIATE`` via the engine's events)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sa.Connection:
        self._tx = self.conn.begin()
        return self.conn

    def __exit__(self, exc_type: Any, *_rest: object) -> None:
        try:
            if exc_type is None:
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            self.conn.close()


def _record(row: Any) -> RunRecord:
    m = row._mapping
    return RunRecord(
        run_id=m["run_id"],
        pipeline=m["pipeline"],
        status=m["status"],
        started_at_s=m["started_at_s"],
        duration_s=m["duration_s"],
        rows_in=m["rows_in"],
        rows_out=m["rows_out"],
        inputs=tuple(json.loads(m["inputs_json"])),
        outputs=_loads(m["outputs_json"]),
        error=m["error"],
        profile=_loads(m["profile_json"]),
        gate=_loads(m["gate_json"]),
        definition=_loads(m["definition_json"]),
    )
