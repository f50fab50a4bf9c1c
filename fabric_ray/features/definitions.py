"""Declarations of entities, features and feature views: immutable, validated, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

__all__ = ["Entity", "Feature", "FeatureView"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DTYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} must be an identifier (letters, digits, underscores)")


@dataclass(frozen=True)
class Entity:
    """What features describe, and the key that identifies one.

    Example:
        >>> Entity("user", join_key="user_id", dtype="int64").arrow_type
        DataType(int64)
    """

    name: str
    join_key: str
    dtype: str = "int64"

    def __post_init__(self) -> None:
        _check_name("entity", self.name)
        _check_name(f"entity {self.name!r} join key", self.join_key)
        if self.dtype not in _DTYPES:
            raise ValueError(f"entity {self.name!r}: dtype must be one of {sorted(_DTYPES)}; got {self.dtype!r}")

    @property
    def arrow_type(self) -> pa.DataType:
        """The key's Arrow type."""
        return _DTYPES[self.dtype]


@dataclass(frozen=True)
class Feature:
    """One named, typed value of an entity."""

    name: str
    dtype: str

    def __post_init__(self) -> None:
        _check_name("feature", self.name)
        if self.dtype not in _DTYPES:
            raise ValueError(f"feature {self.name!r}: dtype must be one of {sorted(_DTYPES)}; got {self.dtype!r}")


@dataclass(frozen=True)
class FeatureView:
    """A group of features of one entity, kept fresh together.

    Args:
        name: view name, as in ``"user_payments:txn_count"``.
        entity: the entity the features describe.
        features: the features, in order.
        ttl_s: age after which a value is reported ``OUTSIDE_MAX_AGE`` (``None``: never).

    Example:
        >>> v = FeatureView("v", Entity("user", "user_id"), (Feature("n", "int64"),))
        >>> v.feature_names
        ('n',)
    """

    name: str
    entity: Entity
    features: tuple[Feature, ...]
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        _check_name("feature view", self.name)
        if not self.features:
            raise ValueError(f"feature view {self.name!r} has no features")
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature view {self.name!r}: duplicate features {dupes}")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise ValueError(f"feature view {self.name!r}: ttl_s must be positive or None; got {self.ttl_s}")
        if self.entity.join_key in names:
            raise ValueError(f"feature view {self.name!r}: feature name {self.entity.join_key!r} clashes with the join key")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the features, in order."""
        return tuple(f.name for f in self.features)
