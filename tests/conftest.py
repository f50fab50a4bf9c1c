"""Session-wide real services on loopback, started by the fixtures themselves.

- ``kafka_broker``: the embedded Kafka-protocol broker as its own process (``python -m fabric_ray.broker``);
- ``s3_endpoint``: moto's S3 server (``moto_server``) with a bucket;
- ``ray_cluster``: one local Ray cluster for the whole session (started lazily, by integration tests only);
- ``serve_port``: the Ray Serve HTTP port of that cluster;
- ``postgres_url``: a real PostgreSQL 16 (``pgserver``'s bundled binaries) on a unix socket, started lazily;
- ``storage_root``: a fresh, empty storage root, once on the local file system and once on the S3 endpoint
  (parametrised, so every storage test runs against both kinds).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import uuid
from dataclasses import dataclass

import pytest

from fabric_ray.config import StorageConfig
from fabric_ray.loopback import free_port, keep_on_loopback  # noqa: F401  (free_port: used by tests)

keep_on_loopback()


def _wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> str:
    """Bootstrap address of a Kafka-protocol broker process on loopback."""
    ready = tmp_path_factory.mktemp("broker") / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "fabric_ray.broker", "--ready-file", str(ready)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the embedded broker did not start")
        time.sleep(0.05)
    yield json.loads(ready.read_text())["bootstrap_servers"]
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def s3_endpoint() -> dict:
    """A real S3 HTTP endpoint (moto's server) with bucket ``fabric-test``; yields client settings."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        settings = {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "region": "us-east-1",
            "access_key_id": "testing",
            "secret_access_key": "testing",
            "bucket": "fabric-test",
        }
        import s3fs

        fs = s3fs.S3FileSystem(
            key="testing", secret="testing", client_kwargs={"endpoint_url": settings["endpoint_url"], "region_name": "us-east-1"}
        )
        # fs.mkdir would send LocationConstraint=us-east-1, which S3 (and moto) refuse.
        fs.call_s3("create_bucket", Bucket="fabric-test")
        yield settings
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the session, sized for a 2-core machine."""
    import ray

    from fabric_ray.loopback import ingress_env

    env = ingress_env("auto")  # the ingress the fabric itself picks
    for key, value in env.items():
        os.environ.setdefault(key, value)
    ray.init(num_cpus=2, namespace="fabric-tests", include_dashboard=False, log_to_driver=False)
    # Ray's processes have the ports now; clusters that tests start in subprocesses must pick their own.
    for key in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
        if os.environ.get(key) == env.get(key):
            os.environ.pop(key)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_port(ray_cluster) -> int:
    """Ray Serve's HTTP port on the session cluster."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> str:
    """``postgresql+psycopg://`` URL of database ``postgres`` on a PostgreSQL server private to this session.

    The server listens on a unix socket only and stops when the session ends. Tests that need
    isolation create their own database (``CREATE DATABASE``) or drop their tables.
    """
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
        yield "postgresql+psycopg://" + uri.split("://", 1)[1]
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def new_postgres_database(postgres_url):
    """``new_postgres_database(prefix="t") -> URL`` of a new, empty database on the session's PostgreSQL server."""
    import uuid

    import sqlalchemy as sa

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        return sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)

    return make


@dataclass(frozen=True)
class StorageRoot:
    """A fresh storage root for one test: its URI and the storage config that opens it."""

    uri: str
    config: StorageConfig
    kind: str  # "file" or "s3"


def s3_storage_config(s3_endpoint: dict, prefix: str | None = None) -> StorageConfig:
    """The storage config of a fresh prefix in the S3 endpoint's bucket."""
    prefix = prefix or uuid.uuid4().hex
    return StorageConfig(
        root=f"s3://{s3_endpoint['bucket']}/{prefix}",
        endpoint_url=s3_endpoint["endpoint_url"],
        region=s3_endpoint["region"],
        access_key_id=s3_endpoint["access_key_id"],
        secret_access_key=s3_endpoint["secret_access_key"],
    )


@pytest.fixture(params=["file", "s3"])
def storage_root(request, tmp_path) -> StorageRoot:
    """A fresh, empty storage root: ``file://<tmp>`` and ``s3://fabric-test/<uuid>`` (moto on loopback)."""
    if request.param == "file":
        root = tmp_path / "storage"
        root.mkdir()
        config = StorageConfig(root=f"file://{root}")
    else:
        config = s3_storage_config(request.getfixturevalue("s3_endpoint"))
    return StorageRoot(uri=config.root, config=config, kind=request.param)
