"""The bridge to Feast: the fabric's feature repo, read, applied and turned into a :class:`Catalog`.

The feature repo (``cfg.feature_repo``, by default ``feature_store/``) is an ordinary Feast repo.
This module reads it the way ``feast apply`` does (every ``.py`` file not excluded by
``.feastignore``, Feast objects collected at module level) and gives:

* :func:`repo_config` / :func:`feature_store`: Feast's config and ``FeatureStore`` for the
  fabric: registry and online store under the fabric home unless configured otherwise;
* :func:`load_definitions`: the repo's Feast objects (fresh ones on every call);
* :func:`apply`: register them and prepare the online store (``feast apply``), idempotent;
* :func:`load_catalog`: the plain, picklable :class:`~fabric_ray.features.catalog.Catalog` the
  fabric serves from, straight from the definitions (no apply needed);
* :func:`feast_view`: one Feast ``FeatureView``, for calls into Feast's online store interface.

Batch data paths: the repo's file sources read ``$FABRIC_FEATURE_DATA`` (and
``$FABRIC_FEATURE_DATA_S3_ENDPOINT``); while it loads the repo, this module sets them from the
fabric's storage root (:func:`repo_environment`), so the Feast objects point at
``<storage root>/features/<view>/``, where the fabric writes batch features.

Feast is imported inside functions only (``import feast`` takes about 3 s), so importing this
module is cheap.

Example:
    >>> from fabric_ray.config import FabricConfig
    >>> cfg = FabricConfig(home="/tmp/fabric-doc")
    >>> repo_config(cfg).online_store.path
    '/tmp/fabric-doc/features/online.db'
    >>> repo_environment(cfg)["FABRIC_FEATURE_DATA"]
    '/tmp/fabric-doc/storage'
    >>> cat = load_catalog(cfg)
    >>> sorted(cat.views), cat.view("user_daily").ttl_s
    (['merchant_daily', 'user_daily', 'user_payments'], 172800.0)
    >>> cat.push_source("user_daily_push").views, cat.batch_sources["user_daily"].path
    (('user_daily',), 'file:///tmp/fabric-doc/storage/features/user_daily')
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from fabric_ray.config import FabricConfig
from fabric_ray.features.catalog import BatchSource, Catalog, CatalogError, FeatureService, PushSource
from fabric_ray.features.definitions import Entity, Feature, FeatureView

__all__ = [
    "AppliedObject",
    "ApplyReport",
    "FEATURE_DATA_ENV",
    "FEATURE_DATA_S3_ENDPOINT_ENV",
    "FeatureRepoError",
    "apply",
    "feast_view",
    "feature_store",
    "load_catalog",
    "load_definitions",
    "repo_config",
    "repo_environment",
]

FEATURE_DATA_ENV = "FABRIC_FEATURE_DATA"
FEATURE_DATA_S3_ENDPOINT_ENV = "FABRIC_FEATURE_DATA_S3_ENDPOINT"
# A view tagged materialize: "false" is fed by the stream (or pushes) only: no batch source in the catalog.
NO_MATERIALIZE_TAG = "materialize"

# Feast types the fabric serves, by enum name, and the fabric dtype each becomes.
_FIELD_DTYPES = {"INT64": "int64", "INT32": "int64", "FLOAT64": "float64", "FLOAT32": "float64", "STRING": "string", "BOOL": "bool"}
_KEY_DTYPES = {"INT64": "int64", "INT32": "int64", "DOUBLE": "float64", "FLOAT": "float64", "STRING": "string", "BOOL": "bool"}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Feast colours some messages
_lock = threading.RLock()
_cache: dict[tuple, tuple[list[Any], Catalog | None]] = {}
_CACHE_SIZE = 8


class FeatureRepoError(ValueError):
    """The feature repo cannot be loaded or served; the message names the file, view or field."""


def _feast() -> Any:
    """``import feast`` (once; Python keeps the module), with Feast's telemetry off."""
    os.environ.setdefault("FEAST_USAGE", "False")
    import feast

    return feast


