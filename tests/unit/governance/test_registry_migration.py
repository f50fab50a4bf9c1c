"""Stores written by the registry before text identity (schemas keyed by Avro's Parsing Canonical Form) migrate on start.

``data/registry_pcf_identity_rows.json`` holds the rows the previous registry code (commit 1539f1b,
``fabric_ray/governance/registry*.py``) wrote for the histories in ``data/make_pcf_identity_rows.py``:
run that script with the old package on ``PYTHONPATH`` to make them again. In those rows a schema
with a default and one without share an id and a version, ``{"type":"long","logicalType":...}``
and ``"long"`` share an id, and JSON schemas differing in key order share an id.
"""

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabric_ray.governance.registry import IDENTITY, SchemaRegistry
from fabric_ray.governance.registry_store import MemoryRegistryStore, SqlRegistryStore

OLD_ROWS = json.loads((Path(__file__).parent / "data" / "registry_pcf_identity_rows.json").read_text())


@pytest.fixture(params=["sqlite", "postgresql"])
def old_store_url(request, tmp_path):
    """URL of a database holding the old registry's rows (tables as the old code created them)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    SqlRegistryStore(url).close()  # creates the tables; a store with no identity marker, as the old code left it
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(bind=engine)
    with engine.begin() as conn:
        for table in ("registry_schemas", "registry_versions", "registry_config"):
            rows = [dict(r, deleted=bool(r["deleted"])) if "deleted" in r else r for r in OLD_ROWS[table]]
            conn.execute(meta.tables[table].insert(), rows)
        assert conn.execute(sa.text("SELECT count(*) FROM registry_meta")).scalar_one() == 0
    engine.dispose()
    return url


def _version_rows(url):
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT subject, version, schema_id, deleted FROM registry_versions ORDER BY subject, version"
        )).all()
    engine.dispose()
    return [(s, v, i, bool(d)) for s, v, i, d in rows]


def test_an_old_store_keeps_every_version_and_id_and_gets_text_identity(old_store_url):
    before = _version_rows(old_store_url)
    assert len(before) == 8
    store = SqlRegistryStore(old_store_url)
    reg = SchemaRegistry(store)
    try:
        assert _version_rows(old_store_url) == before  # no version lost, none moved to another id
        assert reg.versions("payments-value", include_deleted=True) == [1, 2]
        assert reg.get_config() == "FULL" and reg.get_config("b-value") == "NONE"
        # Stored texts are now Confluent's (Avro Java's toString), keeping what was registered first.
        got = reg.get_version("payments-value", 2)
        assert got["id"] == 2 and got["schema"] == (
            '{"type":"record","name":"Payment","namespace":"fabric","fields":[{"name":"amount","type":"int"},'
            '{"name":"currency","type":"string","default":"EUR"}]}'
        )
        assert reg.get_by_id(3)["schema"] == '{"type":"long","logicalType":"timestamp-millis"}'
        assert reg.get_version("priced-value", 1)["references"] == [
            {"name": "fabric.Currency", "subject": "currency-value", "version": 1}
        ]
        assert reg.get_by_id(6)["schema"] == '{"type":"object","properties":{"id":{"type":"string"}}}'
        # Identity now follows the text: what the old key collapsed gets its own id and version.
        assert reg.register("plain-value", '"long"') == 7
        assert reg.versions("plain-value") == [1, 2]
        assert reg.lookup("ts-value", '{"type": "long", "logicalType": "timestamp-millis"}')["id"] == 3
        assert reg.lookup("currency-value", '{"type":"enum","name":"Currency","namespace":"fabric","symbols":["EUR"]}')["id"] == 4
        priced = '{"type":"record","name":"Priced","fields":[{"name":"c","type":"fabric.Currency"}]}'
        refs = [{"name": "fabric.Currency", "subject": "currency-value", "version": 1}]
        assert reg.register("priced-value", priced, references=refs) == 5  # still the same schema
        assert reg.register("other-value", '"int"') == 8  # ids continue
    finally:
        store.close()
    # A second start finds the marker and changes nothing.
    store = SqlRegistryStore(old_store_url)
    assert store.rekey_schemas(IDENTITY, lambda row: pytest.fail("rekeyed twice")) == 0
    assert SchemaRegistry(store).get_by_id(3)["schema"] == '{"type":"long","logicalType":"timestamp-millis"}'
    store.close()


def test_rekey_is_all_or_nothing(old_store_url):
    store = SqlRegistryStore(old_store_url)
    before = [store.get_schema(i) for i in range(1, 7)]

    def fail_half_way(row):
        if row.id == 4:
            raise RuntimeError("half-way")
        return "new-" + row.canonical, row.original

    with pytest.raises(RuntimeError):
        store.rekey_schemas(IDENTITY, fail_half_way)
    assert [store.get_schema(i) for i in range(1, 7)] == before
    assert store.rekey_schemas("test-marker", lambda row: ("k" + str(row.id), row.original)) == 6
    assert store.find_schema("AVRO", "k1") == 1 and store.find_schema("JSON", "k6") == 6
    store.close()


def test_a_new_memory_store_is_marked_without_rows():
    store = MemoryRegistryStore()
    SchemaRegistry(store)
    assert store.rekey_schemas(IDENTITY, lambda row: pytest.fail("rekeyed twice")) == 0
