"""Parameters of the hand-written SQL (access.py, room_list.py, read_markers.py).

Their statements number their parameters (`?1` on SQLite, `$1` on PostgreSQL) so
that one may be used several times. Python 3.12 deprecates binding numbered SQLite
placeholders from a sequence, and 3.14 refuses it: SQLite's are bound by name
("1", "2", ...) from a mapping, which every Python version takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def bind(sqlite: bool, values: Sequence[Any]) -> Any:
    """`values` (the first is parameter 1) as the driver binds them."""
    if sqlite:
        return {str(n): value for n, value in enumerate(values, 1)}
    return list(values)
