"""RegistryStore backends: atomic groups of writes, product rows, restarts, concurrent writers, URLs.

Every behaviour runs against memory, SQLite and a real PostgreSQL (``postgres_url``); each SQL test
gets its own database file or PostgreSQL database.
"""

import sqlite3
import threading
import uuid

import pytest
import sqlalchemy as sa

from fabric_ray.governance.registry import SchemaRegistry
from fabric_ray.governance.registry_store import (
    MemoryRegistryStore,
    SqlRegistryStore,
    StoreError,
    check_url,
    mask_url,
    sqlite_file,
)

BACKENDS = ["memory", "sqlite", "postgresql"]
SQL_BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def url_for(request, tmp_path):
    """``url_for(backend)``: a fresh database URL of a SQL backend."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        return request.getfixturevalue("new_postgres_database")()

    return make


@pytest.fixture
def open_stores():
    """Stores opened by a test, closed at its end."""
    stores: list = []
    yield stores
    for s in stores:
        s.close()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def new_store(backend, url_for, open_stores):
    """``new_store()``: a store of the test's backend; every call opens another on the same database."""
    url = None if backend == "memory" else url_for(backend)
    memory = MemoryRegistryStore()

    def make():
        s = memory if url is None else SqlRegistryStore(url)
        open_stores.append(s)
        return s

    make.url = url
    return make


@pytest.fixture
def store(new_store):
    return new_store()


# -- config options -------------------------------------------------------------------------------


def test_config_options_per_subject_and_global(new_store):
    store = new_store()
    assert store.get_options(None) == {} and store.get_options("s") == {}
    store.set_options(None, {"validateNewSchemas": False})
    store.set_options("s", {"normalize": True})
    assert store.get_options(None) == {"validateNewSchemas": False}
    assert store.get_options("s") == {"normalize": True}
    assert store.get_config("s") is None  # options do not make a level
    again = new_store()
    assert again.get_options("s") == {"normalize": True}
    assert again.delete_config("s") is True  # options only: still something to delete
    assert again.get_options("s") == {} and again.delete_config("s") is False


# -- products -----------------------------------------------------------------------------------


def test_products_put_get_list_delete(store):
    assert store.get_product("payments") is None and store.list_products() == []
    store.put_product("refunds", '{"v": 1}')
    store.put_product("payments", '{"v": 1}')
    store.put_product("payments", '{"v": 2}')  # replaces
    assert store.get_product("payments") == '{"v": 2}'
    assert store.list_products() == [("payments", '{"v": 2}'), ("refunds", '{"v": 1}')]
    assert store.delete_product("payments") is True
    assert store.delete_product("payments") is False
    assert store.list_products() == [("refunds", '{"v": 1}')]


def test_product_spec_is_opaque_text(store):
    spec = '{"name": "π", "note": "not even sorted", "z": 1, "a": [1, 2]}' + " " * 10_000
    store.put_product("p", spec)
    assert store.get_product("p") == spec


# -- atomic -------------------------------------------------------------------------------------


def test_atomic_commits_every_write_together(new_store):
    store = new_store()
    with store.atomic():
        store.add_version("payments-value", "AVRO", '"int"', '"int"', "[]")
        store.set_config("payments-value", "FULL")
        store.put_product("payments", "{}")
    again = new_store()  # another connection (SQL) sees the committed block
    assert again.subjects() == ["payments-value"]
    assert again.get_config("payments-value") == "FULL"
    assert again.list_products() == [("payments", "{}")]


def test_atomic_rolls_back_every_write_when_the_block_raises(store):
    store.add_version("kept", "AVRO", '"int"', '"int"', "[]")
    store.put_product("kept", "{}")
    store.set_config(None, "FULL")
    with pytest.raises(RuntimeError, match="half-way"):
        with store.atomic():
            store.add_version("gone", "AVRO", '"long"', '"long"', "[]")
            store.add_version("kept", "AVRO", '"string"', '"string"', "[]")
            store.soft_delete("kept", 1)
            store.set_config(None, "NONE")
            store.set_config("kept", "FORWARD")
            store.put_product("gone", "{}")
            store.put_product("kept", '{"changed": true}')
            assert store.delete_product("kept") is True
            raise RuntimeError("half-way")
    assert store.subjects() == ["kept"]
    assert store.versions("kept")[0].deleted is False and len(store.versions("kept")) == 1
    assert store.find_schema("AVRO", '"long"') is None and store.get_schema(2) is None
    assert (store.get_config(None), store.get_config("kept")) == ("FULL", None)
    assert store.list_products() == [("kept", "{}")]
    # the ids the failed block used are free again: no gaps
    assert store.add_version("next", "AVRO", '"bytes"', '"bytes"', "[]").schema_id == 2


def test_reads_inside_atomic_see_the_blocks_own_writes(store):
    with store.atomic():
        row = store.add_version("s", "AVRO", '"int"', '"int"', "[]")
        store.put_product("p", "{}")
        assert store.versions("s") == [row]
        assert store.find_schema("AVRO", '"int"') == row.schema_id
        assert store.get_schema(row.schema_id).original == '"int"'
        assert store.subjects() == ["s"]
        assert store.get_product("p") == "{}" and store.list_products() == [("p", "{}")]
        store.set_config("s", "NONE")
        assert store.get_config("s") == "NONE"


