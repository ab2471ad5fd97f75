"""nginx in front of two hosts, with the committed docs/deploy/nginx.conf (docs/deploy.md).

Debian's nginx runs as this test's child (`daemon off`) with that very file, changed
only where a test must (each change is counted, so an edit of the file that the test
no longer matches fails here instead of testing something else): loopback addresses
and free ports, a throwaway certificate, and temp paths for its pid, logs and buffers.
Two `serve` hosts share PostgreSQL and Redis behind it.

Clients reach the hosts only through nginx, over TLS, each from a loopback address of
its own (127.0.0.2, 127.0.0.3). nginx reaches the hosts from 127.0.0.1 whoever the
client is, so a limit that holds per client address shows that the hosts took the
address nginx forwarded, not nginx's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from chatroom_server.settings import Settings

from ..conftest import ROOT, TIMEOUT, auth, eventually, free_port, recv_json, service_missing
from .conftest import ServeProcess
from .test_scaleout import pg_url, redis_url, start_hosts

__all__ = ["pg_url", "redis_url"]  # fixtures, used by name

NGINX = Path("/usr/sbin/nginx")
CONF = ROOT / "docs" / "deploy" / "nginx.conf"
LOGIN = "/v1/api/auth/login"
# What docs/deploy.md tells every host behind the proxy.
BEHIND_NGINX = {"CHATROOM_PROXIES_COUNT": "1"}


def substitute(text: str, pattern: str, replacement: Any, count: int) -> str:
    changed, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == count, f"{CONF.name}: expected {count} of {pattern!r}, found {found}"
    return changed


def site_config(
    hosts: list[int],
    http_port: int,
    https_port: int,
    cert: Path,
    key: Path,
    read_timeout: int | None = None,
) -> str:
    """docs/deploy/nginx.conf with loopback ports and the test's certificate."""
    site = CONF.read_text()
    if read_timeout is not None:
        site = substitute(
            site, r"proxy_read_timeout \d+s;", f"proxy_read_timeout {read_timeout}s;", 1
        )
    site = substitute(site, r"^\s*listen \[::\]:\d+( ssl)?;\n", "", 2)  # no IPv6 here
    site = substitute(site, r"^(\s*)listen 80;", rf"\g<1>listen 127.0.0.1:{http_port};", 1)
    site = substitute(
        site, r"^(\s*)listen 443 ssl;", rf"\g<1>listen 127.0.0.1:{https_port} ssl;", 1
    )
    ports = iter(hosts)
    site = substitute(
        site,
        r"^(\s*server )10\.0\.0\.\d+:8000",
        lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}",
        2,
    )
    site = substitute(site, r"^(\s*ssl_certificate\s+)\S+;", rf"\g<1>{cert};", 1)
    return substitute(site, r"^(\s*ssl_certificate_key\s+)\S+;", rf"\g<1>{key};", 1)


def main_config(site: str, work: Path) -> str:
    """What /etc/nginx/nginx.conf gives a site, in the test's own directory."""
    temp = "\n".join(
        f"    {kind}_temp_path {work / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would run as `nobody`, who cannot enter pytest's tmp_path.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"daemon off;\n{user}worker_processes 1;\npid {work / 'nginx.pid'};\n"
        f"error_log {work / 'error.log'} notice;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log {work / 'access.log'};\n{temp}\n{site}\n}}\n"
    )


