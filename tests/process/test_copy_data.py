"""`chatroom-server copy-data --from URL --to URL` (SPEC 14): everything moves, typically
from SQLite to PostgreSQL, and afterwards the same logins, tokens, history, `since`
cursors and unread counts work against the new database.

The copy is generic over the models; `assert_every_model_copied` fails when a model
(or a table that is not a model) is left out, or has no rows in `seed` to prove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from click.testing import CliRunner
from tortoise import Tortoise, connections

from chatroom_server.cli import main
from chatroom_server.db import MODELS_MODULE, apply_migrations, tortoise_config
from chatroom_server.db import copy_rows as copy_module
from chatroom_server.services.data_copy import copy_data
from chatroom_server.services.secrets import rotate as rotate_signing_key

from ..conftest import (
    ChatServer,
    auth,
    fresh_pg_database,
    make_settings,
    recv_event,
    recv_json,
    start_server,
)

PASSWORD = "password1"
CHAT = "/v1/api/chat"
# Tables that are the migrations' bookkeeping, not data.
NOT_DATA = {"tortoise_migrations", "sqlite_sequence"}


@dataclass
class Seeded:
    tokens: dict[str, str]
    users: dict[str, dict[str, Any]]
    private: int
    lobby: int
    ids: list[int]  # the private room's messages, in order


async def post(server: ChatServer, token: str, path: str, body: Any, status: int = 200) -> Any:
    res = await server.http.post(f"{CHAT}{path}", json=body, headers=auth(token))
    assert res.status_code == status, res.text
    return res.json() if res.content else None


async def seed(server: ChatServer) -> Seeded:
    """A row in every table: users and their sessions, a private room with a member,
    a public one with a ban and a mute, messages (one edited, one deleted), markers."""
    # A rotated signing key (signing_keys): the tokens below carry its kid.
    await rotate_signing_key(3600)
    await server.app.ctx.keys.refresh()
    users, tokens = {}, {}
    for name in ("ann", "bob", "carol"):
        users[name], tokens[name] = await server.signup(name)
    private = (
        await post(server, tokens["ann"], "/create", {"name": "secret", "visibility": "private"})
    )["chatRoom"]["ID"]
    await post(server, tokens["ann"], f"/rooms/{private}/members", {"userName": "bob"}, 201)
    lobby = (await server.create_room(tokens["ann"], "lobby"))["ID"]
    await post(
        server,
        tokens["ann"],
        f"/rooms/{lobby}/bans",
        {"userId": users["carol"]["ID"], "reason": "spam"},
        204,
    )
    await post(server, tokens["ann"], f"/rooms/{lobby}/mutes", {"userId": users["bob"]["ID"]}, 204)
    ids = []
    for who, text in (("ann", "one"), ("ann", "two"), ("bob", "three"), ("ann", "four")):
        async with server.connect(private, tokens[who]) as ws:
            await ws.send(json.dumps({"chatMessage": text}))
            ids.append((await recv_event(ws, "message"))["Body"]["ID"])
    res = await server.http.patch(
        f"{CHAT}/messages/{ids[1]}",
        json={"chatMessage": "two, edited"},
        headers=auth(tokens["ann"]),
    )
    assert res.status_code == 200, res.text
    res = await server.http.delete(f"{CHAT}/messages/{ids[2]}", headers=auth(tokens["ann"]))
    assert res.status_code == 204, res.text
    await post(server, tokens["bob"], f"/rooms/{private}/read", {"lastReadId": ids[0]})
    await post(server, tokens["ann"], f"/rooms/{private}/read", {"lastReadId": ids[3]})
    return Seeded(tokens, users, private, lobby, ids)


async def replay(server: ChatServer, s: Seeded, since: int, version: str) -> list[Any]:
    """What bob's socket gets on reconnecting with `since`: up to `recovered`."""
    frames = []
    async with server.connect(
        s.private, s.tokens["bob"], query_extra=f"&since={since}{version}"
    ) as ws:
        while True:
            frame = await recv_json(ws)
            if frame["Event"] in ("join", "leave", "typing"):
                continue
            frames.append(frame)
            if frame["Event"] == "recovered":
                return frames


