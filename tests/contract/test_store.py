"""The message store (db/store.py) and the writer's group commit, on every database.

SPEC section 5's ordering and idempotent sends, below the websocket: each test
runs on SQLite (its own writer connection) and on PostgreSQL (the ORM's pool),
each through the store the server would choose for that URL.
"""

from __future__ import annotations

import asyncio

import pytest

from chatroom_server.db.store import ChangeDraft, Draft, MessageStore
from chatroom_server.domain import DELETE, EDIT, Change, Identity, Message
from chatroom_server.errors import ChatError, NotFound, StorageError
from chatroom_server.services import rooms as room_service
from chatroom_server.services.writer import AfterCommit, MessageWriter

from ..conftest import eventually
from .conftest import new_author


async def store_one(store: MessageStore, draft: Draft) -> Message:
    (result,) = await store.store_batch([draft])
    if isinstance(result, ChatError):
        raise result
    return result[0]


def collect_batches(into: list[list[Message]]) -> AfterCommit:
    """An after-commit hook that keeps each commit's messages."""

    async def after_commit(messages: list[Message]) -> None:
        into.append(messages)

    return after_commit


async def test_concurrent_stores_commit_in_seq_order(store: MessageStore) -> None:
    """Without any in-process lock, the room row lock keeps ID order == seq order."""
    users = [await new_author() for _ in range(4)]
    room = await room_service.create_room("general")

    async def writer(who: Identity) -> list[Message]:
        return [await store_one(store, Draft(room, who, "x")) for _ in range(15)]

    results = await asyncio.gather(*(writer(u) for u in users))
    stored = sorted((m for batch in results for m in batch), key=lambda m: m.id)
    assert [m.seq for m in stored] == list(range(1, 61))
    assert await store.last_seq(room.id) == 60


async def test_reads_back_history_recovery_and_backfill(store: MessageStore) -> None:
    who = await new_author()
    room = await room_service.create_room("general")
    sent = [await store_one(store, Draft(room, who, f"m{i}")) for i in range(5)]
    ids = [m.id for m in sent]
    assert [seq for seq, _ in await store.after_seq(room, 2, 10)] == [3, 4, 5]
    entries, last_id, complete = await store.after_id(room, ids[0], 2, changes=False)
    assert ([m.id for m in entries], last_id, complete) == (ids[1:3], ids[2], False)
    page = await store.history(room, before=None, after=None, limit=3)
    assert ([m.id for m in page.messages], page.has_more) == (ids[2:], True)
    page = await store.history(room, before=ids[2], after=None, limit=3)
    assert ([m.id for m in page.messages], page.has_more) == (ids[:2], False)
    page = await store.history(room, before=None, after=ids[1], limit=2)
    assert ([m.id for m in page.messages], page.has_more) == (ids[2:4], True)
    assert page.messages[0].room_name == "general" and page.messages[0].text == "m2"
    assert await store.last_seq(room.id) == 5
    assert await store.last_seq(10**12) == 0  # no such room


async def test_group_commit_batches_concurrent_messages_in_seq_order(store: MessageStore) -> None:
    """Messages sent while a commit runs share the next one, and keep their order."""
    users = [await new_author() for _ in range(4)]
    rooms = [await room_service.create_room(f"room{i}") for i in range(3)]
    published: list[list[Message]] = []
    writer = MessageWriter(collect_batches(published), store.store_batch)
    results = await asyncio.gather(
        *(
            writer.submit(rooms[i % 3], users[i % 4], f"m{i}")
            for i in range(120)  # all waiting at once: few transactions carry them
        )
    )
    assert [text for text in (m.text for m, _ in results)] == [f"m{i}" for i in range(120)]
    assert not any(resend for _, resend in results)
    assert len(published) < 120 // 4, "concurrent messages were committed one by one"
    flat = [m for batch in published for m in batch]
    assert [m.id for m in flat] == sorted(m.id for m, _ in results)
    for room in rooms:
        mine = [m for m in flat if m.room_id == room.id]
        assert [m.seq for m in mine] == list(range(1, 41))  # published in seq order
        assert [m.id for m in mine] == sorted(m.id for m in mine)
        assert await store.last_seq(room.id) == 40


