"""Server-wide secrets generated once and kept in the database, and the token
signing keys that `rotate-secret` adds (security.py signs and verifies with them).

Rotation: a new key signs from now on; every other key, the legacy one (tokens
without a kid) included, keeps verifying until `now + grace`, then nothing it
signed is accepted. Servers notice a rotation by reading the newest key's ID
about every second (realtime/keys.py), and at once when the CLI can tell them
through Redis.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise import timezone
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from ..db.errors import storage_errors
from ..db.models import ServerSecret, SigningKeyRow
from ..security import LEGACY_KID, KeyRing, SigningKey

JWT_SECRET = "jwt_secret"
# Rows of keys that stopped verifying this long ago are deleted at the next rotation.
KEEP_RETIRED = timedelta(days=7)


async def shared_secret(name: str = JWT_SECRET) -> str:
    """Return the stored secret, creating it on first use.

    Every worker and host on one database agrees: whoever inserts first wins and
    the others read the winner's value.
    """
    with storage_errors():
        row = await ServerSecret.get_or_none(name=name)
        if row is not None:
            return row.value
        try:
            row = await ServerSecret.create(name=name, value=secrets.token_urlsafe(48))
        except IntegrityError:
            row = await ServerSecret.get(name=name)
        return row.value


@dataclass(frozen=True, slots=True)
class Rotation:
    kid: str
    # When the keys it replaced stop verifying.
    retires_at: datetime


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


async def signing_keys(legacy_secret: str) -> list[SigningKey]:
    """Every key there is, oldest first, the legacy one (`legacy_secret`: tokens without
    a kid) included; before the first rotation that is the only one."""
    with storage_errors():
        rows = await SigningKeyRow.all().order_by("created_at", "kid")
    keys = [
        SigningKey(row.kid, row.secret, _seconds(row.retires_at))
        for row in rows
        if row.kid != LEGACY_KID
    ]
    legacy = next((row for row in rows if row.kid == LEGACY_KID), None)
    ends = None if legacy is None else _seconds(legacy.retires_at)
    return [SigningKey(LEGACY_KID, legacy_secret, ends), *keys]


async def key_ring(env_secret: str | None) -> KeyRing:
    """The keys to sign and verify with; the legacy one is CHATROOM_JWT_SECRET when set
    (`env_secret`), else the secret generated once and stored."""
    return KeyRing(await signing_keys(env_secret or await shared_secret()))


async def keys_version() -> str | None:
    """What servers poll (None before the first rotation): the IDs of the keys, which
    change with every rotation (it adds a key with a new random ID). Not the newest
    key by created_at: that is the rotating host's clock, and a rotation run from a
    host whose clock is behind would go unnoticed. A handful of rows: keys retired
    more than KEEP_RETIRED ago are deleted."""
    with storage_errors():
        kids = await SigningKeyRow.exclude(kid=LEGACY_KID).values_list("kid", flat=True)
    return ",".join(sorted(str(kid) for kid in kids)) or None


async def rotate(grace: float) -> Rotation:
    """Add a new signing key; every other key verifies until now + `grace` seconds
    (or until it was already to stop, if sooner)."""
    now = timezone.now()
    ends = now + timedelta(seconds=grace)
    kid = secrets.token_hex(8)
    with storage_errors():
        await _ensure_legacy_row()
        async with in_transaction():
            # Rotations one at a time: on PostgreSQL a racing rotation would otherwise
            # take its snapshot before this one's key commits, and two keys would stay
            # current. (SQLite serialises writers already; FOR UPDATE is not sent there.)
            await SigningKeyRow.select_for_update().filter(kid=LEGACY_KID).first()
            await SigningKeyRow.create(kid=kid, secret=secrets.token_urlsafe(48))
            # A rotation that committed before this one's lock is seen here, and its
            # key retires too (one current key).
            await (
                SigningKeyRow.exclude(kid=kid)
                .filter(Q(retires_at=None) | Q(retires_at__gt=ends))
                .update(retires_at=ends)
            )
            await SigningKeyRow.filter(
                retires_at__lt=now - KEEP_RETIRED, kid__not=LEGACY_KID
            ).delete()
    return Rotation(kid, ends)


async def _ensure_legacy_row() -> None:
    """The legacy key's row (no secret: it is read from the environment or from
    server_secrets), created once before the first rotation's transaction."""
    if await SigningKeyRow.exists(kid=LEGACY_KID):
        return
    try:
        await SigningKeyRow.create(kid=LEGACY_KID, secret="")
    except IntegrityError:
        pass  # another rotation created it
