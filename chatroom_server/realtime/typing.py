"""Typing indicators: at most one per user and room every TYPING_EVERY seconds.

Checked twice: by the sending connection, so that a client typing away costs no
broker traffic, and by every receiving process, so that a user typing in two tabs
(or on two hosts) still reaches the others once per period. Nothing is stored.
"""

from __future__ import annotations

import time

TYPING_EVERY = 2.0
# Past this many (room, user) pairs, the ones older than a period are forgotten.
_PRUNE_AT = 10_000


class TypingThrottle:
    __slots__ = ("every", "_last")

    def __init__(self, every: float = TYPING_EVERY) -> None:
        self.every = every
        self._last: dict[tuple[int, int], float] = {}

    def allow(self, room_id: int, user_id: int) -> bool:
        """Whether a typing event of this user in this room may go on now."""
        now = time.monotonic()
        key = (room_id, user_id)
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            return False
        if len(self._last) >= _PRUNE_AT:
            self._last = {k: t for k, t in self._last.items() if now - t < self.every}
        self._last[key] = now
        return True
