"""`chatroom-server serve` as a real process: SIGTERM, restarts, persistence."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import OPEN
from websockets.uri import parse_uri

from chatroom_server.cli import LISTEN_BACKLOG

from ..conftest import TIMEOUT, auth, close_code, free_port, recv_event
from .conftest import ServeProcess


async def user_and_room(base: str, name: str, password: str = "password1") -> tuple[str, int]:
    """Sign up `name` on a running server and create a room; return its token and room ID."""
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        res = await http.post(
            "/v1/api/auth/signup",
            json={"user_name": name, "email": f"{name}@example.com", "password": password},
        )
        assert res.status_code == 200, res.text
        token = res.json()["token"]
        room = await http.post("/v1/api/chat/create", json={"name": "r"}, headers=auth(token))
        return token, int(room.json()["chatRoom"]["ID"])


async def test_restart_keeps_messages_and_tokens_and_sigterm_closes_1001(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    url = f"sqlite://{tmp_path / 'serve.sqlite3'}"  # not yet migrated: serve does it
    first = ServeProcess(url, tmp_path)
    processes.append(first)
    await first.ready()
    token, rid = await user_and_room(first.base, "ann", password="s3cret-password")
    ws_url = f"ws://127.0.0.1:{first.port}/v1/ws?room_id={rid}&jwt={token}"
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"chatRoomId": rid, "chatMessage": "kept"}))
        sent = await recv_event(ws, "message")
        code = await asyncio.to_thread(first.terminate)
        log = first.output()
        assert code == 0, log
        assert await close_code(ws) == 1001
    assert "s3cret-password" not in log and token not in log
    assert "Traceback" not in log and "Task was destroyed" not in log

    second = ServeProcess(url, tmp_path)
    processes.append(second)
    await second.ready()
    async with httpx.AsyncClient(base_url=second.base, timeout=TIMEOUT) as http:
        # The token from before the restart still works: the secret is in the database.
        res = await http.get(f"/v1/api/chat/rooms/{rid}/messages", headers=auth(token))
        assert res.status_code == 200
        assert [m["ID"] for m in res.json()["messages"]] == [sent["Body"]["ID"]]
        assert res.json()["messages"][0]["chatMessage"] == "kept"
        res = await http.post(
            "/v1/api/auth/login", json={"email": "ann@example.com", "password": "s3cret-password"}
        )
        assert res.status_code == 200
    assert await asyncio.to_thread(second.terminate) == 0


def serve_once(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatroom_server", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


async def test_no_migrate_on_an_empty_database_and_port_in_use(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    url = f"sqlite://{tmp_path / 'nm.sqlite3'}"
    refused = serve_once(
        "--port", str(free_port()), "--database-url", url, "--no-migrate", cwd=tmp_path
    )
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("Error: The database lacks ")
    assert "chat.0001_initial" in lines[0]
    assert "run 'chatroom-server migrate' first" in lines[0]

    proc = ServeProcess(url, tmp_path)  # migrates, then serves
    processes.append(proc)
    await proc.ready()
    busy = serve_once("--port", str(proc.port), "--database-url", url, "--no-migrate", cwd=tmp_path)
    assert busy.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{proc.port}" in busy.stderr
    assert "Traceback" not in busy.stderr + busy.stdout
    assert await asyncio.to_thread(proc.terminate) == 0


async def test_json_logs_redact_tokens(tmp_path: Path, processes: list[ServeProcess]) -> None:
    url = f"sqlite://{tmp_path / 'log.sqlite3'}"
    proc = ServeProcess(url, tmp_path, "--log-format", "json", "--log-level", "info")
    processes.append(proc)
    await proc.ready()
    token, rid = await user_and_room(proc.base, "lo", password="hunter2-secret")
    async with httpx.AsyncClient(base_url=proc.base, timeout=TIMEOUT) as http:
        refused = await http.get(f"/v1/ws?room_id={rid}&jwt=not-a-real-token-xyz")
        assert refused.status_code == 401
    async with connect(f"ws://127.0.0.1:{proc.port}/v1/ws?room_id={rid}&jwt={token}") as ws:
        await ws.send(json.dumps({"chatMessage": "a private message body"}))
        await recv_event(ws, "message")
    assert await asyncio.to_thread(proc.terminate) == 0
    log = proc.output()
    # Every line is JSON, the migration report `serve` prints before starting included.
    entries = [json.loads(line) for line in log.splitlines()]
    assert len(entries) >= 5
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["message"].startswith("Applied migration") for e in entries)
    messages = "\n".join(e["message"] for e in entries)
    assert "GET /v1/ws?room_id=" in messages and "jwt=***" in messages
    for secret in (token, "not-a-real-token-xyz", "hunter2-secret", "a private message body"):
        assert secret not in log


@pytest.mark.parametrize("internals", ["auto", "off"], ids=["fast", "public"])
async def test_sigterm_under_load_keeps_every_confirmed_message(
    tmp_path: Path, processes: list[ServeProcess], internals: str
) -> None:
    url = f"sqlite://{tmp_path / 'load.sqlite3'}"
    env = {"CHATROOM_WS_RATE": "1000", "CHATROOM_WS_BURST": "1000", "CHATROOM_INTERNALS": internals}
    # Four sockets of one user send flat out: lift the per-user message rate too.
    env.update(CHATROOM_USER_RATE="100000", CHATROOM_USER_BURST="100000")
    proc = ServeProcess(url, tmp_path, env=env)
    processes.append(proc)
    await proc.ready()
    token, rid = await user_and_room(proc.base, "ld")
    confirmed: list[int] = []
    codes: list[int | None] = []
    started = asyncio.Event()

    async def sender(n: int) -> None:
        ws_url = f"ws://127.0.0.1:{proc.port}/v1/ws?room_id={rid}&jwt={token}"
        async with connect(ws_url, max_queue=None) as ws:
            try:
                i = 0
                while True:
                    await ws.send(json.dumps({"chatMessage": f"s{n}-{i}"}))
                    i += 1
                    frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    while frame["Event"] != "message":
                        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    confirmed.append(frame["Body"]["ID"])
                    if len(confirmed) >= 30:
                        started.set()
            except ConnectionClosed:
                codes.append(ws.close_code)

    senders = [asyncio.create_task(sender(n)) for n in range(4)]
    await asyncio.wait_for(started.wait(), TIMEOUT)
    assert await asyncio.to_thread(proc.terminate) == 0
    await asyncio.wait_for(asyncio.gather(*senders), TIMEOUT)
    log = proc.output()
    assert codes == [1001] * 4, log
    if internals == "auto":
        for noise in ("Traceback", "Task was destroyed", "CancelledError"):
            assert noise not in log, log
    else:
        # On Sanic's public API, Sanic's own reader tasks of sockets whose last frames
        # nobody read may be reported as destroyed at exit (README, Configuration):
        # nothing of ours fails or is cancelled.
        assert "chatroom_server/" not in log and "CancelledError" not in log, log
    # Every message a sender saw confirmed is in the database.
    restarted = ServeProcess(url, tmp_path, "--no-migrate")
    processes.append(restarted)
    await restarted.ready()
    async with httpx.AsyncClient(base_url=restarted.base, timeout=TIMEOUT) as http:
        stored: list[int] = []
        after = 0
        while True:
            res = await http.get(
                f"/v1/api/chat/rooms/{rid}/messages",
                params={"after": after, "limit": 200},
                headers=auth(token),
            )
            page = res.json()
            stored += [m["ID"] for m in page["messages"]]
            if not page["hasMore"]:
                break
            after = stored[-1]
    assert set(confirmed) <= set(stored)


class RawClient:
    """A websocket client on a blocking socket (websockets' sans-I/O protocol), with a
    small receive buffer: it can leave what the server sends unread while it sends."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
        self.proto.send_request(self.proto.connect())
        self.flush()
        while not self.proto.events_received():  # the handshake's response
            self.proto.receive_data(self.sock.recv(65536))
        assert self.proto.state is OPEN, self.proto.handshake_exc

    def flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.sock.sendall(data)

    def ping_until(self, stop: threading.Event) -> None:
        """Send pings back to back: bytes keep arriving at the server. A reset shows
        in read_to_the_end."""
        try:
            while not stop.is_set():
                self.proto.send_ping(b"p")
                self.flush()
        except OSError:
            pass

    def read_to_the_end(self) -> list[Frame]:
        """Everything the server sends until it closes the TCP connection; answers the
        close frame. Raises ConnectionResetError if the server reset the connection."""
        frames: list[Frame] = []
        while data := self.sock.recv(65536):
            self.proto.receive_data(data)
            frames += [e for e in self.proto.events_received() if isinstance(e, Frame)]
            self.flush()  # the close frame's answer
        return frames


MESSAGES, SIZE = 1, 14_000


@pytest.mark.parametrize("internals", ["auto", "off"], ids=["fast", "public"])
async def test_sigterm_close_frame_reaches_a_client_still_sending(
    tmp_path: Path, processes: list[ServeProcess], internals: str
) -> None:
    """At shutdown the server closes with 1001 while a client is still sending and has
    not read what it was sent: the client must still get to read the close frame. A
    server that stops reading and closes at once resets the connection instead (the
    client's kernel drops what it had not read: 1006 for the client)."""
    url = f"sqlite://{tmp_path / 'still.sqlite3'}"
    env = {"CHATROOM_INTERNALS": internals, "CHATROOM_MAX_MESSAGE_CHARS": "60000"}
    proc = ServeProcess(url, tmp_path, env=env)
    processes.append(proc)
    await proc.ready()
    token, rid = await user_and_room(proc.base, "still")
    path = f"/v1/ws?room_id={rid}&jwt={token}"
    raw = await asyncio.to_thread(RawClient, proc.port, path)
    stop = threading.Event()
    pinger = threading.Thread(target=raw.ping_until, args=(stop,))
    try:
        async with connect(f"ws://127.0.0.1:{proc.port}{path}", max_size=None) as other:
            # A message for the raw client, which does not read: its receive window
            # fills, and the close frame waits in the server's kernel buffer behind it.
            for i in range(MESSAGES):
                text = f"{i} " + "m" * SIZE
                await other.send(json.dumps({"chatMessage": text}))
                await recv_event(other, "message")
            pinger.start()  # the raw client keeps sending
            proc.proc.send_signal(signal.SIGTERM)
            # Both sockets are closed in the same pass: once this one has its close
            # frame, the raw one's close was written too, while its pings kept coming.
            assert await close_code(other) == 1001
    finally:
        stop.set()
        if pinger.is_alive():
            await asyncio.to_thread(pinger.join)
    frames = await asyncio.to_thread(raw.read_to_the_end)
    closes = [f for f in frames if f.opcode is Opcode.CLOSE]
    assert [Close.parse(f.data).code for f in closes] == [1001], frames[-3:]
    texts = [json.loads(f.data) for f in frames if f.opcode is Opcode.TEXT]
    assert len([t for t in texts if t["Event"] == "message"]) == MESSAGES
    assert await asyncio.to_thread(proc.proc.wait, TIMEOUT) == 0


SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def listening(port: int) -> str:
    """`ss`'s line for the socket listening on `port`."""
    return subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout


async def test_the_listen_backlog_holds_a_reconnect_storm(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    """Thousands of clients reconnect at once after a restart: the kernel must queue
    their connections (Sanic's default backlog, 100, dropped SYNs: 30 s tails)."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    proc = ServeProcess(f"sqlite://{tmp_path / 'b.sqlite3'}", tmp_path)
    processes.append(proc)
    await proc.ready()
    shown = (await asyncio.to_thread(listening, proc.port)).split()
    somaxconn = int(SOMAXCONN.read_text())  # noqa: ASYNC240 (a /proc file)
    assert int(shown[2]) == min(LISTEN_BACKLOG, somaxconn), shown  # Send-Q: the backlog
    assert await asyncio.to_thread(proc.terminate) == 0
