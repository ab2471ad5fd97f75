"""The admin CLI, through click's runner and as a real process."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from chatroom_server.cli import main


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_migrate_is_idempotent(tmp_path) -> None:
    url = f"sqlite://{tmp_path / 'cli.sqlite3'}"
    code, out, _ = run("migrate", "--database-url", url)
    assert code == 0 and "Applied migration chat.0001_initial" in out
    code, out, _ = run("migrate", "--database-url", url)
    assert code == 0 and "up to date" in out


def test_room_admin_commands(database_url: str) -> None:
    code, out, _ = run("create-room", "  Lobby  ", "--database-url", database_url)
    assert code == 0 and "Lobby" in out
    room_id = int(out.split()[2].rstrip(":"))
    run("create-room", "Second", "--database-url", database_url)
    code, out, _ = run("list-rooms", "--database-url", database_url)
    assert code == 0
    assert out.splitlines()[0] == f"{room_id}\tLobby"
    assert "Second" in out

    code, out, _ = run("delete-room", str(room_id), "--database-url", database_url)
    assert code == 0 and f"Deleted room {room_id}" in out
    code, out, _ = run("list-rooms", "--database-url", database_url)
    assert "Lobby" not in out and "Second" in out

    code, _, err = run("delete-room", str(room_id), "--database-url", database_url)
    assert code == 1 and err.strip() == f"Error: Room {room_id} does not exist."


def test_cli_errors_are_one_line(tmp_path, monkeypatch) -> None:
    url = f"sqlite://{tmp_path / 'cli.sqlite3'}"
    run("migrate", "--database-url", url)
    cases = [
        (["create-room", "   ", "--database-url", url], "Invalid room name"),
        (["create-room", "x" * 101, "--database-url", url], "Invalid room name"),
        (["delete-room", "999", "--database-url", url], "Room 999 does not exist"),
        (["serve", "--workers", "2", "--database-url", url], "needs --redis-url"),
        (["list-rooms", "--database-url", "mysql://x"], "must start with sqlite://"),
        (
            ["list-rooms", "--database-url", "postgres://postgres@127.0.0.1:1/none"],
            "Cannot use the database",
        ),
    ]
    for args, expected in cases:
        code, out, err = run(*args)
        assert code != 0, args
        assert expected in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err + out
    monkeypatch.setenv("CHATROOM_PORT", "not-a-number")
    code, _, err = run("serve", "--database-url", url)
    assert code != 0 and "CHATROOM_PORT has an invalid value" in err


def test_password_in_database_url_is_not_printed() -> None:
    code, _, err = run(
        "list-rooms", "--database-url", "postgres://postgres:s3cret-pass@127.0.0.1:1/none"
    )
    assert code == 1
    assert "s3cret-pass" not in err and "postgres:***@" in err


def test_python_dash_m_runs_the_same_cli(tmp_path) -> None:
    url = f"sqlite://{tmp_path / 'm.sqlite3'}"
    done = subprocess.run(
        [sys.executable, "-m", "chatroom_server", "migrate", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Applied migration" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "chatroom_server", "delete-room", "5", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: Room 5 does not exist."
