"""The sequencer alone: per-room order, duplicates and back-fill, over a fake database."""

from __future__ import annotations

import asyncio

from chatroom_server.realtime.sequencer import Fetched, Sequencer


def make_sequencer(database: list[tuple[int, int]]) -> tuple[Sequencer, list[int]]:
    """A sequencer over a fake 'database' of (seq, id) rows; returns it and what it emitted.

    A negative id is a row with nothing to show (a message deleted since)."""
    emitted: list[int] = []

    async def fetch(after: int) -> list[Fetched]:
        return [
            (seq, mid, None if mid < 0 else f"frame{mid}", False)
            for seq, mid in database
            if seq > after
        ]

    return Sequencer(lambda mid, frame, v2: emitted.append(mid), fetch), emitted


async def test_sequencer_orders_drops_duplicates_and_backfills() -> None:
    database = [(1, 10), (2, 11), (3, 12), (4, 13)]
    seq, emitted = make_sequencer(database)
    seq.offer(1, 10, "frame10")  # before start(): held
    seq.start(0)
    assert emitted == [10]
    seq.offer(1, 10, "frame10")  # duplicate
    seq.offer(4, 13, "frame13")  # ahead of a hole: held, back-fill starts
    assert emitted == [10]
    for _ in range(100):
        if emitted == [10, 11, 12, 13]:
            break
        await asyncio.sleep(0)  # let the back-fill task run; it needs no time, only turns
    assert emitted == [10, 11, 12, 13]
    seq.offer(3, 12, "frame12")  # late original of a back-filled one: dropped
    assert emitted == [10, 11, 12, 13]
    seq.close()


async def test_sequencer_resync_picks_up_what_the_broker_lost() -> None:
    database = [(1, 10), (2, 11)]
    seq, emitted = make_sequencer(database)
    seq.start(0)
    seq.resync()
    for _ in range(100):
        if emitted == [10, 11]:
            break
        await asyncio.sleep(0)
    assert emitted == [10, 11]
    seq.close()


async def test_a_closed_sequencer_hands_on_nothing_and_starts_no_backfill() -> None:
    seq, emitted = make_sequencer([(1, 10), (2, 11), (3, 12)])
    seq.start(0)
    seq.offer(1, 10, "frame10")
    seq.close()  # its room closed here (or the server is stopping)
    seq.offer(2, 11, "frame11")
    seq.offer(3, 12, "frame12")  # a hole would start a back-fill: not on a closed one
    seq.resync()
    for _ in range(10):
        await asyncio.sleep(0)
    assert emitted == [10]
    assert seq._backfill is None


async def test_backfill_passes_over_rows_with_nothing_to_show() -> None:
    """A message deleted before it was back-filled keeps its place: the next one follows."""
    database = [(1, 10), (2, -1), (3, 12)]
    seq, emitted = make_sequencer(database)
    seq.start(0)
    seq.offer(3, 12, "frame12")  # 1 and 2 are missing: back-filled
    for _ in range(100):
        if emitted == [10, 12]:
            break
        await asyncio.sleep(0)  # turns, as above
    assert emitted == [10, 12]
    assert seq.last == 3


async def test_v2_only_frames_keep_their_mark() -> None:
    marks: list[tuple[int, bool]] = []

    async def fetch(after: int) -> list[Fetched]:
        return []

    seq = Sequencer(lambda mid, frame, v2: marks.append((mid, v2)), fetch)
    seq.start(0)
    seq.offer(2, 11, "edit", True)
    seq.offer(1, 10, "message")
    assert marks == [(10, False), (11, True)]
