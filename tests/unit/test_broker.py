"""fabric_ray.broker: the embedded Kafka-protocol broker, in this process and as its own process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fabric_ray.broker import EmbeddedBroker


@pytest.fixture(scope="module")
def broker():
    b = EmbeddedBroker()
    yield b
    b.close()


def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def consume_all(bootstrap: str, topic: str, partitions, n: int, timeout_s: float = 15) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        got = []
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=n, timeout=0.5):
                if m.error() is None:
                    got.append(m)
        return got
    finally:
        c.close()


def test_bootstrap_servers_are_on_loopback(broker):
    host, port = broker.bootstrap_servers.split(":")
    assert host == "127.0.0.1" and 0 < int(port) < 65536


def test_several_brokers_list_every_address():
    b = EmbeddedBroker(brokers=3)
    try:
        addrs = b.bootstrap_servers.split(",")
        assert len(addrs) == 3 and len(set(addrs)) == 3
        assert all(a.startswith("127.0.0.1:") for a in addrs)
    finally:
        b.close()


def test_produce_consume_round_trip(broker):
    topic = topic_name()
    p = Producer({"bootstrap.servers": broker.bootstrap_servers})
    sent = [(i % 2, f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    for part, key, value in sent:
        p.produce(topic, key=key, value=value, partition=part, headers=[("h", b"x")])
    assert p.flush(10) == 0
    got = consume_all(broker.bootstrap_servers, topic, [0, 1], len(sent))
    assert sorted((m.partition(), m.key(), m.value()) for m in got) == sorted(sent)
    by_part = {0: [], 1: []}
    for m in got:
        by_part[m.partition()].append((m.offset(), m.value()))
        assert m.headers() == [("h", b"x")]
    for part in (0, 1):
        offsets = [o for o, _ in sorted(by_part[part])]
        assert offsets == list(range(10))  # per-partition order and offsets from 0


def test_topics_are_auto_created_with_four_partitions(broker):
    topic = topic_name()
    p = Producer({"bootstrap.servers": broker.bootstrap_servers})
    p.produce(topic, value=b"x")
    assert p.flush(10) == 0
    md = p.list_topics(topic, timeout=10).topics[topic]
    assert md.error is None and len(md.partitions) == 4


def test_close_stops_listening():
    b = EmbeddedBroker()
    host, port = b.bootstrap_servers.split(":")
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) == 0
    b.close()
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) != 0


def test_help_explains():
    out = subprocess.run([sys.executable, "-m", "fabric_ray.broker", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "embedded Kafka-protocol broker" in out.stdout and "--ready-file" in out.stdout


def test_standalone_process_writes_ready_file_and_stops_on_sigterm(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fabric_ray.broker", "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, "the broker process exited early"
            assert time.monotonic() < deadline, "no ready file after 30 s"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid
        assert info["bootstrap_servers"].startswith("127.0.0.1:")
        assert not ready.with_suffix(".tmp").exists()
        # it is a working broker
        topic = topic_name()
        p = Producer({"bootstrap.servers": info["bootstrap_servers"]})
        p.produce(topic, value=b"hello", partition=0)
        assert p.flush(10) == 0
        assert [m.value() for m in consume_all(info["bootstrap_servers"], topic, [0], 1)] == [b"hello"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert json.loads(proc.stdout.readline()) == info  # the same JSON line went to stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
