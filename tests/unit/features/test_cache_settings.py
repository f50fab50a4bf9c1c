"""fabric_ray.features.cache_settings: defaults match the config; validation names the setting."""

from __future__ import annotations

import pickle

import pytest

from fabric_ray.config import load_config
from fabric_ray.features.cache_settings import CacheSettings


def test_defaults_are_the_configs():
    assert CacheSettings.from_config(load_config(None)) == CacheSettings()


def test_from_config_reads_every_setting():
    cfg = load_config(
        None,
        features={
            "cache_bytes": 2**20,
            "write_mode": "through",
            "write_behind_interval_s": 0.5,
            "write_behind_rows": 7,
            "read_through": False,
            "refresh_ahead": 0,
            "refresh_min_hits": 9,
        },
    )
    assert CacheSettings.from_config(cfg) == CacheSettings(2**20, "through", 0.5, 7, False, 0.0, 9)


def test_frozen_and_picklable():
    s = CacheSettings()
    with pytest.raises(AttributeError):
        s.write_mode = "none"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(s)) == s
    assert s.replace(write_behind_rows=3).write_behind_rows == 3


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"write_mode": "sideways"}, r"cache write_mode must be one of \['through', 'behind', 'none'\]; got 'sideways'"),
        ({"cache_bytes": 0}, "cache_bytes must be positive; got 0"),
        ({"write_behind_interval_s": 0}, "write_behind_interval_s must be positive; got 0"),
        ({"write_behind_rows": 0}, "write_behind_rows must be at least 1; got 0"),
        ({"refresh_ahead": 1.0}, r"refresh_ahead must be in \[0, 1\)"),
        ({"refresh_min_hits": 0}, "refresh_min_hits must be at least 1; got 0"),
    ],
)
def test_bad_settings_name_the_setting(changes, message):
    with pytest.raises(ValueError, match=message):
        CacheSettings(**changes)
