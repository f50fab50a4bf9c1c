"""``python -m bench NAME [options]``: run one benchmark; its last output line is one JSON object.

``python -m bench all --quick``: every benchmark in a short mode against this machine's last run (:mod:`bench.suite`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from bench import BENCHMARKS, exit_on_sigterm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run one benchmark of fabric_ray against its peers. The last line printed is one JSON "
        "object; every ratio_vs_* figure is > 1 when fabric_ray is ahead.",
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, summary in BENCHMARKS.items():
        module = importlib.import_module(f"bench.{name}")
        bench_parser = sub.add_parser(name, help=summary, description=module.__doc__.split("\n\n")[0])
        module.add_arguments(bench_parser)
    from bench import suite

    suite.add_arguments(sub.add_parser("all", help=suite.SUMMARY, description=suite.__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.name == "all":
        return suite.main(args)

    def say(line: str) -> None:
        print(f"[{args.name} {time.strftime('%H:%M:%S')}] {line}", flush=True)

    started = time.monotonic()
    result = importlib.import_module(f"bench.{args.name}").run(args, say)
    print(json.dumps({"bench": args.name, **result, "wall_s": round(time.monotonic() - started, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