async def test_messages_queued_right_after_a_commit_share_the_next(store: MessageStore) -> None:
    """Frames read in the loop turns after a commit (its fan-out held the loop) share one."""
    who = await new_author()
    room = await room_service.create_room("general")
    loop = asyncio.get_running_loop()
    batches: list[list[Message]] = []
    later: list[asyncio.Future[tuple[Message, bool]]] = []

    def submit_after(turns: int, text: str) -> None:
        if turns == 0:
            later.append(writer.submit(room, who, text))
        else:
            loop.call_soon(submit_after, turns - 1, text)

    async def after_commit(messages: list[Message]) -> None:
        batches.append(messages)
        if len(batches) == 1:
            # As frames read from sockets arrive: a few hops after the fan-out.
            for turns, text in ((2, "b"), (3, "c"), (4, "d")):
                submit_after(turns, text)

    writer = MessageWriter(after_commit, store.store_batch)
    await writer.submit(room, who, "a")
    await eventually(lambda: len(later) == 3, "the three later submits")
    await asyncio.gather(*later)
    assert [[m.text for m in batch] for batch in batches] == [["a"], ["b", "c", "d"]]


async def test_store_batch_resends_repeats_and_gone_rooms(store: MessageStore) -> None:
    who = await new_author()
    room = await room_service.create_room("general")
    gone = await room_service.create_room("gone")
    await room_service.delete_room(gone.id)
    results = await store.store_batch(
        [
            Draft(room, who, "first", "c-1"),
            Draft(room, who, "first again", "c-1"),  # the same send twice in one batch
            Draft(gone, who, "lost", None),
            Draft(room, who, "second", None),
        ]
    )
    first, repeat, lost, second = results
    assert isinstance(first, tuple) and first[1] is False and first[0].text == "first"
    assert repeat == (first[0], True)
    assert isinstance(lost, NotFound)
    assert isinstance(second, tuple) and (second[0].seq, second[1]) == (2, False)
    (again,) = await store.store_batch([Draft(room, who, "first", "c-1")])  # a later resend
    assert again == (first[0], True)
    assert await store.last_seq(room.id) == 2


async def test_concurrent_batches_over_many_rooms_keep_each_room_in_order(
    store: MessageStore,
) -> None:
    """Batches over overlapping rooms, in different orders, at once (PostgreSQL: on
    several pool connections): no deadlock, each room's seqs 1..n in ID order."""
    users = [await new_author() for _ in range(3)]
    rooms = [await room_service.create_room(f"room{i}") for i in range(5)]

    async def batches(k: int) -> list[Message]:
        out = []
        for b in range(6):
            order = rooms[k % 5 :] + rooms[: k % 5]
            drafts = [Draft(r, users[k % 3], f"{k}.{b}.{i}") for i, r in enumerate(order * 2)]
            for result in await store.store_batch(drafts):
                assert isinstance(result, tuple)
                out.append(result[0])
        return out

    stored = [m for ms in await asyncio.gather(*(batches(k) for k in range(6))) for m in ms]
    for room in rooms:
        mine = sorted((m for m in stored if m.room_id == room.id), key=lambda m: m.id)
        assert [m.seq for m in mine] == list(range(1, 6 * 6 * 2 + 1))
        assert await store.last_seq(room.id) == 72
        page = await store.history(room, before=None, after=None, limit=200)
        assert [m.id for m in page.messages] == [m.id for m in mine]


async def test_a_gone_room_in_a_batch_without_client_ids(store: MessageStore) -> None:
    """The one-statement road (no client IDs): a deleted room's draft is refused, the
    others are stored and numbered as if it were not there."""
    who = await new_author()
    room = await room_service.create_room("general")
    gone = await room_service.create_room("gone")
    await room_service.delete_room(gone.id)
    first, lost, second = await store.store_batch(
        [Draft(room, who, "a"), Draft(gone, who, "lost"), Draft(room, who, "b")]
    )
    assert isinstance(lost, NotFound)
    assert isinstance(first, tuple) and isinstance(second, tuple)
    assert [(m.seq, m.text) for m in (first[0], second[0])] == [(1, "a"), (2, "b")]
    assert first[0].id < second[0].id
    assert await store.last_seq(gone.id) == 0 and await store.last_seq(room.id) == 2


async def test_a_resend_inside_a_batch_of_new_messages(store: MessageStore) -> None:
    """A client ID stored before, in a batch with new ones: the original comes back,
    the others are stored, numbered as if the resend were not there."""
    who = await new_author()
    room = await room_service.create_room("general")
    first = await store_one(store, Draft(room, who, "first", "c-1"))
    results = await store.store_batch(
        [
            Draft(room, who, "new", "c-2"),
            Draft(room, who, "first", "c-1"),
            Draft(room, who, "newer", None),
        ]
    )
    new, again, newer = results
    assert again == (first, True)
    assert isinstance(new, tuple) and (new[0].seq, new[1], new[0].text) == (2, False, "new")
    assert isinstance(newer, tuple) and (newer[0].seq, newer[0].text) == (3, "newer")
    assert first.id < new[0].id < newer[0].id
    assert await store.last_seq(room.id) == 3


