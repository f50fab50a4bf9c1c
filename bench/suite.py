"""``python -m bench all --quick``: every benchmark in a short mode, compared with this machine's last run.

Each benchmark runs in its own subprocess (``python -m bench NAME <quick args>``); its last output
line is parsed as JSON and a few key figures are compared with a stored baseline: the same
machine's previous run, a JSON file outside git (``~/.cache/fabric_ray/bench/<host>-quick.json``,
or ``$FABRIC_BENCH_BASELINE_DIR``). A benchmark module declares:

- ``QUICK_ARGS``: the options of its short mode (about 30-60 s here);
- ``KEY_FIGURES``: ``{figure: "higher" | "lower"}``, which way is better (a dotted name reads a
  nested figure, ``stages.decode.p99_ms``);
- ``SKIP_PEERS_ARGS`` (optional): options that leave out peers which build their own virtual
  environment on first use; passed unless ``--with-peers``.

``--baseline-commit REV`` runs the same suite at REV too, in the same sitting: a ``git worktree``
of REV in a temp folder, the same virtual environment, the worktree first on ``PYTHONPATH`` (checked:
``fabric_ray``, ``actors``, ``serving`` and ``bench`` must import from the worktree, not through the
editable install). Each benchmark runs at REV, then at the working tree, before the next one, so a
noisy spell hits both sides alike; the table compares the two. Nothing here fails on timing unless ``--strict`` is given: the table is for people.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUMMARY = "every benchmark in its own subprocess (--quick: a short mode), key figures against this machine's last run or --baseline-commit REV"
REGRESSION_RATIO = 0.8  # a ratio (>1 better) below this is "more than 20% worse"
MARKER = "<< worse by >20%"
QUICK_TIMEOUT_S = 240.0
FULL_TIMEOUT_S = 1800.0
ERROR_LINES = 15
# imported from the tree under test, or the run is refused (serving is a namespace package: one of its modules)
PACKAGES = ("fabric_ray", "actors", "serving.features", "bench")
REPO = Path(__file__).resolve().parent.parent


# -- what one benchmark declares ------------------------------------------------------------------


@dataclass
class Spec:
    """How the suite runs one benchmark and which of its figures it compares."""

    name: str
    args: list[str]
    key_figures: dict[str, str]


def spec_of(name: str, *, quick: bool, with_peers: bool) -> Spec:
    """Read ``QUICK_ARGS``, ``KEY_FIGURES`` and ``SKIP_PEERS_ARGS`` of ``bench.<name>`` (this tree's)."""
    module = importlib.import_module(f"bench.{name}")
    args = list(getattr(module, "QUICK_ARGS", [])) if quick else []
    if not with_peers:
        args += list(getattr(module, "SKIP_PEERS_ARGS", []))
    key_figures = dict(getattr(module, "KEY_FIGURES", {}))
    bad = {k: v for k, v in key_figures.items() if v not in ("higher", "lower")}
    if bad:
        raise ValueError(f"bench.{name}.KEY_FIGURES: directions must be 'higher' or 'lower', got {bad}")
    return Spec(name, args, key_figures)


def known_args(args: list[str], options: set[str] | None) -> tuple[list[str], list[str]]:
    """Split ``args`` into those a benchmark knows (``options``: its option strings) and the rest.

    An unknown option is dropped with the values after it: an older commit may not have a
    ``--skip-<peer>`` option because it has no such peer.

    Example:
        >>> known_args(["--rows", "5", "--skip-x", "--fast"], {"--rows", "--fast"})
        (['--rows', '5', '--fast'], ['--skip-x'])
    """
    if options is None:
        return list(args), []
    kept: list[str] = []
    dropped: list[str] = []
    keep = True
    for token in args:
        if token.startswith("--"):
            keep = token.split("=", 1)[0] in options
        (kept if keep else dropped).append(token)
    return kept, dropped


# -- one run of one benchmark ---------------------------------------------------------------------


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object, or None.

    Example:
        >>> last_json('progress\\n{"bench": "x", "a": 1}\\n\\n')
        {'bench': 'x', 'a': 1}
    """
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def figure(result: dict[str, Any], name: str) -> float | None:
    """The number ``name`` (dotted for nested objects) in ``result``, or None.

    Example:
        >>> figure({"a": {"b": 2}, "c": None}, "a.b"), figure({"c": None}, "c"), figure({}, "d")
        (2.0, None, None)
    """
    value: Any = result
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class Outcome:
    """One benchmark's run: its figures, or why there are none."""

    name: str
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    wall_s: float = 0.0
    args: list[str] = field(default_factory=list)
    dropped_args: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "figures": self.figures, "error": self.error, "wall_s": self.wall_s,
                "args": self.args, "dropped_args": self.dropped_args}

    @classmethod
    def from_json(cls, name: str, doc: dict[str, Any]) -> Outcome:
        return cls(name, bool(doc.get("ok")), dict(doc.get("figures") or {}), doc.get("error", ""),
                   float(doc.get("wall_s", 0.0)), list(doc.get("args") or []), list(doc.get("dropped_args") or []))


