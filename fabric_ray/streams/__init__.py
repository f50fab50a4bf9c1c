"""Stream processing: pipeline definitions, codecs, windows, and the processor that runs them.

Everything here is plain Python over Arrow batches and runs without Ray; the actors in
``actors/`` wrap these objects.
"""

from fabric_ray.streams.aggregates import KeyedWindowAggregate
from fabric_ray.streams.codec import Decoder, DecoderUnavailable
from fabric_ray.streams.confluent_codec import AvroDecoder, JsonSchemaDecoder, RawDecoder
from fabric_ray.streams.json_codec import Decoded, JsonDecoder
from fabric_ray.streams.pipeline import Pipeline, PipelineError
from fabric_ray.streams.processor import PipelineProcessor, ProcessorStats
from fabric_ray.streams.protobuf_codec import ProtobufDecoder
from fabric_ray.streams.records import DeadLetter, RawBatch
from fabric_ray.streams.schema_source import LocalRegistrySource, RegistryHttpSource

__all__ = [
    "AvroDecoder",
    "DeadLetter",
    "Decoded",
    "Decoder",
    "DecoderUnavailable",
    "JsonDecoder",
    "JsonSchemaDecoder",
    "KeyedWindowAggregate",
    "LocalRegistrySource",
    "Pipeline",
    "PipelineError",
    "PipelineProcessor",
    "ProcessorStats",
    "ProtobufDecoder",
    "RawBatch",
    "RawDecoder",
    "RegistryHttpSource",
]
