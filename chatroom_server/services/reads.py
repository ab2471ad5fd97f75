"""Read markers (SPEC 12): how far each user has read each room, and what is unread.

Transport-free: REST (`mark_in`, which checks who may) and the websocket session
(`mark`, on a connection already allowed into its room) call it alike; telling
the user's other connections is realtime/reads.py's job, for whoever called.
"""

from __future__ import annotations

from ..db.read_markers import advance, read_state
from ..domain import Identity, ReadState, Room
from .access import Action, authorize
from .rooms import MAX_ID


class ReadService:
    async def mark(self, identity: Identity, room: Room, last_read_id: int) -> ReadState:
        """Move the user's marker in `room` forward to message `last_read_id`.

        The marker lands on the room's row with the largest ID at most the one named
        (an ID beyond the newest: the newest; before the first: nothing changes) and
        never moves back. Returns the marker after the call, the unread count and
        whether it moved. The caller has checked that the user may read the room.
        """
        named = min(last_read_id, MAX_ID)
        moved = None if named < 1 else await advance(identity.user_id, room.id, named)
        marker, unread = await read_state(identity.user_id, room.id)
        return ReadState(room.id, marker, unread, moved=moved is not None)

    async def mark_in(self, identity: Identity, room_id: int, last_read_id: int) -> ReadState:
        """`mark`, for whoever may read the room (NotFound, or Forbidden when banned)."""
        st = await authorize(room_id, identity, Action.READ)
        return await self.mark(identity, st.room, last_read_id)

    async def state(self, user_id: int, room_id: int) -> ReadState:
        """The user's marker and unread count in the room (no permission check)."""
        marker, unread = await read_state(user_id, room_id)
        return ReadState(room_id, marker, unread)
