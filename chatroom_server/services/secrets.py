"""Server-wide secrets generated once and kept in the database."""

from __future__ import annotations

import secrets

from tortoise.exceptions import IntegrityError

from ..db.errors import storage_errors
from ..db.models import ServerSecret

JWT_SECRET = "jwt_secret"


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
