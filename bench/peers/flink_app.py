"""The Apache Flink side of :mod:`bench.peers.flink_peer`; runs INSIDE ``bench/.venv-flink``.

It imports nothing from this repository: ``bench/.venv-flink/bin/python bench/peers/flink_app.py
--events FILE --warmup FILE --first-user U --first-ts T --size-ms S --hop-ms H --grace-ms G --out DIR``.

PyFlink's Table API in streaming mode on a local mini-cluster with parallelism 1; every operator
runs in the JVM (no Python UDF). Flink SQL, the plain way to write the job::

    CREATE TABLE events (user_id BIGINT, amount DOUBLE, ts BIGINT,
                         rt AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rt AS rt - INTERVAL 'G' SECOND)
      WITH ('connector' = 'filesystem', 'path' = FILE, 'format' = 'json')
    INSERT INTO windows
      SELECT user_id, window_start, COUNT(*), SUM(amount), AVG(amount), LOCALTIMESTAMP
      FROM TABLE(HOP(TABLE events, DESCRIPTOR(rt), INTERVAL 'H', INTERVAL 'S'))
      GROUP BY user_id, window_start, window_end            -- a window TVF aggregation
    INSERT INTO first_seen SELECT LOCALTIMESTAMP FROM events WHERE user_id = U AND ts = T

The watermark trails the largest event time by the grace, so a window is emitted once, when the
watermark passes its end; at the end of the (bounded) input the watermark jumps to the maximum and
every window left is emitted. Both INSERTs run as one job (a statement set) over one scan of the
file. ``LOCALTIMESTAMP`` is evaluated per row in streaming mode, so each window carries the
JVM's clock when it was emitted, and ``first_seen`` the clock when the first event (user ``U`` at
``T``) passed the source: ``elapsed_s`` is the last window's stamp minus that (millisecond
resolution). The same job first runs once on ``--warmup`` (not timed), in the same JVM, so that
class loading and the JIT's first compilations are not in the timed job.

Output in ``--out``: ``windows/`` (CSV part files: ``user_id,window_start,count,sum,mean,emitted``),
``first_seen/`` and ``summary.json`` (``elapsed_s``, ``job_s``: the job from submission to
completion, ``job_cpu_s``: the JVM's CPU seconds meanwhile, and the settings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

_STAMP_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")


def stamp_ms(text: str) -> int:
    """``"2026-12-06 04:53:51.61"`` (UTC, as Flink's CSV writes a TIMESTAMP(3)) as epoch milliseconds.

    Example:
        >>> stamp_ms('"2023-11-14 22:13:20.25"')
        1700000000250
    """
    text = text.strip().strip('"')
    for fmt in _STAMP_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        return round(parsed.timestamp() * 1000)
    raise ValueError(f"not a Flink timestamp: {text!r}")


def _part_lines(folder: Path) -> list[str]:
    lines: list[str] = []
    for part in sorted(folder.iterdir()):
        if part.is_file() and not part.name.startswith("."):
            lines += part.read_text().splitlines()
    return lines


def _interval(ms: int) -> str:
    """``ms`` as a Flink SQL day-to-second interval literal.

    Example:
        >>> _interval(600_000)
        "INTERVAL '0 00:10:00.000' DAY TO SECOND(3)"
    """
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def _jvm_cpu_s() -> float:
    """CPU seconds the gateway JVM (a child of this process, hosting the mini-cluster) has used, all its threads."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and name == "java":  # fields[1] is the parent pid
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def run_job(t_env, events: str, out: Path, args: argparse.Namespace) -> tuple[float, float]:  # noqa: ANN001
    """Run the job over ``events`` into ``out``; returns the seconds from submission to completion and the JVM's CPU seconds meanwhile."""
    t_env.execute_sql("DROP TABLE IF EXISTS events")
    t_env.execute_sql("DROP TABLE IF EXISTS windows")
    t_env.execute_sql("DROP TABLE IF EXISTS first_seen")
    t_env.execute_sql(f"""
        CREATE TABLE events (
            user_id BIGINT, amount DOUBLE, ts BIGINT,
            rt AS TO_TIMESTAMP_LTZ(ts, 3),
            WATERMARK FOR rt AS rt - {_interval(args.grace_ms)}
        ) WITH ('connector' = 'filesystem', 'path' = '{events}', 'format' = 'json')""")
    t_env.execute_sql(f"""
        CREATE TABLE windows (
            user_id BIGINT, window_start TIMESTAMP(3), cnt BIGINT, total DOUBLE, mean DOUBLE, emitted TIMESTAMP(3)
        ) WITH ('connector' = 'filesystem', 'path' = '{out / "windows"}', 'format' = 'csv')""")
    t_env.execute_sql(f"""
        CREATE TABLE first_seen (seen TIMESTAMP(3))
        WITH ('connector' = 'filesystem', 'path' = '{out / "first_seen"}', 'format' = 'csv')""")
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"""
        INSERT INTO windows
        SELECT user_id, window_start, COUNT(*), SUM(amount), AVG(amount), LOCALTIMESTAMP
        FROM TABLE(HOP(TABLE events, DESCRIPTOR(rt), {_interval(args.hop_ms)}, {_interval(args.size_ms)}))
        GROUP BY user_id, window_start, window_end""")
    statements.add_insert_sql(
        f"INSERT INTO first_seen SELECT LOCALTIMESTAMP FROM events WHERE user_id = {args.first_user} AND ts = {args.first_ts}"
    )
    cpu_started = _jvm_cpu_s()
    started = time.perf_counter()
    statements.execute().wait()
    return time.perf_counter() - started, _jvm_cpu_s() - cpu_started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", required=True, help="JSON-lines file of payloads (timed)")
    parser.add_argument("--warmup", required=True, help="JSON-lines file for the untimed warm-up job")
    parser.add_argument("--first-user", type=int, required=True, help="user_id of the first event of --events")
    parser.add_argument("--first-ts", type=int, required=True, help="ts of the first event of --events")
    parser.add_argument("--size-ms", type=int, required=True)
    parser.add_argument("--hop-ms", type=int, required=True)
    parser.add_argument("--grace-ms", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import pyflink
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    config = Configuration()
    config.set_string("parallelism.default", "1")
    config.set_string("table.local-time-zone", "UTC")
    settings = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    t_env = TableEnvironment.create(settings)

    out = Path(args.out)
    warmup_s, _ = run_job(t_env, args.warmup, out / "warmup", args)
    job_s, job_cpu_s = run_job(t_env, args.events, out, args)
    seen = [stamp_ms(line) for line in _part_lines(out / "first_seen")]
    emitted = [stamp_ms(line.rsplit(",", 1)[1]) for line in _part_lines(out / "windows")]
    summary = {
        "elapsed_s": (max(emitted) - min(seen)) / 1000 if seen and emitted else None,
        "first_seen_rows": len(seen),
        "windows": len(emitted),
        "job_s": job_s,
        "job_cpu_s": job_cpu_s,
        "warmup_job_s": warmup_s,
        "flink": getattr(pyflink, "__version__", None) or _flink_version(),
        "parallelism": 1,
        "cpus": sorted(os.sched_getaffinity(0)),
    }
    (out / "summary.json").write_text(json.dumps(summary))
    if summary["elapsed_s"] is None:
        print(f"flink_app: no timing rows (first_seen {len(seen)}, windows {len(emitted)})", file=sys.stderr)
        return 1
    return 0


def _flink_version() -> str | None:
    from importlib.metadata import version

    return version("apache-flink")


if __name__ == "__main__":
    sys.exit(main())
