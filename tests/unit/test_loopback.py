"""fabric_ray.loopback: telemetry switches in the environment and Ray's bootstrap config file."""

from __future__ import annotations

import os

import pytest
import yaml

from fabric_ray.loopback import LOOPBACK_ENV, keep_on_loopback


@pytest.fixture
def bare_env(monkeypatch):
    """None of the switches set (monkeypatch puts the originals back afterwards)."""
    for key in LOOPBACK_ENV:
        monkeypatch.delenv(key, raising=False)


def test_writes_bootstrap_file_when_missing(tmp_path, bare_env):
    path = keep_on_loopback(tmp_path)
    assert path == tmp_path / "ray_bootstrap_config.yaml"
    assert path.is_file()
    assert yaml.safe_load(path.read_text()) == {"provider": {"type": "local"}}


def test_leaves_an_existing_bootstrap_file_alone(tmp_path, bare_env):
    existing = tmp_path / "ray_bootstrap_config.yaml"
    existing.write_text("provider: {type: aws}\ncluster_name: real\n")
    assert keep_on_loopback(tmp_path) == existing
    assert existing.read_text() == "provider: {type: aws}\ncluster_name: real\n"


def test_second_call_is_a_no_op(tmp_path, bare_env):
    path = keep_on_loopback(str(tmp_path))
    first = path.read_text()
    path.write_text(first + "# edited\n")
    keep_on_loopback(str(tmp_path))
    assert path.read_text() == first + "# edited\n"


def test_sets_every_switch(tmp_path, bare_env):
    keep_on_loopback(tmp_path)
    for key, value in LOOPBACK_ENV.items():
        assert os.environ[key] == value, key


def test_switches_include_ray_usage_stats_off():
    assert LOOPBACK_ENV["RAY_USAGE_STATS_ENABLED"] == "0"
    assert LOOPBACK_ENV["DO_NOT_TRACK"] == "true"


def test_does_not_override_a_value_already_set(tmp_path, bare_env, monkeypatch):
    monkeypatch.setenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "99")
    keep_on_loopback(tmp_path)
    assert os.environ["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"] == "99"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def test_default_home_is_the_users_home(tmp_path, bare_env, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = keep_on_loopback()
    assert path == tmp_path / "ray_bootstrap_config.yaml"
    assert path.exists()