async def view(server: ChatServer, s: Seeded) -> dict[str, Any]:
    """Everything a client sees of the seeded data: room lists with unread counts and
    read markers, history, members, recovery (v1 and v2) from before the edit."""
    seen: dict[str, Any] = {}
    for name, token in s.tokens.items():
        for path in (
            "/rooms",
            f"/rooms/{s.private}/messages?limit=200",
            f"/rooms/{s.private}/members",
            f"/rooms/{s.lobby}/messages",
        ):
            res = await server.http.get(f"{CHAT}{path}", headers=auth(token))
            seen[f"{name} {path}"] = (res.status_code, res.json())
    seen["replay v1"] = await replay(server, s, s.ids[0], "")
    seen["replay v2"] = await replay(server, s, s.ids[0], "&v=2")
    return seen


async def run_copy(source: str, target: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "chatroom_server", "copy-data", "--from", source, "--to", target),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def rows_by_model(source: str, target: str) -> dict[str, tuple[list[Any], list[Any]]]:
    """Every model's rows in both databases, by primary key, as the ORM reads them."""
    config = {
        "connections": {"a": source, "b": target},
        "apps": {"chat": {"models": [MODELS_MODULE], "default_connection": "a"}},
        "use_tz": True,
        "timezone": "UTC",
    }
    await Tortoise.init(config=config)
    try:
        found = {}
        for model in Tortoise.apps["chat"].values():
            names = list(model._meta.fields_db_projection)
            pk = model._meta.pk_attr
            both = [
                list(
                    await model.all().using_db(connections.get(c)).order_by(pk).values_list(*names)
                )
                for c in ("a", "b")
            ]
            found[model._meta.db_table] = (both[0], both[1])
        return found
    finally:
        await Tortoise.close_connections()


def sqlite_tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows} - NOT_DATA


async def assert_every_model_copied(source: Path, target: str) -> None:
    found = await rows_by_model(f"sqlite://{source}", target)
    # A table that is not a model would be left behind by the copy.
    assert sqlite_tables(source) == set(found)
    for table, (before, after) in found.items():
        assert before, f"{table}: no rows in seed(); add some, so that copy-data is tested on it"
        assert after == before, table


async def test_sqlite_to_postgres_keeps_logins_tokens_history_cursors_and_unread(
    tmp_path: Path,
) -> None:
    source = tmp_path / "old.sqlite3"
    await apply_migrations(f"sqlite://{source}")
    server, stop = await start_server(make_settings(f"sqlite://{source}"))
    try:
        s = await seed(server)
        before = await view(server, s)
    finally:
        await stop()
    # Not a comparison of two failures: the old tokens work, bans hold, recovery
    # carries the edit and the delete.
    assert before["bob /rooms"][0] == 200
    assert before[f"carol /rooms/{s.lobby}/messages"][0] == 403
    assert {"message", "edit", "delete"} <= {f["Event"] for f in before["replay v2"]}
    with contextlib.closing(sqlite3.connect(source)) as db:
        (last_id,) = db.execute("SELECT MAX(id) FROM messages").fetchone()

    async with fresh_pg_database("copy") as pg:
        code, out, err = await run_copy(f"sqlite://{source}", pg, tmp_path)
        assert code == 0 and err == "", err
        lines = out.splitlines()
        assert "Applied migration chat.0001_initial to the target" in lines
        assert "users: 3 copied" in lines and "room_members: 3 copied" in lines
        assert f"messages: {len(s.ids) + 2} copied" in lines  # and the edit and the delete
        assert lines[-1].startswith("Copied ")
        await assert_every_model_copied(source, pg)

        server, stop = await start_server(make_settings(pg))
        try:
            assert await view(server, s) == before
            res = await server.http.post(
                "/v1/api/auth/login", json={"email": s.users["ann"]["Email"], "password": PASSWORD}
            )
            assert res.status_code == 200, res.text
            # bob, back with his cursor from the old server: what he missed, then live,
            # and the new message takes the next ID (the sequences were moved on).
            since = s.ids[3]
            async with server.connect(
                s.private, s.tokens["bob"], query_extra=f"&since={since}"
            ) as bob:
                await recv_event(bob, "recovered")
                async with server.connect(s.private, s.tokens["ann"]) as ann:
                    await ann.send(json.dumps({"chatMessage": "on postgres"}))
                    live = (await recv_event(bob, "message"))["Body"]
            assert (live["ID"], live["chatMessage"]) == (last_id + 1, "on postgres")
            res = await server.http.get(f"{CHAT}/rooms/{s.private}", headers=auth(s.tokens["bob"]))
            assert res.json()["chatRoom"]["unread"] == before_unread(before, s) + 1
        finally:
            await stop()