def repo_config(cfg: FabricConfig) -> Any:
    """Feast's ``RepoConfig`` for the fabric: project, registry, online store from ``cfg.features``.

    The offline store is Feast's ``file`` store, the provider ``local``, and entity keys use
    serialization version 3, as in ``feature_store/feature_store.yaml``.

    Raises:
        FeatureRepoError: Feast refuses the settings (e.g. an online store type whose Feast extra
            is not installed); the message names ``features.online_store`` and Feast's reason.
    """
    _feast()
    from feast.repo_config import RepoConfig

    try:
        return RepoConfig(
            project=cfg.features.project,
            provider="local",
            registry=cfg.feature_registry,
            online_store=cfg.online_store,
            offline_store={"type": "file"},
            entity_key_serialization_version=3,
            repo_path=cfg.feature_repo,
        )
    except Exception as exc:  # pydantic's ValidationError, Feast's import errors for a missing extra
        reason = f"{exc} ({exc.__cause__})" if exc.__cause__ else str(exc)
        reason = " ".join(_ANSI.sub("", reason).split())
        raise FeatureRepoError(
            f"Feast refuses the feature store settings features.online_store ({_describe_store(cfg.online_store)}) / "
            f"features.registry ({cfg.feature_registry}): {reason}"
        ) from exc


def _local_path(location: str) -> Path | None:
    """The local file behind a registry or online-store path, or ``None`` for a remote one."""
    if "://" in location and not location.startswith("file://"):
        return None
    return Path(location.removeprefix("file://"))


def feature_store(cfg: FabricConfig) -> Any:
    """A Feast ``FeatureStore`` on :func:`repo_config` (its registry folder is created if local).

    Example:
        >>> from fabric_ray.config import FabricConfig
        >>> import tempfile
        >>> feature_store(FabricConfig(home=tempfile.mkdtemp())).project
        'fabric_payments'
    """
    feast = _feast()
    registry = _local_path(cfg.feature_registry)
    if registry is not None:
        registry.parent.mkdir(parents=True, exist_ok=True)
    store = cfg.online_store
    if store.get("type", "sqlite") == "sqlite" and store.get("path"):
        Path(store["path"]).parent.mkdir(parents=True, exist_ok=True)
    return feast.FeatureStore(config=repo_config(cfg))


# -- reading the repo ---------------------------------------------------------------------------
def repo_environment(cfg: FabricConfig) -> dict[str, str]:
    """The environment the repo's definitions read: where batch feature data lives.

    ``FABRIC_FEATURE_DATA`` is the storage root as Feast's file source takes it (a local path
    for ``file://`` roots, the URI for ``s3://``); ``FABRIC_FEATURE_DATA_S3_ENDPOINT`` is the S3
    endpoint when one is configured.
    """
    root = cfg.storage_root
    env = {FEATURE_DATA_ENV: root.removeprefix("file://") if root.startswith("file://") else root}
    if root.startswith("s3://") and cfg.storage.endpoint_url:
        env[FEATURE_DATA_S3_ENDPOINT_ENV] = cfg.storage.endpoint_url
    return env


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    keys = (FEATURE_DATA_ENV, FEATURE_DATA_S3_ENDPOINT_ENV)
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k in keys:
            os.environ.pop(k, None)
        os.environ.update(values)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _repo_files(repo: Path) -> list[Path]:
    if not repo.is_dir():
        raise FeatureRepoError(f"feature repo {repo} is not a folder; set features.repo to the folder of your Feast repo")
    from feast.repo_operations import get_repo_files

    return get_repo_files(repo)


def _module_name(repo: Path, path: Path) -> str:
    """``sub/views.py`` -> ``sub.views``: the name ``feast apply`` imports a repo file under."""
    return ".".join(path.relative_to(repo).with_suffix("").parts)


def _import_file(repo: Path, path: Path) -> Any:
    try:
        return importlib.import_module(_module_name(repo, path))
    except Exception as exc:
        raise FeatureRepoError(f"feature repo file {path}: {type(exc).__name__}: {exc}") from exc


def _collect(modules: list[tuple[Path, Any]]) -> list[Any]:
    """Feast objects at module level, each once (by identity), stream sources' batch sources included."""
    feast = _feast()
    from feast.data_source import DataSource
    from feast.permissions.permission import Permission

    kinds = (feast.Project, DataSource, feast.Entity, feast.FeatureView, feast.OnDemandFeatureView,
             feast.FeatureService, Permission)
    found: list[Any] = []
    seen: set[int] = set()
    names: dict[tuple[str, str], Path] = {}

    def add(obj: Any, path: Path) -> None:
        if id(obj) in seen:
            return
        kind = _kind(obj)
        other = names.get((kind, obj.name))
        if other is not None:
            raise FeatureRepoError(f"feature repo file {path}: a second {kind} named {obj.name!r} (the first is in {other})")
        names[(kind, obj.name)] = path
        seen.add(id(obj))
        found.append(obj)

    for path, module in modules:
        for value in vars(module).values():
            if not isinstance(value, kinds):
                continue
            add(value, path)
            nested = [getattr(value, "batch_source", None)]
            if isinstance(value, feast.FeatureView):
                nested.append(value.stream_source)
            for source in nested:
                if isinstance(source, DataSource):
                    add(source, path)
    return found


