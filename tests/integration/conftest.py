"""Integration tier: fabrics on the session's Ray cluster, broker and S3 endpoint.

Each ``make_fabric()`` gets its own Ray namespace, topics, consumer group and HTTP route prefix,
so tests share the cluster without sharing state.
"""

from __future__ import annotations

import itertools
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from fabric_ray import Fabric, load_config
from fabric_ray.config import FabricConfig

_counter = itertools.count()


def _factory(prefix: str, kafka_broker: str, serve_port: int, new_home):
    """A ``make(**stream_overrides) -> started Fabric`` and the list of fabrics it started."""
    started: list[Fabric] = []

    def make(serve_http: bool = True, **stream: object) -> Fabric:
        name = f"{prefix}{next(_counter)}_{uuid.uuid4().hex[:6]}"
        config = fabric_config(name, kafka_broker, serve_port, new_home(name), **stream)
        fabric = Fabric(config).start(serve_http=serve_http)
        started.append(fabric)
        return fabric

    return make, started


@pytest.fixture
def make_fabric(ray_cluster, kafka_broker, serve_port, tmp_path):
    """Factory: ``make_fabric(**stream_overrides) -> started Fabric``; all are stopped after the test."""
    make, started = _factory("t", kafka_broker, serve_port, lambda name: tmp_path / name)
    yield make
    for fabric in started:
        fabric.stop()


def fabric_config(name: str, bootstrap: str, port: int, home, **stream: object) -> FabricConfig:
    """A config isolated under ``name`` on the shared cluster, broker and Serve port."""
    return load_config(
        None,
        home=str(home),
        ray={"address": "auto", "namespace": name},
        kafka={"bootstrap_servers": bootstrap, "topic_creation": "metadata"},
        serving={"port": port, "route_prefix": f"/{name}"},
        registry={"route_prefix": f"/{name}-registry"},
        stream={
            "topic": f"payments_{name}",
            "dead_letter_topic": f"payments_{name}.dlq",
            "consumer_group": f"fabric_{name}",
            "batch_size": 2000,
            **stream,
        },
    )


@pytest.fixture(scope="module")
def make_module_fabric(ray_cluster, kafka_broker, serve_port, tmp_path_factory):
    """Like ``make_fabric``, but the fabrics live for the whole test module (stopped at its end)."""
    make, started = _factory("m", kafka_broker, serve_port, tmp_path_factory.mktemp)
    yield make
    for fabric in started:
        fabric.stop()


@contextmanager
def registry_service(serve_port: int, db_file: Path) -> Iterator[str]:
    """A schema registry of its own (RegistryActor on SQLite file ``db_file``, Serve app under its own
    route prefix) on the session cluster; yields its base URL, removes both on exit."""
    import ray
    from ray import serve

    from actors.registry import RegistryActor, registry_actor_name
    from serving.registry import build_app

    name = f"sr_{uuid.uuid4().hex[:8]}"
    actor = RegistryActor.options(name=registry_actor_name(), namespace=name).remote(f"sqlite:///{db_file}")
    assert ray.get(actor.call.remote("ping")) == ("ok", "pong")
    serve.run(build_app({"namespace": name}), name=name, route_prefix=f"/{name}")
    try:
        yield f"http://127.0.0.1:{serve_port}/{name}"
    finally:
        serve.delete(name)
        ray.kill(actor)
