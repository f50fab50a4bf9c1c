"""Apache Flink 2.3 as a peer: the hopping-window computation of :mod:`bench.peers.events` on a local mini-cluster.

``apache-flink`` bundles Flink's jars and runs them on the machine's Java 17; it pins numpy,
pyarrow and protobuf versions other than ours, so it runs from its own venv,
``bench/.venv-flink`` (made on first use, ``pip install apache-flink==2.3.*``, about 1.5 minutes
and 0.85 GB here), as a subprocess: :mod:`bench.peers.flink_app` says what it runs (Flink SQL,
streaming mode, parallelism 1, a window TVF aggregation; all operators in the JVM). Here:

1. the payloads are written to a JSON-lines file, and the first ``warmup_events`` of them to a
   second one for the untimed warm-up job (not timed);
2. the app runs pinned to ``cpus`` when given (so the JVM's JIT and GC threads share that core);
3. its CSV part files are read back into :data:`~bench.peers.events.Results`.

``elapsed_s`` is measured inside the job with the JVM's clock: from the first event passing the
source to the last window emitted (each row stamped by ``LOCALTIMESTAMP``, millisecond
resolution). Not timed: JVM and mini-cluster start, the warm-up job, planning, job submission
and task deployment (``notes["job_s"]`` is the whole timed job from submission to completion,
``notes["job_cpu_s"]`` the CPU seconds the JVM used meanwhile, all its threads).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from bench.peers.engine_venv import ROOT, Say, PeerUnavailable, ensure_venv, run_app, work_folder, write_events
from bench.peers.events import GRACE_MS, HOP_MS, SIZE_MS, PeerResult, Results
from bench.peers.flink_app import stamp_ms

__all__ = ["FLINK_APP", "FLINK_VENV", "ensure_flink_venv", "run_flink"]

FLINK_VENV = ROOT / "bench" / ".venv-flink"
FLINK_APP = Path(__file__).resolve().with_name("flink_app.py")
REQUIREMENTS = ["apache-flink==2.3.*"]
_CHECK = "from importlib.metadata import version; import pyflink.table; v = version('apache-flink'); assert v.startswith('2.3.'), v"


def ensure_flink_venv(say: Say = print) -> tuple[Path, float]:
    """``(python, install_s)`` of ``bench/.venv-flink``, made first if it does not import PyFlink 2.3."""
    if shutil.which("java") is None:
        raise PeerUnavailable("no java on PATH (apache-flink needs Java 11 or 17)")
    return ensure_venv(FLINK_VENV, REQUIREMENTS, _CHECK, "Apache Flink", say)


def read_windows(folder: Path) -> Results:
    """The windows from the job's CSV part files (``user_id,window_start,count,sum,mean,emitted``)."""
    results: Results = {}
    for part in sorted(folder.iterdir()):
        if not part.is_file() or part.name.startswith("."):
            continue
        for line in part.read_text().splitlines():
            user, start, count, total, mean, _emitted = line.split(",")
            results[(int(user), stamp_ms(start))] = (int(count), float(total), float(mean))
    return results


def run_flink(
    events: list[bytes],
    size_ms: int = SIZE_MS,
    hop_ms: int = HOP_MS,
    *,
    warmup_events: int = 40_000,
    cpus: set[int] | None = None,
    workdir: str | Path | None = None,
    timeout_s: float = 600.0,
    say: Say = print,
) -> PeerResult:
    """Run the Flink peer over ``events``; see the module docstring.

    Args:
        warmup_events: how many of the first events the untimed warm-up job reads.
        cpus: cores to pin the JVM to (None: inherit).
        workdir: folder for the input files and the output (a temporary one, removed afterwards, when None).

    Raises:
        bench.peers.engine_venv.PeerUnavailable: Flink could not be installed or the app failed.
    """
    wall_started = time.perf_counter()
    python, install_s = ensure_flink_venv(say)
    with work_folder(workdir, "bench-flink-") as work:
        source = write_events(events, work / "events.jsonl")
        warmup = write_events(events[:warmup_events], work / "warmup.jsonl")
        first = json.loads(events[0])
        args = [
            "--events", str(source), "--warmup", str(warmup),
            "--first-user", str(first["user_id"]), "--first-ts", str(first["ts"]),
            "--size-ms", str(size_ms), "--hop-ms", str(hop_ms), "--grace-ms", str(GRACE_MS),
        ]  # fmt: skip
        out = work / "out"
        summary = run_app(python, FLINK_APP, args, out, cpus=cpus, timeout_s=timeout_s)
        results = read_windows(out / "windows")
    return PeerResult(
        engine="flink",
        events=len(events),
        elapsed_s=summary["elapsed_s"],
        results=results,
        wall_s=time.perf_counter() - wall_started,
        notes={
            "flink": summary["flink"],
            "parallelism": 1,
            "mode": "streaming, Table API (Flink SQL window TVF)",
            "grace_ms": GRACE_MS,
            "first_seen_rows": summary["first_seen_rows"],
            "job_s": round(summary["job_s"], 3),
            "job_cpu_s": round(summary["job_cpu_s"], 3),
            "warmup_events": min(warmup_events, len(events)),
            "warmup_job_s": round(summary["warmup_job_s"], 3),
            "install_s": round(install_s, 1),
        },
    )
