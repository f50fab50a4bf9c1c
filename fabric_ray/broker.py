"""The embedded Kafka-protocol broker: librdkafka's mock cluster, hosted by one process.

It speaks the real Kafka protocol on loopback, so producers and consumers use exactly the
code path they use against a real cluster. Why this broker and what it cannot do:
``docs/broker.md``. Run it standalone with ``python -m fabric_ray.broker``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from confluent_kafka import Producer

__all__ = ["EmbeddedBroker", "main"]


class EmbeddedBroker:
    """A Kafka-protocol broker living inside this process until :meth:`close`.

    Topics are created on first use with 4 partitions (the mock cluster's default).

    Args:
        brokers: number of brokers in the mock cluster.

    Example:
        >>> b = EmbeddedBroker()
        >>> b.bootstrap_servers.startswith("127.0.0.1:")
        True
        >>> b.close()
    """

    def __init__(self, brokers: int = 1) -> None:
        self._host = Producer({"test.mock.num.brokers": brokers, "log_level": 4})
        md = self._host.list_topics(timeout=10)
        self.bootstrap_servers = ",".join(f"{b.host}:{b.port}" for b in sorted(md.brokers.values(), key=lambda b: b.id))

    def close(self) -> None:
        """Stop the broker; its data is gone."""
        self._host = None


def main(argv: list[str] | None = None) -> int:
    """Run a broker until SIGTERM or SIGINT; print (and optionally write) its address as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m fabric_ray.broker",
        description="Run the embedded Kafka-protocol broker (librdkafka mock cluster) on loopback "
        "until interrupted. Prints one JSON line with bootstrap_servers.",
    )
    parser.add_argument("--ready-file", type=Path, help="also write the JSON line to this file once listening")
    parser.add_argument("--brokers", type=int, default=1, help="brokers in the cluster (default 1)")
    args = parser.parse_args(argv)
    broker = EmbeddedBroker(args.brokers)
    info = json.dumps({"bootstrap_servers": broker.bootstrap_servers, "pid": os.getpid()})
    print(info, flush=True)
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(info)
        tmp.replace(args.ready_file)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
