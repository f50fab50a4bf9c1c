"""What the fabric serves: feature views, feature services, push sources and batch sources.

A :class:`Catalog` is plain, picklable data (no Feast objects), so actors and Serve replicas
get it as an argument. :func:`fabric_ray.features.feast_repo.load_catalog` builds one from the
Feast feature repo; tests build them by hand.

Example:
    >>> from fabric_ray.features.definitions import Entity, Feature, FeatureView
    >>> v = FeatureView("v", Entity("user", "user_id"), (Feature("n", "int64"), Feature("m", "float64")))
    >>> cat = Catalog.of([v], services=[FeatureService("svc", (("v", "n"),))])
    >>> cat.resolve(feature_service="svc")
    [('v', 'n')]
    >>> cat.resolve(features=["v:m"])
    [('v', 'm')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from fabric_ray.features.definitions import FeatureView

__all__ = ["BatchSource", "Catalog", "CatalogError", "FeatureService", "PushSource"]


class CatalogError(KeyError):
    """A name the catalog does not know; ``status`` is the HTTP status to answer with (404)."""

    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class FeatureService:
    """A named list of ``(view, feature)`` references, e.g. every feature a model needs."""

    name: str
    refs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PushSource:
    """A named entry point for pushed rows (Feast's ``PushSource``): it feeds ``views``."""

    name: str
    views: tuple[str, ...]


@dataclass(frozen=True)
class BatchSource:
    """Where a view's offline rows live: Parquet under ``path`` (a URI or local path).

    Attributes:
        path: Parquet file or folder (``file://``, ``s3://`` or a local path).
        timestamp_field: event-time column.
        created_timestamp_column: tie-breaker column for equal event times (optional).
    """

    path: str
    timestamp_field: str
    created_timestamp_column: str | None = None


@dataclass(frozen=True)
class Catalog:
    """Feature views by name, plus the services, push sources and batch sources over them."""

    views: Mapping[str, FeatureView]
    services: Mapping[str, FeatureService] = field(default_factory=dict)
    push_sources: Mapping[str, PushSource] = field(default_factory=dict)
    batch_sources: Mapping[str, BatchSource] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        views: Iterable[FeatureView],
        services: Iterable[FeatureService] = (),
        push_sources: Iterable[PushSource] = (),
        batch_sources: Mapping[str, BatchSource] | None = None,
    ) -> Catalog:
        """Build and validate a catalog: every reference must name a known view and feature."""
        cat = cls(
            {v.name: v for v in views},
            {s.name: s for s in services},
            {p.name: p for p in push_sources},
            dict(batch_sources or {}),
        )
        for svc in cat.services.values():
            cat.check_refs(svc.refs, where=f"feature service {svc.name!r}")
        for push in cat.push_sources.values():
            for view in push.views:
                cat.view(view, where=f"push source {push.name!r}")
        for view in cat.batch_sources:
            cat.view(view, where="batch sources")
        return cat

    def view(self, name: str, *, where: str = "") -> FeatureView:
        """The view called ``name``.

        Raises:
            CatalogError: no such view; the message lists the known ones.
        """
        try:
            return self.views[name]
        except KeyError:
            at = f" in {where}" if where else ""
            raise CatalogError(f"unknown feature view {name!r}{at}; known views: {sorted(self.views)}") from None

    def check_refs(self, refs: Sequence[tuple[str, str]], *, where: str = "") -> None:
        """Raise :class:`CatalogError` for the first reference to an unknown view or feature."""
        for view_name, feature in refs:
            view = self.view(view_name, where=where)
            if feature not in view.feature_names:
                at = f" in {where}" if where else ""
                raise CatalogError(
                    f"feature view {view_name!r} has no feature {feature!r}{at}; it has {list(view.feature_names)}"
                )

    def resolve(self, *, features: Sequence[str] | None = None, feature_service: str | None = None) -> list[tuple[str, str]]:
        """``(view, feature)`` pairs for a list of ``"view:feature"`` strings or a feature service.

        Raises:
            ValueError: both or neither given, or a reference not shaped ``view:feature``.
            CatalogError: an unknown service, view or feature.
        """
        if (features is None) == (feature_service is None):
            raise ValueError("give either 'features' (a list of 'view:feature') or 'feature_service', not both")
        if feature_service is not None:
            try:
                return list(self.services[feature_service].refs)
            except KeyError:
                raise CatalogError(
                    f"unknown feature service {feature_service!r}; known services: {sorted(self.services)}"
                ) from None
        refs: list[tuple[str, str]] = []
        for ref in features or ():
            if not isinstance(ref, str) or ref.count(":") != 1:
                raise ValueError(f"feature reference {ref!r} must look like 'view:feature'")
            view, feature = ref.split(":")
            refs.append((view, feature))
        self.check_refs(refs)
        return refs

    def push_source(self, name: str) -> PushSource:
        """The push source called ``name``.

        Raises:
            CatalogError: no such push source; the message lists the known ones.
        """
        try:
            return self.push_sources[name]
        except KeyError:
            raise CatalogError(f"unknown push source {name!r}; known push sources: {sorted(self.push_sources)}") from None
