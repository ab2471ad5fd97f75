"""Login throttling: too many failures for one email within a window locks it out."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginThrottle:
    """In-process sliding window of failed logins per email.

    The table is bounded: past `max_keys` emails the least recently failed one is
    forgotten, so a flood of random addresses cannot grow memory without end.
    """

    def __init__(
        self,
        failures: int,
        window: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()

    def _prune(self, key: str) -> deque[float] | None:
        stamps = self._recent.get(key)
        if stamps is None:
            return None
        horizon = self._clock() - self.window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._recent[key]
            return None
        return stamps

    def retry_after(self, key: str) -> int:
        """Seconds until `key` may try again; 0 when it may try now."""
        stamps = self._prune(key)
        if stamps is None or len(stamps) < self.failures:
            return 0
        return max(1, int(stamps[-self.failures] + self.window - self._clock()) + 1)

    def failed(self, key: str) -> None:
        stamps = self._prune(key)
        if stamps is None:
            stamps = deque(maxlen=self.failures)
            self._recent[key] = stamps
            while len(self._recent) > self.max_keys:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(key)
        stamps.append(self._clock())

    def succeeded(self, key: str) -> None:
        self._recent.pop(key, None)
