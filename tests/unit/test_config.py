"""fabric_ray.config: defaults, the YAML file, FABRIC_* overrides and the errors that name the culprit."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from fabric_ray.config import ConfigError, FabricConfig, KafkaConfig, StorageConfig, load_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No FABRIC_* variable from the outside world, and a throw-away working directory."""
    for name in list(os.environ):
        if name.upper().startswith("FABRIC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- defaults ------------------------------------------------------------------------------------
def test_defaults_run_everything_embedded_on_loopback():
    cfg = load_config(None)
    assert cfg.home == Path(".fabric")
    assert cfg.ray.address is None
    assert cfg.ray.namespace == "fabric"
    assert cfg.kafka.bootstrap_servers is None and cfg.kafka.embedded
    assert cfg.kafka.client == {}
    assert cfg.stream.topic == "payments"
    assert cfg.stream.dead_letter_topic == "payments.dlq"
    assert cfg.stream.batch_size == 5000
    assert cfg.stream.window_ms == 60_000
    assert cfg.serving.host == "127.0.0.1"
    assert cfg.serving.port == 8000
    assert cfg.serving.url == "http://127.0.0.1:8000"
    assert cfg.storage.root is None
    assert cfg.storage.addressing_style == "path"


def test_load_config_without_path_equals_plain_construction():
    assert load_config(None) == FabricConfig()


def test_serving_url_drops_trailing_slash_of_route_prefix():
    cfg = load_config(None, serving={"host": "0.0.0.0", "port": 9000, "route_prefix": "/features/"})
    assert cfg.serving.url == "http://0.0.0.0:9000/features"


def test_embedded_is_false_once_bootstrap_servers_is_set():
    assert not KafkaConfig(bootstrap_servers="broker:9092").embedded


# -- the YAML file -------------------------------------------------------------------------------
def test_yaml_file_values_are_loaded(tmp_path):
    path = write_yaml(
        tmp_path / "fabric.yaml",
        "home: /srv/fabric\n"
        "serving:\n  port: 9100\n  replicas: 3\n"
        "kafka:\n  bootstrap_servers: broker:9092\n  client:\n    security.protocol: SASL_SSL\n"
        "stream:\n  topic: cards\n  window_ms: 1000\n",
    )
    cfg = load_config(path)
    assert cfg.home == Path("/srv/fabric")
    assert cfg.serving.port == 9100 and cfg.serving.replicas == 3
    assert cfg.serving.host == "127.0.0.1"  # untouched keys keep their defaults
    assert cfg.kafka.bootstrap_servers == "broker:9092" and not cfg.kafka.embedded
    assert cfg.kafka.client == {"security.protocol": "SASL_SSL"}
    assert cfg.stream.topic == "cards" and cfg.stream.window_ms == 1000
    assert cfg.stream.dead_letter_topic == "payments.dlq"


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert load_config(write_yaml(tmp_path / "empty.yaml", "")) == FabricConfig()


def test_keyword_overrides_replace_the_files_section(tmp_path):
    path = write_yaml(tmp_path / "fabric.yaml", "serving:\n  port: 9100\n  replicas: 3\n")
    cfg = load_config(path, serving={"port": 9200})
    assert cfg.serving.port == 9200
    assert cfg.serving.replicas == 1  # the whole section was replaced


def test_missing_file_is_a_config_error_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_config(missing)
    assert str(missing) in str(err.value)


def test_invalid_yaml_is_a_config_error_naming_the_file(tmp_path):
    path = write_yaml(tmp_path / "broken.yaml", "serving: [port: 1\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path, text, kind):
    path = write_yaml(tmp_path / "list.yaml", text)
    with pytest.raises(ConfigError, match=f"must hold a mapping, got {kind}") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_a_directory_as_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path)


def test_a_non_utf8_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("stream:\n  topic: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError):
        load_config(path)


def test_fabric_config_env_var_picks_the_file(tmp_path, monkeypatch):
    path = write_yaml(tmp_path / "picked.yaml", "serving:\n  port: 9300\n")
    monkeypatch.setenv("FABRIC_CONFIG", str(path))
    assert load_config(None).serving.port == 9300
    assert load_config().serving.port == 9300


def test_explicit_path_beats_fabric_config_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("FABRIC_CONFIG", str(write_yaml(tmp_path / "env.yaml", "serving:\n  port: 9300\n")))
    explicit = write_yaml(tmp_path / "explicit.yaml", "serving:\n  port: 9400\n")
    assert load_config(explicit).serving.port == 9400


def test_empty_fabric_config_env_var_means_defaults(monkeypatch):
    monkeypatch.setenv("FABRIC_CONFIG", "")
    assert load_config(None) == FabricConfig()


def test_fabric_config_env_var_naming_a_missing_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FABRIC_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match="gone.yaml"):
        load_config(None)


# -- FABRIC_* environment ------------------------------------------------------------------------
def test_nested_env_var_overrides_default(monkeypatch):
    monkeypatch.setenv("FABRIC_SERVING__PORT", "9000")
    monkeypatch.setenv("FABRIC_KAFKA__BOOTSTRAP_SERVERS", "host:9092")
    cfg = load_config(None)
    assert cfg.serving.port == 9000
    assert cfg.kafka.bootstrap_servers == "host:9092"


def test_env_beats_the_file_and_merges_with_it(tmp_path, monkeypatch):
    path = write_yaml(tmp_path / "fabric.yaml", "serving:\n  port: 9100\n  replicas: 3\nstream:\n  topic: cards\n")
    monkeypatch.setenv("FABRIC_SERVING__PORT", "9500")
    monkeypatch.setenv("FABRIC_STREAM__BATCH_SIZE", "17")
    cfg = load_config(path)
    assert cfg.serving.port == 9500  # env wins
    assert cfg.serving.replicas == 3  # the file's sibling key survives
    assert cfg.stream.topic == "cards"
    assert cfg.stream.batch_size == 17


def test_env_beats_keyword_overrides(monkeypatch):
    monkeypatch.setenv("FABRIC_SERVING__PORT", "9500")
    assert load_config(None, serving={"port": 9200}).serving.port == 9500


def test_top_level_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "h"))
    assert load_config(None).home == tmp_path / "h"


