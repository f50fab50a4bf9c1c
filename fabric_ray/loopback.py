"""Keep Ray, MLflow and Feast from talking to anything beyond this machine.

Call :func:`keep_on_loopback` before starting Ray (the fabric and the test fixtures do). It
sets the telemetry switches in the environment, which every Ray worker inherits, and makes sure
Ray's dashboard finds a cluster-launcher config so that it does not probe cloud metadata
endpoints (see ``docs/loopback.md`` for why this is the switch that works).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LOOPBACK_ENV", "keep_on_loopback"]

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
