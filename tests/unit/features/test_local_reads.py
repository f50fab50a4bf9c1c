"""fabric_ray.features.local_reads: CacheShard.get over a Unix socket (real sockets; a real FeatureCache behind them)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
import uuid

import pyarrow as pa
import pytest

from fabric_ray.demo.payments import USER_PAYMENTS
from fabric_ray.features.cache import FeatureCache
from fabric_ray.features.local_reads import Endpoint, ShardSocket, _accept

ROWS = pa.table({"user_id": [1, 2, 3], "txn_count": [10, 20, None], "amount_sum": [1.0, 2.0, 3.0],
                 "txn_count_1m": [1, 1, 1], "amount_sum_1m": [0.5, 0.5, 0.5], "event_ts_ms": [1000, 2000, 3000]})  # fmt: skip


class Shard:
    """What the server calls: an object with the shard's ``get`` (here a plain FeatureCache)."""

    def __init__(self) -> None:
        self.cache = FeatureCache([USER_PAYMENTS])
        self.cache.put("user_payments", ROWS)
        self.calls = 0

    def get(self, view, keys, features):
        self.calls += 1
        return self.cache.get(view, keys, features, now_ms=10_000)


@pytest.fixture
def server():
    path = f"\0fabric-test-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    shard = Shard()
    secret = os.urandom(32)
    threading.Thread(target=_accept, args=(shard, listener, secret), daemon=True).start()
    yield Endpoint("node", path, os.getpid(), secret), shard, listener
    listener.close()


def test_reads_answer_like_the_shard(server):
    endpoint, shard, _ = server

    async def main():
        conn = await ShardSocket.open(endpoint)
        got = await conn.get("user_payments", [2, 9, 3], ["txn_count", "amount_sum"])
        conn.close()
        return got

    got = asyncio.run(main())
    assert got == shard.cache.get("user_payments", [2, 9, 3], ["txn_count", "amount_sum"], now_ms=10_000)
    assert got.statuses["txn_count"] == ["PRESENT", "NOT_FOUND", "NULL_VALUE"]


def test_pipelined_reads_come_back_in_order(server):
    endpoint, shard, _ = server

    async def main():
        conn = await ShardSocket.open(endpoint)
        got = await asyncio.gather(*(conn.get("user_payments", [k], ["txn_count"]) for k in [3, 1, 2, 1, 9] * 40))
        conn.close()
        return got

    got = asyncio.run(main())
    assert [g.values["txn_count"][0] for g in got] == [None, 10, 20, 10, None] * 40
    assert shard.calls == 200


def test_a_shard_error_is_a_runtime_error_and_the_connection_stays_usable(server):
    endpoint, _, _ = server

    async def main():
        conn = await ShardSocket.open(endpoint)
        with pytest.raises(RuntimeError, match="KeyError.*no_such_view"):
            await conn.get("no_such_view", [1], ["x"])
        ok = await conn.get("user_payments", [1], ["txn_count"])
        conn.close()
        return ok

    assert asyncio.run(main()).values == {"txn_count": [10]}


def test_a_closed_server_fails_waiting_and_later_reads_with_connection_error(server):
    endpoint, _, listener = server

    async def main():
        conn = await ShardSocket.open(endpoint)
        await conn.get("user_payments", [1], ["txn_count"])
        conn._writer.transport.abort()  # the shard's process went away
        await asyncio.sleep(0.05)
        assert conn.closed
        with pytest.raises(ConnectionError):
            await conn.get("user_payments", [1], ["txn_count"])

    asyncio.run(main())


def test_a_client_without_the_secret_is_not_answered(server):
    endpoint, shard, _ = server

    async def main():
        conn = await ShardSocket.open(dataclasses.replace(endpoint, secret=os.urandom(32)))
        with pytest.raises(ConnectionError):
            await conn.get("user_payments", [1], ["txn_count"])

    asyncio.run(main())
    assert shard.calls == 0
    assert "secret" not in repr(endpoint) and repr(endpoint.secret) not in repr(endpoint)


def test_works_on_uvloop_as_in_a_serve_replica(server):
    uvloop = pytest.importorskip("uvloop")
    endpoint, _, _ = server

    async def main():
        conn = await ShardSocket.open(endpoint)  # abstract socket names need a connected socket on uvloop
        got = await conn.get("user_payments", [1], ["txn_count"])
        conn.close()
        return got

    assert uvloop.run(main()).values == {"txn_count": [10]}