def test_env_var_json_for_a_mapping(monkeypatch):
    monkeypatch.setenv("FABRIC_KAFKA__CLIENT", '{"security.protocol": "SSL"}')
    assert load_config(None).kafka.client == {"security.protocol": "SSL"}


def test_bad_env_value_names_key_and_value(monkeypatch):
    monkeypatch.setenv("FABRIC_SERVING__PORT", "not-a-port")
    with pytest.raises(ConfigError) as err:
        load_config(None)
    msg = str(err.value)
    assert "serving.port" in msg and "'not-a-port'" in msg
    assert "FABRIC_" in msg  # says the environment is one of the sources


def test_unknown_nested_env_key_names_the_key(monkeypatch):
    monkeypatch.setenv("FABRIC_SERVING__PROT", "9000")
    with pytest.raises(ConfigError, match=r"serving\.prot: unknown key"):
        load_config(None)


# -- errors name the key and the value ----------------------------------------------------------
@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("servng:\n  port: 1\n", "servng"),
        ("serving:\n  prot: 1\n", "serving.prot"),
        ("kafka:\n  bootstrap: x\n", "kafka.bootstrap"),
    ],
)
def test_unknown_key_in_file_is_named(tmp_path, yaml_text, key):
    path = write_yaml(tmp_path / "fabric.yaml", yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"{key}: unknown key" in msg
    assert str(path) in msg


@pytest.mark.parametrize(
    ("section", "values", "key", "shown"),
    [
        ("serving", {"port": 70000}, "serving.port", "70000"),
        ("serving", {"port": 0}, "serving.port", "0"),
        ("serving", {"route_prefix": "features"}, "serving.route_prefix", "'features'"),
        ("stream", {"batch_size": 0}, "stream.batch_size", "0"),
        ("stream", {"poll_timeout_s": 0}, "stream.poll_timeout_s", "0"),
        ("stream", {"cache_shards": 2000}, "stream.cache_shards", "2000"),
        ("stream", {"window_ms": 0}, "stream.window_ms", "0"),
        ("ray", {"num_cpus": 0}, "ray.num_cpus", "0"),
        ("ray", {"actor_num_cpus": -1}, "ray.actor_num_cpus", "-1"),
        ("storage", {"addressing_style": "sideways"}, "storage.addressing_style", "'sideways'"),
        ("kafka", {"topic_creation": "magic"}, "kafka.topic_creation", "'magic'"),
        ("kafka", {"topic_partitions": 0}, "kafka.topic_partitions", "0"),
    ],
)
def test_bad_value_names_key_and_value(section, values, key, shown):
    with pytest.raises(ConfigError) as err:
        load_config(None, **{section: values})
    msg = str(err.value)
    assert f"{key}:" in msg
    assert f"got {shown}" in msg


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(None, serving={"port": 0, "replicas": 0})
    assert "serving.port" in str(err.value) and "serving.replicas" in str(err.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# -- storage -------------------------------------------------------------------------------------
@pytest.mark.parametrize("root", ["file:///data/fabric", "s3://bucket/prefix"])
def test_storage_root_accepts_file_and_s3(root):
    cfg = load_config(None, storage={"root": root})
    assert cfg.storage.root == root
    assert cfg.storage_root == root


@pytest.mark.parametrize("root", ["http://x/y", "/abs/path", "gs://bucket", "S3://bucket"])
def test_storage_root_rejects_other_schemes(root):
    with pytest.raises(ConfigError) as err:
        load_config(None, storage={"root": root})
    msg = str(err.value)
    assert "storage.root" in msg and repr(root) in msg and "file://" in msg and "s3://" in msg


def test_storage_root_model_rejects_bad_scheme_directly():
    with pytest.raises(pydantic.ValidationError, match="must start with file:// or s3://"):
        StorageConfig(root="ftp://x")


def test_storage_root_defaults_under_home(tmp_path):
    cfg = load_config(None, home=tmp_path / "h")
    assert cfg.storage_root == f"file://{(tmp_path / 'h' / 'storage').resolve()}"


def test_storage_root_default_with_relative_home_is_absolute(tmp_path):
    # the autouse fixture made tmp_path the working directory
    cfg = load_config(None)
    assert cfg.storage_root == f"file://{(tmp_path / '.fabric' / 'storage').resolve()}"
    assert cfg.storage_root.startswith("file:///")


def test_secret_key_is_not_printed():
    cfg = load_config(None, storage={"secret_access_key": "hunter2"})
    assert cfg.storage.secret_access_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.storage)


# -- kafka ---------------------------------------------------------------------------------------
def test_kafka_client_may_not_hold_bootstrap_servers():
    with pytest.raises(ConfigError) as err:
        load_config(None, kafka={"client": {"bootstrap.servers": "x:1"}})
    msg = str(err.value)
    assert "kafka.client" in msg and "kafka.bootstrap_servers" in msg and "'x:1'" in msg


def test_kafka_client_passes_other_settings():
    cfg = load_config(None, kafka={"client": {"sasl.mechanism": "PLAIN"}})
    assert cfg.kafka.client == {"sasl.mechanism": "PLAIN"}


# -- frozen --------------------------------------------------------------------------------------
def test_config_tree_is_frozen():
    cfg = load_config(None)
    with pytest.raises(pydantic.ValidationError):
        cfg.serving.port = 1
    with pytest.raises(pydantic.ValidationError):
        cfg.home = Path("/elsewhere")
    assert cfg.serving.port == 8000 and cfg.home == Path(".fabric")


def test_model_copy_makes_a_changed_copy_and_leaves_the_original():
    cfg = load_config(None)
    other = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"port": 9999})})
    assert other.serving.port == 9999 and cfg.serving.port == 8000


