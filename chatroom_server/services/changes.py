"""Edits and deletes of messages (SPEC 12), by websocket frame or by REST.

The rules are access.check_change's; the change is stored next in its room's
order and published by the relay (handed in as `apply`), so every connection of
the room, on every host, sees it in order with the room's messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..db.store import ChangeDraft, message_gone
from ..domain import DELETE, EDIT, Change, Identity, Message
from ..errors import NotFound
from . import access

Apply = Callable[[ChangeDraft], Awaitable[Change]]
LiveMessage = Callable[[int], Awaitable[Message | None]]


class MessageChanges:
    def __init__(self, live_message: LiveMessage, apply: Apply, edit_window: float) -> None:
        self._live_message = live_message
        self._apply = apply
        self.edit_window = edit_window

    async def edit(
        self, who: Identity, message_id: int, text: str, room_id: int | None = None
    ) -> Change:
        """Set the message's text (already checked: protocol.check_text)."""
        return await self._change(who, EDIT, message_id, text, room_id)

    async def delete(self, who: Identity, message_id: int, room_id: int | None = None) -> Change:
        return await self._change(who, DELETE, message_id, "", room_id)

    async def _change(
        self, who: Identity, kind: int, message_id: int, text: str, room_id: int | None
    ) -> Change:
        """`room_id`: the message must be of that room (a websocket's own)."""
        message = await self._live_message(message_id)
        if message is None or (room_id is not None and message.room_id != room_id):
            raise message_gone(message_id)
        try:
            st = await access.authorize(message.room_id, who, access.Action.READ)
        except NotFound:
            # A message of a room the caller may not see does not exist for them either.
            raise message_gone(message_id) from None
        access.check_change(st, message, kind, self.edit_window)
        return await self._apply(ChangeDraft(st.room, who, kind, message_id, text))
