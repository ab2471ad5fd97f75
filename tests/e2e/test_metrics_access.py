"""Who may read /metrics: CHATROOM_METRICS_TOKEN as a Bearer token; CHATROOM_METRICS_PORT
takes it off the public port (the port itself is tested with `serve`, in tests/process)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ..conftest import ChatServer, auth

TOKEN = "metrics-token-0123456789"


class TestToken:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"metrics_token": TOKEN}

    async def test_metrics_need_the_token(
        self, server: ChatServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.DEBUG):
            for headers in ({}, auth("wrong-token-0123456789"), {"Authorization": TOKEN}):
                res = await server.http.get("/metrics", headers=headers)
                assert res.status_code == 401
                body = res.json()
                assert body["status"] == 401 and "metrics token" in body["message"]
                assert TOKEN not in res.text
            res = await server.http.get("/metrics", headers=auth(TOKEN))
            assert res.status_code == 200
            assert "chatroom_connections" in res.text
        assert TOKEN not in caplog.text
        # The rest of the API does not take it as a user's token.
        res = await server.http.get("/v1/api/chat/rooms", headers=auth(TOKEN))
        assert res.status_code == 401

    async def test_the_token_is_masked_in_the_settings_repr(self, server: ChatServer) -> None:
        shown = repr(server.app.ctx.settings)
        assert TOKEN not in shown and "metrics_token='***'" in shown


class TestOwnPort:
    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"metrics_port": 1}  # never opened by the test server: only the 404 here

    async def test_the_public_port_no_longer_shows_metrics(self, server: ChatServer) -> None:
        res = await server.http.get("/metrics")
        assert res.status_code == 404
        assert res.json()["message"] == "The metrics are served on their own port."
        assert (await server.http.get("/healthz")).status_code == 200
