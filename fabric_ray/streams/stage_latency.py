"""Where a stream's latency goes: rolling percentiles per stage of a partition owner.

An owner records, for its recent messages and batches, how long each stage took:

* ``queue``: from a message's produce time (its Kafka timestamp, ``CreateTime``) to the owner
  reading it: the producer's batching, the broker, the fetch, and any wait for the owner;
* ``broker``: the same, for messages read by an owner that was idle, waiting for them: the
  producer's batching, the broker and the fetch alone (the rest of ``queue`` is the owner's backlog);
* ``decode``: decoding a batch into Arrow (per batch);
* ``steps``: every step after decoding: validate, map, key, windows, aggregates (per batch);
* ``sink:NAME``: delivering a batch's rows to one sink, e.g. the cache shards (per batch);
* ``end_to_end``: from a message's produce time to the end of its batch's deliveries, when its
  results are readable in every sink (per message).

Message stages compare the producer's clock with the owner's: on one machine they agree; across
machines their skew adds in. A reader of the cache adds its own read time on top (the
``stream_latency`` benchmark prints that too), so a regression names its stage.

Example:
    >>> lat = StageLatencies(keep=8)
    >>> for ms in (1.0, 2.0, 3.0, 100.0):
    ...     lat.record("decode", ms)
    >>> lat.summary()["decode"]["p50_ms"], lat.summary()["decode"]["max_ms"], lat.summary()["decode"]["samples"]
    (2.5, 100.0, 4)
    >>> slow = {"decode": {"p50_ms": 9.0, "p99_ms": 300.0, "max_ms": 300.0, "samples": 1}}
    >>> worst_of([lat.summary(), slow])["decode"]["p50_ms"]  # the owner with the highest p99
    9.0
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["StageLatencies", "flow_order", "stage_line", "worst_of"]


class StageLatencies:
    """The last ``keep`` samples (milliseconds) of each stage, in ring buffers.

    Args:
        keep: samples kept per stage (older ones are overwritten).
    """

    def __init__(self, keep: int = 4096) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1; got {keep}")
        self.keep = keep
        self._rings: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}

    def record(self, stage: str, ms: float | np.ndarray) -> None:
        """Add one sample, or an array of samples (e.g. one per message of a batch)."""
        values = np.atleast_1d(np.asarray(ms, dtype=np.float64))
        if values.size == 0:
            return
        seen = values.size
        if values.size > self.keep:
            values = values[-self.keep :]
        ring = self._rings.get(stage)
        if ring is None:
            ring = self._rings[stage] = np.empty(self.keep, np.float64)
            self._counts[stage] = 0
        start = self._counts[stage] % self.keep
        first = min(values.size, self.keep - start)
        ring[start : start + first] = values[:first]
        if first < values.size:
            ring[: values.size - first] = values[first:]
        self._counts[stage] += seen

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{stage: {"p50_ms", "p99_ms", "max_ms", "samples"}}`` over the samples kept."""
        out = {}
        for stage, ring in self._rings.items():
            held = ring[: min(self._counts[stage], self.keep)]
            p50, p99 = np.percentile(held, [50, 99])
            out[stage] = {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3),
                          "max_ms": round(float(held.max()), 3), "samples": int(self._counts[stage])}
        return out


def worst_of(summaries: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per stage, the figures of the owner with the highest p99 (percentiles cannot be merged)."""
    out: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        for stage, figures in summary.items():
            if stage not in out or figures["p99_ms"] > out[stage]["p99_ms"]:
                out[stage] = dict(figures)
    return out


def stage_line(stages: Mapping[str, Mapping[str, Any]]) -> str:
    """One line for ``fabric status``: p50/p99 per stage, in the order data flows.

    Example:
        >>> stage_line({"end_to_end": {"p50_ms": 40.0, "p99_ms": 90.5}, "queue": {"p50_ms": 8.0, "p99_ms": 20.0}})
        'queue 8/20 ms, end_to_end 40/90 ms (p50/p99, slowest owner)'
    """
    parts = [f"{n} {stages[n]['p50_ms']:.0f}/{stages[n]['p99_ms']:.0f} ms" for n in flow_order(stages)]
    return ", ".join(parts) + " (p50/p99, slowest owner)"


def flow_order(stages: Iterable[str]) -> list[str]:
    """Stage names in the order data flows (sinks by name, unknown stages last, by name).

    Example:
        >>> flow_order(["end_to_end", "read", "sink:b", "queue", "sink:a"])
        ['queue', 'sink:a', 'sink:b', 'end_to_end', 'read']
    """
    names = set(stages)
    order = ["broker", "queue", "decode", "steps", *sorted(s for s in names if s.startswith("sink:")), "end_to_end"]
    return [s for s in order if s in names] + sorted(names - set(order))
