"""Websockets refused before the upgrade, with an HTTP status (SPEC section 5): bad
tokens, bad room IDs, origins not allowed.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chatroom_server.services import rooms as room_service

from ...conftest import ChatServer, auth, claims_for
from .conftest import PATHS, assert_error_body, history, refused, works

# Everything here runs with the in-process broker and with Redis.
pytestmark = [pytest.mark.every_broker, pytest.mark.every_ws_path]

SECRET = "test-secret-" + "s" * 60  # long enough for HS512 as well


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tamper(token: str) -> str:
    """Same header and signature, a payload naming somebody else."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["UserName"] = "mallory"
    claims["UserID"] = claims["UserID"] + 1000
    claims["sub"] = str(claims["UserID"])
    return ".".join([header, b64(json.dumps(claims).encode()), signature])


# --------------------------------------------------------------------------- before the upgrade


class TestRefusedBeforeUpgrade:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"jwt_secret": SECRET}

    async def test_bad_tokens_get_401_on_both_paths(self, server: ChatServer) -> None:
        user, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        good = jwt.encode(claims_for(user), SECRET, algorithm="HS256")
        now = int(time.time())
        bad = {
            "expired": jwt.encode(
                claims_for(user, iat=now - 7200, exp=now - 60), SECRET, algorithm="HS256"
            ),
            "alg none": jwt.encode(claims_for(user), None, algorithm="none"),
            "alg HS512": jwt.encode(claims_for(user), SECRET, algorithm="HS512"),
            "tampered": tamper(good),
            "other secret": jwt.encode(
                claims_for(user), "another-secret-of-32-characters!!", algorithm="HS256"
            ),
            "garbage": "not.a.jwt",
        }
        for path in PATHS:
            # Positive controls: the token we forge from is accepted, and so is the
            # server's own, by query and by header; and a default `*` origin accepts any.
            for kwargs in (
                {"url": server.ws_url(f"room_id={rid}&jwt={good}", path)},
                {
                    "url": server.ws_url(f"room_id={rid}&jwt={token}", path),
                    "origin": "http://anywhere.example",
                },
                {"url": server.ws_url(f"room_id={rid}", path), "additional_headers": auth(token)},
            ):
                async with connect(kwargs.pop("url"), **kwargs) as ws:
                    await works(ws, rid, f"ok via {path}")

            for query in (f"room_id={rid}", f"room_id={rid}&jwt="):
                status, body = await refused(server.ws_url(query, path))
                assert status == 401, (path, query)
                assert_error_body(401, body)
            for name, value in bad.items():
                status, body = await refused(server.ws_url(f"room_id={rid}&jwt={value}", path))
                assert status == 401, (path, name, "query")
                assert_error_body(401, body)
                status, _ = await refused(
                    server.ws_url(f"room_id={rid}", path), additional_headers=auth(value)
                )
                assert status == 401, (path, name, "header")
            status, _ = await refused(
                server.ws_url(f"room_id={rid}", path),
                additional_headers={"Authorization": f"Basic {token}"},
            )
            assert status == 401, (path, "not a Bearer header")

        # Nothing above was stored except the positive controls.
        texts = [m["chatMessage"] for m in await history(server, token, rid)]
        assert texts == [f"ok via {p}" for p in PATHS for _ in range(3)]

    async def test_bad_room_ids(self, server: ChatServer) -> None:
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        doomed = (await server.create_room(token, "doomed"))["ID"]
        await room_service.delete_room(doomed)
        not_integers = [
            "abc",
            "-1",
            "1.5",
            "1e3",
            "0x10",
            "+1",
            " 1",
            "1 ",
            f"{rid}abc",
            "%F0%9F%98%80",
            # Unicode digits are not a wire integer: "²" passes str.isdigit() yet int()
            # refuses it, and "１" (fullwidth) or "٣" (Arabic-Indic) are not ASCII.
            "²",
            "１",
            "٣",
        ]
        for path in PATHS:
            for query in (f"jwt={token}", f"room_id=&jwt={token}"):
                status, body = await refused(server.ws_url(query, path))
                assert status == 400, (path, query, body)
                assert_error_body(400, body)
                assert "room_id" in body["message"]
            for raw in not_integers:
                status, body = await refused(
                    server.ws_url(f"room_id={raw.replace(' ', '%20')}&jwt={token}", path)
                )
                assert status == 400, (path, raw, body)
                assert_error_body(400, body)
            # An integer too large for any ID is no room at all.
            status, body = await refused(server.ws_url(f"room_id={'9' * 30}&jwt={token}", path))
            assert status in (400, 404), (path, body)
            assert_error_body(status, body)
            for missing in (rid + 10_000, doomed):
                status, body = await refused(server.ws_url(f"room_id={missing}&jwt={token}", path))
                assert status == 404, (path, missing, body)
                assert_error_body(404, body)
            # The existing room still works on this path.
            async with server.connect(rid, token, path=path) as ws:
                await works(ws, rid, f"ok via {path}")


class TestOriginCheck:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"ws_origins": "http://good.example"}

    async def test_only_listed_origins_may_connect(self, server: ChatServer) -> None:
        _, token = await server.signup()
        rid = (await server.create_room(token))["ID"]
        for path in PATHS:
            url = server.ws_url(f"room_id={rid}&jwt={token}", path)
            for origin in (
                "http://evil.example",
                "http://good.example.evil.example",
                "https://good.example",
                "null",
            ):
                status, body = await refused(url, origin=origin)
                assert status == 403, (path, origin)
                assert_error_body(403, body)
            async with connect(url, origin="http://good.example") as ws:
                await works(ws, rid, f"good origin {path}")
            async with connect(url) as ws:  # no Origin header: not a browser
                await works(ws, rid, f"no origin {path}")


# --------------------------------------------------------------------------- at shutdown


async def test_a_stopping_server_refuses_new_websockets_with_503(server: ChatServer) -> None:
    # At shutdown the listening socket stays open while the sockets are closed: a
    # client reconnecting at once must not be upgraded (it would hold the shutdown up
    # through Sanic's graceful wait). close_sockets sets the flag first; here it is set
    # directly, as that listener would.
    _, token = await server.signup()
    rid = (await server.create_room(token))["ID"]
    async with server.connect(rid, token) as ws:
        await works(ws, rid)
        server.app.ctx.stopping = True
        try:
            for path in PATHS:
                try:
                    async with connect(
                        server.ws_url(f"jwt={token}&room_id={rid}", path), open_timeout=10
                    ):
                        pass
                except InvalidStatus as exc:
                    response = exc.response
                else:
                    pytest.fail("a stopping server accepted a websocket")
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "1"
                body = json.loads(response.body)
                assert_error_body(503, body)
                assert "restarting" in body["message"]
            await works(ws, rid, "the open socket is not touched by the refusal")
        finally:
            server.app.ctx.stopping = False