def test_nested_atomic_joins_the_outer_block(store):
    with pytest.raises(KeyError):
        with store.atomic():
            store.put_product("outer", "{}")
            with store.atomic():
                store.put_product("inner", "{}")
            assert store.get_product("inner") == "{}"  # inner block ended, still inside outer
            raise KeyError("outer fails")
    assert store.list_products() == []  # the inner block's write went with the outer one
    with store.atomic():
        with store.atomic():
            store.put_product("inner", "{}")
    assert store.list_products() == [("inner", "{}")]


def test_an_inner_failure_swallowed_by_the_outer_block_keeps_its_writes(store):
    # joined, not a savepoint: documented on RegistryStore.atomic
    with store.atomic():
        try:
            with store.atomic():
                store.put_product("inner", "{}")
                raise ValueError
        except ValueError:
            pass
    assert store.list_products() == [("inner", "{}")]


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_other_connections_do_not_see_an_open_block(new_store):
    store, other = new_store(), new_store()
    with store.atomic():
        store.put_product("p", "{}")
        store.add_version("s", "AVRO", '"int"', '"int"', "[]")
        assert other.list_products() == [] and other.subjects() == []
    assert other.list_products() == [("p", "{}")] and other.subjects() == ["s"]


def test_other_threads_do_not_see_an_open_block(store):
    seen: list = []
    with store.atomic():
        store.put_product("p", "{}")
        reader = threading.Thread(target=lambda: seen.append(store.list_products()))
        reader.start()
        reader.join(0.5)
    reader.join(30)
    # memory: the reader waits for the block to end; SQL: it reads the last committed state
    assert seen in ([[]], [[("p", "{}")]]) and not reader.is_alive()
    if not isinstance(store, MemoryRegistryStore):
        assert seen == [[]]


def test_registry_atomic_and_store_property(store):
    registry = SchemaRegistry(store)
    assert registry.store is store
    with pytest.raises(AttributeError):
        registry.store = MemoryRegistryStore()
    with pytest.raises(RuntimeError):
        with registry.atomic():
            assert registry.register("payments-value", '"int"') == 1
            registry.set_config("NONE", subject="payments-value")
            registry.store.put_product("payments", '{"subjects": ["payments-value"]}')
            raise RuntimeError("apply failed")
    assert registry.subjects() == [] and store.list_products() == []
    assert registry.get_config("payments-value") == "BACKWARD"
    with registry.atomic():
        assert registry.register("payments-value", '"int"') == 1
        registry.store.put_product("payments", "{}")
    assert registry.subjects() == ["payments-value"] and store.get_product("payments") == "{}"


# -- durability and concurrency (SQL) -----------------------------------------------------------


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_new_store_on_the_same_url_sees_everything(new_store):
    store = new_store()
    with store.atomic():
        store.add_version("a", "AVRO", '"int"', '"int"', "[]")
        store.add_version("a", "AVRO", '"long"', '"long"', "[]")
        store.soft_delete("a", 1)
        store.set_config(None, "FULL")
        store.set_config("a", "NONE")
        store.put_product("payments", '{"v": 1}')
    store.close()
    again = new_store()
    assert [(r.version, r.schema_id, r.deleted) for r in again.versions("a")] == [(1, 1, True), (2, 2, False)]
    assert again.get_schema(2).original == '"long"'
    assert (again.get_config(None), again.get_config("a")) == ("FULL", "NONE")
    assert again.list_products() == [("payments", '{"v": 1}')]
    assert again.add_version("b", "AVRO", '"string"', '"string"', "[]").schema_id == 3


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_two_stores_registering_at_once_keep_ids_and_versions_unique(new_store):
    stores = [new_store(), new_store()]  # two engines, two connection pools: like two processes
    registries = [SchemaRegistry(s) for s in stores]
    registries[0].set_config("NONE")  # every schema below is new, not an evolution
    per_thread = 15
    ids: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                reg = registries[n]
                # a schema of its own, one both threads register, and a version on a shared subject
                ids[n].append(reg.register(f"own-{n}", f'{{"type": "fixed", "name": "f{n}_{i}", "size": 1}}'))
                ids[n].append(reg.register("both", f'{{"type": "enum", "name": "e{i}", "symbols": ["A"]}}'))
                reg.register("shared", f'{{"type": "fixed", "name": "s{n}_{i}", "size": 2}}')
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    own = ids[0][0::2] + ids[1][0::2]
    assert len(set(own)) == 2 * per_thread  # distinct schemas never share an id
    assert ids[0][1::2] == ids[1][1::2]  # the same schema got the same id in both threads
    reg = registries[0]
    all_ids = sorted({reg.get_version(s, v)["id"] for s in reg.subjects() for v in reg.versions(s)})
    total = 2 * per_thread + per_thread + 2 * per_thread  # own, both, shared
    assert all_ids == list(range(1, total + 1))  # unique and without gaps
    assert reg.versions("shared") == list(range(1, 2 * per_thread + 1))
    assert reg.versions("both") == list(range(1, per_thread + 1))


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_concurrent_atomic_blocks_are_serialised(new_store):
    stores = [new_store(), new_store()]
    rounds = 20
    errors: list[BaseException] = []

    def bump(store) -> None:
        try:
            for _ in range(rounds):
                with store.atomic():  # read-modify-write: lost updates if blocks interleaved
                    n = int(store.get_product("counter") or "0")
                    store.put_product("counter", str(n + 1))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert stores[0].get_product("counter") == str(2 * rounds)


