"""The internals adapter's start-up check: a missing internal means the public path."""

from __future__ import annotations

import logging

import pytest

from chatroom_server.web.internals import checks, choose_wire
from chatroom_server.web.internals.fast import FastWire, wire_frames
from chatroom_server.web.internals.public import PublicWire


def test_everything_the_fast_path_needs_is_there_in_the_pinned_versions() -> None:
    assert checks.missing_for_fast_path() == []
    assert isinstance(choose_wire("auto"), FastWire)


def test_a_missing_internal_is_named_once_and_the_public_api_taken(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As a new Sanic release without the frame assembler's `chunks` would look.
    monkeypatch.setattr(checks, "ASSEMBLER_ATTRIBUTES", (*checks.ASSEMBLER_ATTRIBUTES, "gone"))
    with caplog.at_level(logging.WARNING, logger="chatroom_server.web"):
        wire = choose_wire("auto")
    assert isinstance(wire, PublicWire) and wire.pings is None
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "WebsocketFrameAssembler.gone" in record.getMessage()
    assert "public API" in record.getMessage()


def test_off_forces_the_public_api_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="chatroom_server.web"):
        wire = choose_wire("off")
    assert isinstance(wire, PublicWire)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_two_paths_encode_a_room_s_frames_once_each_their_own_way() -> None:
    # Fast: complete unmasked text frames back to back (FIN + text opcode, length, data).
    assert wire_frames(["hi", "yo"]) == b"\x81\x02hi\x81\x02yo"
    assert FastWire.encode(["hi"]) == b"\x81\x02hi"
    # Public: the texts themselves, for Sanic's send().
    assert PublicWire.encode(["hi", "yo"]) == ("hi", "yo")


def test_the_worker_manager_patch_names_what_a_release_lacks() -> None:
    from sanic.worker.manager import WorkerManager

    from chatroom_server.web.internals.workers import MANAGER_ATTRIBUTES, missing_in_manager

    class Manager:  # as a release that renamed every attribute the patch uses would look
        pass

    assert missing_in_manager(Manager()) == [f"WorkerManager.{n}" for n in MANAGER_ATTRIBUTES]
    # The methods the patch replaces are on Sanic's class itself (the rest are set
    # per instance, and checked on the live manager before patching).
    assert all(hasattr(WorkerManager, n) for n in ("wait_for_ack", "kill", "shutdown_signal"))


def test_tortoise_still_takes_the_global_fallback() -> None:
    from chatroom_server.web.internals import orm

    assert orm.init_options() == {orm.GLOBAL_FALLBACK: True}


def test_the_header_deadline_runs_in_the_pinned_versions_and_sets_sanic_s_timeout() -> None:
    from sanic.config import Config

    from chatroom_server.web.internals import choose_protocol
    from chatroom_server.web.internals.deadline import HeaderDeadlineProtocol

    assert checks.missing_for_header_deadline() == []
    config = Config()
    assert choose_protocol("auto", config, 7.5) is HeaderDeadlineProtocol
    assert config.REQUEST_TIMEOUT == 7.5


def test_without_the_deadline_s_internals_sanic_s_protocol_runs_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sanic.config import Config
    from sanic.server.protocols.websocket_protocol import WebSocketProtocol

    from chatroom_server.web.internals import choose_protocol

    monkeypatch.setattr(checks, "PROTOCOL_SLOTS", (*checks.PROTOCOL_SLOTS, "_gone"))
    config = Config()
    with caplog.at_level(logging.WARNING, logger="chatroom_server.web"):
        assert choose_protocol("auto", config, 3.0) is WebSocketProtocol
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "HttpProtocol._gone" in record.getMessage()
    assert config.REQUEST_TIMEOUT == 3.0  # the public fallback: Sanic's restarting timeout
    caplog.clear()
    assert choose_protocol("off", config, 3.0) is WebSocketProtocol
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
