"""``python -m bench.peers.check``: run each stream peer and check its answer against the reference.

Runs Bytewax and Quix Streams on the same ``--events`` payloads (default 20000), asserts that
each one's windows equal :func:`bench.peers.events.reference` (counts exactly, sums and means to
1e-6 relative), and prints events/s for each. Exits 1 if any peer's answer differs.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.peers.events import HOP_MS, SIZE_MS, compare, make_events, reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per peer (default 20000)")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct user_ids (default 10000)")
    parser.add_argument("--size-ms", type=int, default=SIZE_MS, help="window size (default 10 minutes)")
    parser.add_argument("--hop-ms", type=int, default=HOP_MS, help="window hop (default 1 minute)")
    parser.add_argument("--only", choices=["bytewax", "quix"], help="run one peer only")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"[peers {time.strftime('%H:%M:%S')}] {line}", flush=True)

    events = make_events(args.events, keys=args.keys)
    want = reference(events, args.size_ms, args.hop_ms)
    say(f"{len(events)} events, {args.keys} keys, windows {args.size_ms} ms every {args.hop_ms} ms: "
        f"{len(want)} windows expected")
    failed = []
    if args.only in (None, "bytewax"):
        from bench.peers.bytewax_peer import run_bytewax

        failed += _report(run_bytewax(events, args.size_ms, args.hop_ms), want, say)
    if args.only in (None, "quix"):
        from bench.peers.quix_peer import run_quix

        failed += _report(run_quix(events, args.size_ms, args.hop_ms, say=say), want, say)
    if failed:
        say(f"FAILED: {', '.join(failed)}")
        return 1
    say("all peers match the reference")
    return 0


def _report(result, want, say) -> list[str]:  # noqa: ANN001
    problems = compare(result.results, want)
    say(f"{result.engine}: {result.events} events in {result.elapsed_s:.2f} s timed = "
        f"{result.events_per_s:,.0f} events/s (wall {result.wall_s:.1f} s; {result.notes})")
    if problems:
        for problem in problems:
            say(f"{result.engine} MISMATCH: {problem}")
        return [result.engine]
    say(f"{result.engine}: all {len(want)} windows match the reference")
    return []


if __name__ == "__main__":
    sys.exit(main())
