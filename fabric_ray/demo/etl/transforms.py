"""A user transform of the ETL demo: any ``module:function`` taking and returning a ``pyarrow.Table``.

Example:
    >>> import pyarrow as pa
    >>> add_event_hour(pa.table({"event_ts": [0, 3_600_000 * 25]}))["event_hour"].to_pylist()
    [0, 1]
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["add_event_hour"]


def add_event_hour(table: pa.Table, column: str = "event_ts") -> pa.Table:
    """Add ``event_hour`` (0-23, UTC) from a non-negative epoch-milliseconds column."""
    hours = pc.divide(pc.cast(table[column], pa.int64()), 3_600_000)  # integer division
    return table.append_column("event_hour", pc.subtract(hours, pc.multiply(pc.divide(hours, 24), 24)))
