"""Sanic's own launcher: `sanic chatroom_server.app:create_app --factory` serves the app,
with the settings from the CHATROOM_* environment."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from ..conftest import TIMEOUT, auth, free_port, recv_event


def sanic_command() -> list[str]:
    """The `sanic` script next to this Python, or the module if there is none."""
    script = Path(sys.executable).parent / "sanic"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sanic"]


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    url = f"sqlite://{tmp_path / 'launcher.sqlite3'}"
    migrated = subprocess.run(
        [sys.executable, "-m", "chatroom_server", "migrate", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    env = {
        **os.environ,
        "CHATROOM_DATABASE_URL": url,
        "CHATROOM_BCRYPT_ROUNDS": "4",
        "CHATROOM_HEADER_TIMEOUT": "1",
    }
    env.pop("CHATROOM_JWT_SECRET", None)
    proc = subprocess.Popen(
        [
            *sanic_command(),
            "chatroom_server.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        start_new_session=True,  # its workers go down with it at the end
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def output(proc: subprocess.Popen[str]) -> str:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    return proc.stdout.read()


async def test_the_sanic_launcher_serves_the_factory(
    launched: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = launched
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        for _ in range(400):
            if proc.poll() is not None:
                raise AssertionError(f"sanic exited early:\n{output(proc)}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)  # nothing to wait on but the port opening
        else:
            raise AssertionError(f"sanic did not become ready:\n{output(proc)}")
        res = await http.post(
            "/v1/api/auth/signup",
            json={"user_name": "sam", "email": "sam@example.com", "password": "password1"},
        )
        assert res.status_code == 200, res.text
        token = res.json()["token"]
        room = await http.post("/v1/api/chat/create", json={"name": "r"}, headers=auth(token))
        rid = room.json()["chatRoom"]["ID"]
    async with connect(f"ws://127.0.0.1:{port}/v1/ws?room_id={rid}&jwt={token}") as ws:
        await ws.send(json.dumps({"chatRoomId": rid, "chatMessage": "launched"}))
        assert (await recv_event(ws, "message"))["Body"]["chatMessage"] == "launched"
    # Our connection protocol serves (web/internals/launcher.py): a connection that
    # sends nothing is dropped after CHATROOM_HEADER_TIMEOUT (1 s), not Sanic's 120 s.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    finally:
        writer.close()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, TIMEOUT * 3)
    log = output(proc)
    assert code == 0, log
    assert "Traceback" not in log, log