def run_benchmark(name: str, args: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float,
                  echo: Callable[[str], None] = print) -> Outcome:
    """Run ``python -m bench NAME ARGS`` in ``cwd``; echo its lines; parse its last JSON line.

    A run that exits non-zero, prints no JSON object or outlives ``timeout_s`` (then SIGTERM, and
    SIGKILL 30 s later, to its whole process group) is an Outcome with ``ok`` False and its last
    output lines as ``error``.
    """
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "bench", name, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=ERROR_LINES)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            tail.append(line)
            echo(f"    {line[:300]}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop_group(proc)
    except BaseException:
        _stop_group(proc)
        raise
    reader.join(10)
    wall_s = round(time.monotonic() - started, 1)
    result = last_json("\n".join(lines))
    last = "\n".join(tail)
    if timed_out:
        return Outcome(name, False, error=f"timed out after {timeout_s:.0f} s; last lines:\n{last}", wall_s=wall_s, args=args)
    if proc.returncode != 0:
        return Outcome(name, False, error=f"exit code {proc.returncode}; last lines:\n{last}", wall_s=wall_s, args=args)
    if result is None:
        return Outcome(name, False, error=f"no JSON object in its output; last lines:\n{last}", wall_s=wall_s, args=args)
    return Outcome(name, True, figures=result, wall_s=wall_s, args=args)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the benchmark's process group (it cleans up Ray and its servers), SIGKILL it 30 s later."""
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


# -- a run of the suite, the stored baseline --------------------------------------------------------


def baseline_dir() -> Path:
    """``$FABRIC_BENCH_BASELINE_DIR``, else ``~/.cache/fabric_ray/bench``."""
    return Path(os.environ.get("FABRIC_BENCH_BASELINE_DIR") or Path.home() / ".cache" / "fabric_ray" / "bench")


def baseline_path(folder: Path, host: str, quick: bool) -> Path:
    """Where this machine's baseline of the quick (or full) suite lives.

    Example:
        >>> baseline_path(Path("/b"), "box-1", True).as_posix()
        '/b/box-1-quick.json'
    """
    return folder / f"{host}-{'quick' if quick else 'full'}.json"


def load_run(path: Path) -> dict[str, Any] | None:
    """A stored run (``{"benchmarks": {name: outcome}, ...}``), or None if there is none or it is unreadable."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), dict) else None


def save_run(path: Path, run: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
    """Store ``run`` at ``path`` (atomically); a benchmark that failed in ``run`` keeps ``previous``'s entry."""
    doc = json.loads(json.dumps(run))
    if previous:
        for name, old in previous.get("benchmarks", {}).items():
            new = doc["benchmarks"].get(name)
            if (new is None or not new.get("ok")) and old.get("ok"):
                doc["benchmarks"][name] = {**old, "kept_from": previous.get("started", "an earlier run")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    tmp.replace(path)


def git_describe(cwd: Path) -> dict[str, Any]:
    """The commit checked out in ``cwd`` and whether tracked files differ from it."""
    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=cwd, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


# -- comparing two runs -----------------------------------------------------------------------------


def better_ratio(direction: str, baseline: float | None, now: float | None) -> float | None:
    """``now`` against ``baseline``, oriented so that above 1 is better; None where it cannot be said.

    Example:
        >>> better_ratio("higher", 100, 120), better_ratio("lower", 100, 125), better_ratio("lower", 0, 5)
        (1.2, 0.8, None)
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
    if baseline is None or now is None or baseline <= 0 or now <= 0:
        return None  # a zero (or negative) figure has no meaningful ratio
    return now / baseline if direction == "higher" else baseline / now


def is_regression(ratio: float | None) -> bool:
    """More than 20% worse: the oriented ratio is below 0.8.

    Example:
        >>> is_regression(0.79), is_regression(0.8), is_regression(None)
        (True, False, False)
    """
    return ratio is not None and ratio < REGRESSION_RATIO - 1e-12


@dataclass
class Row:
    bench: str
    figure: str
    direction: str
    baseline: float | None
    now: float | None
    ratio: float | None
    note: str = ""

    @property
    def regressed(self) -> bool:
        return is_regression(self.ratio)


def compare(baseline: dict[str, Any], now: dict[str, Any], specs: dict[str, Spec]) -> list[Row]:
    """One row per key figure of every benchmark in ``specs``: baseline, now, oriented ratio."""
    rows = []
    for name, spec in specs.items():
        old = baseline.get("benchmarks", {}).get(name)
        new = now.get("benchmarks", {}).get(name)
        if new is None or not new.get("ok"):
            rows.append(Row(name, "-", "", None, None, None, "FAILED now" if new else "not run now"))
            continue
        if not spec.key_figures:
            rows.append(Row(name, "-", "", None, None, None, "no KEY_FIGURES"))
        for fig, direction in spec.key_figures.items():
            b = figure(old["figures"], fig) if old and old.get("ok") else None
            n = figure(new["figures"], fig)
            note = ("no baseline" if old is None else "baseline failed") if not (old and old.get("ok")) else ""
            if not note and b is None:
                note = "not in baseline"
            if n is None:
                note = "not reported now"
            rows.append(Row(name, fig, direction, b, n, better_ratio(direction, b, n), note))
    return rows


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def format_table(rows: list[Row], baseline_label: str = "baseline", now_label: str = "now") -> str:
    """The rows as a text table; ``ratio`` is above 1 when now is better, the marker flags >20% worse."""
    head = ("benchmark", "figure", "better", baseline_label, now_label, "ratio", "")
    cells = [head] + [
        (r.bench, r.figure, r.direction, _num(r.baseline), _num(r.now), "-" if r.ratio is None else f"{r.ratio:.2f}",
         MARKER if r.regressed else r.note)
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head) - 1)]
    lines = []
    for c in cells:
        left = [c[i].ljust(widths[i]) for i in (0, 1, 2)]
        right = [c[i].rjust(widths[i]) for i in (3, 4, 5)]
        lines.append("  ".join(left + right + [c[6]]).rstrip())
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


# -- the suite ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench all``."""
    parser.add_argument("--quick", action="store_true", help="each benchmark's QUICK_ARGS (about 30-60 s each here)")
    parser.add_argument("--save", action="store_true", help="store this run as the machine's baseline (the first run saves itself)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a key figure is more than 20%% worse than the baseline")
    parser.add_argument("--with-peers", action="store_true", help="also run peers that build their own venv on first use (SKIP_PEERS_ARGS not passed)")
    parser.add_argument("--baseline-commit", metavar="REV", help="also run each benchmark at REV (a git worktree in a temp folder), just before the working tree, and compare the two")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated benchmarks (default: all of BENCHMARKS)")
    parser.add_argument("--timeout", type=float, help=f"seconds per benchmark (default {QUICK_TIMEOUT_S:.0f} with --quick, else {FULL_TIMEOUT_S:.0f})")


def _names(only: str | None) -> list[str]:
    from bench import BENCHMARKS

    if not only:
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"--only: unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")
    return names


_PROBE = """
import argparse, importlib, json, sys
names = json.loads(sys.argv[1])
paths = {}
for pkg in %r:
    try:
        paths[pkg] = importlib.import_module(pkg).__file__
    except Exception as exc:
        paths[pkg] = "not importable: %%s" %% exc
from bench import BENCHMARKS
options = {}
for name in names:
    if name not in BENCHMARKS:
        options[name] = None
        continue
    parser = argparse.ArgumentParser()
    importlib.import_module("bench." + name).add_arguments(parser)
    options[name] = sorted(parser._option_string_actions)
print(json.dumps({"paths": paths, "options": options}))
""" % (PACKAGES,)


def probe_tree(tree: Path, env: dict[str, str], names: list[str]) -> dict[str, Any]:
    """Import the packages in ``tree`` as its benchmarks will: their files and each benchmark's options."""
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(names)], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    doc = last_json(out.stdout)
    if out.returncode != 0 or doc is None:
        raise RuntimeError(f"probing {tree} failed: {(out.stdout + out.stderr)[-2000:]}")
    return doc


