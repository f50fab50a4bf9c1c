"""The ETL demo: sample card payments as Parquet files, and a pipeline that cleans them into a dataset.

``python -m fabric_ray.demo.etl [--config fabric.yaml] [--rows N]`` writes the sample files under
``<storage root>/demo/payments/`` and prints the command that runs the pipeline
(``fabric etl run <this folder>/payments_daily.yaml``).

Example:
    >>> t = sample_payments(5, seed=1)
    >>> t.column_names
    ['event_id', 'user_id', 'merchant_id', 'amount', 'currency', 'event_ts']
    >>> t.num_rows
    5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["PIPELINE_FILE", "sample_payments", "write_sample"]

PIPELINE_FILE = Path(__file__).with_name("payments_daily.yaml")
_CURRENCIES = np.array(["EUR", "USD", "GBP", "XXX"])
_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def sample_payments(rows: int, *, seed: int = 7, offset: int = 0) -> pa.Table:
    """``rows`` synthetic payments: a few negative amounts and unknown currencies, which the pipeline drops."""
    rng = np.random.default_rng(seed + offset)
    ids = np.arange(offset, offset + rows)
    return pa.table({
        "event_id": pa.array([f"evt-{i:09d}" for i in ids]),
        "user_id": pa.array(rng.integers(1, 10_000, rows), pa.int64()),
        "merchant_id": pa.array(rng.integers(1, 500, rows), pa.int64()),
        "amount": pa.array(np.round(rng.gamma(2.0, 30.0, rows) * np.where(rng.random(rows) < 0.01, -1, 1), 2)),
        "currency": pa.array(_CURRENCIES[rng.choice(4, rows, p=[0.6, 0.3, 0.09, 0.01])]),
        "event_ts": pa.array(_START_MS + np.sort(rng.integers(0, 3 * 86_400_000, rows)), pa.int64()),
    })


def write_sample(root_uri: str, storage: object = None, *, rows: int = 100_000, files: int = 4) -> list[str]:
    """Write ``files`` Parquet files of sample payments under ``<root_uri>/demo/payments/``; return their paths."""
    from fabric_ray.storage import open_location

    loc = open_location(root_uri, storage).child("demo", "payments")
    paths = []
    per_file = -(-rows // files)
    for i in range(files):
        table = sample_payments(min(per_file, rows - i * per_file), offset=i * per_file)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        loc.write_bytes(f"payments-{i:03d}.parquet", sink.getvalue().to_pybytes())
        paths.append(loc.join(f"payments-{i:03d}.parquet"))
    return paths


def main(argv: list[str] | None = None) -> int:
    from fabric_ray.config import load_config

    parser = argparse.ArgumentParser(prog="python -m fabric_ray.demo.etl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="fabric.yaml (storage root)")
    parser.add_argument("--rows", type=int, default=100_000, help="sample payments to write (default 100000)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    paths = write_sample(config.storage_root, config.storage, rows=args.rows)
    print(f"wrote {args.rows:,} payments in {len(paths)} files under {config.storage_root}/demo/payments")
    print(f"run: fabric etl run {PIPELINE_FILE}" + (f" --config {args.config}" if args.config else ""))
    return 0
