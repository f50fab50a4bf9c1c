"""Benchmark ``pit_join``: a point-in-time training set, 100,000 entity rows against 1,000,000 feature rows, against Feast.

The data (seeded): ``--keys`` drivers with ``--timestamps`` feature rows each (hourly, jittered
by whole seconds; about 5% of rows repeat the previous row's timestamp with another created
timestamp, so ties must be broken by it), ``--features`` float columns, the rows shuffled and
written as ``--files`` Parquet files. ``--entities`` entity rows: random drivers (2% that have
no feature rows), random times from an hour before the first feature row to two hours after
the last, 1% of rows duplicating an earlier one, 1% exactly one TTL after a feature row (the
inclusive edge). TTL 2 hours.

- **fabric_ray, out of core on Ray** (the figure ``ratio_vs_feast`` uses):
  :func:`~fabric_ray.etl.pit_ray.point_in_time_join_ray` over the Parquet files (a
  ``ParquetFiles`` source) and the entity table, on a local Ray cluster of 2 CPUs started
  before the clock; timed from the call until the result is an Arrow table in the driver
  (``to_arrow_refs`` + ``ray.get``).
- **fabric_ray in process**: :func:`~fabric_ray.etl.pit.point_in_time_join`, reading the same
  files. Printed for reference (``inprocess_s``).
- **Feast 0.67**: a temporary feature repo (``provider: local``, ``offline_store: file``, a
  ``FileSource`` on the folder of Parquet files with ``created_timestamp_column``, an
  ``Entity``, a ``FeatureView`` with the same TTL), applied before the clock; timed:
  ``get_historical_features(entity_df, features).to_df()`` (dask, this process).

Each side runs once untimed (worker start, imports, registry), then ``--rounds`` timed rounds
alternate between the sides (the order flips every round); the median counts.

The results are compared on the distinct rows both return. Feast drops entity rows that repeat a
(driver, timestamp) pair (feast-dev/feast#6787) and, unlike its docs, entity rows whose driver
has feature rows but none inside the TTL window (ours gives nulls): both counts are reported
(``feast_dropped_duplicate_rows``, ``feast_dropped_unmatched_rows``). On equal feature
timestamps Feast's pick ignores the created timestamp about half the time (it sorts by created,
then by timestamp, with an unstable sort), so those rows are counted apart
(``rows_differing_feast_tie_pick``: Feast's row has the same driver and feature timestamp as
ours; ours is the latest created, as both tools document). ``rows_equal``: every row both return
is equal and Feast dropped no row we fill; ``rows_equal_except_feast_ties``: the same, counting
those tie picks as equal; ``--ties 0`` gives data without ties. The Ray result must equal the
in-process one exactly, or the benchmark fails.

The last line includes ``ratio_vs_feast`` (Feast's seconds over ours on Ray),
``ratio_inprocess_vs_feast`` and ``rows_equal``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

Say = Callable[[str], None]

TTL_S = 2 * 3600
BASE = np.datetime64("2026-01-01T00:00:00", "s")


# `python -m bench all --quick` (bench/suite.py): this benchmark's short mode and the figures it compares
QUICK_ARGS = ["--entities", "50000", "--keys", "50000", "--rounds", "3"]
KEY_FIGURES = {"ray_s": "lower", "inprocess_s": "lower", "ratio_vs_feast": "higher"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entities", type=int, default=100_000, help="entity rows (default 100,000)")
    parser.add_argument("--keys", type=int, default=100_000, help="drivers with feature rows (default 100,000)")
    parser.add_argument("--timestamps", type=int, default=10, help="feature rows per driver (default 10)")
    parser.add_argument("--features", type=int, default=4, help="float feature columns (default 4)")
    parser.add_argument("--ties", type=float, default=0.05, help="share of feature rows repeating the previous row's timestamp (default 0.05)")
    parser.add_argument("--files", type=int, default=8, help="Parquet files of feature rows (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side, alternating; the median counts (default 3)")
    parser.add_argument("--buckets", type=int, default=None, help="hash buckets of the Ray path (default: its own choice)")


def make_data(args: argparse.Namespace, folder: Path) -> tuple[list[str], Any]:
    """Write the feature files under ``folder``; return their paths and the entity DataFrame."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    keys, per_key = args.keys, args.timestamps
    driver = np.repeat(np.arange(keys, dtype=np.int64), per_key)
    slot = np.tile(np.arange(per_key), keys)
    ts_s = slot * 3600 + rng.integers(0, 3600, keys * per_key)
    tie = (slot > 0) & (rng.random(len(slot)) < args.ties)
    ts_s[tie] = ts_s[np.flatnonzero(tie) - 1]  # same driver, same timestamp as the previous row
    created_s = ts_s + rng.permutation(len(ts_s))  # distinct per row, unrelated to file order
    ts = BASE + ts_s.astype("timedelta64[s]")
    columns = {
        "driver_id": driver,
        "ts": pa.array(ts.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "created": pa.array((BASE + created_s.astype("timedelta64[s]")).astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
    }
    for i in range(args.features):
        columns[f"f{i}"] = rng.normal(size=len(driver))
    table = pa.table(columns).take(pa.array(rng.permutation(len(driver))))
    folder.mkdir(parents=True)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(table.num_rows), args.files)):
        path = folder / f"part-{i:03d}.parquet"
        pq.write_table(table.slice(int(part[0]), len(part)), path)
        paths.append(str(path))

    n = args.entities
    e_driver = rng.integers(0, int(keys * 1.02) + 1, n)
    e_s = rng.integers(-3600, per_key * 3600 + 2 * 3600, n)
    edge = rng.random(n) < 0.01  # exactly TTL after one of the driver's feature rows: included
    pick = rng.integers(0, len(driver), int(edge.sum()))
    e_driver[edge], e_s[edge] = driver[pick], ts_s[pick] + TTL_S
    dup = np.flatnonzero(rng.random(n) < 0.01)
    dup = dup[dup > 0]
    src = rng.integers(0, dup)
    e_driver[dup], e_s[dup] = e_driver[src], e_s[src]
    entity_df = pd.DataFrame({
        "driver_id": e_driver,
        "event_timestamp": pd.to_datetime((BASE + e_s.astype("timedelta64[s]")).astype("datetime64[ns]")).tz_localize("UTC"),
        "row": np.arange(n),
    })
    return paths, entity_df


