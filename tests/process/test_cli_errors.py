"""Every command's errors (SPEC 2 and 14, issue #16): one line on stderr, a non-zero
exit, never a traceback, and never a hang, each run as a real process.

The 5 s bound is the SPEC's contract; it is the only timing assertion here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chatroom_server.cli import main

from ..conftest import PG_ADMIN_DSN, free_port, run_in_thread, service_missing

BOUND = 5.0  # seconds

# Every command that opens a database, as a test runs it: {url} is the database
# under test, {db} a migrated SQLite one, {tmp} the test's directory, {port} free.
DB_COMMANDS: dict[str, tuple[list[str], bytes]] = {
    "serve": (["serve", "--port", "{port}", "--database-url", "{url}"], b""),
    "serve --no-migrate": (
        ["serve", "--no-migrate", "--port", "{port}", "--database-url", "{url}"],
        b"",
    ),
    "migrate": (["migrate", "--database-url", "{url}"], b""),
    "create-room": (["create-room", "Lobby", "--database-url", "{url}"], b""),
    "list-rooms": (["list-rooms", "--database-url", "{url}"], b""),
    "delete-room": (["delete-room", "1", "--database-url", "{url}"], b""),
    "list-users": (["list-users", "--database-url", "{url}"], b""),
    "deactivate-user": (["deactivate-user", "alice", "--database-url", "{url}"], b""),
    "reactivate-user": (["reactivate-user", "alice", "--database-url", "{url}"], b""),
    "set-admin": (["set-admin", "alice", "--database-url", "{url}"], b""),
    "set-admin --off": (["set-admin", "alice", "--off", "--database-url", "{url}"], b""),
    "reset-password": (
        ["reset-password", "alice", "--database-url", "{url}"],
        b"a-new-password-1\n",
    ),
    "backup": (["backup", "{tmp}/backup.sqlite3", "--database-url", "{url}"], b""),
    "copy-data --from": (["copy-data", "--from", "{url}", "--to", "sqlite://{tmp}/c.sqlite3"], b""),
    "copy-data --to": (["copy-data", "--from", "{db}", "--to", "{url}"], b""),
    "rotate-secret": (["rotate-secret", "--database-url", "{url}"], b""),
}

# One command per road to the database: migrations, the migration check of
# --no-migrate (and of copy-data's source), run_db (list-rooms; reset-password
# reads stdin after it).
SILENT_COMMANDS = (
    "serve",
    "serve --no-migrate",
    "migrate",
    "list-rooms",
    "reset-password",
    "copy-data --from",
)


def command_line(command: str, **values: object) -> tuple[list[str], bytes]:
    args, stdin = DB_COMMANDS[command]
    values.setdefault("port", free_port())
    return [a.format(**values) for a in args], stdin


@dataclass
class Run:
    code: int
    out: str
    err: str
    elapsed: float
    args: list[str] = field(default_factory=list)

    def assert_one_line_error(self, expected: str) -> None:
        where = f"{self.args}: stdout {self.out!r}, stderr {self.err!r}"
        assert self.code != 0, where
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, where
        assert "Traceback" not in self.err + self.out, where
        assert expected in lines[0], (expected, where)
        assert self.elapsed < BOUND, f"{self.elapsed:.1f} s: {where}"


def run_cli(
    args: list[str], cwd: Path, stdin: bytes = b"", env: dict[str, str] | None = None
) -> Run:
    """`python -m chatroom_server ARGS` with no CHATROOM_* from the test's environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHATROOM_")}
    environ.update({"CHATROOM_BCRYPT_ROUNDS": "4", **(env or {})})
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "chatroom_server", *args],
            cwd=cwd,
            env=environ,
            input=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{args} hung for 60 s")
    elapsed = time.monotonic() - started
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode(), elapsed, args)


