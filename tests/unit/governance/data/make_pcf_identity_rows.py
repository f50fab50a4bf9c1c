"""Write a registry store with the pre-text-identity code (schemas keyed by Avro's Parsing Canonical Form).

Run with the registry package of commit 1539f1b first on ``PYTHONPATH``:
``python make_pcf_identity_rows.py sqlite:////tmp/old.db registry_pcf_identity_rows.json``.
"""
import json
import sys

import sqlalchemy as sa

from fabric_ray.governance.registry import SchemaRegistry
from fabric_ray.governance.registry_store import SqlRegistryStore


def main() -> None:
    url = sys.argv[1]
    store = SqlRegistryStore(url)
    r = SchemaRegistry(store)
    amount = {"name": "amount", "type": "int"}
    cur_default = {"name": "currency", "type": "string", "default": "EUR"}
    cur_required = {"name": "currency", "type": "string"}
    rec = lambda *f: json.dumps({"type": "record", "name": "Payment", "namespace": "fabric", "fields": list(f)}, indent=2)
    print(r.register("payments-value", rec(amount)))
    print(r.register("payments-value", rec(amount, cur_default)))
    print(r.register("payments-value", rec(amount, cur_required)))  # collapsed into version 2
    print(r.register("b-value", rec(amount, cur_required)))  # gets payments' text, with the default
    print(r.register("ts-value", '{"type": "long", "logicalType": "timestamp-millis"}'))
    print(r.register("plain-value", '"long"'))  # collapsed into the timestamp schema
    print(r.register("currency-value", json.dumps({"type": "enum", "name": "Currency", "namespace": "fabric", "symbols": ["EUR"]})))
    print(r.register("priced-value", json.dumps({"type": "record", "name": "Priced", "fields": [{"name": "c", "type": "fabric.Currency"}]}),
                     references=[{"name": "fabric.Currency", "subject": "currency-value", "version": 1}]))
    print(r.register("j-value", json.dumps({"type": "object", "properties": {"id": {"type": "string"}}}), "JSON"))
    print(r.register("j-value", json.dumps({"properties": {"id": {"type": "string"}}, "type": "object"}), "JSON"))  # same id
    r.set_config("FULL")
    r.set_config("NONE", subject="b-value")
    r.delete_version("payments-value", 1)
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in ("registry_schemas", "registry_versions", "registry_config"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2")).mappings().all()
            out[table] = [dict(row) for row in rows]
    print(json.dumps(out, indent=1), file=open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
