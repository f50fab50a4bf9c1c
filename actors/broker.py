"""BrokerActor: hosts the embedded Kafka-protocol broker inside the Ray cluster."""

from __future__ import annotations

import ray

from fabric_ray.broker import EmbeddedBroker

BROKER_NAME = "broker"


@ray.remote(num_cpus=0)
class BrokerActor:
    """Keeps an :class:`~fabric_ray.broker.EmbeddedBroker` alive as long as the actor lives."""

    def __init__(self) -> None:
        self._broker = EmbeddedBroker()

    def bootstrap_servers(self) -> str:
        """The broker's ``host:port``."""
        return self._broker.bootstrap_servers

    def close(self) -> None:
        """Stop the broker."""
        self._broker.close()
