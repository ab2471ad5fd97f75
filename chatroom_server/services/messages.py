"""The rules of storing messages: what a batch does. The SQL is the store's (db/).

`plan_batch` is handed to the message store (db/store.py), which calls it inside
its transaction once the batch's rooms are locked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..db.store import BatchPlan, Draft, NewRow, OriginalKey
from ..domain import Message
from .rooms import room_not_found

HISTORY_DEFAULT = 50
HISTORY_MAX = 200


def plan_batch(
    drafts: Sequence[Draft],
    last_seqs: dict[int, int],
    originals: dict[OriginalKey, Message],
    now: datetime,
) -> BatchPlan:
    """Decide each draft's fate, given its rooms' last seq (locked) and earlier sends.

    A room missing from `last_seqs` is gone. A client message ID found in
    `originals`, or used earlier in the same batch, is a resend: nothing new.
    Every other draft becomes the room's next seq, in the order given.
    """
    plan = BatchPlan(drafts, [None] * len(drafts), [], [])
    last = dict(last_seqs)
    first_of: dict[OriginalKey, int] = {}
    for i, draft in enumerate(drafts):
        room_id = draft.room.id
        if room_id not in last:
            plan.results[i] = room_not_found(room_id)
            continue
        cid = draft.client_message_id
        if cid is not None:
            key = (room_id, draft.author.user_id, cid)
            if key in originals:
                plan.results[i] = (originals[key], True)
                continue
            if key in first_of:
                plan.repeats.append((i, first_of[key]))
                continue
            first_of[key] = i
        last[room_id] += 1
        who = draft.author
        plan.rows.append(
            NewRow(i, room_id, who.user_id, who.user_name, draft.text, cid, last[room_id], now)
        )
    return plan
