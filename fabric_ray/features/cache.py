"""The hot feature cache of one shard: the latest values per entity key, per feature view."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Hashable, Sequence

import pyarrow as pa

from fabric_ray.features.definitions import FeatureView

__all__ = ["FeatureCache", "Lookup"]

PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE = "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"


@dataclass(frozen=True)
class Lookup:
    """Values of some features for some keys, column-major.

    Attributes:
        values: ``{feature: [value per key]}``.
        statuses: ``{feature: [status per key]}`` (Feast's ``PRESENT``, ``NOT_FOUND``, ...).
        event_ms: event time of each key's row (``None`` where not found).
    """

    values: dict[str, list]
    statuses: dict[str, list[str]]
    event_ms: list[int | None]


class FeatureCache:
    """Latest feature values per key, last write wins.

    Rows arrive as Arrow tables holding the view's join key, its features and an
    ``event_ts_ms`` column; a row older than the one held is ignored, so replays and
    out-of-order writers cannot move a value backwards.

    Args:
        views: the feature views this cache may hold.

    Example:
        >>> import pyarrow as pa
        >>> from fabric_ray.features.definitions import Entity, Feature, FeatureView
        >>> v = FeatureView("v", Entity("user", "user_id"), (Feature("n", "int64"),))
        >>> c = FeatureCache([v])
        >>> c.put("v", pa.table({"user_id": [1], "n": [3], "event_ts_ms": [10]}))
        1
        >>> c.get("v", [1, 2], ["n"]).statuses
        {'n': ['PRESENT', 'NOT_FOUND']}
    """

    def __init__(self, views: Sequence[FeatureView]) -> None:
        self.views = {v.name: v for v in views}
        self._rows: dict[str, dict[Hashable, tuple]] = {name: {} for name in self.views}

    def _view(self, name: str) -> FeatureView:
        try:
            return self.views[name]
        except KeyError:
            raise KeyError(f"unknown feature view {name!r}; known: {sorted(self.views)}") from None

    def put(self, view_name: str, table: pa.Table) -> int:
        """Store the rows of ``table``; return how many were newer than what was held."""
        view = self._view(view_name)
        columns = [view.entity.join_key, *view.feature_names, "event_ts_ms"]
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ValueError(f"rows for view {view_name!r} lack columns {missing}")
        rows = self._rows[view_name]
        data = [table[c].to_pylist() for c in columns]
        stored = 0
        for key, *rest in zip(*data):
            held = rows.get(key)
            if held is None or held[-1] is None or (rest[-1] is not None and rest[-1] >= held[-1]):
                rows[key] = tuple(rest)
                stored += 1
        return stored

    def get(self, view_name: str, keys: Sequence[Hashable], features: Sequence[str], *, now_ms: int | None = None) -> Lookup:
        """Look up ``features`` of ``keys`` in view ``view_name``."""
        view = self._view(view_name)
        names = view.feature_names
        unknown = [f for f in features if f not in names]
        if unknown:
            raise KeyError(f"feature view {view_name!r} has no features {unknown}; it has {list(names)}")
        idx = [names.index(f) for f in features]
        rows = self._rows[view_name]
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        max_age_ms = None if view.ttl_s is None else view.ttl_s * 1000
        values: dict[str, list] = {f: [] for f in features}
        statuses: dict[str, list[str]] = {f: [] for f in features}
        event_ms: list[int | None] = []
        for key in keys:
            row = rows.get(key)
            event_ms.append(None if row is None else row[-1])
            stale = row is not None and max_age_ms is not None and row[-1] is not None and now_ms - row[-1] > max_age_ms
            for f, i in zip(features, idx):
                if row is None:
                    values[f].append(None)
                    statuses[f].append(NOT_FOUND)
                elif row[i] is None:
                    values[f].append(None)
                    statuses[f].append(NULL_VALUE)
                else:
                    values[f].append(row[i])
                    statuses[f].append(OUTSIDE_MAX_AGE if stale else PRESENT)
        return Lookup(values, statuses, event_ms)

    def size(self, view_name: str) -> int:
        """Number of keys held for a view."""
        return len(self._rows[self._view(view_name).name])
