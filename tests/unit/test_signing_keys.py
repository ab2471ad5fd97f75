"""Signing keys with IDs (security.py) and their pickup (realtime/keys.py), no server."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime

import jwt
import pytest

from chatroom_server import protocol
from chatroom_server.domain import Identity, Room, User
from chatroom_server.errors import Unauthorized
from chatroom_server.realtime.connection import CLOSE_POLICY, Connection
from chatroom_server.realtime.hub import Hub
from chatroom_server.realtime.keys import KEY_RETIRED, KeyWatch
from chatroom_server.realtime.revocations import Revocations
from chatroom_server.security import LEGACY_KID, KeyRing, SigningKey, TokenService

from .test_hub import RecordingTransport, encode, recorded

# Now-ish: the tokens' own expiry is checked against the real clock; the keys' ends
# against the `now` each test passes.
# (NOW is taken at collection: the whole suite may run before these tests, hence
# tokens that live a day.)
NOW = float(int(time.time()))
DAY = 86400
LEGACY = "legacy-secret-0123456789abcdefghijklmn"
OLD = "old-key-secret-0123456789abcdefghijklmn"
NEW = "new-key-secret-0123456789abcdefghijklmn"
USER = User(7, "alice", "alice@example.com", datetime.now(UTC), datetime.now(UTC))
ROOM = Room(1, "general", datetime.now(UTC), datetime.now(UTC))


def ring(*keys: SigningKey) -> KeyRing:
    return KeyRing(keys)


def rotated(grace: float) -> KeyRing:
    """After one rotation at NOW: the legacy key and "k1" retire at NOW + grace."""
    return ring(
        SigningKey(LEGACY_KID, LEGACY, NOW + grace),
        SigningKey("k1", OLD, NOW + grace),
        SigningKey("k2", NEW),
    )


def with_header(token: str, extra: dict[str, object]) -> str:
    """The token with its header changed (PyJWT would not write a kid that is no string)."""
    head, payload, signature = token.split(".")
    fields = {**json.loads(base64.urlsafe_b64decode(head + "==")), **extra}
    raw = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    return f"{raw}.{payload}.{signature}"


def header(token: str) -> dict[str, object]:
    return jwt.get_unverified_header(token)


def test_before_any_rotation_tokens_are_signed_as_before_without_a_kid() -> None:
    tokens = TokenService(LEGACY, DAY)
    token = tokens.issue(USER, "s" * 32, now=NOW)
    assert header(token) == {"alg": "HS256", "typ": "JWT"}
    assert jwt.decode(token, LEGACY, algorithms=["HS256"], options={"verify_exp": False})
    identity = tokens.verify(token, now=NOW)
    assert (identity.user_id, identity.session_id, identity.key_id) == (7, "s" * 32, None)


def test_the_newest_key_without_an_end_signs_with_its_kid() -> None:
    tokens = TokenService(rotated(60), DAY)
    token = tokens.issue(USER, now=time.time())
    assert header(token)["kid"] == "k2"
    assert header(token)["alg"] == "HS256"
    jwt.decode(token, NEW, algorithms=["HS256"])  # signed with k2's secret
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, OLD, algorithms=["HS256"])
    assert tokens.verify(token).key_id == "k2"


def test_verify_picks_the_key_by_kid_and_legacy_tokens_use_the_legacy_key() -> None:
    before = TokenService(ring(SigningKey(LEGACY_KID, LEGACY), SigningKey("k1", OLD)), DAY)
    legacy_token = TokenService(LEGACY, DAY).issue(USER, now=time.time())
    k1_token = before.issue(USER, now=time.time())
    assert header(k1_token)["kid"] == "k1"
    after = TokenService(rotated(3600), DAY)
    assert after.verify(legacy_token).key_id is None
    assert after.verify(k1_token).key_id == "k1"
    # The right secret under another key's kid, or a kid nobody knows: refused.
    claims = jwt.decode(k1_token, OLD, algorithms=["HS256"])
    swapped = jwt.encode(claims, OLD, headers={"kid": "k2"})
    unknown = jwt.encode(claims, OLD, headers={"kid": "k9"})
    # The current key's secret under another key's kid, or under none: refused too.
    current_as_k1 = jwt.encode(claims, NEW, headers={"kid": "k1"})
    current_as_legacy = jwt.encode(claims, NEW)
    for token in (swapped, unknown, current_as_k1, current_as_legacy):
        with pytest.raises(Unauthorized):
            after.verify(token)


def test_a_retired_key_verifies_during_the_grace_only() -> None:
    tokens = TokenService(rotated(60), DAY)
    old = TokenService(ring(SigningKey(LEGACY_KID, LEGACY), SigningKey("k1", OLD)), DAY)
    legacy_token = TokenService(LEGACY, DAY).issue(USER, now=NOW - 10)
    k1_token = old.issue(USER, now=NOW - 10)
    for token in (legacy_token, k1_token):
        assert tokens.verify(token, now=NOW + 59).user_id == 7
        with pytest.raises(Unauthorized):
            tokens.verify(token, now=NOW + 60)
    fresh = tokens.issue(USER, now=NOW)
    assert tokens.verify(fresh, now=NOW + 100).key_id == "k2"


def test_hs256_stays_pinned_and_odd_kids_are_refused() -> None:
    tokens = TokenService(rotated(3600), DAY)
    claims = jwt.decode(tokens.issue(USER), NEW, algorithms=["HS256"])
    refused = [
        jwt.encode(claims, NEW, algorithm="HS512", headers={"kid": "k2"}),
        jwt.encode(claims, None, algorithm="none", headers={"kid": "k2"}),
        with_header(jwt.encode(claims, NEW, headers={"kid": "k2"}), {"kid": 5}),
        jwt.encode(claims, NEW, headers={"kid": "k" * 33}),
        jwt.encode(claims, NEW, headers={"kid": ""}),
        "not.a.token",
    ]
    for token in refused:
        with pytest.raises(Unauthorized):
            tokens.verify(token)


def test_a_ring_signs_with_the_legacy_key_until_a_keyed_one_has_no_end() -> None:
    assert ring(SigningKey(LEGACY_KID, LEGACY)).current.kid == LEGACY_KID
    assert rotated(10).current.kid == "k2"
    # Two keys without an end (two rotations raced): the newer signs.
    assert ring(SigningKey("a", OLD), SigningKey("b", NEW)).current.kid == "b"
    assert rotated(10).ends() == [NOW + 10, NOW + 10]
    assert "secret" not in repr(rotated(10)) and OLD not in repr(SigningKey("k1", OLD))
    with pytest.raises(ValueError):
        KeyRing([])


@pytest.mark.parametrize("kid", ["0123456789abcdef", "k1"])
def test_key_rotation_bus_round_trip(kid: str) -> None:
    assert protocol.parse_key_rotation(protocol.bus_key_rotation(kid)) == kid


@pytest.mark.parametrize("payload", ["", "k", "k ", "k a b", "r 1 - -", "e x 1 2 0.0"])
def test_malformed_key_rotations_are_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        protocol.parse_key_rotation(payload)


# ---------------------------------------------------------------- KeyWatch over fake sockets


class FakeGate:
    def forget(self, revocation: object) -> None:
        pass

    def clear(self) -> None:
        pass

    async def ended_among(self, identities: object) -> set[Identity]:
        return set()


class Database:
    """What the key table would answer: the ring and its newest key's ID."""

    def __init__(self, keys: KeyRing, newest: str | None) -> None:
        self.keys = keys
        self.newest_kid = newest
        self.loads = 0

    async def load(self) -> KeyRing:
        self.loads += 1
        return self.keys

    async def newest(self) -> str | None:
        return self.newest_kid


