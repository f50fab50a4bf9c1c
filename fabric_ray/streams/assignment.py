"""Which actor owns which partitions, and the roll-up of their progress. Plain logic for the supervisor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from fabric_ray.streams.stage_latency import worst_of

__all__ = ["OwnerStatus", "assign_new_partitions", "assign_partitions", "owner_name", "restart_backoff_s", "summarize"]


def assign_partitions(partitions: Iterable[int], per_actor: int) -> list[tuple[int, ...]]:
    """Group partitions into owners of at most ``per_actor`` consecutive partitions each.

    Example:
        >>> assign_partitions(range(5), 2)
        [(0, 1), (2, 3), (4,)]
    """
    if per_actor < 1:
        raise ValueError(f"partitions_per_actor must be >= 1; got {per_actor}")
    parts = sorted(set(int(p) for p in partitions))
    return [tuple(parts[i : i + per_actor]) for i in range(0, len(parts), per_actor)]


def assign_new_partitions(owned: Iterable[Sequence[int]], partition_count: int, per_actor: int) -> list[tuple[int, ...]]:
    """Groups for the partitions no owner holds yet; existing owners keep theirs.

    Used when a topic gains partitions: regrouping everything would give a partition two owners.

    Example:
        >>> assign_new_partitions([(0, 1), (2,)], 5, 2)
        [(3, 4)]
    """
    held = {int(p) for group in owned for p in group}
    return assign_partitions([p for p in range(partition_count) if p not in held], per_actor)


def restart_backoff_s(recent_restarts: int, cap_s: float = 30.0) -> float:
    """How long a restarted owner waits before it starts, given its restarts in the last minute.

    The first restart is immediate; a crash loop backs off exponentially (0.5 s, 1 s, 2 s, ... up to
    ``cap_s``), so an owner that cannot start (storage away, a broken pipeline) does not spin.

    Example:
        >>> [restart_backoff_s(n) for n in (1, 2, 3, 4, 10)]
        [0.0, 0.5, 1.0, 2.0, 30.0]
    """
    if recent_restarts <= 1:
        return 0.0
    return min(cap_s, 0.5 * 2 ** (recent_restarts - 2))


def owner_name(topic: str, partitions: Sequence[int]) -> str:
    """Stable actor name of the owner of ``partitions``.

    Example:
        >>> owner_name("payments", (0, 1))
        'partition:payments:0-1'
    """
    return f"partition:{topic}:{'-'.join(str(p) for p in partitions)}"


@dataclass
class OwnerStatus:
    """What one partition owner reported (or that it did not answer)."""

    name: str
    partitions: tuple[int, ...]
    state: str = "running"
    processed: int = 0
    dead_lettered: int = 0
    offset_gaps: int = 0
    lag: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    throughput_eps: float = 0.0
    restarts: int = 0
    checkpoints: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    outputs_suppressed: int = 0
    letters_suppressed: int = 0
    per_partition: dict[int, dict[str, Any]] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_error: str | None = None

    @classmethod
    def from_report(cls, name: str, partitions: Sequence[int], report: Mapping[str, Any]) -> OwnerStatus:
        """Build from a partition actor's ``stats()`` dictionary."""
        return cls(
            name=name,
            partitions=tuple(partitions),
            state=str(report.get("state", "running")),
            processed=int(report.get("processed", 0)),
            dead_lettered=int(report.get("dead_lettered", 0)),
            offset_gaps=int(report.get("offset_gaps", 0)),
            lag={int(k): int(v) for k, v in dict(report.get("lag", {})).items()},
            next_offsets={int(k): int(v) for k, v in dict(report.get("next_offsets", {})).items()},
            throughput_eps=float(report.get("throughput_eps", 0.0)),
            restarts=int(report.get("restarts", 0)),
            checkpoints=int(report.get("checkpoints", 0)),
            reasons={str(k): int(v) for k, v in dict(report.get("reasons", {})).items()},
            outputs_suppressed=int(report.get("outputs_suppressed", 0)),
            letters_suppressed=int(report.get("letters_suppressed", 0)),
            per_partition={int(k): dict(v) for k, v in dict(report.get("per_partition", {})).items()},
            stages={str(k): dict(v) for k, v in dict(report.get("stages", {})).items()},
            last_error=report.get("last_error"),
        )


def summarize(owners: Sequence[OwnerStatus]) -> dict[str, Any]:
    """Totals over all owners: processed, dead-lettered, lag, and whether all are caught up.

    ``caught_up`` is true when every owner answered and no partition has lag. ``stages`` gives,
    per stage, the latency figures of the owner slowest there (:mod:`.stage_latency`).

    Example:
        >>> s = summarize([OwnerStatus("a", (0,), processed=3, lag={0: 0})])
        >>> s["processed"], s["caught_up"]
        (3, True)
    """
    lag = {p: v for o in owners for p, v in o.lag.items()}
    reasons: dict[str, int] = {}
    for o in owners:
        for kind, n in o.reasons.items():
            reasons[kind] = reasons.get(kind, 0) + n
    return {
        "owners": len(owners),
        "partitions": sum(len(o.partitions) for o in owners),
        "processed": sum(o.processed for o in owners),
        "dead_lettered": sum(o.dead_lettered for o in owners),
        "offset_gaps": sum(o.offset_gaps for o in owners),
        "lag": sum(lag.values()),
        "throughput_eps": sum(o.throughput_eps for o in owners),
        "restarts": sum(o.restarts for o in owners),
        "reasons": reasons,
        "outputs_suppressed": sum(o.outputs_suppressed for o in owners),
        "letters_suppressed": sum(o.letters_suppressed for o in owners),
        "stages": worst_of(o.stages for o in owners),
        "caught_up": bool(owners) and all(o.state == "running" and o.lag for o in owners) and not any(lag.values()),
    }