@pytest.fixture(scope="module")
def silent_database() -> Iterator[str]:
    """A PostgreSQL URL whose server takes the connection and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # the kernel completes the handshakes; nobody ever reads
        yield f"postgres://postgres@127.0.0.1:{sock.getsockname()[1]}/chat"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli-errors") / "chat.sqlite3"
    url = f"sqlite://{path}"
    run = run_cli(["migrate", "--database-url", url], path.parent)
    assert run.code == 0, run.err
    return url


def test_the_table_covers_every_command() -> None:
    # A new command that opens the database belongs in DB_COMMANDS.
    assert {name.split()[0] for name in DB_COMMANDS} == set(main.commands)


UNUSABLE = {
    "sqlite-missing-dir": ("sqlite://{tmp}/missing/dir/db.sqlite3", "does not exist"),
    "sqlite-missing-relative-dir": ("sqlite://missing/dir/db.sqlite3", "does not exist"),
    "postgres-refused": ("postgres://postgres@127.0.0.1:{closed}/chat", "Cannot use the database"),
    "silent": ("{silent}", "no answer within"),
}
# backup copies SQLite files only, and says what to use instead.
EXPECTED = {("backup", "postgres-refused"): "pg_dump", ("backup", "silent"): "pg_dump"}


@pytest.mark.parametrize(
    "command, kind",
    [
        pytest.param(command, kind, id=f"{kind}-{command}")
        for kind in UNUSABLE
        for command in DB_COMMANDS
        # Each silent run costs the whole time-box: one command per road is enough.
        if kind != "silent" or command in SILENT_COMMANDS
    ],
)
def test_an_unusable_database_is_one_line_for_every_command(
    command: str, kind: str, tmp_path: Path, silent_database: str, migrated: str
) -> None:
    url, expected = UNUSABLE[kind]
    url = url.format(tmp=tmp_path, closed=free_port(), silent=silent_database)
    args, stdin = command_line(command, url=url, tmp=tmp_path, db=migrated)
    run = run_cli(args, tmp_path, stdin)
    run.assert_one_line_error(EXPECTED.get((command, kind), expected))
    if "missing" in kind:
        assert "missing/dir" in run.err
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", ["serve", "migrate", "list-users", "reset-password"])
def test_the_issue_s_missing_directory(command: str, tmp_path: Path) -> None:
    url = "sqlite:///nonexistent/dir/db.sqlite3"
    args, stdin = command_line(command, url=url)
    run = run_cli(args, tmp_path, stdin)
    run.assert_one_line_error(
        "Cannot use the database sqlite:///nonexistent/dir/db.sqlite3: "
        "the directory /nonexistent/dir does not exist"
    )


@pytest.mark.parametrize(
    "url, expected",
    [
        ("sqlite://{tmp}", "is a directory, not a file"),
        ("sqlite://{tmp}/file.txt/db.sqlite3", "file.txt is not a directory"),
    ],
    ids=["directory-as-file", "file-as-directory"],
)
@pytest.mark.parametrize("command", ["migrate", "list-rooms"])
def test_an_impossible_sqlite_path(command: str, url: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("not a directory")
    args, stdin = command_line(command, url=url.format(tmp=tmp_path))
    run = run_cli(args, tmp_path, stdin)
    run.assert_one_line_error(expected)


def test_an_unknown_postgres_database(tmp_path: Path) -> None:
    async def up() -> None:
        import asyncpg

        await (await asyncpg.connect(PG_ADMIN_DSN, timeout=5)).close()

    try:
        run_in_thread(up())
    except (OSError, ConnectionError) as exc:
        service_missing(f"PostgreSQL at {PG_ADMIN_DSN} ({exc})")
    url = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/chatroom_no_such_database"
    for command in ("serve", "migrate", "list-rooms", "deactivate-user"):
        args, stdin = command_line(command, url=url)
        run = run_cli(args, tmp_path, stdin)
        run.assert_one_line_error("Cannot use the database")


# (arguments, environment, expected in the one line); {db} is a migrated SQLite URL.
ERRORS = {
    "unknown-scheme": (["list-rooms", "--database-url", "mysql://x/y"], {}, "sqlite://"),
    "unknown-scheme-serve": (["serve", "--database-url", "http://x"], {}, "sqlite://"),
    "unknown-scheme-admin": (["list-users", "--database-url", "oracle://x"], {}, "sqlite://"),
    "bad-redis-url": (["serve", "--redis-url", "http://x", "--database-url", "{db}"], {}, "Redis"),
    "unknown-room": (["delete-room", "999", "--database-url", "{db}"], {}, "Room 999 does not"),
    "room-id-not-a-number": (["delete-room", "abc", "--database-url", "{db}"], {}, "abc"),
    "empty-room-name": (["create-room", "   ", "--database-url", "{db}"], {}, "room name"),
    "unknown-user": (["deactivate-user", "nobody", "--database-url", "{db}"], {}, "nobody"),
    "unknown-user-id": (["reactivate-user", "999", "--database-url", "{db}"], {}, "User 999"),
    "unknown-user-admin": (["set-admin", "nobody", "--database-url", "{db}"], {}, "nobody"),
    "unknown-user-password": (["reset-password", "nobody", "--database-url", "{db}"], {}, "nobody"),
    "password-on-command-line": (["reset-password", "alice", "hunter22"], {}, "only the user"),
    "port-not-a-number": (["serve", "--port", "abc", "--database-url", "{db}"], {}, "abc"),
    "port-too-large": (["serve", "--port", "70000", "--database-url", "{db}"], {}, "65535"),
    "no-workers": (["serve", "--workers", "0", "--database-url", "{db}"], {}, "WORKERS"),
    "workers-without-redis": (["serve", "--workers", "2", "--database-url", "{db}"], {}, "redis"),
    "address-not-here": (
        ["serve", "--host", "192.0.2.1", "--database-url", "{db}"],
        {},
        "Cannot listen on 192.0.2.1:8080",
    ),
    "bad-log-level": (["serve", "--log-level", "LOUD", "--database-url", "{db}"], {}, "LOUD"),
    "bad-env-value": (["serve", "--database-url", "{db}"], {"CHATROOM_PORT": "x"}, "PORT"),
    "bad-env-bool": (["serve", "--database-url", "{db}"], {"CHATROOM_DEV": "maybe"}, "DEV"),
    "copy-data-unknown-scheme": (
        ["copy-data", "--from", "mysql://x/y", "--to", "{db}"],
        {},
        "--from: The database URL must start with sqlite://",
    ),
    "backup-no-path": (["backup", "--database-url", "{db}"], {}, "PATH"),
    "unknown-command": (["frobnicate"], {}, "frobnicate"),
    "unknown-option": (["list-rooms", "--colour"], {}, "--colour"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_command_errors_are_one_line(case: str, migrated: str, tmp_path: Path) -> None:
    args, env, expected = ERRORS[case]
    run = run_cli([a.replace("{db}", migrated) for a in args], tmp_path, b"", env)
    run.assert_one_line_error(expected)


@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_serve_on_a_port_in_use(flag: str, migrated: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        args = ["serve", "--database-url", migrated, flag, port]
        if flag != "--port":
            args += ["--port", str(free_port())]
        run = run_cli(args, tmp_path)
    run.assert_one_line_error(f"Cannot listen on 127.0.0.1:{port}")
