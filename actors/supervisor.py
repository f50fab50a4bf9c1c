"""StreamSupervisor: discovers a topic's partitions, starts their owners, reports progress."""

from __future__ import annotations

from typing import Any

import ray

from actors.partition import PartitionActor
from fabric_ray.config import FabricConfig
from fabric_ray.streams.assignment import OwnerStatus, assign_partitions, owner_name, summarize
from fabric_ray.streams.kafka import partition_count


def supervisor_name(topic: str) -> str:
    """Actor name of the supervisor of ``topic``."""
    return f"supervisor:{topic}"


@ray.remote(num_cpus=0, max_concurrency=4)
class StreamSupervisor:
    """Owns the partition actors of one topic (explicit assignment, no group rebalancing).

    Partition actors are created by this actor, so they die with it; Ray restarts a partition
    actor that dies on its own.
    """

    def __init__(self, config: FabricConfig, bootstrap_servers: str) -> None:
        self._config = config
        self._bootstrap = bootstrap_servers
        self._owners: dict[str, tuple[tuple[int, ...], Any]] = {}

    def start(self) -> list[str]:
        """Start an owner for every partition not yet owned; return the owner names."""
        s = self._config.stream
        n = partition_count(self._bootstrap, s.topic, self._config.kafka.client)
        for parts in assign_partitions(range(n), s.partitions_per_actor):
            name = owner_name(s.topic, parts)
            if name in self._owners:
                continue
            actor = PartitionActor.options(
                name=name,
                namespace=self._config.ray.namespace,
                num_cpus=self._config.ray.actor_num_cpus,
            ).remote(self._config, self._bootstrap, parts)
            self._owners[name] = (parts, actor)
        return list(self._owners)

    def owners(self) -> dict[str, tuple[int, ...]]:
        """Owner name to owned partitions."""
        return {name: parts for name, (parts, _) in self._owners.items()}

    def status(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Per-owner progress and the totals; owners that do not answer show as ``unreachable``."""
        refs = {name: actor.stats.remote() for name, (_, actor) in self._owners.items()}
        owners = []
        for name, ref in refs.items():
            parts = self._owners[name][0]
            try:
                owners.append(OwnerStatus.from_report(name, parts, ray.get(ref, timeout=timeout_s)))
            except (ray.exceptions.RayError, TimeoutError) as exc:
                owners.append(OwnerStatus(name, parts, state="unreachable", last_error=type(exc).__name__))
        return {"topic": self._config.stream.topic, "summary": summarize(owners), "owners": [vars(o) for o in owners]}

    def stop(self) -> None:
        """Stop every owner cleanly, then end them."""
        refs = [actor.stop.remote() for _, actor in self._owners.values()]
        try:
            ray.get(refs, timeout=30)
        except (ray.exceptions.RayError, TimeoutError):
            pass
        for _, actor in self._owners.values():
            ray.kill(actor, no_restart=True)
        self._owners.clear()
