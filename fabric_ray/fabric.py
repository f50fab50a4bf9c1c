"""The ``Fabric`` facade: start or attach to a fabric on Ray, reach its parts, stop it.

Example (needs Ray; see ``tests/integration``)::

    with Fabric(load_config()).start() as fabric:
        print(fabric.status()["stream"]["summary"])
        fabric.features.get_online(["user_payments:txn_count"], {"user_id": [1, 2]})
        fabric.features.push("user_payments_push", {"user_id": [1], ...})

From another process that can reach the cluster, ``fabric_ray.connect("auto")`` gives the same
handles without starting anything.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Sequence

from fabric_ray.config import ConfigError, FabricConfig, load_config
from fabric_ray.demo.payments import payments_pipeline

__all__ = ["Fabric", "connect"]

class Fabric:
    """One fabric: broker (when embedded), cache shards, stream supervisor and feature server.

    Args:
        config: the configuration (default: :func:`~fabric_ray.config.load_config`).
    """

    def __init__(self, config: FabricConfig | None = None) -> None:
        self.config = config or load_config()
        self.bootstrap_servers: str | None = self.config.kafka.bootstrap_servers
        self._started_ray = False
        self.demo_product_problem: str | None = None
        self._supervisor: Any = None
        self._shards: list[Any] = []
        self._catalog: Any = None
        self._features: Any = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, *, serve_http: bool = True, dashboard: bool = False) -> Fabric:
        """Start Ray (or connect), the broker if embedded, the actors and the HTTP endpoint.

        The feature repo is loaded (:func:`~fabric_ray.features.feast_repo.load_catalog`) and
        applied (its online tables created), and the cache shards get the catalog, the cache
        settings of ``features`` and the online store behind them. Idempotent: actors that
        already exist in the namespace are reused.

        Args:
            serve_http: deploy the HTTP feature server too.
            dashboard: with a new local Ray cluster, start its dashboard (for ``ray job submit``).
        """
        import ray

        from actors.broker import BROKER_NAME, BrokerActor
        from actors.supervisor import StreamSupervisor, supervisor_name
        from fabric_ray.loopback import ingress_env
        from fabric_ray.runtime import ensure_ray, get_or_create_actor

        cfg = self.config
        ns = cfg.ray.namespace
        if serve_http and cfg.ray.address is None and not ray.is_initialized():
            _check_port_free(cfg.serving.host, cfg.serving.port)
        env = {**ingress_env(cfg.serving.ingress), "RAY_worker_niceness": str(cfg.ray.worker_niceness)}
        self._started_ray = ensure_ray(cfg.ray, dashboard=dashboard, env=env)
        if cfg.kafka.embedded:
            broker = get_or_create_actor(BrokerActor, BROKER_NAME, ns)
            self.bootstrap_servers = ray.get(broker.bootstrap_servers.remote())
        assert self.bootstrap_servers is not None
        self._ensure_topics(cfg.stream.topic, cfg.stream.dead_letter_topic)
        self._start_cache_shards()
        if cfg.registry.enabled:
            from actors.registry import RegistryActor, registry_actor_name

            get_or_create_actor(RegistryActor, registry_actor_name(), ns, cfg.metadata_url)
            self.demo_product_problem = _apply_demo_product(cfg.metadata_url)
        demo = payments_pipeline(cfg.stream.topic, cfg.stream.dead_letter_topic, cfg.stream.window_ms, cfg.stream.consumer_group)
        self._supervisor = get_or_create_actor(
            StreamSupervisor, supervisor_name(demo.name), ns, cfg, self.bootstrap_servers, demo
        )
        ray.get(self._supervisor.start.remote())
        if serve_http:
            self._deploy_serving()
        self._wait_for_cache_shards()
        return self

    def _wait_for_cache_shards(self, timeout_s: float = 120) -> None:
        """Return once every cache shard has opened its online store, so a started fabric
        answers its first reads at full speed; a shard that failed says so in ``status()``."""
        import ray

        try:
            ray.get([s.ready.remote(timeout_s) for s in self._shards], timeout=timeout_s + 10)
        except (ray.exceptions.GetTimeoutError, TimeoutError):
            pass  # still warming: reads wait for it; status() shows the shards' state

    def _start_cache_shards(self) -> None:
        """Load and apply the feature repo; start the cache shards in front of its online store."""
        import functools

        from actors.cache import CacheShard, cache_shard_name
        from fabric_ray.features.cache_settings import CacheSettings
        from fabric_ray.features.feast_repo import apply, load_catalog
        from fabric_ray.features.online_store import OnlineStore
        from fabric_ray.runtime import get_or_create_actor

        cfg = self.config
        self._catalog = load_catalog(cfg)
        apply(cfg)  # registry entries and the online store's tables, before any read-through
        store_factory = functools.partial(OnlineStore, cfg, self._catalog)  # picklable; opened in the shard
        settings = CacheSettings.from_config(cfg)
        self._shards = [
            get_or_create_actor(
                CacheShard, cache_shard_name(i), cfg.ray.namespace, self._catalog, settings, store_factory,
                num_cpus=cfg.ray.actor_num_cpus,
            )  # fmt: skip
            for i in range(cfg.stream.cache_shards)
        ]
        self._features = None

    def _deploy_serving(self) -> None:
        from ray import serve

        from serving.features import build_app

        cfg = self.config
        serve.start(http_options={"host": cfg.serving.host, "port": cfg.serving.port})
        app = build_app(
            {
                "namespace": cfg.ray.namespace,
                "cache_shards": cfg.stream.cache_shards,
                "catalog": self._catalog,
                "serving": cfg.serving.model_dump(),
                "num_cpus": cfg.ray.actor_num_cpus,
            }
        )
        serve.run(app, name=self.serve_app_name, route_prefix=cfg.serving.route_prefix)
        if cfg.registry.enabled:
            from serving.registry import build_app as build_registry_app

            registry_app = build_registry_app({"namespace": cfg.ray.namespace, "replicas": cfg.serving.replicas})
            serve.run(registry_app, name=self.registry_app_name, route_prefix=cfg.registry.route_prefix)

    @property
    def serve_app_name(self) -> str:
        """Name of this fabric's Serve application."""
        return f"{self.config.ray.namespace}-features"

    @property
    def registry_app_name(self) -> str:
        """Name of this fabric's schema-registry Serve application."""
        return f"{self.config.ray.namespace}-schema-registry"

    def attach(self, timeout_s: float = 30) -> Fabric:
        """Find the actors of a fabric that is already up (see :func:`connect`).

        Raises:
            LookupError: no fabric runs in the configured namespace.
        """
        import ray

        from actors.broker import BROKER_NAME
        from actors.cache import cache_shard_name
        from actors.supervisor import supervisor_name
        from fabric_ray.runtime import ensure_ray, find_actor, wait_for_actor

        cfg = self.config
        ns = cfg.ray.namespace
        ensure_ray(cfg.ray)
        self._supervisor = wait_for_actor(supervisor_name(cfg.stream.topic), ns, timeout_s)
        self._shards = [wait_for_actor(cache_shard_name(i), ns, timeout_s) for i in range(cfg.stream.cache_shards)]
        self._catalog, self._features = None, None  # loaded on first use of .features
        if cfg.kafka.embedded and (broker := find_actor(BROKER_NAME, ns)) is not None:
            self.bootstrap_servers = ray.get(broker.bootstrap_servers.remote())
        return self

    def stop(self) -> None:
        """Stop the stream, remove the actors and the HTTP application; shut Ray down if started here."""
        import ray
        from ray import serve

        from actors.broker import BROKER_NAME
        from actors.cache import cache_shard_name
        from actors.supervisor import supervisor_name
        from fabric_ray.runtime import kill_actor

        cfg = self.config
        ns = cfg.ray.namespace
        if not ray.is_initialized():
            return
        if self._supervisor is not None:
            try:
                ray.get(self._supervisor.stop.remote(), timeout=60)
            except (ray.exceptions.RayError, TimeoutError):
                pass
        for app in (self.serve_app_name, self.registry_app_name):
            try:
                serve.delete(app)
            except Exception:  # Serve was never started in this cluster
                pass
        from actors.registry import registry_actor_name

        kill_actor(registry_actor_name(), ns)  # its data stays in the metadata store
        for name in self._pipeline_supervisors():
            self.stop_pipeline(name)
        kill_actor(supervisor_name(cfg.stream.topic), ns)
        self._stop_cache_shards()
        for i in range(cfg.stream.cache_shards):
            kill_actor(cache_shard_name(i), ns)
        kill_actor(BROKER_NAME, ns)
        self._supervisor, self._shards, self._features = None, [], None
        if self._started_ray:  # everything goes with the cluster, Serve included
            ray.shutdown()
            self._started_ray = False

    def _stop_cache_shards(self, timeout_s: float = 30) -> None:
        """Let the cache shards write their write-behind rows to the online store before they go."""
        import ray

        from actors.cache import cache_shard_name
        from fabric_ray.runtime import find_actor

        shards = [find_actor(cache_shard_name(i), self.config.ray.namespace) for i in range(self.config.stream.cache_shards)]
        refs = [s.stop.remote() for s in shards if s is not None]
        try:
            ray.get(refs, timeout=timeout_s)
        except (ray.exceptions.RayError, TimeoutError):
            pass  # a shard that cannot flush now loses only what waited in its buffer

    def __enter__(self) -> Fabric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use -----------------------------------------------------------------------------------
    def _require_started(self) -> None:
        if self._supervisor is None:
            raise RuntimeError("this Fabric is not started: call start() or attach() first (or use fabric_ray.connect())")

    def status(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Stream progress (owners, partitions, lag, throughput), other pipelines' totals, the endpoint URL,
        and each cache shard's stats (keys, bytes, hits, misses, evictions, stale reads, read-throughs,
        write-behind backlog; see ``CacheShard.stats``)."""
        import ray

        self._require_started()
        stream = ray.get(self._supervisor.status.remote(timeout_s), timeout=timeout_s * 2)
        stats = ray.get([s.stats.remote() for s in self._shards], timeout=timeout_s)
        return {
            "namespace": self.config.ray.namespace,
            "bootstrap_servers": self.bootstrap_servers,
            "endpoint": self.config.serving.url,
            "schema_registry": self.config.registry_url if self.config.registry.enabled else None,
            "stream": stream,
            "pipelines": {name: self.pipeline_status(name, timeout_s)["summary"] for name in self._pipeline_supervisors()},
            "cache_shards": [{"shard": i, **st} for i, st in enumerate(stats)],
        }

    def wait_until_consumed(
        self,
        expected: int,
        *,
        timeout_s: float = 300,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Block until every message is accounted for and no partition lags.

        A message is accounted for when it was processed, dead-lettered, or skipped because the
        broker deleted it before it was read (``offset_gaps``; the embedded broker keeps about
        5 MiB per partition). Callers should check ``offset_gaps`` in the summary.

        Args:
            expected: messages produced to the topic.
            timeout_s: give up after this long.
            on_progress: called with the number accounted for on every check.

        Returns:
            The stream summary at that point.

        Raises:
            TimeoutError: not consumed in time; the message gives the counts and last errors.
        """
        import ray

        self._require_started()
        deadline = time.monotonic() + timeout_s
        while True:
            status = ray.get(self._supervisor.status.remote(), timeout=30)
            summary = status["summary"]
            done = summary["processed"] + summary["dead_lettered"] + summary.get("offset_gaps", 0)
            if on_progress:
                on_progress(done)
            if done >= expected and summary["caught_up"]:
                return summary
            if time.monotonic() > deadline:
                errors = [o["last_error"] for o in status["owners"] if o.get("last_error")]
                raise TimeoutError(f"consumed {done} of {expected} messages in {timeout_s}s; owner errors: {errors[:2]}")
            time.sleep(0.2)

    def run_pipeline(
        self,
        pipeline: Any,
        *,
        start_offsets: dict[int, int] | None = None,
        start_timestamp_ms: int | None = None,
        fresh: bool = False,
    ) -> dict[str, tuple[int, ...]]:
        """Run a :class:`~fabric_ray.streams.pipeline.Pipeline` on the cluster; return its owners.

        Its source and dead-letter topics are created when missing; one supervisor per pipeline
        assigns the topic's partitions to owners (``stream.partitions_per_actor`` each), which
        checkpoint to ``<storage root>/checkpoints`` and resume from there after a restart.
        Running a pipeline that already runs changes nothing.

        Args:
            start_offsets: where partitions without a checkpoint begin (a replay from offsets).
            start_timestamp_ms: or: from the first message at or after this time (a replay from
                a time); default: the beginning of the log.
            fresh: forget the pipeline's checkpoints first, so it starts with empty state (with
                the start position above). A pipeline backfilled with :meth:`backfill` must not
                be started fresh: its checkpoints are the backfilled state.

        Raises:
            ValueError: a fresh start of a pipeline that is running.
        """
        import ray

        from actors.supervisor import StreamSupervisor, supervisor_name
        from fabric_ray.runtime import get_or_create_actor

        self._require_started()
        cfg = self.config
        self._ensure_topics(pipeline.topic, pipeline.dead_letters)
        if fresh:
            from fabric_ray.runtime import find_actor

            if find_actor(supervisor_name(pipeline.name), cfg.ray.namespace) is not None:
                raise ValueError(f"pipeline {pipeline.name!r} is running: stop_pipeline() it before a fresh start")
            self._forget_checkpoints(pipeline.name)
        start = {"offsets": start_offsets} if start_offsets else {"timestamp_ms": start_timestamp_ms} if start_timestamp_ms is not None else None
        sup = get_or_create_actor(StreamSupervisor, supervisor_name(pipeline.name), cfg.ray.namespace, cfg, self.bootstrap_servers, pipeline, start)
        ray.get(sup.start.remote())
        return ray.get(sup.owners.remote())

    def backfill(self, pipeline: Any, *, from_pipeline: str | None = None, start_ms: int | None = None, end_ms: int | None = None) -> Any:
        """Give ``pipeline`` its state from the Parquet archive, then start it: it takes over the live stream.

        Runs the pipeline's steps after its archive sink over the archived events (optionally an
        event-time range) with fresh state, delivers the results to its sinks, saves each
        partition's state with the offset after the archive's last event, and starts the
        pipeline, which continues from Kafka there (:mod:`fabric_ray.streams.backfill`).

        Args:
            from_pipeline: whose archive to read (default: ``pipeline``'s own, i.e. a pipeline of
                the same name that ran before; a new version usually reads its predecessor's).
            start_ms: first event time to replay; default: the archive's start.
            end_ms: event time to stop before; default: the archive's end.

        Returns:
            The :class:`~fabric_ray.streams.backfill.BackfillReport`.

        Raises:
            ValueError: the pipeline is running (stop it first), or has no archive sink.
        """
        from actors.cache import ShardedCacheWriter
        from actors.supervisor import supervisor_name
        from fabric_ray.runtime import find_actor
        from fabric_ray.storage.fs import open_location
        from fabric_ray.streams.backfill import backfill_from_archive
        from fabric_ray.streams.checkpoint import CheckpointStore
        from fabric_ray.streams.sinks import bind_sinks

        self._require_started()
        cfg = self.config
        if find_actor(supervisor_name(pipeline.name), cfg.ray.namespace) is not None:
            raise ValueError(f"pipeline {pipeline.name!r} is running: stop_pipeline() it before a backfill")
        storage = open_location(cfg.storage_root, cfg.storage)
        sinks = bind_sinks(pipeline, storage=storage, bootstrap_servers=self.bootstrap_servers, client=cfg.kafka.client, cache_writer=lambda view: ShardedCacheWriter(self._shards, view))
        root = self._checkpoint_root()
        self._forget_checkpoints(pipeline.name)  # fresh state: the backfill's
        report = backfill_from_archive(
            pipeline,
            storage.child("archive", from_pipeline or pipeline.name),
            sinks={name: sink for name, sink in sinks.items() if pipeline.step(name).options.get("to") != "archive"},
            start_ms=start_ms,
            end_ms=end_ms,
            checkpoints=lambda p: CheckpointStore(root, pipeline.name, pipeline.topic, p),
        )
        self.run_pipeline(pipeline)
        return report

    def _checkpoint_root(self) -> Any:
        from fabric_ray.storage.fs import open_location

        return open_location(self.config.storage_root, self.config.storage).child("checkpoints")

    def _forget_checkpoints(self, pipeline_name: str) -> None:
        root = self._checkpoint_root()
        if root.fs.exists(root.join(pipeline_name)):
            root.fs.rm(root.join(pipeline_name), recursive=True)

    def pipeline_status(self, name: str, timeout_s: float = 5.0) -> dict[str, Any]:
        """Progress of the running pipeline ``name``: per owner and partition, totals, reasons.

        Raises:
            LookupError: no pipeline of that name runs.
        """
        import ray

        from actors.supervisor import supervisor_name
        from fabric_ray.runtime import find_actor

        sup = find_actor(supervisor_name(name), self.config.ray.namespace)
        if sup is None:
            raise LookupError(f"no pipeline {name!r} runs in namespace {self.config.ray.namespace!r}")
        return ray.get(sup.status.remote(timeout_s), timeout=timeout_s * 2)

    def checkpoint_pipeline(self, name: str, timeout_s: float = 60) -> None:
        """Make every owner of pipeline ``name`` checkpoint now."""
        import ray

        from actors.supervisor import supervisor_name
        from fabric_ray.runtime import find_actor

        sup = find_actor(supervisor_name(name), self.config.ray.namespace)
        if sup is None:
            raise LookupError(f"no pipeline {name!r} runs in namespace {self.config.ray.namespace!r}")
        ray.get(sup.checkpoint.remote(timeout_s), timeout=timeout_s * 2)

    def stop_pipeline(self, name: str) -> None:
        """Drain pipeline ``name`` (owners checkpoint and close), then remove its actors."""
        import ray

        from actors.supervisor import supervisor_name
        from fabric_ray.runtime import find_actor, kill_actor

        sup = find_actor(supervisor_name(name), self.config.ray.namespace)
        if sup is None:
            return
        try:
            ray.get(sup.stop.remote(), timeout=60)
        except (ray.exceptions.RayError, TimeoutError):
            pass
        kill_actor(supervisor_name(name), self.config.ray.namespace)

    def _ensure_topics(self, *topics: str) -> None:
        """Create ``topics`` when missing, with ``kafka.topic_partitions`` partitions."""
        from fabric_ray.streams.kafka import ensure_topic

        cfg = self.config
        for topic in topics:
            ensure_topic(
                self.bootstrap_servers,
                topic,
                cfg.kafka.topic_partitions,
                client=cfg.kafka.client,
                use_admin=cfg.kafka.topic_creation == "admin" and not cfg.kafka.embedded,
            )

    def _pipeline_supervisors(self) -> list[str]:
        """Names of the user pipelines running in this namespace (not the demo's)."""
        import ray

        prefix = "supervisor:"
        # The driver's own namespace may differ from the fabric's (a shared test cluster, an agent's
        # session): list every namespace and keep the fabric's.
        ns = self.config.ray.namespace
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == ns]
        return [n[len(prefix):] for n in names if n.startswith(prefix) and n[len(prefix):] != self.config.stream.topic]

    @property
    def catalog(self) -> Any:
        """The :class:`~fabric_ray.features.catalog.Catalog` served: the one this fabric started with,
        or, attached, the running feature server's (else the configured feature repo's)."""
        self._require_started()
        if self._catalog is None:
            self._catalog = self._served_catalog()
        return self._catalog

    def _served_catalog(self) -> Any:
        from fabric_ray.features.feast_repo import load_catalog

        try:
            from ray import serve

            return serve.get_app_handle(self.serve_app_name).catalog.remote().result(timeout_s=30)
        except Exception:  # no HTTP app deployed (serve_http=False) or Serve not running: the repo's
            return load_catalog(self.config)

    @property
    def features(self) -> Any:
        """A :class:`~fabric_ray.features.client.FeatureClient` over the cache shards (actor handles, no HTTP).

        Example (needs a running fabric)::

            fabric.features.get_online(feature_service="fraud_model", entities={"user_id": [7], "merchant_id": [42]})
            fabric.features.push("user_payments_push", {"user_id": [7], ..., "event_ts": ["2026-11-26T10:00:00Z"]})
        """
        from fabric_ray.features.client import FeatureClient

        self._require_started()
        if self._features is None:
            self._features = FeatureClient(self.catalog, self._shards, max_entities=self.config.serving.max_entities)
        return self._features

    def materialize(
        self,
        views: Sequence[str] | None = None,
        *,
        start: Any = None,
        end: Any = None,
        incremental: bool = True,
        progress: bool = False,
    ) -> Any:
        """Load batch views into the online store and warm the cache shards with what was written.

        :func:`fabric_ray.features.materialize.materialize` on this fabric's Ray cluster; every
        written batch is also put into the cache shards (``write="none"``: it is in the store
        already), so the first reads after it are cache hits.

        Args:
            views: batch views to load (default: every view with a batch source).
            start, end: event-time interval ``[start, end)`` (datetimes; ``end`` defaults to now).
            incremental: start where the last run (ours or ``feast materialize``) ended.
            progress: show progress bars.

        Returns:
            The :class:`~fabric_ray.features.materialize.MaterializeReport`.
        """
        from actors.cache import ShardedCacheWriter
        from fabric_ray.features.materialize import materialize

        self._require_started()
        catalog = self.catalog
        writers: dict[str, ShardedCacheWriter] = {}

        def warm(view: str, table: Any) -> None:
            if view not in writers:
                writers[view] = ShardedCacheWriter(self._shards, catalog.view(view), write="none")
            writers[view].write(table)

        return materialize(
            self.config, catalog, list(views) if views is not None else None,
            start=start, end=end, incremental=incremental, warm=warm, progress=progress,
        )  # fmt: skip

    def get_online_features(self, features: Sequence[str], entities: dict[str, list], full_feature_names: bool = False) -> dict[str, Any]:
        """Online features for agents, as Python: ``fabric.features.get_online(features, entities, ...)``.

        Raises:
            RequestError: the request names unknown views or features, or malformed entities.
        """
        return self.features.get_online(features, entities, full_feature_names=full_feature_names)


