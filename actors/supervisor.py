"""StreamSupervisor: one per pipeline; discovers its topic's partitions, starts their owners, reports progress.

A background thread checks the partition count every ``stream.partition_check_s`` and starts
owners for partitions the topic gained (existing owners keep theirs). Owners that die are
restarted by Ray (``max_restarts=-1``) and resume from their partitions' checkpoints.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

import ray

from actors.partition import PartitionActor
from fabric_ray.config import FabricConfig
from fabric_ray.streams.assignment import OwnerStatus, assign_new_partitions, owner_name, summarize
from fabric_ray.streams.kafka import partition_count
from fabric_ray.streams.pipeline import Pipeline


def supervisor_name(pipeline_name: str) -> str:
    """Actor name of the supervisor of the pipeline called ``pipeline_name``."""
    return f"supervisor:{pipeline_name}"


@ray.remote(num_cpus=0, max_concurrency=4)
class StreamSupervisor:
    """Owns the partition actors of one pipeline (explicit assignment, no group rebalancing).

    Partition actors are created by this actor, so they die with it.
    """

    def __init__(self, config: FabricConfig, bootstrap_servers: str, pipeline: Pipeline, start: dict[str, Any] | None = None) -> None:
        self._start = start
        self._config = config
        self._bootstrap = bootstrap_servers
        self._pipeline = pipeline
        self._owners: dict[str, tuple[tuple[int, ...], Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_error: str | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> list[str]:
        """Start an owner for every partition not yet owned, and the partition watcher; return the owner names."""
        self._add_owners()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="partition-watch", daemon=True)
            self._watcher.start()
        return list(self._owners)

    def _add_owners(self) -> list[str]:
        with self._lock:
            n = partition_count(self._bootstrap, self._pipeline.topic, self._config.kafka.client)
            added = []
            owned = [parts for parts, _ in self._owners.values()]
            for parts in assign_new_partitions(owned, n, self._config.stream.partitions_per_actor):
                name = owner_name(self._pipeline.name, parts)
                actor = PartitionActor.options(
                    name=name,
                    namespace=self._config.ray.namespace,
                    num_cpus=self._config.ray.actor_num_cpus,
                ).remote(self._config, self._bootstrap, self._pipeline, parts, self._start)
                self._owners[name] = (parts, actor)
                added.append(name)
            return added

    def _watch(self) -> None:
        while not self._stop.wait(self._config.stream.partition_check_s):
            try:
                self._add_owners()
            except Exception:  # the broker may be briefly away; try again next round
                self._last_error = traceback.format_exc(limit=2)

    def owners(self) -> dict[str, tuple[int, ...]]:
        """Owner name to owned partitions."""
        return {name: parts for name, (parts, _) in self._owners.items()}

    def status(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Per-owner progress and the totals; owners that do not answer show as ``unreachable``."""
        refs = {name: actor.stats.remote() for name, (_, actor) in list(self._owners.items())}
        owners = []
        for name, ref in refs.items():
            parts = self._owners[name][0]
            try:
                owners.append(OwnerStatus.from_report(name, parts, ray.get(ref, timeout=timeout_s)))
            except (ray.exceptions.RayError, TimeoutError) as exc:
                owners.append(OwnerStatus(name, parts, state="unreachable", last_error=type(exc).__name__))
        return {
            "pipeline": self._pipeline.name,
            "topic": self._pipeline.topic,
            "summary": summarize(owners),
            "owners": [vars(o) for o in owners],
            "last_error": self._last_error,
        }

    def checkpoint(self, timeout_s: float = 60) -> None:
        """Make every owner checkpoint now."""
        ray.get([actor.checkpoint.remote() for _, actor in self._owners.values()], timeout=timeout_s)

    def stop(self) -> None:
        """Drain: every owner finishes its batch, checkpoints and closes; then end them."""
        self._stop.set()
        refs = [actor.stop.remote() for _, actor in self._owners.values()]
        try:
            ray.get(refs, timeout=30)
        except (ray.exceptions.RayError, TimeoutError):
            pass
        for _, actor in self._owners.values():
            ray.kill(actor, no_restart=True)
        self._owners.clear()
