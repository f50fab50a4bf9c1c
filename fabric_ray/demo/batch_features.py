"""Batch features of the demo: ``user_daily`` and ``merchant_daily`` rows as Parquet, for materialization.

One row per entity and UTC day, computed with ``pyarrow.compute`` from payments (columns
``user_id``, ``merchant_id``, ``amount``, ``event_ts`` in epoch ms):

* ``user_daily``: ``user_id``, ``txn_count_1d``, ``amount_sum_1d``, ``large_txn_count_1d``
  (payments of :data:`LARGE_AMOUNT` or more);
* ``merchant_daily``: ``merchant_id``, ``txn_count_1d``, ``amount_mean_1d``, ``distinct_users_1d``;

plus ``event_ts``, the end of the day (midnight UTC after it: the values are known then), and
``created_ts``, when the row was computed; both UTC timestamps, as Feast's file source wants.

:func:`write_demo_batch_features` writes them where the feature repo's file sources point:
``<storage root>/features/<view>/<day>.parquet``, one file per view and day (rewriting a day
replaces its file), through :mod:`fabric_ray.storage`, so ``file://`` and ``s3://`` roots both work.
The payments come from the ETL's ``payments_daily`` dataset when it exists, else from
:func:`fabric_ray.demo.payments.generate_events` spread over the last complete days.

Example:
    >>> import pyarrow as pa
    >>> day = 86_400_000
    >>> events = pa.table({"user_id": [1, 1, 2], "merchant_id": [7, 7, 7],
    ...                    "amount": [10.0, 150.0, 5.0], "event_ts": [day + 1, day + 2, 2 * day + 3]})
    >>> t = daily_features(events, created_ms=0)
    >>> t["user_daily"].select(["user_id", "txn_count_1d", "amount_sum_1d", "large_txn_count_1d"]).to_pylist()[0]
    {'user_id': 1, 'txn_count_1d': 2, 'amount_sum_1d': 160.0, 'large_txn_count_1d': 1}
    >>> t["merchant_daily"]["distinct_users_1d"].to_pylist(), t["merchant_daily"]["event_ts"][0].value // 1000
    ([1, 1], 172800000)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fabric_ray.config import FabricConfig
from fabric_ray.storage import Dataset, DatasetError, StorageLocation, open_location

__all__ = [
    "BATCH_VIEWS",
    "BatchFeaturesReport",
    "LARGE_AMOUNT",
    "daily_features",
    "features_location",
    "write_daily_features",
    "write_demo_batch_features",
]

DAY_MS = 86_400_000
LARGE_AMOUNT = 100.0
BATCH_VIEWS = ("user_daily", "merchant_daily")
ETL_DATASET = "payments_daily"
_TS = pa.timestamp("us", tz="UTC")
_SOURCES = ("auto", "events", "etl")


def _timestamps(ms: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.cast(pc.multiply(pc.cast(ms, pa.int64()), 1000), pa.int64()).cast(_TS)


def daily_features(events: pa.Table, *, created_ms: int | None = None, large_amount: float = LARGE_AMOUNT) -> dict[str, pa.Table]:
    """``{"user_daily": table, "merchant_daily": table}``: one row per entity and UTC day of ``events``.

    Args:
        events: payments with ``user_id``, ``merchant_id`` (int64), ``amount`` (float64) and
            ``event_ts`` (int64 epoch ms).
        created_ms: the rows' ``created_ts`` (epoch ms; default: now).
        large_amount: threshold of ``large_txn_count_1d``.

    Raises:
        ValueError: a column is missing, naming it.
    """
    missing = [c for c in ("user_id", "merchant_id", "amount", "event_ts") if c not in events.column_names]
    if missing:
        raise ValueError(f"payments need columns {missing} for the daily features; they have {events.column_names}")
    ts = events["event_ts"]
    if pa.types.is_timestamp(ts.type):
        ts = pc.cast(pc.cast(ts, pa.timestamp("ms", tz=ts.type.tz)), pa.int64())
    amount = pc.cast(events["amount"], pa.float64())
    base = pa.table({
        "user_id": pc.cast(events["user_id"], pa.int64()),
        "merchant_id": pc.cast(events["merchant_id"], pa.int64()),
        "amount": amount,
        "large": pc.cast(pc.greater_equal(amount, large_amount), pa.int64()),
        "day": pc.divide(pc.cast(ts, pa.int64()), DAY_MS),  # integer division: days since the epoch
    })
    base = base.filter(pc.and_(pc.is_valid(base["user_id"]), pc.is_valid(base["merchant_id"])))
    created = int(time.time() * 1000) if created_ms is None else int(created_ms)

    def finish(grouped: pa.Table, key: str, columns: Mapping[str, str], dtypes: Mapping[str, pa.DataType]) -> pa.Table:
        grouped = grouped.sort_by([("day", "ascending"), (key, "ascending")])
        n = grouped.num_rows
        out = {key: grouped[key]}
        for name, src in columns.items():
            out[name] = pc.cast(grouped[src], dtypes[name])
        out["event_ts"] = _timestamps(pc.multiply(pc.add(grouped["day"], 1), DAY_MS))
        out["created_ts"] = pa.array([created * 1000] * n, pa.int64()).cast(_TS)
        return pa.table(out)

    users = base.group_by(["user_id", "day"]).aggregate([("amount", "count"), ("amount", "sum"), ("large", "sum")])
    merchants = base.group_by(["merchant_id", "day"]).aggregate(
        [("amount", "count"), ("amount", "mean"), ("user_id", "count_distinct")]
    )
    return {
        "user_daily": finish(
            users, "user_id",
            {"txn_count_1d": "amount_count", "amount_sum_1d": "amount_sum", "large_txn_count_1d": "large_sum"},
            {"txn_count_1d": pa.int64(), "amount_sum_1d": pa.float64(), "large_txn_count_1d": pa.int64()},
        ),
        "merchant_daily": finish(
            merchants, "merchant_id",
            {"txn_count_1d": "amount_count", "amount_mean_1d": "amount_mean", "distinct_users_1d": "user_id_count_distinct"},
            {"txn_count_1d": pa.int64(), "amount_mean_1d": pa.float64(), "distinct_users_1d": pa.int64()},
        ),
    }


def features_location(cfg: FabricConfig, view: str | None = None) -> StorageLocation:
    """``<storage root>/features/`` (or ``.../features/<view>/``) as a storage location.

    Example:
        >>> features_location(FabricConfig(home="/tmp/fabric-doc"), "user_daily").uri
        'file:///tmp/fabric-doc/storage/features/user_daily'
    """
    loc = open_location(cfg.storage_root, cfg.storage).child("features")
    return loc.child(view) if view else loc


def write_daily_features(location: StorageLocation, tables: Mapping[str, pa.Table]) -> dict[str, list[str]]:
    """Write each view's rows under ``location/<view>/<day>.parquet`` (the summarized UTC day).

    Each file is written whole (atomically on S3 and locally), replacing the file of the same
    view and day. Returns the written URIs by view.
    """
    written: dict[str, list[str]] = {}
    for view, table in tables.items():
        written[view] = []
        if table.num_rows == 0:
            continue
        days = pc.subtract(pc.divide(pc.cast(pc.cast(table["event_ts"], pa.timestamp("ms", tz="UTC")), pa.int64()), DAY_MS), 1)
        table = table.append_column("_day", days)
        for day in pc.unique(days).to_pylist():
            part = table.filter(pc.equal(table["_day"], day)).drop_columns(["_day"])
            name = datetime.fromtimestamp(day * 86_400, tz=timezone.utc).strftime("%Y-%m-%d") + ".parquet"
            sink = pa.BufferOutputStream()
            pq.write_table(part, sink)
            location.child(view).write_bytes(name, sink.getvalue().to_pybytes())
            written[view].append(location.child(view).uri_of(name))
    return written


@dataclass(frozen=True)
class BatchFeaturesReport:
    """What :func:`write_demo_batch_features` wrote.

    Attributes:
        source: ``"etl"`` (the ``payments_daily`` dataset) or ``"events"`` (generated payments).
        payments: payments the rows were computed from.
        rows: rows written per view.
        files: URIs written per view.
        days: the UTC days covered, ``YYYY-MM-DD``, oldest first.
    """

    source: str
    payments: int
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    days: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {"source": self.source, "payments": self.payments, "rows": dict(self.rows),
                "files": {k: list(v) for k, v in self.files.items()}, "days": list(self.days)}


def _etl_payments(cfg: FabricConfig) -> pa.Table | None:
    loc = open_location(cfg.storage_root, cfg.storage).child("datasets", ETL_DATASET)
    try:
        dataset = Dataset.open(loc)
    except DatasetError:
        return None
    return dataset.read(columns=["user_id", "merchant_id", "amount", "event_ts"])


def _generated_payments(events: int, users: int, seed: int, days: int, now_ms: int) -> pa.Table:
    from fabric_ray.demo.payments import generate_events

    end_ms = now_ms // DAY_MS * DAY_MS  # the last midnight: only complete days, no event time in the future
    span_ms = days * DAY_MS
    gen = generate_events(events, users=users, seed=seed, start_ms=end_ms - span_ms,
                          mean_gap_ms=span_ms / max(events, 1) * 0.98, bad_fraction=0.0)
    table = gen.table.select(["user_id", "merchant_id", "amount", "event_ts"])
    ts = table["event_ts"]
    return table.filter(pc.and_(pc.greater_equal(ts, end_ms - span_ms), pc.less(ts, end_ms)))


def write_demo_batch_features(
    cfg: FabricConfig,
    *,
    source: str = "auto",
    events: int = 20_000,
    users: int = 1_000,
    seed: int = 7,
    days: int = 3,
    now_ms: int | None = None,
) -> BatchFeaturesReport:
    """Compute ``user_daily`` and ``merchant_daily`` from demo payments and write them under the storage root.

    Args:
        cfg: the fabric configuration (storage root and S3 settings).
        source: ``"etl"`` reads the ETL's ``payments_daily`` dataset, ``"events"`` generates
            payments, ``"auto"`` (default) takes the dataset when it exists.
        events: generated payments (``source="events"``).
        users: distinct users among them.
        seed: generator seed.
        days: generated payments cover this many complete UTC days before ``now_ms``.
        now_ms: "now" in epoch ms (default: the clock); also the rows' ``created_ts``.

    Raises:
        ValueError: an unknown ``source``, or ``source="etl"`` with no such dataset.
    """
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {list(_SOURCES)}; got {source!r}")
    if days < 1 or events < 1 or users < 1:
        raise ValueError(f"need events, users and days >= 1; got {events}, {users}, {days}")
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    payments = _etl_payments(cfg) if source in ("auto", "etl") else None
    if payments is None and source == "etl":
        raise ValueError(
            f"no dataset {ETL_DATASET!r} under {cfg.storage_root}/datasets/; run the ETL demo first "
            f"(python -m fabric_ray.demo.etl, then fabric etl run) or use source 'events'"
        )
    used = "etl" if payments is not None else "events"
    if payments is None:
        payments = _generated_payments(events, users, seed, days, now)
    tables = daily_features(payments, created_ms=now)
    files = write_daily_features(features_location(cfg), tables)
    covered = sorted({name.rsplit("/", 1)[-1][: -len(".parquet")] for uris in files.values() for name in uris})
    return BatchFeaturesReport(
        source=used,
        payments=payments.num_rows,
        rows={view: t.num_rows for view, t in tables.items()},
        files=files,
        days=tuple(covered),
    )