def test_config_is_equal_by_value():
    assert load_config(None, serving={"port": 1}) == load_config(None, serving={"port": 1})
    assert load_config(None, serving={"port": 1}) != load_config(None, serving={"port": 2})


# -- metadata store ------------------------------------------------------------------------------
def test_metadata_url_defaults_to_sqlite_under_home(tmp_path):
    cfg = load_config(None, home=tmp_path / "h")
    assert cfg.metadata.url is None
    assert cfg.metadata_url == f"sqlite:///{(tmp_path / 'h' / 'metadata.db').resolve()}"
    assert cfg.metadata_url.startswith("sqlite:////")  # absolute: the actor's working directory differs


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://fabric:pw@db:5432/fabric", "postgresql://db/fabric", "sqlite:////data/m.db"]
)
def test_metadata_url_is_used_as_given(url):
    cfg = load_config(None, metadata={"url": url})
    assert cfg.metadata.url == url and cfg.metadata_url == url


def test_metadata_url_from_env(monkeypatch):
    monkeypatch.setenv("FABRIC_METADATA__URL", "postgresql+psycopg://fabric:pw@db:5432/fabric")
    assert load_config(None).metadata_url == "postgresql+psycopg://fabric:pw@db:5432/fabric"


def test_metadata_url_from_yaml(tmp_path):
    path = write_yaml(tmp_path / "fabric.yaml", "metadata:\n  url: postgresql+psycopg://u@db/fabric\n")
    assert load_config(path).metadata_url == "postgresql+psycopg://u@db/fabric"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "is not a SQLAlchemy URL"),
        ("mysql://fabric:hunter2@db/fabric", "backend 'mysql' is not supported"),
        ("postgresql+nodriver://fabric:hunter2@db/fabric", "unknown driver 'nodriver'"),
        ("postgresql+psycopg://fabric:hunter2@db:99999/fabric", "port 99999 is out of range"),
        ("postgresql+psycopg://fabric:hunter2@db", "name the database"),
    ],
)
def test_bad_metadata_url_is_a_config_error_naming_the_key(url, says, monkeypatch):
    for source in ("override", "env"):
        if source == "env":
            monkeypatch.setenv("FABRIC_METADATA__URL", url)
            load = lambda: load_config(None)  # noqa: E731
        else:
            load = lambda: load_config(None, metadata={"url": url})  # noqa: E731
        with pytest.raises(ConfigError) as err:
            load()
        msg = str(err.value)
        assert "metadata.url:" in msg and says in msg, msg
        assert "hunter2" not in msg  # the password never shows


def test_metadata_password_is_masked_in_repr():
    cfg = load_config(None, metadata={"url": "postgresql+psycopg://fabric:hunter2@db/fabric"})
    assert "hunter2" not in repr(cfg) and "hunter2" not in repr(cfg.metadata)
    assert "fabric:***@db" in repr(cfg.metadata)


def test_registry_has_no_path_any_more():
    with pytest.raises(ConfigError, match=r"registry\.path: unknown key"):
        load_config(None, registry={"path": "/x/registry.db"})
    assert not hasattr(FabricConfig(), "registry_path")
