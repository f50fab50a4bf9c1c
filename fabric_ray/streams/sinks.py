"""Bind a pipeline's sink steps to real sinks: cache shards, the Parquet archive, Kafka topics.

The pipeline names its sinks and says what each is (``sink("features", to="cache", ...)``);
this module turns that into objects for the fabric. ``run_local`` binds every sink to a
collector instead.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa

from fabric_ray.storage.fs import StorageLocation
from fabric_ray.streams.archive import ParquetArchive
from fabric_ray.streams.kafka import AckedProducer, TopicLog
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.records import PIPELINE_HEADER, SINK_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER

__all__ = ["KafkaTopicSink", "bind_sinks"]


class KafkaTopicSink:
    """Produce rows to a topic as JSON objects, keyed by ``key_column`` when given.

    Every message carries headers naming its origin (``origin``: the pipeline, the sink and the
    source topic; :meth:`write_from` adds the source partition and offset). The pipeline
    processor does not call ``write``: it encodes rows with :meth:`encode`, lets its output guard
    drop what a crashed incarnation already produced, and sends the rest with :meth:`produce`
    (see :mod:`.output_guard`); ``log`` reads the topic back for that guard.

    Every write returns once the broker acknowledged every row.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        key_column: str | None = None,
        client: Mapping[str, str] | None = None,
        *,
        origin: Mapping[str, str] | None = None,
    ) -> None:
        self.topic = topic
        self.key_column = key_column
        self._origin = [(k, str(v).encode()) for k, v in (origin or {}).items()]
        self._out = AckedProducer(bootstrap_servers, topic, client, what="output topic")
        self.log = TopicLog(bootstrap_servers, topic, client)

    def encode(self, table: pa.Table) -> list[tuple[bytes | None, bytes]]:
        """Each row's ``(key, value)`` as it is produced: the key column as text, the row as JSON."""
        col = self.key_column
        return [
            (None if col is None else str(row.get(col)).encode(), json.dumps(row, default=str).encode())
            for row in table.to_pylist()
        ]

    def produce(self, messages: Iterable[tuple[bytes | None, bytes | None, list | None]]) -> None:
        """Produce ``(key, value, headers)`` triples and wait for every acknowledgement.

        Raises:
            KafkaException: a message could not be delivered.
        """
        self._out.send_all(messages)

    def write(self, table: pa.Table) -> None:
        """Produce every row and wait for the acknowledgements.

        Raises:
            KafkaException: a row could not be delivered.
        """
        self.produce((k, v, list(self._origin)) for k, v in self.encode(table))

    def write_from(self, partition: int, offsets: np.ndarray, table: pa.Table) -> None:
        """Like :meth:`write`, with each row's source partition and offset (-1: an aggregate row) in headers."""
        part = (SOURCE_PARTITION_HEADER, str(int(partition)).encode())
        self.produce(
            (k, v, [*self._origin, part, (SOURCE_OFFSET_HEADER, str(int(o)).encode())])
            for (k, v), o in zip(self.encode(table), offsets.tolist())
        )

    def close(self) -> None:
        """Leave the broker (the read-back consumer)."""
        self.log.close()


def bind_sinks(
    pipeline: Pipeline,
    *,
    storage: StorageLocation | None = None,
    bootstrap_servers: str | None = None,
    client: Mapping[str, str] | None = None,
    cache_writer: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """A sink object per sink step of ``pipeline``.

    Args:
        storage: the storage root (archive sinks write under ``archive/<pipeline>/<topic>/``).
        bootstrap_servers: Kafka address (Kafka sinks).
        client: librdkafka settings for Kafka sinks.
        cache_writer: ``feature_view -> writer`` for cache sinks.

    Raises:
        ValueError: a sink step cannot be bound here (a ``collect`` sink on the fabric, or a
            missing resource), naming the step.
    """
    sinks: dict[str, Any] = {}
    for step in pipeline.steps:
        if step.kind != "sink":
            continue
        o = step.options
        to = o["to"]
        if to == "cache" and cache_writer is not None:
            sinks[step.name] = cache_writer(o["feature_view"])
        elif to == "archive" and storage is not None:
            # one folder per pipeline: two pipelines archiving one topic must not share offset-range names
            sinks[step.name] = ParquetArchive(storage.child("archive", pipeline.name), pipeline.topic, time_column=o.get("time_column"))
        elif to == "kafka" and bootstrap_servers is not None:
            origin = {PIPELINE_HEADER: pipeline.name, SINK_HEADER: step.name, SOURCE_TOPIC_HEADER: pipeline.topic}
            sinks[step.name] = KafkaTopicSink(bootstrap_servers, o["topic"], o.get("key_column"), client, origin=origin)
        else:
            why = "collect sinks exist only in run_local" if to == "collect" else f"no {to} resource was given"
            raise ValueError(f"pipeline {pipeline.name!r}, sink {step.name!r}: cannot bind a {to} sink here ({why})")
    return sinks
