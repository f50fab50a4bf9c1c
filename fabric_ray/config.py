"""One typed, frozen configuration tree for the whole fabric.

Sources, highest priority first:

1. ``FABRIC_*`` environment variables, nested with ``__``
   (``FABRIC_SERVING__PORT=9000``, ``FABRIC_KAFKA__BOOTSTRAP_SERVERS=host:9092``);
2. the YAML file named by ``--config`` or ``FABRIC_CONFIG`` (``fabric.yaml``);
3. the defaults below, which run everything embedded on one machine.

Example:
    >>> cfg = FabricConfig.model_validate({"serving": {"port": 9001}})
    >>> cfg.serving.port, cfg.kafka.embedded
    (9001, True)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "ConfigError",
    "EtlConfig",
    "FabricConfig",
    "FeaturesConfig",
    "KafkaConfig",
    "MetadataConfig",
    "RayConfig",
    "RegistryConfig",
    "ServingConfig",
    "StorageConfig",
    "StreamConfig",
    "TokenConfig",
    "load_config",
]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key, the value and the source."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RayConfig(_Section):
    """Where Ray runs.

    Attributes:
        address: ``None`` starts a local cluster in this process; ``"auto"`` or
            ``"HOST:PORT"`` connects to a running one (``ray://`` client URLs too).
        namespace: Ray namespace holding the fabric's named actors.
        num_cpus: CPUs a local cluster advertises (``None``: all of the machine's).
        actor_num_cpus: logical CPUs reserved by each fabric actor, fractional so that
            many fit on a small machine.
        worker_niceness: Unix niceness of the worker processes (partition owners, cache
            shards, Serve replicas) of a local cluster this fabric starts. Ray's own default,
            15, lets any busy process on the machine (a producer, a build) go before the
            stream; 0 gives them the priority of everything else. A cluster started elsewhere
            keeps its own setting (``RAY_worker_niceness`` when it starts).
    """

    address: str | None = None
    namespace: str = "fabric"
    num_cpus: int | None = Field(default=None, ge=1)
    actor_num_cpus: float = Field(default=0.1, ge=0, le=64)
    worker_niceness: int = Field(default=0, ge=0, le=19)


class StorageConfig(_Section):
    """The object store holding archives, checkpoints and datasets.

    Attributes:
        root: ``file:///abs/path`` or ``s3://bucket/prefix``; ``None`` means
            ``<home>/storage`` on the local file system.
        endpoint_url: S3 endpoint for MinIO, Ceph, moto and friends (``None``: AWS).
        region: S3 region.
        access_key_id: S3 access key (``None``: the usual AWS credential chain).
        secret_access_key: S3 secret key.
        addressing_style: ``path`` or ``virtual`` S3 addressing.
    """

    root: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: str = Field(default="path", pattern="^(path|virtual)$")

    @field_validator("root")
    @classmethod
    def _known_scheme(cls, root: str | None) -> str | None:
        if root is not None and not root.startswith(("file://", "s3://")):
            raise ValueError(f"must start with file:// or s3://, got {root!r}")
        return root


class KafkaConfig(_Section):
    """The Kafka cluster, or the embedded broker when none is given.

    Attributes:
        bootstrap_servers: ``host:port[,host:port]``; ``None`` starts the embedded
            Kafka-protocol broker (see ``docs/broker.md``).
        client: librdkafka settings passed to every consumer, producer and admin
            client (``security.protocol``, ``sasl.mechanism``, ...).
        topic_creation: how missing topics are made: ``admin`` (the CreateTopics API, with
            ``topic_partitions``) or ``metadata`` (a producer's metadata request, for brokers
            that auto-create topics but lack the admin API, like the embedded one).
        topic_partitions: partitions of topics the fabric creates with the admin API.
    """

    bootstrap_servers: str | None = None
    client: dict[str, str] = Field(default_factory=dict)
    topic_creation: Literal["admin", "metadata"] = "admin"
    topic_partitions: int = Field(default=4, ge=1)

    @property
    def embedded(self) -> bool:
        """Whether the fabric starts its own broker."""
        return self.bootstrap_servers is None

    @field_validator("client")
    @classmethod
    def _no_bootstrap_in_client(cls, client: dict[str, str]) -> dict[str, str]:
        if "bootstrap.servers" in client:
            raise ValueError("set kafka.bootstrap_servers instead of client['bootstrap.servers']")
        return client


class StreamConfig(_Section):
    """The payments stream of the spine.

    Attributes:
        topic: source topic.
        dead_letter_topic: where undecodable or invalid events go, with a reason header.
        consumer_group: group the partition owners commit offsets to (for outside tools;
            partitions are assigned explicitly, not by group rebalancing).
        batch_size: most messages decoded as one Arrow batch.
        poll_timeout_s: longest wait for a batch before the loop checks for stop.
        partitions_per_actor: partitions one ``PartitionActor`` owns.
        cache_shards: number of ``CacheShard`` actors holding hot features.
        window_ms: tumbling window size of the windowed aggregates.
        checkpoints: save each partition's state and next offset to the storage root, so a
            restarted owner resumes exactly where its last checkpoint was.
        checkpoint_interval_s: time between checkpoints of an owner.
        partition_check_s: how often a supervisor looks for partitions its topic gained.
    """

    topic: str = "payments"
    dead_letter_topic: str = "payments.dlq"
    consumer_group: str = "fabric-payments"
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    poll_timeout_s: float = Field(default=0.2, gt=0, le=60)
    partitions_per_actor: int = Field(default=1, ge=1)
    cache_shards: int = Field(default=2, ge=1, le=1024)
    window_ms: int = Field(default=60_000, ge=1)
    checkpoints: bool = True
    checkpoint_interval_s: float = Field(default=5.0, ge=0, le=3600)
    partition_check_s: float = Field(default=5.0, gt=0, le=3600)


class TokenConfig(_Section):
    """One bearer token of the feature server.

    Attributes:
        name: who holds it (shown in logs and errors, never the secret).
        secret: the token itself, as sent in ``Authorization: Bearer <secret>``.
        scopes: feature views it may read and push to; ``"*"`` covers every view.

    Example:
        >>> TokenConfig(name="fraud-svc", secret="s3cret-token", scopes=("user_payments",)).scopes
        ('user_payments',)
    """

    name: str = Field(min_length=1)
    secret: SecretStr
    scopes: tuple[str, ...] = ("*",)

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 8:
            raise ValueError("a token secret needs at least 8 characters")
        return v


class ServingConfig(_Section):
    """The HTTP endpoint of Ray Serve.

    Attributes:
        host: interface to bind (loopback by default).
        port: HTTP port.
        route_prefix: where the feature application is mounted (``/`` as Feast does).
        replicas: replicas of the feature server deployment.
        ingress: Ray Serve's HTTP ingress for a cluster the fabric starts: ``haproxy``
            (Serve's HAProxy ingress, throughput-optimized; about 3x lower latency here; ray[serve]
            ships the binary on Linux), ``default`` (Serve's Python proxy), or ``auto`` (HAProxy
            when available). A cluster the fabric connects to keeps the ingress it started with.
        min_replicas, max_replicas: autoscale the feature server between these (both or neither;
            neither: a fixed ``replicas``).
        target_ongoing_requests: requests in flight per replica that autoscaling aims for.
        max_entities: most entity rows one ``/get-online-features`` or ``/push`` request may carry
            (more: 413).
        tokens: bearer tokens; when any is set, every endpoint but ``/health`` needs one
            (401 without a valid token, 403 when its scopes do not cover the feature views asked for).
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    route_prefix: str = Field(default="/", pattern="^/")
    replicas: int = Field(default=1, ge=1)
    ingress: Literal["auto", "haproxy", "default"] = "auto"
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    target_ongoing_requests: float = Field(default=16.0, gt=0)
    max_entities: int = Field(default=10_000, ge=1, le=1_000_000)
    tokens: tuple[TokenConfig, ...] = ()

    @model_validator(mode="after")
    def _check_replicas(self) -> ServingConfig:
        low, high = self.min_replicas, self.max_replicas
        if (low is None) != (high is None):
            raise ValueError("set both serving.min_replicas and serving.max_replicas to autoscale, or neither")
        if low is not None and high is not None and low > high:
            raise ValueError(f"serving.min_replicas ({low}) exceeds serving.max_replicas ({high})")
        return self

    @property
    def autoscaling(self) -> dict[str, Any] | None:
        """Ray Serve ``autoscaling_config`` of the feature server, or ``None`` for a fixed ``replicas``.

        Example:
            >>> ServingConfig(min_replicas=1, max_replicas=4).autoscaling["max_replicas"]
            4
        """
        if self.min_replicas is None:
            return None
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }

    @property
    def url(self) -> str:
        """Base URL of the feature application, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{self.host}:{self.port}{self.route_prefix.rstrip('/')}"


class MetadataConfig(_Section):
    """The fabric's metadata store: schema registry subjects, versions and config, data products.

    Attributes:
        url: any SQLAlchemy URL of a supported backend: ``sqlite:///path/metadata.db`` or
            ``postgresql+psycopg://user:pass@host:5432/fabric`` (install ``psycopg[binary]``);
            ``None`` means ``sqlite:///<home>/metadata.db``. Checked when the config loads; its
            password never shows in ``repr`` or error messages.

    Example:
        >>> MetadataConfig(url="postgresql+psycopg://fabric:s3cret@db:5432/fabric")
        MetadataConfig(url='postgresql+psycopg://fabric:***@db:5432/fabric')
    """

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _supported_url(cls, url: str | None) -> str | None:
        if url is not None:
            from fabric_ray.governance.registry_store import check_url  # SQLAlchemy: only when a URL is set

            check_url(url)  # ValueError naming the URL, password masked
        return url

    def __repr_args__(self) -> Any:
        yield "url", _mask(self.url) if self.url is not None else None


class RegistryConfig(_Section):
    """The schema registry (Confluent Schema Registry REST API on the fabric's Serve cluster).

    Its subjects live in the metadata store (``metadata.url``); one actor owns them in a running fabric.

    Attributes:
        enabled: start the registry with the fabric.
        route_prefix: where its HTTP API is mounted; clients use
            ``SchemaRegistryClient({"url": "http://HOST:PORT<route_prefix>"})``.
    """

    enabled: bool = True
    route_prefix: str = Field(default="/schema-registry", pattern="^/.")


class EtlConfig(_Section):
    """Batch ETL runs (``fabric etl run``, :func:`fabric_ray.etl.runner.run_etl`).

    Attributes:
        block_bytes: target uncompressed bytes of one block: what one Ray Data task transforms,
            checks and stages (Parquet inputs are cut at row groups to fit; CSV and JSON files
            are one block each). Smaller blocks spread a run over more CPUs in less memory, but
            stage more, smaller files (one per block and partition).
        sample_rows: input rows read to infer a new dataset's schema when the pipeline declares none.
        object_store_bytes: most object-store memory a run's blocks may hold at once
            (``None``: Ray Data's default share of the cluster's object store).
    """

    block_bytes: int = Field(default=16 * 2**20, ge=2**20)
    sample_rows: int = Field(default=10_000, ge=1)
    object_store_bytes: int | None = Field(default=None, ge=2**20)


class FeaturesConfig(_Section):
    """The feature store: the Feast repo, its online store, and the cache shards in front of it.

    Attributes:
        repo: folder of the Feast feature repo whose definitions the fabric serves
            (``None``: the repo's ``feature_store/`` folder beside the ``fabric_ray`` package).
        project: Feast project name.
        registry: Feast registry path (``None``: ``<home>/features/registry.db``).
        online_store: Feast ``online_store`` settings (``None``: Feast's SQLite store at
            ``<home>/features/online.db``); any Feast online store, e.g.
            ``{"type": "redis", "connection_string": "127.0.0.1:6379"}``.
        cache_bytes: LRU byte budget of each cache shard.
        write_mode: how stream updates and pushes reach the online store: ``through`` (before the
            write is acknowledged), ``behind`` (batched in the background), or ``none`` (cache only).
        write_behind_interval_s: longest a write-behind row waits before it is written.
        write_behind_rows: rows that trigger a write-behind flush at once.
        read_through: on a cache miss, read the online store (and keep what it returns).
        refresh_ahead: a hot key whose age passes this fraction of its view's TTL is reloaded from
            the online store in the background (``0``: never).
        refresh_min_hits: hits since its last load that make a key hot.
        miss_ttl_s: how long a key the online store did not have is answered ``NOT_FOUND`` from
            the cache shard without asking the store again (``0``: ask on every miss); a stream
            update or push of the key ends it at once.
        materialize_batch_rows: rows per write batch when materializing.
    """

    repo: Path | None = None
    project: str = Field(default="fabric_payments", pattern=r"^[A-Za-z0-9_]+$")
    registry: str | None = None
    online_store: dict[str, Any] | None = None
    cache_bytes: int = Field(default=256 * 2**20, ge=2**16)
    write_mode: Literal["through", "behind", "none"] = "behind"
    write_behind_interval_s: float = Field(default=1.0, gt=0, le=3600)
    write_behind_rows: int = Field(default=10_000, ge=1)
    read_through: bool = True
    refresh_ahead: float = Field(default=0.8, ge=0, lt=1)
    refresh_min_hits: int = Field(default=3, ge=1)
    miss_ttl_s: float = Field(default=1.0, ge=0, le=3600)
    materialize_batch_rows: int = Field(default=50_000, ge=1)


class FabricConfig(BaseSettings):
    """The whole fabric's configuration: one frozen tree, passed to every component.

    Attributes:
        home: folder for embedded state (logs, state file, default storage root).
    """

    model_config = SettingsConfigDict(
        env_prefix="FABRIC_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    home: Path = Path(".fabric")
    ray: RayConfig = RayConfig()
    storage: StorageConfig = StorageConfig()
    kafka: KafkaConfig = KafkaConfig()
    stream: StreamConfig = StreamConfig()
    serving: ServingConfig = ServingConfig()
    registry: RegistryConfig = RegistryConfig()
    metadata: MetadataConfig = MetadataConfig()
    etl: EtlConfig = EtlConfig()
    features: FeaturesConfig = FeaturesConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which arrives as init arguments.
        return (env_settings, init_settings)

    @property
    def metadata_url(self) -> str:
        """SQLAlchemy URL of the metadata store, defaulting to ``sqlite:///<home>/metadata.db`` (absolute).

        Example:
            >>> FabricConfig(home="/var/fabric").metadata_url
            'sqlite:////var/fabric/metadata.db'
        """
        if self.metadata.url is not None:
            return self.metadata.url
        return f"sqlite:///{(self.home / 'metadata.db').resolve()}"

    @property
    def registry_url(self) -> str:
        """Base URL of the schema registry, e.g. ``http://127.0.0.1:8000/schema-registry``."""
        return f"http://{self.serving.host}:{self.serving.port}{self.registry.route_prefix}"

    @property
    def feature_repo(self) -> Path:
        """The Feast feature repo folder (``features.repo``, or ``feature_store/`` beside the package)."""
        if self.features.repo is not None:
            return self.features.repo.resolve()
        return Path(__file__).resolve().parents[1] / "feature_store"

    @property
    def feature_registry(self) -> str:
        """The Feast registry path, defaulting to ``<home>/features/registry.db`` (absolute)."""
        return self.features.registry or str((self.home / "features" / "registry.db").resolve())

    @property
    def online_store(self) -> dict[str, Any]:
        """Feast ``online_store`` settings, defaulting to SQLite at ``<home>/features/online.db``."""
        if self.features.online_store is not None:
            return dict(self.features.online_store)
        return {"type": "sqlite", "path": str((self.home / "features" / "online.db").resolve())}

    @property
    def storage_root(self) -> str:
        """The storage root URI, defaulting to ``file://<home>/storage``."""
        if self.storage.root is not None:
            return self.storage.root
        return f"file://{(self.home / 'storage').resolve()}"


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s'\"]*:)[^@/\s'\"]*@")


def _mask(text: str) -> str:
    """``text`` with passwords in URLs (``scheme://user:PASSWORD@host``) replaced by ``***``."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<root>"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (check its spelling and section)"
    return f"{key}: {error['msg']}; got {_mask(repr(error.get('input')))}"


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> FabricConfig:
    """Load the configuration from a YAML file, the environment and keyword overrides.

    Args:
        path: YAML file; ``None`` uses ``$FABRIC_CONFIG`` if set, else defaults only.
        **overrides: top-level sections or values that replace the file's
            (the environment still wins over both).

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: the file is missing or unreadable, or a key or value is invalid;
            the message names the file, the key and the value.

    Example:
        >>> load_config(None, serving={"port": 8123}).serving.port
        8123
    """
    if path is None:
        path = os.environ.get("FABRIC_CONFIG") or None
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {source!r} does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {source!r} is not valid YAML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {source!r} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"config file {source!r} cannot be read: {exc.strerror or exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {source!r} must hold a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    data.update(overrides)
    try:
        return FabricConfig(**data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"invalid configuration ({source}, FABRIC_* environment): {problems}") from None
