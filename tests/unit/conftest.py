"""Unit tier: plain logic only. Starting Ray here fails loudly."""

import pytest
import ray
import ray._private.worker as ray_worker


def _no_ray(*_args, **_kwargs):
    raise RuntimeError("unit tests must not start Ray: move this test to tests/integration or test the plain object")


@pytest.fixture(autouse=True)
def forbid_ray(monkeypatch):
    """Make every way of starting Ray raise (ray.init and the auto-init behind ray.get/.remote)."""
    monkeypatch.setattr(ray, "init", _no_ray)
    monkeypatch.setattr(ray_worker, "init", _no_ray)
