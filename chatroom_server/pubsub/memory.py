"""The one-process broker: publishing is delivering, in order, without awaiting."""

from __future__ import annotations

from collections.abc import Sequence

from . import Deliver


class MemoryBroker:
    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._rooms: set[int] = set()

    @property
    def healthy(self) -> bool:
        return True

    async def connect(self) -> None:
        pass

    async def disconnect(self) -> None:
        self._rooms.clear()

    async def subscribe(self, room_id: int) -> None:
        self._rooms.add(room_id)

    async def unsubscribe(self, room_id: int) -> None:
        self._rooms.discard(room_id)

    async def publish(self, room_id: int, payload: str) -> None:
        if room_id in self._rooms:
            self._deliver(room_id, payload)

    async def publish_many(self, items: Sequence[tuple[int, str]], echo: bool = True) -> None:
        if not echo:
            return  # delivered here already, and there is no other process
        for room_id, payload in items:
            if room_id in self._rooms:
                self._deliver(room_id, payload)