async def publish(payload: str) -> None:
    pass


def socket(hub: Hub, user_id: int, key_id: str | None) -> Connection:
    who = Identity(user_id, f"u{user_id}", "u@example.com", int(time.time()) + 600, key_id=key_id)
    conn = Connection(RecordingTransport(), who, ROOM, 10, encode)
    hub.add(conn)
    return conn


def watch(db: Database, hub: Hub, clock: list[float]) -> KeyWatch:
    revocations = Revocations(hub, FakeGate(), publish, lambda: True, 5.0)
    return KeyWatch(db.load, db.newest, revocations, every=3600, clock=lambda: clock[0])


async def test_a_rotation_is_picked_up_and_sockets_close_when_their_key_retires() -> None:
    clock = [NOW]
    hub = Hub(encode)
    db = Database(ring(SigningKey(LEGACY_KID, LEGACY)), None)
    keys = watch(db, hub, clock)
    tokens = await keys.open(DAY)
    legacy_socket = socket(hub, 1, None)
    assert header(tokens.issue(USER)).get("kid") is None

    db.keys, db.newest_kid = rotated(60), "k2"
    clock[0] = NOW + 1
    await keys.refresh()
    assert header(tokens.issue(USER))["kid"] == "k2"  # the same service, the new key
    new_socket = socket(hub, 2, "k2")
    assert recorded(legacy_socket).aborts == []  # during the grace

    loads = db.loads
    clock[0] = NOW + 59
    await keys.refresh()  # nothing new: no reload, nobody closed
    assert db.loads == loads and recorded(legacy_socket).aborts == []

    clock[0] = NOW + 60.5
    await keys.refresh()
    assert recorded(legacy_socket).aborts == [(CLOSE_POLICY, KEY_RETIRED)]
    assert recorded(new_socket).aborts == []


async def test_an_announced_rotation_is_read_at_once() -> None:
    clock = [NOW]
    hub = Hub(encode)
    db = Database(ring(SigningKey(LEGACY_KID, LEGACY)), None)
    keys = watch(db, hub, clock)
    tokens = await keys.open(DAY)
    db.keys, db.newest_kid = rotated(0), "k2"  # --grace 0: the old keys end now
    old_socket = socket(hub, 1, None)
    keys.hear("garbage")  # ignored
    keys.hear(protocol.bus_key_rotation("k2"))
    reload = keys._reload
    assert reload is not None
    await asyncio.wait_for(reload, 5)
    assert tokens.ring.current.kid == "k2"
    assert recorded(old_socket).aborts == [(CLOSE_POLICY, KEY_RETIRED)]
    await keys.stop()


async def test_a_socket_of_a_key_no_longer_in_the_table_closes_at_the_reload() -> None:
    clock = [NOW]
    hub = Hub(encode)
    db = Database(rotated(60), "k2")
    keys = watch(db, hub, clock)
    await keys.open(DAY)
    gone = socket(hub, 1, "k0")  # signed by a key pruned from the table
    kept = socket(hub, 2, "k1")
    db.keys = ring(
        SigningKey(LEGACY_KID, LEGACY, NOW + 60),
        SigningKey("k1", OLD, NOW + 60),
        SigningKey("k3", NEW),
    )
    db.newest_kid = "k3"
    await keys.refresh()
    assert recorded(gone).aborts == [(CLOSE_POLICY, KEY_RETIRED)]
    assert recorded(kept).aborts == []
