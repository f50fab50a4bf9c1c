"""A same-node fast path for online reads: ``CacheShard.get`` over a Unix socket instead of a Ray call.

A Ray actor call costs 0.5 to 1 ms on a small machine, more than the rest of an online read
together (HTTP, parsing, the cache lookup, the response). The feature server reads the cache
shards of its own node through this side channel instead:

- :func:`install` runs :func:`_serve` inside a shard's process (through Ray's ``__ray_call__``):
  a daemon thread listens on a Unix socket (in Linux's abstract namespace: no file to clean up,
  gone with the process) and answers each framed request by calling the shard's own public
  ``get`` method in that process. It returns an :class:`Endpoint` (node id, socket name, process
  id, and a random secret a client must send first); installing twice returns the same one.
- :class:`ShardSocket` is the asyncio client: requests are pipelined on one connection and
  answered in order (FIFO), so concurrent reads share it without ids.

Anything odd (another node, a shard that restarted, a closed socket) makes the caller fall back
to the Ray actor call, which stays the reference path; the server re-installs lazily. Frames are
a 4-byte length and a pickle, read only from a connection that first sent the endpoint's
32-byte secret (which travels only inside the Ray cluster, through ``install``), so another
local process cannot make the shard unpickle anything.

Example (needs Ray; the feature server does this)::

    endpoint = await install(shard_handle)
    conn = await ShardSocket.open(endpoint)
    lookup = await conn.get("user_payments", [1, 2], ["txn_count"])
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import os
import pickle
import socket
import struct
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Endpoint", "ShardReader", "ShardSocket", "ShardsUnavailable", "install"]

_HEADER = struct.Struct("!I")
_MAX_FRAME = 1 << 30
_SERVERS: dict[int, tuple["Endpoint", socket.socket]] = {}  # in a shard's process: id(actor) -> its server
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Endpoint:
    """Where a shard answers local reads.

    Attributes:
        node_id: Ray node of the shard's process (the socket only works there).
        path: the Unix socket's name (abstract namespace: starts with a NUL byte).
        pid: the shard's process (a restarted shard has another).
        secret: what a client sends first to be answered.
    """

    node_id: str
    path: str
    pid: int
    secret: bytes = b""

    def __repr__(self) -> str:  # never print the secret
        return f"Endpoint(node_id={self.node_id!r}, path={self.path!r}, pid={self.pid})"


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=5)
    return _HEADER.pack(len(data)) + data


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _answer(actor: Any, conn: socket.socket, secret: bytes) -> None:
    """Serve one connection: check its secret, then read ``(view, keys, features)`` frames and answer
    ``(ok, lookup or message)``."""
    with conn:
        presented = _recv_exact(conn, len(secret))
        if presented is None or not hmac.compare_digest(presented, secret):
            return
        while True:
            head = _recv_exact(conn, _HEADER.size)
            if head is None:
                return
            (size,) = _HEADER.unpack(head)
            if size > _MAX_FRAME:
                return
            body = _recv_exact(conn, size)
            if body is None:
                return
            try:
                view, keys, features = pickle.loads(body)
                reply = (True, actor.get(view, keys, features))
            except Exception as exc:  # noqa: BLE001 - the caller falls back to the Ray call, which raises it properly
                reply = (False, f"{type(exc).__name__}: {exc}")
            try:
                conn.sendall(_frame(reply))
            except OSError:
                return


def _accept(actor: Any, server: socket.socket, secret: bytes) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        threading.Thread(target=_answer, args=(actor, conn, secret), name="local-reads-conn", daemon=True).start()


def _serve(actor: Any) -> Endpoint:
    """Runs in the shard's process: start (once) the socket server answering ``actor.get``."""
    import ray

    with _LOCK:
        found = _SERVERS.get(id(actor))
        if found is not None:
            return found[0]
        path = f"\0fabric-ray-reads-{uuid.uuid4().hex}"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(64)
        endpoint = Endpoint(ray.get_runtime_context().get_node_id(), path, os.getpid(), os.urandom(32))
        threading.Thread(target=_accept, args=(actor, server, endpoint.secret), name="local-reads", daemon=True).start()
        _SERVERS[id(actor)] = (endpoint, server)
        return endpoint


