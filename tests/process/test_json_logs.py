"""`--log-format json` (or CHATROOM_LOG_FORMAT=json): every line a command prints is
a JSON object: `migrate`'s report, `serve`'s access lines, the operator and admin
commands' reports, warnings and errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from ..conftest import TIMEOUT
from .conftest import ServeProcess

KEYS = {"ts", "level", "logger", "message"}


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as a JSON object (fails on any other line)."""
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)  # a line that is not JSON fails the test here
        assert isinstance(entry, dict) and KEYS <= set(entry), line
        entries.append(entry)
    return entries


def migrate(url: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatroom_server", "migrate", "--database-url", url, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def test_migrate_prints_json_lines(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'm.sqlite3'}"
    first = migrate(url, tmp_path, "--log-format", "json")
    assert first.returncode == 0, first.stderr
    out = json_lines(first.stdout)
    assert json_lines(first.stderr) == []
    assert out and all(e["message"].startswith("Applied migration chat.") for e in out), out
    assert {e["level"] for e in out} == {"INFO"}
    assert "Applied migration chat.0001_initial" in [e["message"] for e in out]

    again = migrate(url, tmp_path, "--log-format", "json")
    assert [e["message"] for e in json_lines(again.stdout)] == [
        "No migrations to apply; the database is up to date."
    ]
    # The text format is unchanged: the bare lines.
    text = migrate(url, tmp_path)
    assert text.stdout == "No migrations to apply; the database is up to date.\n"

    # Errors too: one JSON line on stderr, exit 1.
    closed = "postgres://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1
    failed = migrate(closed, tmp_path, "--log-format", "json")
    assert failed.returncode == 1
    assert json_lines(failed.stdout) == []
    [error] = json_lines(failed.stderr)
    assert error["level"] == "ERROR" and error["message"].startswith("Error: "), error


async def test_serve_prints_json_lines_with_access_fields(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    url = f"sqlite://{tmp_path / 's.sqlite3'}"  # not migrated: serve applies them
    proc = ServeProcess(url, tmp_path, "--log-format", "json")
    processes.append(proc)
    await proc.ready()
    async with httpx.AsyncClient(base_url=proc.base, timeout=TIMEOUT) as http:
        assert (await http.get("/readyz?jwt=secret-token-in-query")).status_code == 200
        assert (await http.get("/v1/api/chat/rooms")).status_code == 401
    assert await asyncio.to_thread(proc.terminate) == 0
    entries = json_lines(proc.output())
    messages = [e["message"] for e in entries]
    assert "Applied migration chat.0001_initial" in messages, messages
    access = [e for e in entries if e["logger"] == "chatroom_server.access"]
    ready = [e for e in access if e["path"] == "/readyz"]
    assert len(ready) == 1, access
    assert ready[0]["method"] == "GET" and ready[0]["status"] == 200
    assert isinstance(ready[0]["duration_ms"], float) and ready[0]["duration_ms"] >= 0
    assert ready[0]["client"] == "127.0.0.1"
    refused = [e for e in access if e["path"] == "/v1/api/chat/rooms"]
    assert [e["status"] for e in refused] == [401], access
    assert "secret-token-in-query" not in json.dumps(entries)


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "chatroom_server", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stdout, done.stderr


def test_every_other_command_prints_json_lines(tmp_path: Path) -> None:
    """The operator commands (flag or env) and the admin ones (env): JSON lines only,
    their reports, warnings and errors included."""
    url = f"sqlite://{tmp_path / 'o.sqlite3'}"
    assert migrate(url, tmp_path).returncode == 0
    as_json = {"CHATROOM_LOG_FORMAT": "json"}
    backup = str(tmp_path / "b.sqlite3")
    expected = [
        (("create-room", "general", "--database-url", url), as_json, "Created room 1: general"),
        (("list-rooms", "--database-url", url), as_json, "1\tgeneral"),
        (("backup", backup, "--database-url", url, "--log-format", "json"), {}, "Backed up "),
        (
            ("copy-data", "--from", url, "--to", f"sqlite://{tmp_path / 'c.sqlite3'}"),
            as_json,
            "Copied ",
        ),
        (
            ("rotate-secret", "--grace", "0", "--database-url", url, "--log-format", "json"),
            {},
            "New signing key ",
        ),
    ]
    for args, env, last in expected:
        code, out, err = cli(tmp_path, *args, env=env)
        assert code == 0, err
        assert json_lines(err) == []
        messages = [e["message"] for e in json_lines(out)]
        assert messages and messages[-1].startswith(last), (args, messages)
    # copy-data's progress lines were JSON too (checked above): and a warning, an error.
    code, out, err = cli(
        tmp_path,
        *("rotate-secret", "--database-url", url, "--redis-url", "redis://127.0.0.1:1"),
        env=as_json,
    )
    assert code == 0, err
    [warning] = json_lines(err)
    assert warning["level"] == "WARNING"
    assert warning["message"].startswith("could not tell the servers through Redis")
    code, out, err = cli(tmp_path, "backup", backup, "--database-url", url, env=as_json)
    assert code == 1 and out == ""
    [error] = json_lines(err)
    assert error["level"] == "ERROR" and "exists" in error["message"], error
