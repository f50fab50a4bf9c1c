"""Nothing the fabric starts sends a packet beyond this machine (no cloud-metadata probe, no telemetry).

A whole fabric (local Ray cluster, embedded broker, actors, Serve with its HAProxy ingress) is started and
stopped under ``strace -f``, in a fresh ``$HOME`` as on a new machine. Every TCP connect and every datagram
or stream send is checked: its peer must be a loopback address or one of this machine's own interface
addresses (Ray binds its GCS there). A UDP ``connect()`` alone sends nothing (Ray uses one to 8.8.8.8 to learn
the interface address, HAProxy one to the resolver), so only sends on such sockets would count.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys

import psutil
import pytest

from tests.conftest import free_port

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is not installed (apt-get install strace)")

SCRIPT = """
import sys
from fabric_ray import Fabric, load_config
cfg = load_config(None, home=sys.argv[1], ray={"num_cpus": 2}, serving={"port": int(sys.argv[2])})
fabric = Fabric(cfg).start()
body = fabric.get_online_features(["user_payments:txn_count"], {"user_id": [1]})
assert body["results"][1]["statuses"] == ["NOT_FOUND"], body
fabric.stop()
print("fabric ran")
"""

_ADDR = re.compile(r'inet_addr\("([0-9.]+)"\)|inet_pton\(AF_INET6, "([0-9a-fA-F:.]+)"')
_PEER = re.compile(r"<(TCP|UDP|TCPv6|UDPv6):\[[^\]]*->\[?([0-9a-fA-F:.]+?)\]?:\d+\]>")


def own_addresses() -> set[ipaddress._BaseAddress]:
    return {
        ipaddress.ip_address(a.address.split("%")[0])
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family.name in ("AF_INET", "AF_INET6")
    }


def is_local(text: str, own: set) -> bool:
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified or ip in own


def outside_traffic(trace: str, own: set) -> list[str]:
    """Lines of an ``strace -yy`` log that connect by TCP to, or send to, a non-local address."""
    bad = []
    for line in trace.splitlines():
        if " connect(" in line:
            if "<TCP" not in line:  # a UDP or Unix-socket connect sends nothing
                continue
            addrs = [a or b for a, b in _ADDR.findall(line)]
        elif re.search(r" send(to|msg|mmsg)\(", line):
            addrs = [m[1] for m in _PEER.findall(line)] + [a or b for a, b in _ADDR.findall(line)]
        else:
            continue
        if any(not is_local(a, own) for a in addrs):
            bad.append(line[:300])
    return bad


def test_the_filter_flags_outside_traffic_and_passes_local():
    own = {ipaddress.ip_address("192.0.2.2")}
    lines = "\n".join(
        [
            '1 connect(5<TCP:[1]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16) = -1',
            '2 connect(6<UDP:[2]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = 0',
            '3 sendto(7<UDP:[10.0.0.5:4000->10.255.255.53:53]>, "\\1\\2", 2, 0, NULL, 0) = 2',
            '4 sendmsg(8<TCP:[127.0.0.1:1->127.0.0.1:2]>, {msg_name=NULL}, 0) = 3',
            '5 connect(9<TCP:[3]>, {sa_family=AF_INET, sin_port=htons(6379), sin_addr=inet_addr("192.0.2.2")}, 16) = 0',
        ]
    )
    assert [line.split()[0] for line in outside_traffic(lines, own)] == ["1", "3"]


def test_a_fabric_sends_nothing_beyond_this_machine(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    trace = tmp_path / "trace.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "RAY_"))}
    env["HOME"] = str(home)
    proc = subprocess.run(
        [STRACE, "-f", "-qq", "-yy", "-s", "64", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(trace),
         sys.executable, "-c", SCRIPT, str(tmp_path / "fabric"), str(free_port())],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0 and "fabric ran" in proc.stdout, proc.stderr[-3000:]
    assert (home / "ray_bootstrap_config.yaml").exists(), "keep_on_loopback did not write the bootstrap file"
    text = trace.read_text()
    assert text.count(" connect(") > 50, "the trace caught too little to judge"
    assert "169.254.169.254" not in text and "metadata.google" not in text
    assert outside_traffic(text, own_addresses()) == []
