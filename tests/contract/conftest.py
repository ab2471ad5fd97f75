"""The contract layer: every backend behind one interface, opened as the server opens it."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator

import pytest

from chatroom_server.db import close_database
from chatroom_server.db.store import MessageStore, make_store
from chatroom_server.domain import Identity
from chatroom_server.services.messages import plan_batch
from chatroom_server.services.users import UserService
from chatroom_server.web.internals import orm


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MessageStore]:
    """The database, opened as the server opens it, and the store it would use."""
    await orm.open_database(database_url)
    chosen = make_store(database_url, plan_batch)
    await chosen.open()
    try:
        yield chosen
    finally:
        await chosen.close()
        await close_database()


_authors = itertools.count(1)


async def new_author() -> Identity:
    """A new account in the open database, as the identity its token would carry."""
    n = next(_authors)
    users = UserService(bcrypt_rounds=4)
    user = await users.signup(f"author{n}", f"author{n}@example.com", "password1")
    return Identity(user.id, user.user_name, user.email, int(time.time()) + 3600)
