"""Run a stream-engine peer from its own virtual environment, as a subprocess.

Pathway and Apache Flink do not install beside our stack (their pins on pandas, pyarrow, numpy and
protobuf conflict with ours), so each peer gets a venv under ``bench/`` (git-ignored), made on
first use from the base interpreter of ``.venv`` and reused while it passes a check import. The
engine side is a script that imports nothing from this repository: it reads the events from a
JSON-lines file, writes the windows in its engine's own output format and a ``summary.json``
with the timed span, and :func:`run_app` hands back that summary.

Example:
    >>> python = ensure_venv(ROOT / "bench" / ".venv-pathway", ["pathway==0.33.*"],
    ...                      "import pathway", "Pathway")  # doctest: +SKIP
    >>> summary = run_app(python, APP, ["--events", "events.jsonl"], out_dir)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["ROOT", "PeerUnavailable", "Say", "ensure_venv", "run_app", "work_folder", "write_events"]

Say = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[2]


class PeerUnavailable(RuntimeError):
    """The peer could not be installed or run; the message says why (it goes into the benchmark's JSON)."""


def ensure_venv(venv: Path, requirements: list[str], check: str, label: str, say: Say = print) -> tuple[Path, float]:
    """Make ``venv`` with ``requirements`` unless ``check`` already runs in it.

    Returns:
        ``(python, install_s)``: the venv's interpreter and the seconds spent installing (0 when reused).

    Raises:
        PeerUnavailable: the venv could not be made, pip failed, or ``check`` fails after installing.
    """
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", check], capture_output=True).returncode == 0:
        return python, 0.0
    started = time.perf_counter()
    say(f"creating the {label} environment {venv} ({', '.join(requirements)}); this takes a minute or two")
    base = getattr(sys, "_base_executable", sys.executable)
    made = subprocess.run([base, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        raise PeerUnavailable(f"could not create the virtual environment {venv}: {made.stderr.strip()[-500:]}")
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *requirements],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        tail = (pip.stdout + pip.stderr).strip().splitlines()[-5:]
        raise PeerUnavailable(f"pip could not install {' '.join(requirements)} into {venv}: {' | '.join(tail)}")
    checked = subprocess.run([python, "-c", check], capture_output=True, text=True)
    if checked.returncode != 0:
        raise PeerUnavailable(f"{venv} was installed but its check failed: {checked.stderr.strip()[-500:]}")
    install_s = time.perf_counter() - started
    say(f"{label} environment ready in {install_s:.0f} s: {venv}")
    return python, install_s


@contextmanager
def work_folder(given: str | os.PathLike[str] | None, prefix: str) -> Iterator[Path]:
    """``given`` as a Path (kept afterwards), or a fresh temporary folder removed afterwards when None."""
    if given is not None:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_events(events: list[bytes], path: Path) -> Path:
    """The payloads as a JSON-lines file (one payload a line), the input every subprocess peer reads."""
    with open(path, "wb") as f:
        f.write(b"\n".join(events))
        f.write(b"\n")
    return path


def run_app(
    python: Path,
    app: Path,
    args: list[str],
    out: Path,
    *,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    timeout_s: float = 600.0,
) -> dict:
    """Run ``python app *args --out out`` and return the ``summary.json`` it wrote into ``out``.

    ``cpus`` pins the subprocess (and so the engine's every thread) to those cores.

    Raises:
        PeerUnavailable: the app exited non-zero, ran past ``timeout_s``, or wrote no summary.
    """
    out.mkdir(parents=True, exist_ok=True)
    command = [str(python), str(app), *args, "--out", str(out)]

    def pin() -> None:  # runs in the child before exec
        if cpus:
            os.sched_setaffinity(0, cpus)

    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, cwd=out, env={**os.environ, **(env or {})}, preexec_fn=pin
        )
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"{app.name} ran past {timeout_s:.0f} s") from None
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines()
        causes = [line.strip() for line in lines if line.lstrip().startswith(("Caused by", "py4j.", "Error", "Exception"))]
        raise PeerUnavailable(f"{app.name} exited with {done.returncode}: {' | '.join(causes[-3:] or lines[-5:])[-1500:]}")
    summary_path = out / "summary.json"
    if not summary_path.exists():
        raise PeerUnavailable(f"{app.name} wrote no summary.json")
    return json.loads(summary_path.read_text())