def before_unread(seen: dict[str, Any], s: Seeded) -> int:
    (room,) = [r for r in seen["bob /rooms"][1]["chatRooms"] if r["ID"] == s.private]
    assert room["lastReadId"] == s.ids[0]
    return int(room["unread"])


async def test_sqlite_to_sqlite_in_batches(tmp_path: Path, monkeypatch: Any) -> None:
    source, target = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    await apply_migrations(f"sqlite://{source}")
    server, stop = await start_server(make_settings(f"sqlite://{source}"))
    try:
        await seed(server)
    finally:
        await stop()
    # Pages of 2 rows: every table of more than one page is read by its key, page by page.
    monkeypatch.setattr(copy_module, "BATCH", 2)
    monkeypatch.setattr(copy_module, "REPORT_EVERY", 4)
    lines: list[str] = []
    total = await copy_data(f"sqlite://{source}", f"sqlite://{target}", lines.append)
    assert "messages: 4 copied so far" in lines and "messages: 6 copied" in lines
    assert total == sum(int(line.split()[1]) for line in lines if line.endswith(" copied"))
    await assert_every_model_copied(source, f"sqlite://{target}")


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_line_error(args: list[str], expected: str) -> str:
    code, _, err = cli("copy-data", *args)
    assert code == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    return err


def test_refusals_are_one_line_and_touch_nothing(tmp_path: Path) -> None:
    full, empty = f"sqlite://{tmp_path / 'full.sqlite3'}", f"sqlite://{tmp_path / 'to.sqlite3'}"
    assert cli("migrate", "--database-url", full)[0] == 0
    assert cli("create-room", "kept", "--database-url", full)[0] == 0
    assert cli("migrate", "--database-url", empty)[0] == 0
    assert cli("create-room", "there", "--database-url", empty)[0] == 0
    old = tmp_path / "old.sqlite3"
    sqlite3.connect(old).close()  # a database of no version: every migration pending

    one_line_error(
        ["--from", full, "--to", empty], "The target database is not empty (rows in rooms)"
    )
    one_line_error(["--from", full, "--to", full], "--from and --to are the same database.")
    one_line_error(
        ["--from", f"sqlite://{old}", "--to", f"sqlite://{tmp_path / 'n.sqlite3'}"],
        "The source database lacks 7 migration(s)",
    )
    one_line_error(
        ["--from", f"sqlite://{tmp_path / 'none.sqlite3'}", "--to", empty], "does not exist"
    )
    one_line_error(["--from", full, "--to", f"sqlite://{tmp_path}/no/dir.sqlite3"], "The directory")
    one_line_error(["--from", full, "--to", "mysql://x"], "--to: The database URL must start with")
    one_line_error(["--from", full], "Missing option '--to'")
    err = one_line_error(
        ["--from", full, "--to", "postgres://postgres:s3cret@127.0.0.1:1/chat"],
        "Cannot use the database postgres://postgres:***@127.0.0.1:1/chat",
    )
    assert "s3cret" not in err
    assert not (tmp_path / "none.sqlite3").exists() and not (tmp_path / "n.sqlite3").exists()
    with contextlib.closing(sqlite3.connect(tmp_path / "to.sqlite3")) as db:
        assert db.execute("SELECT name FROM rooms").fetchall() == [("there",)]

    # Wrong targets are refused before anything is migrated into them: another
    # application's database, and one of an older version that holds rows.
    other, older = tmp_path / "other.sqlite3", tmp_path / "older.sqlite3"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with contextlib.closing(sqlite3.connect(older)) as db, db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT)")
        db.execute("INSERT INTO users (username) VALUES ('old')")
    one_line_error(
        ["--from", full, "--to", f"sqlite://{other}"],
        "The target database has tables that are not chatroom-server's (invoices)",
    )
    one_line_error(
        ["--from", full, "--to", f"sqlite://{older}"],
        "The target database is not empty (rows in users)",
    )
    assert sqlite_tables(other) == {"invoices"}
    assert sqlite_tables(older) == {"users"}


