"""The building blocks of fabric_ray.streams.windows: stable hashes, the HyperLogLog sketch, dense key ids."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from fabric_ray.streams.sketches import estimate, hash64, relative_error, update_registers
from fabric_ray.streams.window_keys import KeyIndex


def test_hash64_is_stable_across_processes_and_types() -> None:
    code = "import pyarrow as pa; from fabric_ray.streams.sketches import hash64; print(hash64(pa.array(['a', 'bc', ''])).tolist())"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert len(runs) == 1 and runs.pop().strip() == str(hash64(pa.array(["a", "bc", ""])).tolist())
    assert hash64(pa.array([5], pa.int32()))[0] == hash64(pa.array([5], pa.int64()))[0]
    assert hash64(pa.array(["x", "y"]).dictionary_encode()).tolist() == hash64(pa.array(["x", "y"])).tolist()
    assert hash64(pa.array([-0.0]))[0] == hash64(pa.array([0.0]))[0]
    sliced = pa.array(["skip", "ab", "cd"]).slice(1)
    assert hash64(sliced).tolist() == hash64(pa.array(["ab", "cd"])).tolist()
    assert len(set(hash64(pa.array(["ab", "ba", "a\x00b"])).tolist())) == 3
    with pytest.raises(TypeError, match=r"list<item: int64> cannot be hashed"):
        hash64(pa.array([[1]]))


@pytest.mark.parametrize("precision", [6, 10])
@pytest.mark.parametrize("n", [30, 3_000, 200_000])
def test_hyperloglog_error_stays_within_its_documented_bound(precision: int, n: int) -> None:
    regs = np.zeros((1, 1 << precision), dtype=np.uint8)
    values = pa.array(np.arange(n, dtype=np.int64) * 7_919 + 13)
    update_registers(regs.reshape(-1), np.zeros(n, dtype=np.int64), hash64(values), precision)
    assert abs(int(estimate(regs)[0]) - n) <= 4 * relative_error(precision) * n + 1


def test_sketches_merge_as_the_union() -> None:
    regs = np.zeros((3, 1 << 10), dtype=np.uint8)
    a, b = np.arange(0, 6_000), np.arange(4_000, 10_000)
    update_registers(regs.reshape(-1), np.zeros(len(a), np.int64), hash64(pa.array(a)), 10)
    update_registers(regs.reshape(-1), np.ones(len(b), np.int64), hash64(pa.array(b)), 10)
    both = np.concatenate([a, b])
    update_registers(regs.reshape(-1), np.full(len(both), 2, np.int64), hash64(pa.array(both)), 10)
    assert np.array_equal(np.maximum(regs[0], regs[1]), regs[2])
    assert abs(int(estimate(regs[2:])[0]) - 10_000) < 1_000


@pytest.mark.parametrize("key_type", [pa.int64(), pa.int16(), pa.string(), pa.large_binary(), pa.float64(), pa.uint64()])
def test_key_index_matches_a_dict(key_type) -> None:
    rng = np.random.default_rng(7)
    index, ref = KeyIndex(key_type), {}
    for _ in range(20):
        raw = rng.integers(-300, 300, int(rng.integers(0, 400)))
        if pa.types.is_string(key_type) or pa.types.is_binary(key_type) or pa.types.is_large_binary(key_type):
            values = [f"k{v}".encode() if pa.types.is_large_binary(key_type) else f"k{v}" for v in raw]
        elif key_type == pa.uint64():
            values = [int(v) + 2**63 for v in raw]
        else:
            values = raw.tolist()
        arr = pa.array(values, type=key_type)
        got = index.ids(arr).tolist()
        want = [ref.setdefault(v, len(ref)) for v in values]
        assert got == want
        assert index.keys(np.array(got, dtype=np.int64)).to_pylist() == values
    assert len(index) == len(ref)


def test_key_index_lookup_without_insert_and_retain() -> None:
    index = KeyIndex(pa.int64())
    index.ids(pa.array(np.arange(5_000) * 3))
    assert index.ids(pa.array([3, 4, 9]), insert=False).tolist() == [1, -1, 3]
    kept = index.retain(np.arange(5_000) % 2 == 1)
    assert kept[:3].tolist() == [1, 3, 5] and len(index) == 2_500
    assert index.ids(pa.array([3, 0, 9]), insert=False).tolist() == [0, -1, 1]
    assert index.ids(pa.array([0])).tolist() == [2_500]
