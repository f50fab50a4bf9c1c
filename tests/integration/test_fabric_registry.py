"""The fabric starts its schema registry; what it holds survives a restart of the fabric."""

import json

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from fabric_ray import Fabric

PAYMENT_V1 = {
    "type": "record",
    "name": "Payment",
    "namespace": "fabric.demo",
    "fields": [{"name": "event_id", "type": "string"}, {"name": "amount", "type": "double"}],
}


def test_registry_is_served_by_the_fabric_and_survives_a_restart(make_fabric):
    fabric = make_fabric(serve_http=True)
    url = fabric.config.registry_url
    assert fabric.status()["schema_registry"] == url
    client = SchemaRegistryClient({"url": url})
    schema_id = client.register_schema("payments-value", Schema(json.dumps(PAYMENT_V1), "AVRO"))
    fabric.stop()

    again = Fabric(fabric.config).start()
    try:
        fresh = SchemaRegistryClient({"url": url})  # no client-side cache
        latest = fresh.get_latest_version("payments-value")
        assert latest.schema_id == schema_id
        assert latest.version == 1
        assert json.loads(latest.schema.schema_str)["name"] == "Payment"
    finally:
        again.stop()