def _apply_demo_product(metadata_url: str) -> str | None:
    """Register the demo's ``payments`` data product (schema and contract); return why not, if it was refused.

    A refusal (say, an incompatible ``payments-value`` registered by someone else) does not stop
    the fabric: the demo pipeline checks its contract either way.
    """
    from fabric_ray.demo.payments import payments_product
    from fabric_ray.governance.products import apply_products
    from fabric_ray.governance.registry import RegistryError, SchemaRegistry
    from fabric_ray.governance.registry_store import SqlRegistryStore, sqlite_file

    if (path := sqlite_file(metadata_url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    store = SqlRegistryStore(metadata_url)
    try:
        apply_products(SchemaRegistry(store), [payments_product()])
        return None
    except RegistryError as exc:
        return f"the demo product 'payments' was not registered: {exc}"
    finally:
        store.close()


def _check_port_free(host: str, port: int) -> None:
    """Fail before starting anything if the HTTP port is taken (Serve's error would come late and cryptic)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"serving.port {port} on {host} is not free ({exc.strerror}); stop what uses it or choose "
                "another port (serving.port in fabric.yaml, or FABRIC_SERVING__PORT)"
            ) from None


def connect(
    address: str = "auto", *, namespace: str = "fabric", config: FabricConfig | None = None, timeout_s: float = 10
) -> Fabric:
    """Attach to a running fabric from any process that can reach its Ray cluster.

    Args:
        address: Ray address (``"auto"`` finds a local ``ray start`` cluster).
        namespace: the fabric's Ray namespace.
        config: base configuration (default: :func:`load_config`); ``address`` and
            ``namespace`` replace its Ray settings.
        timeout_s: how long to wait for the fabric's actors to be found.

    Raises:
        ConnectionError: Ray does not answer at ``address``.
        LookupError: no fabric runs in ``namespace``.
    """
    base = config or load_config()
    cfg = base.model_copy(update={"ray": base.ray.model_copy(update={"address": address, "namespace": namespace})})
    return Fabric(cfg).attach(timeout_s)
