"""The fabric starts its schema registry; what it holds survives a restart of the fabric."""

import json

import sqlalchemy as sa
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from fabric_ray import Fabric
from fabric_ray.config import MetadataConfig

from .conftest import fabric_config

PAYMENT_V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "fabric.test",
    "fields": [{"name": "event_id", "type": "string"}, {"name": "amount", "type": "double"}],
}


def _register_restart_and_read(fabric: Fabric) -> None:
    url = fabric.config.registry_url
    assert fabric.status()["schema_registry"] == url
    client = SchemaRegistryClient({"url": url})
    schema_id = client.register_schema("orders-value", Schema(json.dumps(PAYMENT_V1), "AVRO"))
    fabric.stop()

    again = Fabric(fabric.config).start()
    try:
        fresh = SchemaRegistryClient({"url": url})  # no client-side cache
        latest = fresh.get_latest_version("orders-value")
        assert latest.schema_id == schema_id
        assert latest.version == 1
        assert json.loads(latest.schema.schema_str)["name"] == "Order"
        # the demo's data product was registered by the fabric itself
        assert again.demo_product_problem is None
        assert fresh.get_latest_version("payments-value").schema.schema_str
    finally:
        again.stop()


def test_registry_is_served_by_the_fabric_and_survives_a_restart(make_fabric):
    fabric = make_fabric(serve_http=True)
    _register_restart_and_read(fabric)
    # the default metadata store: one SQLite file under home
    assert (fabric.config.home / "metadata.db").is_file()
    assert fabric.config.metadata_url == f"sqlite:///{(fabric.config.home / 'metadata.db').resolve()}"


def test_registry_on_postgresql_survives_a_restart(ray_cluster, kafka_broker, serve_port, new_postgres_database, tmp_path):
    url = new_postgres_database("pg")
    name = sa.make_url(url).database
    config = fabric_config(name, kafka_broker, serve_port, tmp_path / name)
    config = config.model_copy(update={"metadata": MetadataConfig(url=url)})
    fabric = Fabric(config).start(serve_http=True)
    try:
        _register_restart_and_read(fabric)
    finally:
        fabric.stop()
    assert not (tmp_path / name / "metadata.db").exists()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM registry_versions").scalar_one() == 2  # ours and the demo's
        assert conn.exec_driver_sql("SELECT count(*) FROM products").scalar_one() == 1
    engine.dispose()
