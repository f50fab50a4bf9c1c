"""PartitionActor: owns some partitions of a topic and runs a PartitionProcessor loop over them.

For now a restarted actor rebuilds its state from the start of the log (exactly-once
checkpoints come with the stream engine); Ray restarts it when it dies.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Sequence

import ray

from actors.cache import ShardedCacheWriter, cache_shard_name
from fabric_ray.config import FabricConfig
from fabric_ray.demo.payments import PAYMENTS_SPEC, USER_PAYMENTS
from fabric_ray.streams.kafka import KafkaDeadLetterSink, KafkaPartitionSource
from fabric_ray.streams.partition import PartitionProcessor

LAG_REFRESH_S = 0.5


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=4)
class PartitionActor:
    """Consume, process and emit the owned partitions in a background loop.

    Args:
        config: the fabric's configuration.
        bootstrap_servers: Kafka address (the embedded broker's when embedded).
        partitions: the owned partition ids.
    """

    def __init__(self, config: FabricConfig, bootstrap_servers: str, partitions: Sequence[int]) -> None:
        s = config.stream
        shards = [ray.get_actor(cache_shard_name(i), namespace=config.ray.namespace) for i in range(s.cache_shards)]
        source = KafkaPartitionSource(
            bootstrap_servers, s.topic, partitions, group_id=s.consumer_group, client=config.kafka.client
        )
        self._processor = PartitionProcessor(
            source,
            PAYMENTS_SPEC,
            ShardedCacheWriter(shards, USER_PAYMENTS),
            KafkaDeadLetterSink(bootstrap_servers, s.dead_letter_topic, config.kafka.client),
            batch_size=s.batch_size,
            poll_timeout_s=s.poll_timeout_s,
        )
        self._partitions = tuple(partitions)
        self._restarts = ray.get_runtime_context().was_current_actor_reconstructed
        self._lag: dict[int, int] = {}
        self._last_error: str | None = None
        self._state = "running"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="partition-loop", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        backoff_s = 0.1
        last_lag = 0.0
        while not self._stop.is_set():
            try:
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
        """Progress since this incarnation started: counters, offsets, lag, throughput."""
        st = self._processor.stats
        return {
            "state": self._state,
            "partitions": self._partitions,
            "processed": st.processed,
            "dead_lettered": st.dead_lettered,
            "offset_gaps": getattr(self._processor.source, "offset_gaps", 0),
            "next_offsets": dict(st.next_offsets),
            "lag": dict(self._lag),
            "throughput_eps": st.read / st.busy_s if st.busy_s > 0 else 0.0,
            "restarts": int(self._restarts),
            "last_error": self._last_error,
        }

    def stop(self) -> None:
        """Finish the batch in hand, then close the consumer."""
        self._stop.set()
        self._thread.join(timeout=30)
        self._processor.close()
        self._state = "stopped"
