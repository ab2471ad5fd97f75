"""The message store: one contract, one module per database, chosen by URL.

A store commits batches of messages (group commit) and reads them back. The
rules of a batch (who is resending, which room is gone, the next seq numbers)
are not the store's: `services.messages.plan_batch` decides them, and the store
calls it inside its transaction, once the batch's rooms are locked. Every SQL
statement of the message path lives in the backend modules
(`sqlite_store.py`, `postgres_store.py`); the reads that both share go through
the ORM here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, cast

from ..domain import EDIT, Change, HistoryPage, Identity, Message, Room
from ..errors import ChatError, NotFound


@dataclass(frozen=True, slots=True)
class Draft:
    """A message to store: its room, author, text and the sender's own ID for it."""

    room: Room
    author: Identity
    text: str
    client_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeDraft:
    """An edit (with its new text) or a delete of a message of `room`, by `actor`."""

    room: Room
    actor: Identity
    kind: int  # domain.EDIT or domain.DELETE
    target_id: int
    text: str = ""


# A row of a room's order, read back: a message, or an edit or delete of one.
Entry = Message | Change


# For each draft: the message and whether it is a resend, or why it was not stored.
Stored = tuple[Message, bool] | ChatError

# (room, author, client message ID): what makes a send idempotent.
OriginalKey = tuple[int, int, str]


@dataclass(slots=True)
class NewRow:
    """A message row to insert for drafts[index]; `id` is set once it is inserted."""

    index: int
    room_id: int
    user_id: int
    user_name: str
    text: str
    client_message_id: str | None
    seq: int
    created_at: datetime
    id: int = 0


class MessageFields(Protocol):
    """A stored message's columns: a NewRow, or the ORM's MessageRow."""

    @property
    def id(self) -> int: ...
    @property
    def room_id(self) -> int: ...
    @property
    def user_id(self) -> int: ...
    @property
    def user_name(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def client_message_id(self) -> str | None: ...
    @property
    def seq(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...


class StoredFields(MessageFields, Protocol):
    """A row read back from the messages table (the ORM's MessageRow)."""

    @property
    def kind(self) -> int: ...
    @property
    def target_id(self) -> int | None: ...
    @property
    def edited_at(self) -> datetime | None: ...
    @property
    def deleted_at(self) -> datetime | None: ...


def message_gone(message_id: int) -> NotFound:
    return NotFound(f"Message {message_id} does not exist or was deleted.")


def change_of(
    draft: ChangeDraft, change_id: int, seq: int, at: datetime, target: Message
) -> Change:
    """The change a store just committed, as it is shown (an edit with its message)."""
    shown = replace(target, text=draft.text, edited_at=at) if draft.kind == EDIT else None
    return Change(
        draft.kind, change_id, seq, draft.room.id, target.id, at, draft.actor.user_id, shown
    )


def to_message(row: MessageFields, room_name: str) -> Message:
    return Message(
        id=row.id,
        room_id=row.room_id,
        room_name=room_name,
        text=row.text,
        user_id=row.user_id,
        user_name=row.user_name,
        created_at=row.created_at,
        client_message_id=row.client_message_id,
        seq=row.seq,
        edited_at=getattr(row, "edited_at", None),
    )


@dataclass(slots=True)
class BatchPlan:
    """What one commit does: the rows to insert, and every draft's outcome.

    The store inserts `rows`, sets their IDs, advances the rooms to `last_seqs()`
    and returns `outcome()`.
    """

    drafts: Sequence[Draft]
    results: list[Stored | None]
    rows: list[NewRow]
    repeats: list[tuple[int, int]]  # (draft, earlier draft with the same client ID)

    def last_seqs(self) -> dict[int, int]:
        return {row.room_id: row.seq for row in self.rows}

    def outcome(self) -> list[Stored]:
        results = self.results
        for row in self.rows:
            results[row.index] = (to_message(row, self.drafts[row.index].room.name), False)
        for i, first in self.repeats:
            earlier = results[first]
            assert isinstance(earlier, tuple)
            results[i] = (earlier[0], True)
        assert all(r is not None for r in results)
        return cast(list[Stored], results)


# (drafts, the rooms' last seq under lock, messages already stored under the
# drafts' client IDs, now) -> the plan. Supplied by services.messages.plan_batch.
Planner = Callable[
    [Sequence[Draft], dict[int, int], dict[OriginalKey, Message], datetime], BatchPlan
]


def room_ids_of(drafts: Sequence[Draft]) -> list[int]:
    """The rooms of a batch in ID order: the order they are locked in."""
    return sorted({d.room.id for d in drafts})


def original_keys(drafts: Sequence[Draft]) -> list[OriginalKey]:
    """The drafts' idempotency keys, to look up messages they already stored."""
    return [
        (d.room.id, d.author.user_id, d.client_message_id)
        for d in drafts
        if d.client_message_id is not None
    ]


class MessageStore(Protocol):
    """Where messages are committed and read back; one implementation per database."""

    async def open(self) -> None:
        """Open what the store needs beyond the ORM's connection (after it is open)."""

    async def close(self) -> None:
        """Close it again (before the ORM's connection closes)."""

    async def store_batch(self, drafts: Sequence[Draft]) -> list[Stored]:
        """Insert and commit the drafts in one transaction (group commit).

        A message is visible to others only after this returns. Each draft gets
        the stored message and whether it is a resend (a `client_message_id` this
        user already used in this room stores nothing new and returns the
        original), or the error that kept it out (its room is gone). The rooms
        are locked for the transaction, so the messages of a room commit in
        `seq` (and so ID) order on every host. Raises StorageError when the
        database fails; a draft that breaks a constraint (an unknown author)
        raises the database's IntegrityError, so that the caller can store the
        others one by one.
        """

    async def store_change(self, draft: ChangeDraft) -> Change:
        """Edit or delete a message, in one transaction with the room locked: the change
        takes the room's next seq (and an ID of its own), so it is ordered with the
        room's messages. Raises NotFound when the room or the message is gone (or
        deleted), StorageError when the database fails."""

    async def last_seq(self, room_id: int) -> int:
        """The seq of the room's newest message (0 when it has none)."""

    async def live_message(self, message_id: int) -> Message | None:
        """A message that is not deleted, by ID, whatever its room (room_name empty)."""

    async def after_seq(self, room: Room, seq: int, limit: int) -> list[tuple[int, Entry | None]]:
        """The room's rows with a larger `seq`, in order, as (seq, entry) (gap back-fill);
        the entry is None for a message deleted since (its place stays taken)."""

    async def after_id(
        self, room: Room, message_id: int, limit: int, changes: bool
    ) -> tuple[list[Entry], int, bool]:
        """What a client that saw up to `message_id` missed, oldest first (recovery):
        the live messages, with their edits and deletes when `changes`; also the last
        row ID read and whether more rows followed `limit`."""

    async def history(
        self, room: Room, *, before: int | None, after: int | None, limit: int
    ) -> HistoryPage:
        """A page of messages, oldest first.

        With `after`, the page starts just after that ID and `has_more` says
        whether newer ones follow; otherwise it is the newest `limit` messages
        (below `before`, if given) and `has_more` says whether older ones exist.
        """


def make_store(database_url: str, plan: Planner) -> MessageStore:
    """The store for this database URL: sqlite:// (a file) or postgres://."""
    if database_url.startswith("sqlite://"):
        from .sqlite_store import SqliteStore

        return SqliteStore(database_url, plan)
    from .postgres_store import PostgresStore

    return PostgresStore(plan)