def _feature_table(paths: list[str], features: list[str]):
    from fabric_ray.etl.pit import FeatureTable, ParquetFiles

    return FeatureTable("driver_stats", ParquetFiles(tuple(paths)), join_keys="driver_id", timestamp_column="ts", features=features, created_column="created", ttl_s=TTL_S)


def _feast_store(repo: Path, folder: Path, features: list[str]):
    """A Feast feature repo over the same files, applied; the ``FeatureStore``."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(textwrap.dedent("""\
        project: pit_bench
        provider: local
        registry: data/registry.db
        online_store:
          type: sqlite
          path: data/online.db
        offline_store:
          type: file
        entity_key_serialization_version: 3
        """))
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    source = FileSource(name="driver_stats_source", path=str(folder), timestamp_field="ts", created_timestamp_column="created")
    view = FeatureView(
        name="driver_stats",
        entities=[driver],
        ttl=dt.timedelta(seconds=TTL_S),
        schema=[Field(name=f, dtype=Float64) for f in features],
        source=source,
        online=False,
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([driver, view])
    return store


def compare_with_feast(ours: Any, feast: Any, feature_rows: Any, features: list[str]) -> dict[str, Any]:
    """Compare on (driver_id, event_timestamp); ``ours`` holds all our rows, ``feature_rows`` the
    feature files' (driver_id, ts, f0), to tell which differences are ties on the feature timestamp."""
    distinct = ours.drop_duplicates(["driver_id", "event_timestamp"])
    feast = feast[["driver_id", "event_timestamp", *features]]
    merged = distinct.merge(feast, on=["driver_id", "event_timestamp"], how="left", suffixes=("", "_feast"), indicator=True)
    returned = (merged.pop("_merge") == "both").to_numpy()
    both = merged[returned]
    differ = np.zeros(len(both), dtype=bool)
    for f in features:
        a, b = both[f].to_numpy(dtype=float), both[f + "_feast"].to_numpy(dtype=float)
        differ |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    # A difference is a tie when Feast's row has the same driver and feature timestamp as ours
    # (f0 is a random float, so it names the feature row).
    ts_of = feature_rows.drop_duplicates("f0").set_index("f0")["ts"]
    ours_ts = both["f0"].map(ts_of).to_numpy()
    feast_ts = both["f0_feast"].map(ts_of).to_numpy()
    tie = differ & (ours_ts == feast_ts)
    lost = merged[~returned]
    lost_unmatched = int(lost["f0"].isna().sum())
    return {
        "rows_compared": int(returned.sum()),
        "rows_differing": int(differ.sum()),
        "rows_differing_feast_tie_pick": int(tie.sum()),
        "feast_rows": len(feast),
        "feast_dropped_duplicate_rows": len(ours) - len(distinct),
        "feast_dropped_unmatched_rows": lost_unmatched,
        "feast_dropped_other_rows": len(lost) - lost_unmatched,
        "rows_equal": bool(not differ.any() and len(lost) == lost_unmatched),
        "rows_equal_except_feast_ties": bool(not (differ & ~tie).any() and len(lost) == lost_unmatched),
        "example_difference": both[differ & ~tie].head(3).to_dict("records") if (differ & ~tie).any() else None,
    }