def tree_env(tree: Path) -> dict[str, str]:
    """This process's environment with ``tree`` first on PYTHONPATH (before the editable install's finder)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class TreeRun:
    """The runs of the suite's benchmarks in one tree (the working tree, or a worktree of a commit)."""

    def __init__(self, tree: Path, quick: bool, label: str, echo: Callable[[str], None] = print) -> None:
        self.tree, self.label, self.echo = tree, label, echo
        self.env = tree_env(tree)
        self.probe: dict[str, Any] = {}
        self.doc: dict[str, Any] = {"host": socket.gethostname(), "tree": str(tree), **git_describe(tree), "quick": quick,
                                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.executable, "benchmarks": {}}

    def check(self, names: list[str]) -> None:
        """Import the packages as the benchmarks will; refuse a tree whose imports resolve elsewhere."""
        self.probe = probe_tree(self.tree, self.env, names)
        self.doc["paths"] = self.probe["paths"]
        for pkg, path in self.probe["paths"].items():
            self.echo(f"[{self.label}] {pkg} from {path}")
            if not str(path).startswith(str(self.tree.resolve()) + os.sep):
                raise RuntimeError(f"{pkg} is imported from {path}, not from {self.tree}: the run would measure the wrong code")

    def run(self, spec: Spec, timeout_s: float, step: str) -> Outcome:
        """Run one benchmark here, with the options it knows here; store and return its outcome."""
        name = spec.name
        options = self.probe.get("options", {}).get(name)
        if options is None:
            self.echo(f"[{self.label}] {step} {name}: not a benchmark here")
            outcome = Outcome(name, False, error="not a benchmark in this tree")
        else:
            args, dropped = known_args(spec.args, set(options))
            self.echo(f"[{self.label}] {step} python -m bench {name} {' '.join(args)}"
                      + (f"  (not known here, left out: {' '.join(dropped)})" if dropped else ""))
            outcome = run_benchmark(name, args, cwd=self.tree, env=self.env, timeout_s=timeout_s, echo=self.echo)
            outcome.dropped_args = dropped
            if outcome.ok:
                self.echo(f"[{self.label}] {name}: done in {outcome.wall_s:.0f} s")
            else:
                self.echo(f"[{self.label}] {name}: FAILED after {outcome.wall_s:.0f} s: {outcome.error}")
        self.doc["benchmarks"][name] = outcome.to_json()
        self.doc["wall_s"] = round(sum(b["wall_s"] for b in self.doc["benchmarks"].values()), 1)
        return outcome