def _kind(obj: Any) -> str:
    feast = _feast()
    from feast.data_source import DataSource

    for cls, kind in ((feast.Project, "project"), (DataSource, "data source"), (feast.Entity, "entity"),
                      (feast.OnDemandFeatureView, "on-demand feature view"), (feast.FeatureView, "feature view"),
                      (feast.FeatureService, "feature service")):
        if isinstance(obj, cls):
            return kind
    return "permission"


def _load(cfg: FabricConfig) -> list[Any]:
    repo = cfg.feature_repo
    files = _repo_files(repo)
    if not files:
        raise FeatureRepoError(f"feature repo {repo} has no .py files with Feast definitions")
    names = [_module_name(repo, p) for p in files]
    with _lock, _environment(repo_environment(cfg)), _fresh_modules(repo, names):
        modules = [(path, _import_file(repo, path)) for path in files]
    return _collect(modules)


@contextlib.contextmanager
def _fresh_modules(repo: Path, names: list[str]) -> Iterator[None]:
    """Import the repo's files as ``feast apply`` does (the repo on ``sys.path``, one module per file, so
    files may import each other), from their current text, and forget those modules afterwards."""
    tops = {n.split(".")[0] for n in names}
    for top in sorted(tops):
        if top in sys.modules:
            raise FeatureRepoError(
                f"feature repo {repo}: {top!r} (a file or folder of the repo) has the name of the installed module "
                f"{top!r}; rename it"
            )
    sys.path.insert(0, str(repo))
    no_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the repo
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.dont_write_bytecode = no_bytecode
        with contextlib.suppress(ValueError):
            sys.path.remove(str(repo))
        for k in [k for k in sys.modules if k.split(".")[0] in tops]:
            del sys.modules[k]


def load_definitions(cfg: FabricConfig) -> list[Any]:
    """The Feast objects of the feature repo, imported as ``feast apply`` imports them.

    Every ``.py`` file of ``cfg.feature_repo`` and its sub-folders (but ``__init__.py`` and what
    ``.feastignore`` lists) is imported under its path's module name with the repo on
    ``sys.path`` (so files may import each other) and :func:`repo_environment` set, freshly on
    every call (the modules are forgotten afterwards);
    the Feast objects at module level are returned once each, in file and definition order, the
    batch sources of push sources and views included. Every call returns new objects.

    Raises:
        FeatureRepoError: the repo is missing, a file fails to import (the message names it and
            the error), or two objects of one kind share a name.
    """
    return _load(cfg)


def _cache_key(cfg: FabricConfig) -> tuple:
    repo = cfg.feature_repo
    try:
        stats = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in _repo_files(repo))
    except OSError:
        stats = ()
    return (str(repo), tuple(sorted(repo_environment(cfg).items())), cfg.features.project, stats)


def _remember(key: tuple, objects: list[Any], catalog: Catalog | None) -> None:
    if len(_cache) >= _CACHE_SIZE and key not in _cache:
        _cache.pop(next(iter(_cache)))
    _cache[key] = (objects, catalog)


def _cached(cfg: FabricConfig) -> tuple[tuple, list[Any], Catalog | None]:
    """Definitions (shared objects: do not change them) and catalog, reloaded when a repo file changes."""
    key = _cache_key(cfg)
    with _lock:
        hit = _cache.get(key)
        if hit is None:
            hit = (_load(cfg), None)
            _remember(key, *hit)
        return key, hit[0], hit[1]


# -- the catalog ------------------------------------------------------------------------------------
def _field_dtype(view: str, field: Any) -> str:
    name = getattr(field.dtype, "name", None)
    if name not in _FIELD_DTYPES:
        raise FeatureRepoError(
            f"feature view {view!r}: field {field.name!r} has Feast type {field.dtype}; the fabric serves "
            f"Int64, Int32, Float64, Float32, String and Bool"
        )
    return _FIELD_DTYPES[name]


def _entity(view: Any, entities: dict[str, Any]) -> Entity:
    if len(view.entities) != 1:
        raise FeatureRepoError(
            f"feature view {view.name!r} has entities {list(view.entities)}; the fabric serves views of exactly one entity"
        )
    name = view.entities[0]
    ent = entities.get(name)
    if ent is None:
        raise FeatureRepoError(f"feature view {view.name!r}: entity {name!r} is not defined in the feature repo")
    key = ent.join_key  # Feast 0.67 refuses several join keys itself
    dtype = _KEY_DTYPES.get(ent.value_type.name)
    if dtype is None:  # no value_type given: the view's schema types the key
        column = next((f for f in view.entity_columns if f.name == key), None)
        if column is None:
            raise FeatureRepoError(
                f"entity {name!r}: give it a value_type (e.g. ValueType.INT64) or list {key!r} in the schema of {view.name!r}"
            )
        dtype = _field_dtype(view.name, column)
    return Entity(name, join_key=key, dtype=dtype)