def run(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    import pyarrow as pa

    from fabric_ray.loopback import keep_on_loopback

    keep_on_loopback()  # FEAST_USAGE=False and Ray without cloud probes
    import ray

    from bench import exit_on_sigterm
    from fabric_ray.etl.pit import point_in_time_join
    from fabric_ray.etl.pit_ray import point_in_time_join_ray

    features = [f"f{i}" for i in range(args.features)]
    work = Path(tempfile.mkdtemp(prefix="bench_pit_"))
    try:
        folder = work / "driver_stats"
        paths, entity_df = make_data(args, folder)
        entities = pa.Table.from_pandas(entity_df, preserve_index=False)
        feature_rows = args.keys * args.timestamps
        say(f"{len(entity_df):,} entity rows against {feature_rows:,} feature rows in {len(paths)} Parquet files "
            f"({args.features} float features, TTL {TTL_S // 3600} h, ties on the feature timestamp, duplicate and missing entities)")
        table = _feature_table(paths, features)
        feast_features = [f"driver_stats:{f}" for f in features]
        feast_entities = entity_df.drop(columns=["row"])

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="bench_pit")
        exit_on_sigterm()
        say("Feast 0.67: feast apply of a temporary repo (untimed)")
        store = _feast_store(work / "feast_repo", folder, features)

        results: dict[str, Any] = {}

        def timed(name: str, fn: Callable[[], Any]) -> float:
            started = time.perf_counter()
            results[name] = fn()
            return time.perf_counter() - started

        sides: dict[str, Callable[[], Any]] = {
            "ray": lambda: pa.concat_tables(ray.get(point_in_time_join_ray(entities, table, buckets=args.buckets).to_arrow_refs())),
            "inprocess": lambda: point_in_time_join(entities, table),
            "feast": lambda: store.get_historical_features(entity_df=feast_entities, features=feast_features).to_df(),
        }
        for name, fn in sides.items():
            timed(name, fn)  # warm-up, untimed: worker processes, function export, imports, registry
        times: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(args.rounds):  # alternating rounds: a noisy machine hits every side alike
            for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):
                times[name].append(timed(name, sides[name]))
            if not results["ray"].equals(results["inprocess"]):
                raise AssertionError("the Ray path's result differs from the in-process path's")
        ray_s, inproc_s, feast_s = (statistics.median(times[n]) for n in ("ray", "inprocess", "feast"))
        rounds = {n: ", ".join(f"{t:.2f}" for t in ts) for n, ts in times.items()}
        say(f"fabric_ray on Ray (out of core, 2 CPUs): {ray_s:.3f} s (median of {args.rounds}: {rounds['ray']}); equal to the in-process result")
        say(f"fabric_ray in process: {inproc_s:.3f} s ({rounds['inprocess']}), reading the files included")
        say(f"Feast get_historical_features (file offline store): {feast_s:.3f} s ({rounds['feast']}); {len(results['feast']):,} rows returned")
        want, feast_df = results["inprocess"], results["feast"]

        import pyarrow.parquet as pq

        feature_rows_df = pq.read_table(folder, columns=["driver_id", "ts", "f0"]).to_pandas()
        check = compare_with_feast(want.to_pandas(), feast_df, feature_rows_df, features)
        example = check.pop("example_difference")
        say(f"compared on the {check['rows_compared']:,} distinct rows both return: {check['rows_differing']} differ, "
            f"{check['rows_differing_feast_tie_pick']} of them ties on the feature timestamp where Feast's pick ignores the created "
            f"timestamp (its sort is not stable); Feast dropped {check['feast_dropped_duplicate_rows']} duplicate entity rows "
            f"(#6787), {check['feast_dropped_unmatched_rows']} rows with no feature row in the TTL window (ours: nulls) and "
            f"{check['feast_dropped_other_rows']} others")
        if example:
            say(f"first differences that are not ties: {example}")
        return {
            "entity_rows": len(entity_df),
            "feature_rows": feature_rows,
            "timed_path": "point_in_time_join_ray (Ray, out of core)",
            "rounds": args.rounds,
            "ray_s": round(ray_s, 3),
            "inprocess_s": round(inproc_s, 3),
            "feast_s": round(feast_s, 3),
            **check,
            "ratio_vs_feast": round(feast_s / ray_s, 2),
            "ratio_inprocess_vs_feast": round(feast_s / inproc_s, 2),
            "target_ratio": 3,
        }
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