@contextlib.contextmanager
def worktree(rev: str, repo: Path = REPO) -> Iterator[Path]:
    """A detached ``git worktree`` of ``rev`` in a temp folder, removed afterwards."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=repo, capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"--baseline-commit {rev}: not a commit ({commit.stderr.strip()})")
    folder = Path(tempfile.mkdtemp(prefix="fabric-bench-worktree-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit.stdout.strip()], cwd=repo, check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=repo, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()


def _failures(run: dict[str, Any]) -> list[str]:
    return [n for n, b in run["benchmarks"].items() if not b.get("ok")]


def main(args: argparse.Namespace) -> int:
    """``python -m bench all``: run, compare, print; 0 unless a benchmark failed (or ``--strict`` and >20% worse)."""
    names = _names(args.only)
    specs = {n: spec_of(n, quick=args.quick, with_peers=args.with_peers) for n in names}
    timeout_s = args.timeout or (QUICK_TIMEOUT_S if args.quick else FULL_TIMEOUT_S)
    host = socket.gethostname()
    path = baseline_path(baseline_dir(), host, args.quick)
    stored = load_run(path)
    mode = "quick" if args.quick else "full"
    print(f"[bench all] {mode} suite: {', '.join(names)}; baseline file {path} ({'found' if stored else 'none yet'})", flush=True)

    def echo(line: str) -> None:
        print(line, flush=True)

    now_run = TreeRun(REPO, args.quick, "working tree", echo)
    now_run.check(names)
    with contextlib.ExitStack() as stack:
        base_run = None
        if args.baseline_commit:
            tree = stack.enter_context(worktree(args.baseline_commit))
            print(f"[bench all] baseline: {args.baseline_commit} checked out in {tree}; each benchmark runs there, then here", flush=True)
            base_run = TreeRun(tree, args.quick, f"at {args.baseline_commit}", echo)
            base_run.check(names)
        for i, spec in enumerate(specs.values(), 1):  # interleaved: a noisy spell hits both sides of one benchmark alike
            if base_run is not None:
                base_run.run(spec, timeout_s, f"{i}/{len(specs)}")
            now_run.run(spec, timeout_s, f"{i}/{len(specs)}")
    now = now_run.doc
    if base_run is not None:
        baseline = base_run.doc
        baseline_label = f"at {args.baseline_commit} ({baseline['commit']})"
    else:
        baseline = stored
        baseline_label = f"baseline ({stored['commit']}{'+' if stored.get('dirty') else ''}, {stored['started'][:16]})" if stored else "baseline"
    now_label = f"now ({now['commit']}{'+' if now['dirty'] else ''})"

    if baseline is not None:
        rows = compare(baseline, now, specs)
        print(f"\n[bench all] key figures, {baseline_label} against {now_label}; ratio > 1 means now is better:\n", flush=True)
        print(format_table(rows, baseline_label, now_label), flush=True)
        regressed = [r for r in rows if r.regressed]
    else:
        rows, regressed = [], []
        print("\n[bench all] no baseline to compare with: key figures of this run:\n", flush=True)
        print(format_table(compare({"benchmarks": {}}, now, specs), "baseline", now_label), flush=True)
    failed = _failures(now)
    for name in failed:
        print(f"\n[bench all] {name} FAILED: {now['benchmarks'][name]['error']}", flush=True)
    if args.baseline_commit:
        for name in _failures(baseline):
            print(f"\n[bench all] {name} FAILED at {args.baseline_commit}: {baseline['benchmarks'][name]['error']}", flush=True)
    if args.save or stored is None:
        save_run(path, now, stored)
        print(f"\n[bench all] saved this run as the baseline: {path}", flush=True)
    else:
        print(f"\n[bench all] baseline unchanged: {path} (--save stores this run instead)", flush=True)
    print(f"[bench all] {len(names) - len(failed)} of {len(names)} benchmarks ran in {now['wall_s']:.0f} s; "
          f"{len(regressed)} key figures more than 20% worse", flush=True)
    if failed:
        return 1
    return 1 if args.strict and regressed else 0
