"""Fabric.start refuses a taken HTTP port before it starts anything."""

import socket

import pytest

from fabric_ray import ConfigError, Fabric, load_config


def test_a_taken_serving_port_is_reported_before_ray_starts(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        fabric = Fabric(load_config(None, home=str(tmp_path), serving={"port": port}))
        # Starting Ray raises in the unit tier, so reaching ray.init would fail differently.
        with pytest.raises(ConfigError, match=f"serving.port {port} on 127.0.0.1 is not free"):
            fabric.start()


def test_a_fabric_that_is_not_started_says_so(tmp_path):
    fabric = Fabric(load_config(None, home=str(tmp_path)))
    with pytest.raises(RuntimeError, match="not started"):
        fabric.status()
