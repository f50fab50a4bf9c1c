"""The ``fabric`` command: help texts, configuration errors, and status/down with no fabric up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_ray.cli import build_parser, main

FABRIC = Path(sys.executable).parent / "fabric"


@pytest.fixture
def env(tmp_path):
    """An environment with an empty fabric home and no FABRIC_* settings from outside."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("FABRIC_")}
    clean["FABRIC_HOME"] = str(tmp_path / "home")
    return clean


def fabric(*args: str, env: dict, module: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fabric_ray.cli", *args] if module else [str(FABRIC), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_the_console_script_is_installed():
    assert FABRIC.exists()


def test_top_level_help_lists_commands_and_configuration(env):
    out = fabric("--help", env=env)
    assert out.returncode == 0, out.stderr
    for word in ("demo", "up", "status", "down", "--config", "FABRIC_SERVING__PORT", "fabric.yaml"):
        assert word in out.stdout, word


def test_module_entry_point_works_too(env):
    out = fabric("--help", env=env, module=True)
    assert out.returncode == 0 and "usage: fabric" in out.stdout


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("demo", ["--events", "--sample", "--seed", "--bad-fraction", "--timeout", "--no-progress", "Exits 1 on any mismatch"]),
        ("up", ["--timeout", "background", "home folder"]),
        ("status", ["--address", "--json", "lag"]),
        ("down", ["--timeout", "Stop the partition actors"]),
    ],
)
def test_each_subcommand_help_explains(env, command, words):
    out = fabric(command, "--help", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: fabric {command}")
    for word in words:
        assert word in out.stdout, word


def test_no_command_is_a_usage_error(env):
    out = fabric(env=env)
    assert out.returncode == 2
    assert "required: COMMAND" in out.stderr


def test_unknown_command_is_a_usage_error(env):
    out = fabric("launch", env=env)
    assert out.returncode == 2 and "invalid choice: 'launch'" in out.stderr


def test_bad_config_file_exits_2_naming_the_key(env, tmp_path):
    bad = tmp_path / "fabric.yaml"
    bad.write_text("serving:\n  prot: 9000\n")
    out = fabric("--config", str(bad), "status", env=env)
    assert out.returncode == 2
    assert "serving.prot: unknown key" in out.stderr
    assert str(bad) in out.stderr
    assert out.stderr.startswith("fabric status: ")
    assert "Traceback" not in out.stderr


def test_bad_config_value_exits_2_naming_key_and_value(env, tmp_path):
    bad = tmp_path / "fabric.yaml"
    bad.write_text("serving:\n  port: 70000\n")
    out = fabric("--config", str(bad), "down", env=env)
    assert out.returncode == 2
    assert "serving.port" in out.stderr and "70000" in out.stderr


def test_bad_env_value_exits_2(env):
    out = fabric("status", env={**env, "FABRIC_STREAM__BATCH_SIZE": "lots"})
    assert out.returncode == 2
    assert "stream.batch_size" in out.stderr and "'lots'" in out.stderr


def test_missing_config_file_exits_2(env, tmp_path):
    out = fabric("--config", str(tmp_path / "nope.yaml"), "status", env=env)
    assert out.returncode == 2
    assert "nope.yaml" in out.stderr and "does not exist" in out.stderr


def test_fabric_config_env_var_is_read(env, tmp_path):
    bad = tmp_path / "fabric.yaml"
    bad.write_text("nonsense_section: 1\n")
    out = fabric("status", env={**env, "FABRIC_CONFIG": str(bad)})
    assert out.returncode == 2 and "nonsense_section: unknown key" in out.stderr


def test_status_with_nothing_up_exits_2_and_says_what_to_do(env):
    out = fabric("status", env=env)
    assert out.returncode == 2
    assert "no fabric is up under" in out.stderr
    assert env["FABRIC_HOME"] in out.stderr
    assert "fabric up" in out.stderr and "--address" in out.stderr
    assert "Traceback" not in out.stderr


def test_status_ignores_a_stale_daemon_file(env, tmp_path):
    home = Path(env["FABRIC_HOME"])
    home.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (home / "daemon.json").write_text(f'{{"pid": {int(dead.stdout)}, "ray_address": "127.0.0.1:1"}}')
    out = fabric("status", env=env)
    assert out.returncode == 2 and "no fabric is up" in out.stderr
    assert not (home / "daemon.json").exists()  # the leftover of a dead daemon is cleaned up


def test_down_with_nothing_up_exits_0(env):
    out = fabric("down", env=env)
    assert out.returncode == 0, out.stderr
    assert "no fabric is up under" in out.stdout and env["FABRIC_HOME"] in out.stdout


def test_up_with_a_remote_ray_address_is_refused_in_process(tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.upper().startswith("FABRIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FABRIC_RAY__ADDRESS", "10.0.0.1:6379")
    assert main(["up"]) == 2
    err = capsys.readouterr().err
    assert "ray.address" in err and "fabric demo" in err
    assert (tmp_path / "home").is_dir()


def test_parser_defaults():
    p = build_parser()
    demo = p.parse_args(["demo"])
    assert (demo.events, demo.sample, demo.users, demo.seed, demo.bad_fraction, demo.timeout, demo.no_progress) == (
        100_000, 200, 10_000, 7, 0.001, 600, False
    )
    assert p.parse_args(["up"]).timeout == 180
    assert p.parse_args(["down"]).timeout == 90
    status = p.parse_args(["--config", "x.yaml", "status", "--json", "--address", "auto"])
    assert (status.config, status.json, status.address) == ("x.yaml", True, "auto")
