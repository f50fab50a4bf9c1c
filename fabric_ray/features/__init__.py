"""Feature definitions, the hot feature cache, key routing and the Feast HTTP wire format."""

from fabric_ray.features.cache import FeatureCache
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.features.routing import shard_of, split_by_shard

__all__ = ["Entity", "Feature", "FeatureCache", "FeatureView", "shard_of", "split_by_shard"]