def _batch_uri(path: str, repo: Path) -> str:
    parsed = urlparse(path)
    if path.startswith("file://") or (parsed.scheme and parsed.netloc):
        return path.rstrip("/")
    local = Path(path) if Path(path).is_absolute() else repo / path
    return "file://" + str(local.resolve())


def _catalog(cfg: FabricConfig, objects: list[Any]) -> Catalog:
    feast = _feast()
    from feast.data_source import PushSource as FeastPushSource

    entities = {o.name: o for o in objects if isinstance(o, feast.Entity)}
    odfvs = [o.name for o in objects if isinstance(o, feast.OnDemandFeatureView)]
    if odfvs:
        raise FeatureRepoError(f"on-demand feature views {odfvs} are not served by the fabric; remove them or move them to a repo of their own")
    feast_views = [o for o in objects if isinstance(o, feast.FeatureView)]
    views, batch = [], {}
    for fv in feast_views:
        ttl_s = fv.ttl.total_seconds() if fv.ttl else None
        features = tuple(Feature(f.name, _field_dtype(fv.name, f)) for f in fv.features)
        try:
            views.append(FeatureView(fv.name, _entity(fv, entities), features, ttl_s or None))
        except ValueError as exc:
            raise FeatureRepoError(str(exc)) from exc
        source = fv.batch_source
        if isinstance(source, feast.FileSource) and fv.tags.get(NO_MATERIALIZE_TAG, "").lower() != "false":
            batch[fv.name] = BatchSource(
                path=_batch_uri(source.path, cfg.feature_repo),
                timestamp_field=source.timestamp_field,
                created_timestamp_column=source.created_timestamp_column or None,
            )
    pushes = [
        PushSource(o.name, tuple(fv.name for fv in feast_views if fv.stream_source is not None and fv.stream_source.name == o.name))
        for o in objects if isinstance(o, FeastPushSource)
    ]
    services = []
    for svc in (o for o in objects if isinstance(o, feast.FeatureService)):
        refs = []
        for projection in svc.feature_view_projections:
            if projection.name_alias and projection.name_alias != projection.name:
                raise FeatureRepoError(
                    f"feature service {svc.name!r}: view {projection.name!r} is aliased as {projection.name_alias!r}; "
                    "the fabric serves views under their own names"
                )
            refs.extend((projection.name, f.name) for f in projection.features)
        services.append(FeatureService(svc.name, tuple(refs)))
    try:
        return Catalog.of(views, services=services, push_sources=pushes, batch_sources=batch)
    except CatalogError as exc:
        raise FeatureRepoError(f"feature repo {cfg.feature_repo}: {exc}") from exc


def load_catalog(cfg: FabricConfig) -> Catalog:
    """The :class:`Catalog` of the feature repo: views, feature services, push sources, batch sources.

    Built from the definitions alone (``apply`` need not have run), and cached until a repo file
    changes. Views keep their Feast names; Feast types map to the fabric's dtypes (Int64 and
    Int32 to ``int64``, Float64 and Float32 to ``float64``, String, Bool); a Feast TTL of 0 or
    none means no max age. A push source lists the views whose ``source`` it is. Each view with a
    Parquet ``FileSource`` has a batch source (its path as a ``file://`` or ``s3://`` URI), unless
    the view is tagged ``materialize: "false"`` (fed by the stream only).

    Raises:
        FeatureRepoError: the repo does not load, or a view uses something the fabric does not
            serve (another type, several entities or join keys, an on-demand view, an alias);
            the message names the view and field.
    """
    key, objects, catalog = _cached(cfg)
    if catalog is None:
        catalog = _catalog(cfg, objects)
        with _lock:
            _remember(key, objects, catalog)
    return catalog


def feast_view(cfg: FabricConfig, name: str) -> Any:
    """The Feast ``FeatureView`` called ``name`` from the repo (for Feast's online store calls).

    The object is shared (cached with the definitions): read it, do not change it.

    Raises:
        CatalogError: no such view; the message lists the known ones.
    """
    feast = _feast()
    _, objects, _ = _cached(cfg)
    views = {o.name: o for o in objects if isinstance(o, feast.FeatureView)}
    try:
        return views[name]
    except KeyError:
        raise CatalogError(f"unknown feature view {name!r}; the feature repo {cfg.feature_repo} has {sorted(views)}") from None