def test_a_failed_copy_leaves_the_target_empty_to_run_again(tmp_path: Path) -> None:
    source, target = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    asyncio.run(apply_migrations(f"sqlite://{source}"))
    now = "2026-01-01 00:00:00+00:00"
    with contextlib.closing(sqlite3.connect(source)) as db, db:
        db.execute(
            "INSERT INTO users (id, user_name, email, password_hash, created_at, updated_at)"
            " VALUES (7, 'ann', 'ann@example.com', 'h', ?, ?)",
            (now, now),
        )
        # SQLite does not enforce lengths; the model (and PostgreSQL) do.
        db.execute(
            "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, user_agent)"
            " VALUES ('s1', 7, ?, ?, ?, ?)",
            (now, now, now, "x" * 300),
        )
    code, out, err = cli("copy-data", "--from", f"sqlite://{source}", "--to", f"sqlite://{target}")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("Error: Copying sessions failed:"), err
    assert "users: 1 copied" in out  # then rolled back with the rest
    with contextlib.closing(sqlite3.connect(target)) as db:
        assert db.execute("SELECT COUNT(*) FROM users").fetchone() == (0,)

    with contextlib.closing(sqlite3.connect(source)) as db, db:
        db.execute("UPDATE sessions SET user_agent = 'short'")
    code, out, err = cli("copy-data", "--from", f"sqlite://{source}", "--to", f"sqlite://{target}")
    assert code == 0, err
    assert "sessions: 1 copied" in out


async def test_postgres_sequences_continue_and_postgres_copies_back(tmp_path: Path) -> None:
    """Every generated key's sequence moves past the copied IDs, not only the messages';
    and PostgreSQL is a source too (read in one REPEATABLE READ snapshot)."""
    source, back = tmp_path / "a.sqlite3", tmp_path / "back.sqlite3"
    await apply_migrations(f"sqlite://{source}")
    server, stop = await start_server(make_settings(f"sqlite://{source}"))
    try:
        await seed(server)
    finally:
        await stop()
    async with fresh_pg_database("seq") as pg:
        code, _, err = await run_copy(f"sqlite://{source}", pg, tmp_path)
        assert code == 0, err
        conn = await asyncpg.connect(pg)
        try:
            text_keys = {"server_secrets", "sessions", "signing_keys"}  # no serial ID
            for table in sorted(sqlite_tables(source) - text_keys):
                top = await conn.fetchval(f'SELECT MAX(id) FROM "{table}"')
                seq = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
                assert await conn.fetchval("SELECT nextval($1)", seq) == top + 1, table
        finally:
            await conn.close()
        code, out, err = await run_copy(pg, f"sqlite://{back}", tmp_path)
        assert code == 0, err
        assert "messages: 6 copied" in out.splitlines()
    await assert_every_model_copied(source, f"sqlite://{back}")


async def test_every_model_comes_after_the_models_it_points_to() -> None:
    await Tortoise.init(config=tortoise_config("sqlite://:memory:"))
    try:
        order = copy_module.models_in_order()
        assert set(order) == set(Tortoise.apps["chat"].values())
        for at, model in enumerate(order):
            for name in model._meta.fk_fields | model._meta.o2o_fields:
                related = model._meta.fields_map[name].related_model
                assert order.index(related) < at, (model.__name__, name)
    finally:
        await Tortoise.close_connections()