def certificate(work: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    if shutil.which("openssl") is None:
        service_missing("openssl (to make the test's certificate)")
    cert, key = work / "chat.crt", work / "chat.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert)]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Nginx:
    proc: subprocess.Popen[str]
    work: Path
    http_port: int
    https_port: int
    trust: ssl.SSLContext

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def client(self, address: str, **headers: str) -> httpx.AsyncClient:
        """An HTTPS client of nginx whose connections come from `address`."""
        transport = httpx.AsyncHTTPTransport(local_address=address, verify=self.trust)
        return httpx.AsyncClient(
            base_url=self.base, transport=transport, timeout=TIMEOUT, headers=headers
        )

    def ws(self, address: str, room_id: int, token: str) -> Any:
        return connect(
            f"wss://127.0.0.1:{self.https_port}/v1/ws?room_id={room_id}&jwt={token}",
            ssl=self.trust,
            local_addr=(address, 0),
            max_queue=None,
        )

    def log(self) -> str:
        return (self.work / "error.log").read_text(errors="replace")

    async def ready(self) -> None:
        """Wait until a request through nginx reaches a host (or nginx dies)."""
        deadline = time.monotonic() + 15
        async with self.client("127.0.0.1") as http:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"nginx exited at start:\n{self.log()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                assert time.monotonic() < deadline, f"nginx did not answer:\n{self.log()}"
                await asyncio.sleep(0.05)  # nothing to wait on but the port opening

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown, workers included
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


StartNginx = Callable[..., Awaitable[Nginx]]


def launch(ports: list[int], work: Path, read_timeout: int | None = None) -> Nginx:
    """nginx with the committed site config in front of the hosts on `ports`."""
    work.mkdir()
    cert, key = certificate(work)
    http_port, https_port = free_port(), free_port()
    site = site_config(ports, http_port, https_port, cert, key, read_timeout)
    conf = work / "nginx.conf"
    conf.write_text(main_config(site, work))
    command = [str(NGINX), "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx -t refused the config:\n{checked.stderr}"
    proc = subprocess.Popen(
        command,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    trust = ssl.create_default_context(cafile=str(cert))
    return Nginx(proc, work, http_port, https_port, trust)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[StartNginx]:
    """Start nginx with the committed config in front of the given hosts; stopped at the end."""
    if not NGINX.exists():
        service_missing(f"nginx at {NGINX} (apt-get install nginx)")
    started: list[Nginx] = []

    async def start(hosts: list[ServeProcess], read_timeout: int | None = None) -> Nginx:
        work = tmp_path / f"nginx{len(started)}"
        front = launch([h.port for h in hosts], work, read_timeout)
        started.append(front)
        await front.ready()
        return front

    yield start
    for front in started:
        front.stop()


def read_timeout() -> float:
    found = re.findall(r"^\s*proxy_read_timeout (\d+)s;", CONF.read_text(), re.MULTILINE)
    assert len(found) == 1
    return float(found[0])


async def signup(http: httpx.AsyncClient, name: str) -> str:
    res = await http.post(
        "/v1/api/auth/signup",
        json={"user_name": name, "email": f"{name}@example.com", "password": "password1"},
    )
    assert res.status_code == 200, res.text
    return str(res.json()["token"])


async def connections(host: ServeProcess) -> float:
    """The host's open websockets, from its own /metrics (asked directly, not via nginx)."""
    async with httpx.AsyncClient(base_url=host.base, timeout=TIMEOUT) as http:
        text = (await http.get("/metrics")).text
    found = re.findall(r"^chatroom_connections(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    return sum(float(value) for value in found)


async def next_message(sock: ClientConnection) -> str:
    while True:
        frame = await recv_json(sock)
        if frame["Event"] == "message":
            return str(frame["Body"]["chatMessage"])


def test_the_proxy_read_timeout_is_above_the_ping_interval() -> None:
    assert read_timeout() > Settings.load({}).ping_interval * 2


async def test_chat_through_nginx_with_users_on_two_hosts(
    tmp_path: Path,
    processes: list[ServeProcess],
    pg_url: str,
    redis_url: str,
    nginx: StartNginx,
) -> None:
    a, b = await start_hosts(processes, tmp_path, pg_url, redis_url, (), (), env=BEHIND_NGINX)
    front = await nginx([a, b])
    async with front.client("127.0.0.2") as alice_http, front.client("127.0.0.3") as bob_http:
        alice = await signup(alice_http, "alice")
        bob = await signup(bob_http, "bob")
        # A login over TLS through nginx, and the token it gives works on either host.
        res = await bob_http.post(LOGIN, json={"email": "bob@example.com", "password": "password1"})
        assert res.status_code == 200, res.text
        bob = res.json()["token"]
        res = await alice_http.post(
            "/v1/api/chat/create", json={"name": "lobby"}, headers=auth(alice)
        )
        assert res.status_code == 200, res.text
        room_id = int(res.json()["chatRoom"]["ID"])
        assert "max-age" in res.headers["strict-transport-security"]  # added by nginx
        # nginx's own answers: the metrics stay private, plain HTTP goes to HTTPS.
        assert (await alice_http.get("/metrics")).status_code == 404
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{front.http_port}") as plain:
        moved = await plain.get("/v1/api/chat/rooms")
        assert moved.status_code == 301
        assert moved.headers["location"].startswith("https://")

    # Two sockets opened one after the other: nginx's round robin puts them on both hosts.
    async with (
        front.ws("127.0.0.2", room_id, alice) as on_a,
        front.ws("127.0.0.3", room_id, bob) as on_b,
    ):

        async def one_on_each() -> bool:
            return [await connections(a), await connections(b)] == [1, 1]

        await eventually(one_on_each, "one websocket on each host", timeout=15, interval=0.1)
        await on_a.send(json.dumps({"chatMessage": "hello across hosts"}))
        assert await next_message(on_b) == "hello across hosts"
        assert await next_message(on_a) == "hello across hosts"
        await on_b.send(json.dumps({"chatMessage": "and back"}))
        assert await next_message(on_a) == "and back"
    assert "[error]" not in front.log() and "[crit]" not in front.log(), front.log()


async def test_pings_keep_an_idle_websocket_open_through_nginx(
    tmp_path: Path,
    processes: list[ServeProcess],
    pg_url: str,
    redis_url: str,
    nginx: StartNginx,
) -> None:
    """The file's 75 s read timeout over the default 20 s pings, scaled down: pings every
    second, nginx's read timeout 3 s. A socket that says nothing for twice that is open.
    (With pings every 20 s instead, nginx closes it: this test then fails.)"""
    env = {**BEHIND_NGINX, "CHATROOM_PING_INTERVAL": "1"}
    (host,) = await start_hosts(processes, tmp_path, pg_url, redis_url, (), env=env)
    front = await nginx([host, host], read_timeout=3)
    async with front.client("127.0.0.2") as http:
        token = await signup(http, "quiet")
        res = await http.post("/v1/api/chat/create", json={"name": "quiet"}, headers=auth(token))
        room_id = int(res.json()["chatRoom"]["ID"])
    async with front.ws("127.0.0.2", room_id, token) as idle:
        await asyncio.sleep(6)  # the idle time is what is under test, not a wait for an event
        await idle.send(json.dumps({"chatMessage": "still here"}))
        assert await next_message(idle) == "still here"


async def test_the_address_nginx_forwards_reaches_the_per_address_limits(
    tmp_path: Path,
    processes: list[ServeProcess],
    pg_url: str,
    redis_url: str,
    nginx: StartNginx,
) -> None:
    limits = {"CHATROOM_LOGIN_IP_RATE": "3", "CHATROOM_IP_CONNECTIONS": "2"}
    a, b = await start_hosts(
        processes, tmp_path, pg_url, redis_url, (), (), env={**BEHIND_NGINX, **limits}
    )
    front = await nginx([a, b])
    forged = {"X-Forwarded-For": "198.51.100.7"}
    async with (
        front.client("127.0.0.2") as first,
        front.client("127.0.0.2", **forged) as first_forging,
        front.client("127.0.0.3") as second,
    ):
        # Round robin spreads these over both hosts: the count is shared through Redis.
        for i in range(3):
            res = await first.post(LOGIN, json={"email": f"x{i}@example.com", "password": "p"})
            assert res.status_code == 401, res.text
        for client in (first, first_forging):  # a header the client writes changes nothing
            res = await client.post(LOGIN, json={"email": "y@example.com", "password": "p"})
            assert res.status_code == 429, res.text
            assert "login attempts from this address" in res.json()["message"]
        # Another client behind the same nginx (the same TCP peer for the hosts): not limited.
        res = await second.post(LOGIN, json={"email": "y@example.com", "password": "p"})
        assert res.status_code == 401, res.text

        token = await signup(second, "carol")
        res = await second.post("/v1/api/chat/create", json={"name": "capped"}, headers=auth(token))
        room_id = int(res.json()["chatRoom"]["ID"])

    # Two websockets from one address (one on each host), then the third is refused.
    async with front.ws("127.0.0.2", room_id, token), front.ws("127.0.0.2", room_id, token):
        with pytest.raises(InvalidStatus) as refused:
            async with front.ws("127.0.0.2", room_id, token):
                pass
        assert refused.value.response.status_code == 429
        assert b"from this address (limit 2)" in refused.value.response.body
        async with front.ws("127.0.0.3", room_id, token) as elsewhere:
            assert elsewhere.response.status_code == 101
