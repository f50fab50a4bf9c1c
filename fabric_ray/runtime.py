"""The one module of ``fabric_ray`` that calls Ray: connect, and find or create named actors."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import ray

from fabric_ray.config import RayConfig
from fabric_ray.loopback import keep_on_loopback

__all__ = ["ensure_ray", "find_actor", "get_or_create_actor", "kill_actor", "wait_for_actor"]


_context: Any = None


def ensure_ray(cfg: RayConfig, *, dashboard: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """Connect to Ray as ``cfg`` says, unless this process already is.

    Args:
        cfg: where Ray runs.
        dashboard: start the dashboard with a new local cluster (needed by ``ray job submit``).
        env: variables a new local cluster must start with (e.g. :func:`ingress_env`); they
            are set in this process, whose environment Ray's processes inherit.

    Returns:
        ``True`` if this call started a new local cluster (which then lives as long as this
        process or until ``ray.shutdown()``).

    Raises:
        ConnectionError: the configured address does not answer; the message names it.
    """
    keep_on_loopback()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"namespace": cfg.namespace, "log_to_driver": False}
    if cfg.address is None:
        global _context
        for key, value in (env or {}).items():
            os.environ.setdefault(key, value)
        _context = ray.init(num_cpus=cfg.num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1", **kwargs)
        return True
    if cfg.address != "auto" and not cfg.address.startswith("ray://"):
        _enable_token_auth_if_token_exists()
    try:
        ray.init(address=cfg.address, **kwargs)
    except ConnectionError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at ray.address={cfg.address!r}: {exc}") from None
    return False


def _enable_token_auth_if_token_exists() -> None:
    """Use Ray's token auth for an explicit address when a token exists and no mode was chosen.

    A local cluster started by ``ray.init()`` or ``ray start`` has token auth on, and
    ``address="auto"`` finds the token by itself, but an explicit address does not. Setting
    ``RAY_AUTH_MODE`` is not enough once Ray is imported: its cached config must be refreshed,
    which Ray's own helper does.
    """
    if os.environ.get("RAY_AUTH_MODE") is not None or not (Path.home() / ".ray" / "auth_token").exists():
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: the variable alone works if set before import
        os.environ["RAY_AUTH_MODE"] = "token"
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def find_actor(name: str, namespace: str) -> Any | None:
    """The live named actor, or ``None``."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def get_or_create_actor(actor_cls: Any, name: str, namespace: str, *args: Any, **options: Any) -> Any:
    """Find the named actor or create it with ``options`` (detached: it outlives this driver)."""
    return actor_cls.options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True, **options
    ).remote(*args)


def wait_for_actor(name: str, namespace: str, timeout_s: float = 30) -> Any:
    """Wait until a named actor exists and return it.

    Raises:
        LookupError: it did not appear within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while (actor := find_actor(name, namespace)) is None:
        if time.monotonic() > deadline:
            raise LookupError(f"no actor {name!r} in Ray namespace {namespace!r}: is the fabric up? (`fabric up`)")
        time.sleep(0.2)
    return actor


def kill_actor(name: str, namespace: str) -> bool:
    """Kill a named actor if it exists; return whether one was found."""
    actor = find_actor(name, namespace)
    if actor is None:
        return False
    ray.kill(actor, no_restart=True)
    return True


def cluster_address() -> str:
    """The GCS address other processes use to connect to the cluster this process is in."""
    return ray.get_runtime_context().gcs_address



def dashboard_url() -> str | None:
    """The Ray dashboard URL (for ``ray job submit --address``) of a cluster started here, if any."""
    url = getattr(_context, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def record_restart(key: str, window_s: float = 60.0) -> int:
    """Note a restart of ``key`` in the cluster's key-value store; return how many happened in the last ``window_s``.

    Restarted actors use it to back off when they crash over and over (see
    :func:`fabric_ray.streams.assignment.restart_backoff_s`).
    """
    import json

    from ray.experimental import internal_kv

    name = f"fabric:restarts:{key}".encode()
    now = time.time()
    raw = internal_kv._internal_kv_get(name)
    times = [t for t in (json.loads(raw) if raw else []) if now - t < window_s] + [now]
    internal_kv._internal_kv_put(name, json.dumps(times).encode(), overwrite=True)
    return len(times)
