"""The signing-key table on every database (services/secrets.py): what servers poll
changes with every rotation, whatever the rotating host's clock says."""

from __future__ import annotations

from datetime import timedelta

from tortoise import timezone

from chatroom_server.db.models import SigningKeyRow
from chatroom_server.db.store import MessageStore
from chatroom_server.security import LEGACY_KID
from chatroom_server.services import secrets


async def test_every_rotation_changes_what_servers_poll(store: MessageStore) -> None:
    assert await secrets.keys_version() is None  # before the first rotation
    first = await secrets.rotate(60)
    after_first = await secrets.keys_version()
    assert after_first == first.kid
    # The next rotation runs on a host whose clock is an hour behind: its key is the
    # "oldest" by created_at, and must be noticed all the same.
    second = await secrets.rotate(60)
    await SigningKeyRow.filter(kid=second.kid).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    after_second = await secrets.keys_version()
    assert after_second not in (None, after_first)
    assert second.kid in (after_second or "")
    # One current key: the second rotation retired the first's (and the legacy one).
    current = await SigningKeyRow.filter(retires_at=None).values_list("kid", flat=True)
    assert list(current) == [second.kid]
    assert await SigningKeyRow.exists(kid=LEGACY_KID)
