"""Negative caching for read-through: keys the online store did not have, remembered for a while.

Without it every read of an unknown key goes to the online store again: a client polling for
an entity that has not arrived yet, or asking for ids that do not exist, turns each of its
requests into a store query (the classic "cache penetration"). A cache shard remembers the keys
a read-through did not find for ``ttl_ms``; reads of them within that time answer
``NOT_FOUND`` from memory. A row put into the shard (a stream update, a push, materialization
through the fabric) forgets its key at once, so streamed values are readable as soon as they
are cached. What the memory can hide is a row written to the online store by *another* writer
(say ``feast materialize`` run by hand) for at most ``ttl_ms`` after a read missed it.

Not thread-safe: :class:`~fabric_ray.features.cache_shard.ShardCore` calls it under its lock.

Example:
    >>> m = MissMemory(ttl_ms=1000)
    >>> m.remember("v", [1, 2], now_ms=0)
    >>> m.absent("v", [1, 2, 3], now_ms=500)
    [True, True, False]
    >>> m.forget("v", [1])           # a row for key 1 arrived
    >>> m.absent("v", [1, 2], now_ms=999), m.absent("v", [2], now_ms=1000)
    ([False, True], [False])
"""

from __future__ import annotations

from typing import Hashable, Iterable, Sequence

__all__ = ["MissMemory"]


class MissMemory:
    """Keys known absent from the online store, per view, each until its expiry time.

    Args:
        ttl_ms: how long a miss is remembered (``0``: never; every miss reads through).
        max_keys: most keys remembered per view; past it, expired ones are dropped, then the
            oldest half (a full memory only costs extra store reads, never a wrong answer
            about a key that has a cached row).
    """

    def __init__(self, ttl_ms: float, max_keys: int = 100_000) -> None:
        if ttl_ms < 0:
            raise ValueError(f"miss ttl must not be negative; got {ttl_ms} ms")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1; got {max_keys}")
        self.ttl_ms = float(ttl_ms)
        self.max_keys = int(max_keys)
        self._until: dict[str, dict[Hashable, float]] = {}

    def __bool__(self) -> bool:
        return self.ttl_ms > 0

    def remember(self, view: str, keys: Iterable[Hashable], now_ms: float) -> None:
        """Note that the store had none of ``keys`` at ``now_ms``."""
        if not self.ttl_ms:
            return
        held = self._until.setdefault(view, {})
        until = now_ms + self.ttl_ms
        for key in keys:
            held.pop(key, None)  # re-insert: dict order stays oldest first
            held[key] = until
        if len(held) > self.max_keys:
            self._prune(held, now_ms)

    def _prune(self, held: dict[Hashable, float], now_ms: float) -> None:
        for key in [k for k, t in held.items() if t <= now_ms]:
            del held[key]
        if len(held) > self.max_keys:
            for key in list(held)[: len(held) - self.max_keys // 2]:
                del held[key]

    def absent(self, view: str, keys: Sequence[Hashable], now_ms: float) -> list[bool]:
        """For each key, whether a miss is remembered and not yet expired."""
        held = self._until.get(view)
        if not held:
            return [False] * len(keys)
        get = held.get
        return [get(k, 0.0) > now_ms for k in keys]

    def forget(self, view: str, keys: Iterable[Hashable]) -> None:
        """Forget ``keys`` (rows for them arrived)."""
        held = self._until.get(view)
        if held:
            pop = held.pop
            for key in keys:
                pop(key, None)

    def size(self, view: str) -> int:
        """Keys remembered for ``view`` (expired ones included until pruned)."""
        return len(self._until.get(view, ()))