async def install(shard: Any) -> Endpoint:
    """Start the local-read server in ``shard``'s process (idempotent); return where it listens."""
    return await shard.__ray_call__.remote(_serve)


class ShardSocket:
    """An asyncio connection to one shard's local-read server; requests are pipelined, answers come in order."""

    def __init__(self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.endpoint = endpoint
        self._reader = reader
        self._writer = writer
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        self.closed = False

    @classmethod
    async def open(cls, endpoint: Endpoint) -> ShardSocket:
        """Connect to ``endpoint`` (a socket of this node)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:  # connected here: uvloop (Serve's loop) does not take abstract socket names
            sock.connect(endpoint.path)
            sock.sendall(endpoint.secret)
        except OSError:
            sock.close()
            raise
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 22)
        return cls(endpoint, reader, writer)

    async def get(self, view: str, keys: Sequence[Any], features: Sequence[str]) -> Any:
        """``CacheShard.get(view, keys, features)`` in the shard's process.

        Raises:
            ConnectionError: the connection broke (the shard may have restarted): fall back.
            RuntimeError: the shard raised; the message says what.
        """
        if self.closed:
            raise ConnectionError(f"connection to {self.endpoint.path} is closed")
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._writer.write(_frame((view, list(keys), list(features))))
        ok, value = await fut
        if not ok:
            raise RuntimeError(value)
        return value

    async def _read_loop(self) -> None:
        error: BaseException = ConnectionError(f"shard socket {self.endpoint.path} closed")
        try:
            while True:
                (size,) = _HEADER.unpack(await self._reader.readexactly(_HEADER.size))
                reply = pickle.loads(await self._reader.readexactly(size))
                fut = self._waiting.popleft()
                if not fut.done():
                    fut.set_result(reply)
        except (asyncio.IncompleteReadError, OSError, IndexError) as exc:
            error = ConnectionError(f"shard socket {self.endpoint.path}: {type(exc).__name__}")
        finally:
            self.closed = True
            while self._waiting:
                fut = self._waiting.popleft()
                if not fut.done():
                    fut.set_exception(error)
            self._writer.close()

    def close(self) -> None:
        """Close the connection; waiting reads fail with ``ConnectionError``."""
        self.closed = True
        self._task.cancel()
        self._writer.close()


class ShardsUnavailable(RuntimeError):
    """The cache shards did not answer (the fabric is down or restarting); the server answers 503."""


class ShardReader:
    """How an asyncio server reaches the cache shards: local sockets for reads where it can, Ray calls otherwise.

    Reads of a shard on this node go over its local socket (:func:`install`, :class:`ShardSocket`);
    a shard elsewhere, a socket that broke, or a shard that restarted is read by a Ray actor call,
    and the socket is opened again in the background (at most every ``retry_s``). Writes and other
    calls go by Ray calls. A shard handle that went stale (a fabric restarted under the same names)
    is looked up again once.

    Args:
        get_shard: ``index -> actor handle`` of a cache shard (looked up again after a failure).
        shards: number of shards.
        node_id: this process's Ray node.
        timeout_s: longest wait for the shards of one request.
        retry_s: wait before opening a shard's socket again after it failed.
    """

    def __init__(self, get_shard: Any, shards: int, node_id: str, *, timeout_s: float = 10.0, retry_s: float = 5.0) -> None:
        self._get_shard = get_shard
        self._n = shards
        self._node_id = node_id
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._handles: list[Any] | None = None
        self._local: list[ShardSocket | None] = [None] * shards
        self._retry_at = [0.0] * shards
        self._opening: dict[int, asyncio.Task] = {}

    def handles(self) -> list[Any]:
        """The shards' actor handles (looked up on first use)."""
        if self._handles is None:
            self._handles = [self._get_shard(i) for i in range(self._n)]
        return self._handles

    async def start(self, wait_s: float = 5.0) -> None:
        """Open the local sockets, waiting up to ``wait_s`` (a shard not up yet is tried again later)."""
        for i in range(self._n):
            self._open_soon(i)
        if self._opening:
            await asyncio.wait(list(self._opening.values()), timeout=wait_s)

    def local(self) -> int:
        """Shards read over their local socket now (and try again the others that are due)."""
        for i, conn in enumerate(self._local):
            if conn is None or conn.closed:
                self._open_soon(i)
        return sum(conn is not None and not conn.closed for conn in self._local)

    def _open_soon(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        if i in self._opening or loop.time() < self._retry_at[i]:
            return
        self._retry_at[i] = loop.time() + self._retry_s
        self._opening[i] = loop.create_task(self._open(i))

    async def _open(self, i: int) -> None:
        import logging

        log = logging.getLogger("ray.serve")
        try:
            endpoint = await asyncio.wait_for(install(self.handles()[i]), self._timeout_s)
            if endpoint.node_id == self._node_id:
                self._local[i] = await ShardSocket.open(endpoint)
            else:
                log.info("cache shard %d runs on node %s, not this one: read by Ray calls", i, endpoint.node_id)
        except Exception as exc:  # noqa: BLE001 - any trouble: reads go by Ray calls, and this is tried again later
            log.warning("cache shard %d: no local socket (%s: %s); read by Ray calls", i, type(exc).__name__, exc)
        finally:
            self._opening.pop(i, None)

    async def _get(self, shard: int, view: str, keys: list, features: list[str]) -> Any:
        conn = self._local[shard]
        if conn is not None and not conn.closed:
            try:
                return await conn.get(view, keys, features)
            except RuntimeError:  # the shard raised: the Ray call below raises it properly
                pass
            except ConnectionError:
                conn.close()
        if conn is None or conn.closed:
            self._local[shard] = None
            self._open_soon(shard)
        return await self.handles()[shard].get.remote(view, keys, features)

    async def read(self, calls: Sequence[Any]) -> list[Any]:
        """Answer ``ReadCall`` s (``shard, view, keys, features``), in order.

        Raises:
            ShardsUnavailable: a shard did not answer in time, or is gone.
        """
        gets = lambda: [self._get(c.shard, c.view, c.keys, c.features) for c in calls]  # noqa: E731
        try:
            return await self._retrying(gets)
        except asyncio.TimeoutError:
            for i in {c.shard for c in calls}:  # a stuck socket must not hold later reads
                if (conn := self._local[i]) is not None:
                    conn.close()
            raise ShardsUnavailable(f"the cache shards did not answer within {self._timeout_s}s") from None

    async def call(self, method: str, args_by_shard: Sequence[tuple[int, tuple]]) -> list[Any]:
        """Ray calls ``shard.<method>(*args)`` for each ``(shard, args)``; their answers, in order.

        Raises:
            ShardsUnavailable: a shard did not answer in time, or is gone.
        """
        calls = lambda: [getattr(self.handles()[s], method).remote(*args) for s, args in args_by_shard]  # noqa: E731
        try:
            return await self._retrying(calls)
        except asyncio.TimeoutError:
            raise ShardsUnavailable(f"the cache shards did not answer within {self._timeout_s}s") from None

    async def _retrying(self, make: Any) -> list[Any]:
        import ray

        for attempt in (0, 1):
            try:
                pending = make()
                if len(pending) == 1:
                    return [await asyncio.wait_for(pending[0], self._timeout_s)]
                return list(await asyncio.wait_for(asyncio.gather(*pending), self._timeout_s))
            except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError, ValueError) as exc:
                self._handles = None  # a fabric restarted under the same names has new shard actors
                if attempt:
                    raise ShardsUnavailable(f"a cache shard is gone ({type(exc).__name__})") from exc
            except ray.exceptions.RayError as exc:
                raise ShardsUnavailable(f"a cache shard failed ({type(exc).__name__})") from exc
        raise AssertionError("unreachable")