def test_long_canonical_text_is_stored_and_found(store):
    # bigger than a PostgreSQL btree index row may be: the identity index is on a digest
    canonical = '{"type":"enum","name":"Big","symbols":[' + ",".join(f'"S{i}"' for i in range(20_000)) + "]}"
    row = store.add_version("big", "AVRO", canonical, canonical, "[]")
    assert store.find_schema("AVRO", canonical) == row.schema_id
    assert store.find_schema("JSON", canonical) is None
    assert store.get_schema(row.schema_id).canonical == canonical


def test_sqlite_uses_wal_and_a_busy_timeout(url_for, open_stores):
    url = url_for("sqlite")
    open_stores.append(SqlRegistryStore(url))
    conn = sqlite3.connect(sqlite_file(url))
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    engine = open_stores[0]._engine
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000


def test_sqlite_writer_waits_for_another_processes_lock(url_for, open_stores):
    url = url_for("sqlite")
    store = SqlRegistryStore(url)
    open_stores.append(store)
    other = sqlite3.connect(sqlite_file(url), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for a moment
    timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    timer.start()
    store.put_product("p", "{}")  # waits (busy timeout) instead of failing with 'database is locked'
    timer.join()
    other.close()
    assert store.get_product("p") == "{}"


def test_sqlite_add_version_failing_half_way_rolls_back(url_for, open_stores):
    url = url_for("sqlite")
    store = SqlRegistryStore(url)
    open_stores.append(store)
    store.add_version("s", "AVRO", '"int"', '"int"', "[]")
    conn = sqlite3.connect(sqlite_file(url))
    conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON registry_versions WHEN NEW.subject = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(sa.exc.IntegrityError, match="boom"):
        store.add_version("bad", "AVRO", '"long"', '"long"', "[]")
    assert store.find_schema("AVRO", '"long"') is None  # the schema row went with the failed version row
    assert store.subjects() == ["s"]
    assert store.add_version("t", "AVRO", '"long"', '"long"', "[]").schema_id == 2


# -- URLs and errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "is not a SQLAlchemy URL"),
        ("mysql+pymysql://fabric:hunter2@db/fabric", "backend 'mysql' is not supported"),
        ("postgresql+nodriver://fabric:hunter2@db/fabric", "unknown driver 'nodriver'"),
        ("postgresql+psycopg://fabric:hunter2@db:70000/fabric", "port 70000 is out of range"),
        ("postgresql+psycopg://fabric:hunter2@db", "name the database"),
    ],
)
def test_bad_urls_are_refused_naming_the_masked_url(url, says):
    with pytest.raises(StoreError) as err:
        SqlRegistryStore(url)
    assert says in str(err.value)
    assert "hunter2" not in str(err.value)
    assert mask_url(url) in str(err.value)
    with pytest.raises(ValueError, match=says):
        check_url(url)


def test_unreachable_postgres_names_the_masked_url():
    url = "postgresql+psycopg://fabric:hunter2@127.0.0.1:1/fabric?connect_timeout=2"
    with pytest.raises(StoreError) as err:
        SqlRegistryStore(url)
    msg = str(err.value)
    assert "'postgresql+psycopg://fabric:***@127.0.0.1:1/fabric?connect_timeout=2'" in msg
    assert "cannot be opened" in msg and "hunter2" not in msg


def test_missing_postgres_database_names_the_masked_url(postgres_url):
    url = sa.make_url(postgres_url).set(password="hunter2", database="no_such_db")
    url = url.render_as_string(hide_password=False)
    with pytest.raises(StoreError) as err:
        SqlRegistryStore(url)
    msg = str(err.value)
    assert "no_such_db" in msg and "***" in msg and "hunter2" not in msg


def test_sqlite_file_in_a_missing_folder_names_the_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing' / 'metadata.db'}"
    with pytest.raises(StoreError, match="cannot be opened") as err:
        SqlRegistryStore(url)
    assert url in str(err.value)


def test_sqlite_file_of_a_url():
    assert str(sqlite_file("sqlite:////var/fabric/metadata.db")) == "/var/fabric/metadata.db"
    assert str(sqlite_file("sqlite:///relative/metadata.db")) == "relative/metadata.db"
    assert sqlite_file("sqlite://") is None and sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql+psycopg://u@h/db") is None


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql+psycopg://u:p%40ss@h:5432/db?x=1") == "postgresql+psycopg://u:***@h:5432/db?x=1"
    assert mask_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert mask_url("postgresql+psycopg://postgres:@/postgres?host=/tmp/x") == "postgresql+psycopg://postgres:***@/postgres?host=/tmp/x"
