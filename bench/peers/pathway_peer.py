"""Pathway 0.33 as a peer: the hopping-window computation of :mod:`bench.peers.events` in Pathway's Rust engine.

Pathway pins pandas, pyarrow and protobuf versions other than ours, so it runs from its own venv,
``bench/.venv-pathway`` (made on first use, ``pip install pathway==0.33.*``, about 2 minutes and
1.6 GB here), as a subprocess: :mod:`bench.peers.pathway_app` says what it runs. Here:

1. the payloads are written to a JSON-lines file (not timed);
2. the app runs with ``PATHWAY_THREADS=1`` (one worker), pinned to ``cpus`` when given;
3. its ``windows.csv`` is read back into :data:`~bench.peers.events.Results`; a row with
   ``diff = -1`` (a retraction) removes the window and is counted in ``notes["retractions"]``.

``elapsed_s`` is the ``pw.run()`` call inside the app: reading and parsing the file (Pathway's
JSON reader, in Rust), the windows, and writing the CSV. Not timed: interpreter start,
``import pathway`` and building the graph.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from bench.peers.engine_venv import ROOT, Say, ensure_venv, run_app, work_folder, write_events
from bench.peers.events import GRACE_MS, HOP_MS, SIZE_MS, PeerResult, Results

__all__ = ["PATHWAY_APP", "PATHWAY_VENV", "ensure_pathway_venv", "run_pathway"]

PATHWAY_VENV = ROOT / "bench" / ".venv-pathway"
PATHWAY_APP = Path(__file__).resolve().with_name("pathway_app.py")
REQUIREMENTS = ["pathway==0.33.*"]
_CHECK = "import pathway; assert pathway.__version__.startswith('0.33.'), pathway.__version__"


def ensure_pathway_venv(say: Say = print) -> tuple[Path, float]:
    """``(python, install_s)`` of ``bench/.venv-pathway``, made first if it does not import pathway 0.33."""
    return ensure_venv(PATHWAY_VENV, REQUIREMENTS, _CHECK, "Pathway", say)


def read_windows(path: Path) -> tuple[Results, int]:
    """``(results, retractions)`` from Pathway's CSV output (``user_id,start,count,sum,mean,time,diff``)."""
    results: Results = {}
    retractions = 0
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (int(row["user_id"]), int(row["start"]))
            if int(row["diff"]) < 0:
                retractions += 1
                results.pop(key, None)
            else:
                results[key] = (int(row["count"]), float(row["sum"]), float(row["mean"]))
    return results, retractions


def run_pathway(
    events: list[bytes],
    size_ms: int = SIZE_MS,
    hop_ms: int = HOP_MS,
    *,
    behavior: str = "exactly_once",
    cpus: set[int] | None = None,
    workdir: str | Path | None = None,
    timeout_s: float = 600.0,
    say: Say = print,
) -> PeerResult:
    """Run the Pathway peer over ``events``; see the module docstring.

    Args:
        behavior: ``"exactly_once"`` (``exactly_once_behavior(shift=GRACE_MS)``: each window once,
            after its end plus the grace) or ``"none"`` (no temporal behavior; with the whole file
            in one commit, also each window once).
        cpus: cores to pin the engine to (None: inherit).
        workdir: folder for the input file and the output (a temporary one, removed afterwards, when None).

    Raises:
        bench.peers.engine_venv.PeerUnavailable: Pathway could not be installed or the app failed.
    """
    wall_started = time.perf_counter()
    python, install_s = ensure_pathway_venv(say)
    with work_folder(workdir, "bench-pathway-") as work:
        source = write_events(events, work / "events.jsonl")
        out = work / f"out-{behavior}"
        args = ["--events", str(source), "--size-ms", str(size_ms), "--hop-ms", str(hop_ms), "--grace-ms", str(GRACE_MS), "--behavior", behavior]
        summary = run_app(python, PATHWAY_APP, args, out, env={"PATHWAY_THREADS": "1"}, cpus=cpus, timeout_s=timeout_s)
        results, retractions = read_windows(out / "windows.csv")
    return PeerResult(
        engine="pathway",
        events=len(events),
        elapsed_s=summary["elapsed_s"],
        results=results,
        wall_s=time.perf_counter() - wall_started,
        notes={
            "pathway": summary["pathway"],
            "threads": 1,
            "behavior": behavior,
            "grace_ms": GRACE_MS,
            "retractions": retractions,
            "cpu_s": round(summary["cpu_s"], 3),
            "install_s": round(install_s, 1),
        },
    )
