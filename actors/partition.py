"""PartitionActor: owns some partitions of a pipeline's topic and runs a PipelineProcessor loop over them.

The processor restores each partition from its latest checkpoint (state and next offset), so a
restarted actor (Ray restarts it when it dies) continues exactly where its last checkpoint was.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from typing import Any, Sequence

import ray

from actors.cache import ShardedCacheWriter, cache_shard_name
from fabric_ray.config import FabricConfig
from fabric_ray.runtime import record_restart
from fabric_ray.storage.fs import open_location
from fabric_ray.streams.assignment import owner_name, restart_backoff_s
from fabric_ray.streams.checkpoint import CheckpointStore
from fabric_ray.streams.kafka import KafkaDeadLetterSink, KafkaPartitionSource
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.streams.sinks import bind_sinks

LAG_REFRESH_S = 0.5


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=4)
class PartitionActor:
    """Consume, process and emit the owned partitions in a background loop.

    Args:
        config: the fabric's configuration.
        bootstrap_servers: Kafka address (the embedded broker's when embedded).
        pipeline: what to run.
        partitions: the owned partition ids.
        start: where partitions without a checkpoint begin: ``{"offsets": {p: offset}}`` or
            ``{"timestamp_ms": ms}`` (default: the beginning of the log).
    """

    def __init__(
        self,
        config: FabricConfig,
        bootstrap_servers: str,
        pipeline: Pipeline,
        partitions: Sequence[int],
        start: dict[str, Any] | None = None,
    ) -> None:
        s = config.stream
        ns = config.ray.namespace
        self._restarts = ray.get_runtime_context().was_current_actor_reconstructed
        if self._restarts:  # back off when crashing over and over (Ray itself restarts at once)
            time.sleep(restart_backoff_s(record_restart(f"{ns}/{owner_name(pipeline.name, partitions)}")))
        storage = open_location(config.storage_root, config.storage)

        def cache_writer(view: Any) -> ShardedCacheWriter:
            shards = [ray.get_actor(cache_shard_name(i), namespace=ns) for i in range(s.cache_shards)]
            return ShardedCacheWriter(shards, view)

        sinks = bind_sinks(pipeline, storage=storage, bootstrap_servers=bootstrap_servers, client=config.kafka.client, cache_writer=cache_writer)
        source = KafkaPartitionSource(
            bootstrap_servers, pipeline.topic, partitions, group_id=pipeline.group_id, client=config.kafka.client
        )
        start_offsets = None
        if start and "offsets" in start:
            start_offsets = {int(p): int(o) for p, o in start["offsets"].items()}
        elif start and "timestamp_ms" in start:
            start_offsets = source.offsets_for_timestamp(int(start["timestamp_ms"]))
        checkpoints = None
        if s.checkpoints:
            root = storage.child("checkpoints")
            checkpoints = lambda p: CheckpointStore(root, pipeline.name, pipeline.topic, p)  # noqa: E731
        self._processor = PipelineProcessor(
            source,
            pipeline,
            sinks,
            KafkaDeadLetterSink(bootstrap_servers, pipeline.dead_letters, config.kafka.client),
            checkpoints=checkpoints,
            checkpoint_interval_s=s.checkpoint_interval_s,
            batch_size=s.batch_size,
            poll_timeout_s=s.poll_timeout_s,
            start_offsets=start_offsets,
            background_checkpoints=True,
        )
        self._partitions = tuple(partitions)
        self._incarnation = uuid.uuid4().hex
        self._lag: dict[int, int] = {}
        self._last_error: str | None = None
        self._state = "running"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="partition-loop", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        backoff_s = 0.1
        last_lag = 0.0
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._processor.next_batch()
                if time.monotonic() - last_lag > LAG_REFRESH_S:
                    self._lag = self._processor.lag()
                    last_lag = time.monotonic()
                backoff_s = 0.1
            except Exception:  # keep the partition alive; the error is reported in stats()
                self._last_error = traceback.format_exc(limit=3)
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    def stats(self) -> dict[str, Any]:
        """Progress: counters (exact across restarts), offsets, lag, throughput of this incarnation."""
        st = self._processor.stats
        return {
            "state": self._state,
            "partitions": self._partitions,
            "processed": st.processed,
            "dead_lettered": st.dead_lettered,
            "reasons": st.reasons,
            "outputs_suppressed": st.outputs_suppressed,
            "letters_suppressed": st.letters_suppressed,
            "per_partition": {p: c.to_json() for p, c in st.partitions.items()},
            "offset_gaps": getattr(self._processor.source, "offset_gaps", 0),
            "next_offsets": dict(st.next_offsets),
            "lag": dict(self._lag),
            "checkpoints": st.checkpoints,
            "restored_from": dict(st.restored_from),
            "throughput_eps": st.read / st.busy_s if st.busy_s > 0 else 0.0,
            "batches": st.batches,
            "stages": st.stages.summary(),
            "restarts": int(self._restarts),
            "incarnation": self._incarnation,
            "last_error": self._last_error,
        }

    def checkpoint(self) -> None:
        """Checkpoint now (between batches)."""
        with self._lock:
            self._processor.checkpoint()

    def stop(self) -> None:
        """Finish the batch in hand, checkpoint, then close the consumer."""
        self._stop.set()
        self._thread.join(timeout=30)
        with self._lock:
            self._processor.close()
        self._state = "stopped"
