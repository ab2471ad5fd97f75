"""Revocations: which connections an ended session closes, and their bus encoding."""

from __future__ import annotations

import pytest

from chatroom_server import protocol
from chatroom_server.domain import Revocation


def test_one_session_ends_only_that_session() -> None:
    ended = Revocation(7, "s1")
    assert ended.ends(7, "s1")
    assert not ended.ends(7, "s2")
    assert not ended.ends(7, None)  # a token without session is not this session
    assert not ended.ends(8, "s1")  # the same ID under another user: not this one


def test_every_session_but_the_kept_one() -> None:
    everything = Revocation(7)
    assert everything.ends(7, "s1") and everything.ends(7, None)
    assert not everything.ends(8, "s1")
    but_current = Revocation(7, keep="s2")
    assert but_current.ends(7, "s1") and but_current.ends(7, None)
    assert not but_current.ends(7, "s2")


def test_legacy_only_ends_only_tokens_without_session() -> None:
    legacy = Revocation(7, legacy_only=True)
    assert legacy.ends(7, None)
    assert not legacy.ends(7, "s1") and not legacy.ends(8, None)


@pytest.mark.parametrize(
    "revocation",
    [
        Revocation(1, "a" * 32),
        Revocation(2),
        Revocation(3, None, "b" * 32),
        Revocation(4, legacy_only=True),
    ],
)
def test_bus_round_trip(revocation: Revocation) -> None:
    assert protocol.parse_revocation(protocol.bus_revocation(revocation)) == revocation


@pytest.mark.parametrize("payload", ["", "r 1 a", "x 1 - -", "r one - -", "m 1 2\n{}"])
def test_malformed_control_payloads_are_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        protocol.parse_revocation(payload)