# -- apply ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppliedObject:
    """One object of an apply: its kind (``entity``, ``feature view`` ...), name and what happened.

    ``status`` is ``new``, ``changed``, ``unchanged`` or ``deleted`` (in the registry, gone from the repo).
    """

    kind: str
    name: str
    status: str


@dataclass(frozen=True)
class ApplyReport:
    """What :func:`apply` did.

    Attributes:
        project: the Feast project.
        registry: the registry path.
        online_store: the online store's type (and path or connection, for messages).
        objects: every object of the repo (and every one deleted), in apply order.
        online_views: views whose online tables the online store was asked to prepare.
    """

    project: str
    registry: str
    online_store: str
    objects: tuple[AppliedObject, ...]
    online_views: tuple[str, ...]

    @property
    def changed(self) -> int:
        """Objects that are new, changed or deleted."""
        return sum(o.status != "unchanged" for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {
            "project": self.project, "registry": self.registry, "online_store": self.online_store,
            "objects": [o.__dict__ for o in self.objects], "online_views": list(self.online_views), "changed": self.changed,
        }


def _describe_store(store: dict[str, Any]) -> str:
    kind = store.get("type", "sqlite")
    where = store.get("path") or store.get("connection_string") or ""
    if "://" in str(where) and "@" in str(where):  # no passwords in reports
        scheme, rest = str(where).split("://", 1)
        where = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    elif kind == "redis" and "password=" in str(where):
        where = ",".join("password=***" if p.startswith("password=") else p for p in str(where).split(","))
    return f"{kind} {where}".strip()


def _registered(store: Any, project: str) -> list[Any]:
    registry = store.registry
    found: list[Any] = []
    for fn in ("list_projects", "list_data_sources", "list_entities", "list_feature_views", "list_stream_feature_views",
               "list_on_demand_feature_views", "list_feature_services", "list_permissions"):
        if fn == "list_projects":
            found.extend(p for p in registry.list_projects(allow_cache=False) if p.name == project)
        else:
            found.extend(getattr(registry, fn)(project, allow_cache=False))
    return [o for o in found if not o.name.startswith("__")]  # Feast's own dummy entity


def apply(cfg: FabricConfig) -> ApplyReport:
    """Register the repo's definitions in the registry and prepare the online store (``feast apply``).

    Objects in the registry of ``cfg.features.project`` that the repo no longer defines are
    deleted, with their online tables, as ``feast apply`` does. Applying an unchanged repo
    changes nothing (every object reports ``unchanged``). Data sources are not read.

    Raises:
        FeatureRepoError: the repo does not load, defines another project, or uses something
            the fabric does not serve (checked first: nothing is applied then).

    Example:
        >>> import tempfile
        >>> from fabric_ray.config import FabricConfig
        >>> cfg = FabricConfig(home=tempfile.mkdtemp())
        >>> apply(cfg).changed > 0, apply(cfg).changed
        (True, 0)
    """
    feast = _feast()
    objects = load_definitions(cfg)
    _catalog(cfg, objects)  # refuse what the fabric cannot serve before touching the registry
    project = cfg.features.project
    projects = [o for o in objects if isinstance(o, feast.Project)]
    for p in projects:
        if p.name != project:
            raise FeatureRepoError(f"feature repo {cfg.feature_repo} defines project {p.name!r}; features.project is {project!r}")
    if not projects:
        objects.insert(0, feast.Project(name=project))
    store = feature_store(cfg)
    before = {(_kind(o), o.name): o for o in _registered(store, project)}
    wanted = {(_kind(o), o.name) for o in objects}
    stale = [o for key, o in before.items() if key not in wanted]
    rows = []
    for o in objects:
        old = before.get((_kind(o), o.name))
        status = "new" if old is None else "unchanged" if _same(old, o) else "changed"
        rows.append(AppliedObject(_kind(o), o.name, status))
    rows.extend(AppliedObject(_kind(o), o.name, "deleted") for o in stale)
    store.apply(objects, objects_to_delete=stale, partial=False)
    online = tuple(o.name for o in objects if isinstance(o, feast.FeatureView) and o.online)
    return ApplyReport(project, cfg.feature_registry, _describe_store(cfg.online_store), tuple(rows), online)


def _same(old: Any, new: Any) -> bool:
    if _kind(new) == "project":  # registry projects carry timestamps Feast's __eq__ compares
        return (old.name, old.description, old.tags, old.owner) == (new.name, new.description, new.tags, new.owner)
    return old == new