async def test_one_bad_message_does_not_sink_its_batch(store: MessageStore) -> None:
    who = await new_author()
    ghost = Identity(10**9, "ghost", "ghost@example.com", who.expires_at)  # no such user
    room = await room_service.create_room("general")
    batches: list[list[Message]] = []
    writer = MessageWriter(collect_batches(batches), store.store_batch)
    outcomes = await asyncio.gather(
        writer.submit(room, who, "a"),
        writer.submit(room, ghost, "refused by the database"),
        writer.submit(room, who, "b"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], StorageError)
    assert [o[0].text for o in outcomes if isinstance(o, tuple)] == ["a", "b"]
    published = [m for batch in batches for m in batch]
    assert [m.text for m in published] == ["a", "b"]
    assert [m.seq for m in published] == [1, 2]


async def test_edits_and_deletes_take_their_place_in_the_room_order(store: MessageStore) -> None:
    """A change is a row of its own: the room's next seq and a new ID; the message it
    changes shows the new text (or is gone) in history, recovery and back-fill."""
    who = await new_author()
    room = await room_service.create_room("general")
    first, second, third = [await store_one(store, Draft(room, who, f"m{i}")) for i in range(3)]
    edit = await store.store_change(ChangeDraft(room, who, EDIT, first.id, "m0!"))
    assert (edit.kind, edit.seq, edit.target_id) == (EDIT, 4, first.id)
    assert edit.id > third.id and edit.message is not None
    assert (edit.message.text, edit.message.id) == ("m0!", first.id)
    assert edit.message.edited_at is not None and edit.message.created_at == first.created_at
    delete = await store.store_change(ChangeDraft(room, who, DELETE, second.id))
    assert (delete.kind, delete.seq, delete.message) == (DELETE, 5, None)
    after = await store_one(store, Draft(room, who, "m3"))
    assert after.seq == 6 and await store.last_seq(room.id) == 6

    page = await store.history(room, before=None, after=None, limit=10)
    assert [(m.id, m.text, m.edited_at is not None) for m in page.messages] == [
        (first.id, "m0!", True),
        (third.id, "m2", False),
        (after.id, "m3", False),
    ]
    assert await store.live_message(second.id) is None
    live = await store.live_message(first.id)
    assert live is not None and live.text == "m0!"

    # Back-fill: every seq once, a deleted message's place kept with nothing in it.
    rows = await store.after_seq(room, 0, 10)
    assert [seq for seq, _ in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[1][1] is None
    assert isinstance(rows[3][1], Change) and rows[3][1].id == edit.id
    assert isinstance(rows[4][1], Change) and rows[4][1].kind == DELETE

    # Recovery: v1 reads live messages only; v2 also the changes, by ID.
    entries, last_id, complete = await store.after_id(room, 0, 10, changes=False)
    assert [e.id for e in entries] == [first.id, third.id, after.id] and complete
    entries, last_id, complete = await store.after_id(room, first.id, 10, changes=True)
    assert [e.id for e in entries] == [third.id, edit.id, delete.id, after.id]
    assert last_id == after.id and complete

    # A deleted (or unknown, or another room's) message cannot change again.
    other = await room_service.create_room("other")
    for target, where in ((second.id, room), (10**12, room), (first.id, other)):
        with pytest.raises(NotFound):
            await store.store_change(ChangeDraft(where, who, EDIT, target, "x"))
    with pytest.raises(NotFound):
        await store.store_change(ChangeDraft(room, who, DELETE, second.id))
    assert await store.last_seq(room.id) == 6


async def test_changes_and_batches_share_one_gapless_sequence(store: MessageStore) -> None:
    """Edits racing group commits in the same room: seq stays 1..N with no hole."""
    who = await new_author()
    room = await room_service.create_room("general")
    base = [await store_one(store, Draft(room, who, f"m{i}")) for i in range(5)]

    async def edits() -> None:
        for i in range(10):
            await store.store_change(ChangeDraft(room, who, EDIT, base[i % 5].id, f"e{i}"))

    async def sends() -> None:
        for i in range(10):
            await store_one(store, Draft(room, who, f"n{i}"))

    await asyncio.gather(edits(), sends())
    rows = await store.after_seq(room, 0, 100)
    assert [seq for seq, _ in rows] == list(range(1, 26))
    assert await store.last_seq(room.id) == 25
