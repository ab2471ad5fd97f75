"""User names that cannot impersonate, over REST on every database (SPEC section 10):
one name whatever its case, width or script look-alikes; refused characters are a 400."""

from __future__ import annotations

import asyncio

from ...conftest import ChatServer
from .conftest import PASSWORD, assert_error, login, new_email, signup


async def test_a_name_that_looks_like_a_taken_one_is_409_naming_the_user_name(
    server: ChatServer,
) -> None:
    first = await signup(server, user_name="alice")
    assert first.status_code == 200, first.text
    for look_alike in ("alice", "Alice", "ａｌｉｃｅ", "\u0430lice", " ALICE "):
        assert_error(
            await signup(server, user_name=look_alike), 409, "user_name", look_alike.strip()
        )
    # A name of its own still signs up; so does the email refused with a look-alike.
    assert (await signup(server, user_name="alicia")).status_code == 200


async def test_the_email_conflict_keeps_its_own_message(server: ChatServer) -> None:
    email = new_email()
    assert (await signup(server, user_name="carol", email=email)).status_code == 200
    body = assert_error(await signup(server, user_name="dave", email=email), 409, "email")
    assert "user_name" not in body["message"]


async def test_refused_characters_in_a_name_are_400_naming_the_field(server: ChatServer) -> None:
    for name in ("ali\u202ece", "ali\u200dce", "ali\u2028ce", "ali\ue000ce", "ali\x1bce"):
        assert_error(await signup(server, user_name=name), 400, "user_name")
    # None of them took the name: the plain one is still free.
    assert (await signup(server, user_name="alice")).status_code == 200


async def test_two_signups_racing_for_one_name_end_in_one_409(server: ChatServer) -> None:
    emails = [new_email() for _ in range(6)]
    results = await asyncio.gather(
        *(
            signup(server, user_name=name, email=email)
            for name, email in zip(
                ["racer", "Racer", "RACER", "ｒａｃｅｒ", "rаcer", "racer"], emails, strict=True
            )
        )
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 409, 409, 409, 409, 409], [r.text for r in results]
    for res in results:
        if res.status_code == 409:
            assert_error(res, 409, "user_name")
    winner = next(i for i, r in enumerate(results) if r.status_code == 200)
    assert (await login(server, emails[winner], PASSWORD)).status_code == 200
