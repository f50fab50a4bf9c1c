"""Stream processing logic: sources, codecs, keyed window state and the partition processor.

Everything here is plain Python over Arrow batches and runs without Ray; the actors in
``actors/`` wrap these objects.
"""

from fabric_ray.streams.aggregates import KeyedWindowAggregate
from fabric_ray.streams.json_codec import Decoded, JsonDecoder
from fabric_ray.streams.partition import PartitionProcessor, PartitionStats
from fabric_ray.streams.records import DeadLetter, RawBatch

__all__ = [
    "DeadLetter",
    "Decoded",
    "JsonDecoder",
    "KeyedWindowAggregate",
    "PartitionProcessor",
    "PartitionStats",
    "RawBatch",
]
