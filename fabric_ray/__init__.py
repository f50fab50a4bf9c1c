"""fabric_ray: a data fabric on Ray.

Kafka streams and object storage in, governed real-time data products out: partition-owning
actors compute features, cache shards keep them hot, Ray Serve serves them over HTTP in Feast's
wire format.

Example:
    >>> from fabric_ray import load_config
    >>> load_config(None).stream.topic
    'payments'
"""

from fabric_ray.config import ConfigError, FabricConfig, load_config
from fabric_ray.fabric import Fabric, connect
from fabric_ray.features.definitions import Entity, Feature, FeatureView

__all__ = ["ConfigError", "Entity", "Fabric", "FabricConfig", "Feature", "FeatureView", "connect", "load_config"]
__version__ = "0.1.0"
