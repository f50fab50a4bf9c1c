"""The background process behind ``fabric up``: owns a local Ray cluster and the fabric until told to stop.

``fabric up`` starts it detached from the terminal; it writes ``<home>/daemon.json`` (pid, Ray
address, endpoint) once everything answers, and on SIGTERM (``fabric down``) stops the fabric
and its Ray cluster cleanly. Its output goes to ``<home>/daemon.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from fabric_ray.config import FabricConfig, load_config

__all__ = ["DAEMON_FILE", "main", "read_daemon_state"]

DAEMON_FILE = "daemon.json"


def read_daemon_state(home: Path) -> dict | None:
    """What the running daemon wrote about itself, or ``None`` if none runs."""
    path = home / DAEMON_FILE
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError):
        path.unlink(missing_ok=True)  # left behind by a daemon that died
        return None
    return state


def _serve(config: FabricConfig) -> int:
    from fabric_ray.fabric import Fabric
    from fabric_ray.runtime import cluster_address, dashboard_url

    home = config.home
    done = threading.Event()

    def on_signal(*_: object) -> None:
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    fabric = Fabric(config)
    try:
        fabric.start(dashboard=True)
        # ray.init installs its own SIGTERM handler, which exits at once: take it back so that
        # `fabric down` stops the actors and the cluster cleanly.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        state = {
            "pid": os.getpid(),
            "ray_address": cluster_address(),
            "dashboard_url": dashboard_url(),
            "namespace": config.ray.namespace,
            "endpoint": config.serving.url,
            "schema_registry": config.registry_url if config.registry.enabled else None,
            "bootstrap_servers": fabric.bootstrap_servers,
        }
        tmp = home / (DAEMON_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(home / DAEMON_FILE)
        print(f"fabric up: {json.dumps(state)}", flush=True)
        done.wait()
    except Exception:
        traceback.print_exc()
        (home / "daemon.failed").write_text(traceback.format_exc())
        return 1
    finally:
        (home / DAEMON_FILE).unlink(missing_ok=True)
        fabric.stop()
        print("fabric down", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m fabric_ray.daemon [--config fabric.yaml]``."""
    parser = argparse.ArgumentParser(prog="python -m fabric_ray.daemon", description=__doc__)
    parser.add_argument("--config", help="fabric.yaml (default: $FABRIC_CONFIG, else built-in defaults)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    config.home.mkdir(parents=True, exist_ok=True)
    return _serve(config)


if __name__ == "__main__":
    sys.exit(main())
