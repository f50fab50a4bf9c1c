"""How a cache shard behaves: its byte budget and the read and write patterns it follows.

:class:`CacheSettings` is plain, frozen, picklable data, built from ``cfg.features`` with
:meth:`CacheSettings.from_config` and handed to every ``CacheShard`` actor.

Example:
    >>> s = CacheSettings(cache_bytes=2**20, write_mode="through")
    >>> s.write_mode, s.refresh_ahead
    ('through', 0.8)
    >>> s.replace(write_mode="none").write_mode
    'none'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["WRITE_MODES", "CacheSettings"]

WRITE_MODES = ("through", "behind", "none")


@dataclass(frozen=True)
class CacheSettings:
    """The settings of one cache shard (the defaults are ``FeaturesConfig``'s).

    Attributes:
        cache_bytes: byte budget of the shard's LRU (estimated bytes; see ``docs/cache-shards.md``).
        write_mode: how rows put into the shard reach the online store: ``"through"`` (written
            before ``put`` returns), ``"behind"`` (buffered and written in batches), ``"none"``
            (cache only).
        write_behind_interval_s: longest a buffered row waits before it is written.
        write_behind_rows: buffered rows that trigger a write at once.
        read_through: on a miss, read the online store and keep what it returns.
        refresh_ahead: a hot key whose age passes this fraction of its view's TTL is reloaded
            from the online store in the background (``0``: never).
        refresh_min_hits: hits since its last load that make a key hot.
        miss_ttl_s: how long a key that a read-through did not find is answered ``NOT_FOUND``
            without asking the store again (``0``: ask every time); a put of the key ends it.

    Raises:
        ValueError: a setting out of range, naming it and the value.
    """

    cache_bytes: int = 256 * 2**20
    write_mode: str = "behind"
    write_behind_interval_s: float = 1.0
    write_behind_rows: int = 10_000
    read_through: bool = True
    refresh_ahead: float = 0.8
    refresh_min_hits: int = 3
    miss_ttl_s: float = 1.0

    def __post_init__(self) -> None:
        if self.write_mode not in WRITE_MODES:
            raise ValueError(f"cache write_mode must be one of {list(WRITE_MODES)}; got {self.write_mode!r}")
        if self.cache_bytes <= 0:
            raise ValueError(f"cache_bytes must be positive; got {self.cache_bytes}")
        if self.write_behind_interval_s <= 0:
            raise ValueError(f"write_behind_interval_s must be positive; got {self.write_behind_interval_s}")
        if self.write_behind_rows < 1:
            raise ValueError(f"write_behind_rows must be at least 1; got {self.write_behind_rows}")
        if not 0 <= self.refresh_ahead < 1:
            raise ValueError(f"refresh_ahead must be in [0, 1) (a fraction of the TTL; 0 = off); got {self.refresh_ahead}")
        if self.refresh_min_hits < 1:
            raise ValueError(f"refresh_min_hits must be at least 1; got {self.refresh_min_hits}")
        if not 0 <= self.miss_ttl_s <= 3600:
            raise ValueError(f"miss_ttl_s must be in [0, 3600] seconds (0 = off); got {self.miss_ttl_s}")

    @classmethod
    def from_config(cls, cfg: Any) -> CacheSettings:
        """The settings in ``cfg.features`` (a :class:`~fabric_ray.config.FabricConfig`).

        Example:
            >>> from fabric_ray.config import load_config
            >>> CacheSettings.from_config(load_config(None, features={"write_mode": "through"})).write_mode
            'through'
        """
        f = cfg.features
        return cls(**{name: getattr(f, name) for name in _FIELDS})

    def replace(self, **changes: Any) -> CacheSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


_FIELDS = tuple(f.name for f in dataclasses.fields(CacheSettings))
