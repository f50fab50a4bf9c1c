"""Arrow tables as bytes (the IPC stream format): checkpoints and write-ahead segments use it.

Example:
    >>> import pyarrow as pa
    >>> ipc_table(ipc_bytes(pa.table({"x": [1, 2]}))).to_pydict()
    {'x': [1, 2]}
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["ipc_bytes", "ipc_table"]


def ipc_bytes(table: pa.Table) -> bytes:
    """``table`` as Arrow IPC stream bytes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def ipc_table(data: bytes) -> pa.Table:
    """The table written by :func:`ipc_bytes`."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
