"""`chatroom-server backup PATH` (SPEC 14): a consistent copy of a SQLite database
while a server writes to it, and one-line refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from websockets.asyncio.client import connect

from chatroom_server.cli import main

from ..conftest import TIMEOUT, auth, eventually, recv_event
from .conftest import ServeProcess
from .test_serve_process import user_and_room

# One user sends as fast as the server confirms: the abuse limits would refuse it.
UNLIMITED = {
    "CHATROOM_WS_RATE": "100000",
    "CHATROOM_WS_BURST": "100000",
    "CHATROOM_USER_RATE": "100000",
    "CHATROOM_USER_BURST": "100000",
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


async def history_ids(base: str, token: str, room_id: int) -> list[int]:
    """Every message ID of the room's history, page by page."""
    ids: list[int] = []
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        while True:
            res = await http.get(
                f"/v1/api/chat/rooms/{room_id}/messages",
                params={"after": ids[-1] if ids else 0, "limit": 200},
                headers=auth(token),
            )
            assert res.status_code == 200, res.text
            page = [m["ID"] for m in res.json()["messages"]]
            ids.extend(page)
            if not res.json()["hasMore"]:
                return ids


async def test_backup_of_a_live_server_serves_every_confirmed_message(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    url = f"sqlite://{tmp_path / 'live.sqlite3'}"
    live = ServeProcess(url, tmp_path, env=UNLIMITED)
    processes.append(live)
    await live.ready()
    token, rid = await user_and_room(live.base, "ann")
    confirmed: list[int] = []
    stop = asyncio.Event()

    async with connect(f"ws://127.0.0.1:{live.port}/v1/ws?room_id={rid}&jwt={token}") as ws:

        async def send_until_stopped() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                await ws.send(json.dumps({"chatMessage": f"m{n}"}))
                confirmed.append((await recv_event(ws, "message"))["Body"]["ID"])

        sender = asyncio.create_task(send_until_stopped())
        try:
            await eventually(lambda: len(confirmed) >= 20, "20 messages confirmed")
            before = list(confirmed)
            target = tmp_path / "copy.sqlite3"
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "chatroom_server", "backup", str(target)),
                *("--database-url", url),
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            after_backup = len(confirmed)
            # The server kept storing while the backup ran, and still does.
            await eventually(lambda: len(confirmed) >= after_backup + 5, "sends after it")
        finally:
            stop.set()
            await sender
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith(f"Backed up {tmp_path / 'live.sqlite3'} to {target}")
    assert len(confirmed) > len(before)

    with contextlib.closing(sqlite3.connect(target)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # A single file: no write-ahead log beside it to lose.
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        stored = [row[0] for row in db.execute("SELECT id FROM messages ORDER BY id")]
    # Every message confirmed before the backup started, and then a prefix of the
    # rest (one snapshot: no message missing between two that are there).
    assert stored[: len(before)] == before
    assert stored == confirmed[: len(stored)]

    restored = ServeProcess(f"sqlite://{target}", tmp_path)
    processes.append(restored)
    await restored.ready()
    # The token from the live server works (the signing secret is in the copy).
    assert await history_ids(restored.base, token, rid) == stored
    assert await asyncio.to_thread(restored.terminate) == 0
    assert await asyncio.to_thread(live.terminate) == 0


def _migrated(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "chat.sqlite3"
    url = f"sqlite://{path}"
    code, _, err = run("migrate", "--database-url", url)
    assert code == 0, err
    assert run("create-room", "Lobby", "--database-url", url)[0] == 0
    return url, path


def _rooms(path: Path) -> list[Any]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT name FROM rooms ORDER BY id").fetchall()


def test_an_existing_file_is_kept_unless_force(tmp_path: Path) -> None:
    url, _ = _migrated(tmp_path)
    target = tmp_path / "backup.sqlite3"
    target.write_bytes(b"an older backup")
    code, out, err = run("backup", str(target), "--database-url", url)
    assert code == 1 and out == ""
    assert err == f"Error: {target} already exists; pass --force to overwrite it.\n"
    assert target.read_bytes() == b"an older backup"

    code, out, err = run("backup", str(target), "--force", "--database-url", url)
    assert code == 0, err
    assert _rooms(target) == [("Lobby",)]
    # Nothing left behind but the backup (no partial file, no journal).
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("backup", "."))) == [
        "backup.sqlite3"
    ]


def test_the_database_url_comes_from_the_environment_too(tmp_path: Path, monkeypatch: Any) -> None:
    url, _ = _migrated(tmp_path)
    monkeypatch.setenv("CHATROOM_DATABASE_URL", url)
    code, out, err = run("backup", str(tmp_path / "env.sqlite3"))
    assert code == 0, err
    assert _rooms(tmp_path / "env.sqlite3") == [("Lobby",)]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("postgres", "backup copies SQLite databases; for PostgreSQL use pg_dump"),
        ("missing database", "The database {tmp}/none.sqlite3 does not exist."),
        ("missing directory", "The directory {tmp}/no/such does not exist."),
        ("itself", "is the database itself; give another file."),
        ("not a database", "Cannot back up {tmp}/junk.sqlite3: file is not a database."),
        ("memory", "An in-memory SQLite database has nothing to back up"),
    ],
)
def test_refusals_are_one_line(tmp_path: Path, case: str, expected: str) -> None:
    url, path = _migrated(tmp_path)
    (tmp_path / "junk.sqlite3").write_bytes(b"x" * 4096)
    target = str(tmp_path / "out.sqlite3")
    args = {
        "postgres": ["--database-url", "postgres://postgres:s3cret@127.0.0.1:1/chat"],
        "missing database": ["--database-url", f"sqlite://{tmp_path}/none.sqlite3"],
        "missing directory": ["--database-url", url],
        "itself": ["--database-url", url, "--force"],
        "not a database": ["--database-url", f"sqlite://{tmp_path}/junk.sqlite3"],
        "memory": ["--database-url", "sqlite://:memory:"],
    }[case]
    if case == "missing directory":
        target = str(tmp_path / "no" / "such" / "out.sqlite3")
    elif case == "itself":
        target = str(path)
    code, out, err = run("backup", target, *args)
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1, err
    assert expected.format(tmp=tmp_path) in err
    assert "s3cret" not in err and "Traceback" not in err
    assert not (tmp_path / "none.sqlite3").exists()  # never created as a side effect
    assert _rooms(path) == [("Lobby",)]  # the database untouched
