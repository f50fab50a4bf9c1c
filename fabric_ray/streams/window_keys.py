"""Dense ids for keys: a vectorized open-addressing hash table over NumPy arrays.

A windowed operator keeps its state in arrays indexed by a key's id (0, 1, 2, ... in order of
first appearance). Looking up a batch costs a few vectorized passes over the batch, whatever the
number of keys already known: integer keys are their own 64-bit hash code; other keys (strings,
binaries, floats) use :func:`~fabric_ray.streams.sketches.hash64`, and every found id is checked
against the stored key, so a 64-bit hash collision raises instead of merging two keys.

Example:
    >>> import pyarrow as pa
    >>> index = KeyIndex(pa.string())
    >>> index.ids(pa.array(["b", "a", "b"])).tolist()
    [0, 1, 0]
    >>> index.ids(pa.array(["c", "a"]), insert=False).tolist()
    [-1, 1]
    >>> index.keys(np.array([1, 0])).to_pylist()
    ['a', 'b']
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.streams.sketches import hash64, mix64

__all__ = ["KeyIndex"]

_EMPTY = -1


def _is_int_key(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) and t != pa.uint64()


class KeyIndex:
    """Maps key values of one Arrow type to dense int64 ids.

    Args:
        key_type: the Arrow type of the keys (nested types are refused).

    Raises:
        TypeError: ``key_type`` cannot be hashed.
    """

    def __init__(self, key_type: pa.DataType) -> None:
        if pa.types.is_dictionary(key_type):
            key_type = key_type.value_type
        if pa.types.is_nested(key_type):
            raise TypeError(f"key type {key_type} cannot be a window key; use a number, string or binary column")
        self.key_type = key_type
        self._int = _is_int_key(key_type)
        self._codes = np.zeros(0, dtype=np.int64)  # per id: its 64-bit code (the value or its hash)
        self._chunks: list[pa.Array] = []  # the key values in id order (non-integer keys)
        self._n = 0
        self._table_code = np.zeros(16, dtype=np.int64)
        self._table_id = np.full(16, _EMPTY, dtype=np.int64)

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held by the index (table, codes and key values)."""
        return (
            self._table_code.nbytes
            + self._table_id.nbytes
            + self._codes.nbytes
            + sum(c.nbytes for c in self._chunks)
        )

    def _code(self, keys: pa.Array) -> np.ndarray:
        if self._int:
            return np.asarray(keys.to_numpy(zero_copy_only=False), dtype=np.int64)
        return hash64(keys).view(np.int64)

    def _slot0(self, code: np.ndarray) -> np.ndarray:
        mask = np.uint64(len(self._table_id) - 1)
        return (mix64(code.view(np.uint64)) & mask).astype(np.int64)

    def _probe(self, code: np.ndarray) -> np.ndarray:
        ids = np.full(len(code), _EMPTY, dtype=np.int64)
        pending = np.arange(len(code), dtype=np.int64)
        pos = self._slot0(code)
        mask = len(self._table_id) - 1
        while len(pending):
            found = self._table_id[pos]
            hit = (found != _EMPTY) & (self._table_code[pos] == code[pending])
            ids[pending[hit]] = found[hit]
            more = (found != _EMPTY) & ~hit
            pending = pending[more]
            pos = (pos[more] + 1) & mask
        return ids

    def _place(self, code: np.ndarray, new_ids: np.ndarray) -> None:
        """Insert distinct codes (not yet in the table) with their ids."""
        pos = self._slot0(code)
        pending = np.arange(len(code), dtype=np.int64)
        mask = len(self._table_id) - 1
        while len(pending):
            free = self._table_id[pos] == _EMPTY
            # several pending codes may aim at the same free slot: the first of each wins
            cand = np.flatnonzero(free)
            _, first = np.unique(pos[cand], return_index=True)
            win = np.zeros(len(pending), dtype=bool)
            win[cand[first]] = True
            self._table_code[pos[win]] = code[pending[win]]
            self._table_id[pos[win]] = new_ids[pending[win]]
            pending = pending[~win]
            pos = (pos[~win] + 1) & mask

    def _grow_table(self, n_keys: int) -> None:
        size = len(self._table_id)
        if n_keys * 2 <= size:
            return
        while n_keys * 2 > size:
            size *= 2
        self._table_code = np.zeros(size, dtype=np.int64)
        self._table_id = np.full(size, _EMPTY, dtype=np.int64)
        self._place(self._codes[: self._n], np.arange(self._n, dtype=np.int64))

    def _values(self) -> pa.Array:
        if len(self._chunks) != 1:
            self._chunks = [pa.concat_arrays(self._chunks) if self._chunks else pa.array([], type=self.key_type)]
        return self._chunks[0]

    def ids(self, keys: pa.Array | pa.ChunkedArray, insert: bool = True) -> np.ndarray:
        """The id of every key, giving new ids (in order of first appearance) to unseen keys.

        Args:
            keys: key values, no nulls.
            insert: when False, unseen keys get -1 and the index is unchanged.

        Raises:
            RuntimeError: two different keys with the same 64-bit hash (about 1 in 10**11 for
                10,000 keys).
        """
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        if pa.types.is_dictionary(keys.type):
            keys = keys.dictionary_decode()
        if keys.type != self.key_type:
            keys = keys.cast(self.key_type)
        code = self._code(keys)
        ids = self._probe(code)
        if not self._int and len(ids) and self._n:
            known = ids >= 0
            if known.any() and not pc.all(
                pc.equal(self._values().take(pa.array(ids[known])), keys.filter(pa.array(known)))
            ).as_py():
                raise RuntimeError("KeyIndex: two different keys share a 64-bit hash; this batch cannot be keyed")
        if not insert:
            return ids
        missing = np.flatnonzero(ids == _EMPTY)
        if len(missing):
            _, first = np.unique(code[missing], return_index=True)
            first_rows = missing[np.sort(first)]
            new_codes = code[first_rows]
            new_ids = np.arange(self._n, self._n + len(first_rows), dtype=np.int64)
            self._codes = np.concatenate([self._codes[: self._n], new_codes])
            if not self._int:
                self._chunks.append(keys.take(pa.array(first_rows)))
                if len(self._chunks) > 32:
                    self._values()
            self._n += len(first_rows)
            before = len(self._table_id)
            self._grow_table(self._n)
            if len(self._table_id) == before:
                self._place(new_codes, new_ids)
            ids[missing] = self._probe(code[missing])
        return ids

    def keys(self, ids: np.ndarray) -> pa.Array:
        """The key values of ``ids``, as an Arrow array of :attr:`key_type`."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._int:
            return pa.array(self._codes[ids]).cast(self.key_type)
        return self._values().take(pa.array(ids))

    def retain(self, keep: np.ndarray) -> np.ndarray:
        """Forget the keys whose ``keep`` is False; the rest get ids 0.. in their old order.

        Returns:
            The old ids that were kept, in new-id order (``state[:, kept]`` remaps arrays).
        """
        kept = np.flatnonzero(np.asarray(keep, dtype=bool)[: self._n])
        if not self._int:
            self._chunks = [self._values().take(pa.array(kept))]
        self._codes = self._codes[kept]
        self._n = len(kept)
        size = 16
        while self._n * 2 > size:
            size *= 2
        self._table_code = np.zeros(size, dtype=np.int64)
        self._table_id = np.full(size, _EMPTY, dtype=np.int64)
        self._place(self._codes, np.arange(self._n, dtype=np.int64))
        return kept
