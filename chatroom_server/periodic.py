"""A background task that does one thing every few seconds until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Periodic:
    """Call `tick` every `interval` seconds; a failing tick is logged, the next one runs."""

    def __init__(
        self, name: str, interval: float, tick: Callable[[], Awaitable[None]], log: logging.Logger
    ) -> None:
        self.name = name
        self.interval = interval
        self._tick = tick
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._tick()
            except Exception:
                self._log.exception("%s failed; trying again in %.1f s", self.name, self.interval)
