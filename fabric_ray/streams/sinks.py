"""Bind a pipeline's sink steps to real sinks: cache shards, the Parquet archive, Kafka topics.

The pipeline names its sinks and says what each is (``sink("features", to="cache", ...)``);
this module turns that into objects for the fabric. ``run_local`` binds every sink to a
collector instead.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import pyarrow as pa
from fabric_ray.storage.fs import StorageLocation
from fabric_ray.streams.archive import ParquetArchive
from fabric_ray.streams.kafka import AckedProducer
from fabric_ray.streams.pipeline import Pipeline

__all__ = ["KafkaTopicSink", "bind_sinks"]


class KafkaTopicSink:
    """Produce rows to a topic as JSON objects, keyed by ``key_column`` when given.

    ``write`` returns once the broker acknowledged every row.
    """

    def __init__(self, bootstrap_servers: str, topic: str, key_column: str | None = None, client: Mapping[str, str] | None = None) -> None:
        self.topic = topic
        self.key_column = key_column
        self._out = AckedProducer(bootstrap_servers, topic, client, what="output topic")

    def write(self, table: pa.Table) -> None:
        """Produce every row and wait for the acknowledgements.

        Raises:
            KafkaException: a row could not be delivered.
        """
        col = self.key_column
        self._out.send_all(
            (None if col is None else str(row.get(col)).encode(), json.dumps(row, default=str).encode(), None)
            for row in table.to_pylist()
        )


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
            sinks[step.name] = KafkaTopicSink(bootstrap_servers, o["topic"], o.get("key_column"), client)
        else:
            why = "collect sinks exist only in run_local" if to == "collect" else f"no {to} resource was given"
            raise ValueError(f"pipeline {pipeline.name!r}, sink {step.name!r}: cannot bind a {to} sink here ({why})")
    return sinks
