"""Units with no server: settings, limit counters, frame parsing."""

from __future__ import annotations

import pytest

from chatroom_server import protocol
from chatroom_server.errors import ConfigError, InvalidMessage
from chatroom_server.pubsub.limits import MemoryLimits
from chatroom_server.realtime.ratelimit import TokenBucket
from chatroom_server.services.limits import AbuseLimits, LimitSettings
from chatroom_server.settings import Settings, mask_url


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_flags_override_environment_which_overrides_defaults() -> None:
    env = {"CHATROOM_PORT": "9000", "CHATROOM_WS_RATE": "2.5", "CHATROOM_DEV": "true"}
    assert Settings.load({}).port == 8080
    settings = Settings.load(env)
    assert (settings.port, settings.ws_rate, settings.dev) == (9000, 2.5, True)
    assert Settings.load(env, port=9100).port == 9100
    assert Settings.load(env, port=None).port == 9000  # an unset flag keeps the env value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHATROOM_PORT": "x"}, "CHATROOM_PORT has an invalid value"),
        ({"CHATROOM_WS_QUEUE": "0"}, "CHATROOM_WS_QUEUE must be greater than zero"),
        ({"CHATROOM_DEV": "maybe"}, "CHATROOM_DEV has an invalid value"),
        ({"CHATROOM_JWT_SECRET": "short"}, "at least 16 characters"),
        ({"CHATROOM_DATABASE_URL": "mysql://x"}, "must start with sqlite://"),
        ({"CHATROOM_REDIS_URL": "http://x"}, "must start with redis://"),
        ({"CHATROOM_REDIS_CLUSTER": "1"}, "CHATROOM_REDIS_CLUSTER\\) needs a Redis URL"),
        ({"CHATROOM_REDIS_CLUSTER": "sometimes"}, "CHATROOM_REDIS_CLUSTER has an invalid"),
        ({"CHATROOM_BCRYPT_ROUNDS": "3"}, "between 4 and 31"),
        ({"CHATROOM_LOG_LEVEL": "LOUD"}, "log level must be one of"),
        ({"CHATROOM_LOG_FORMAT": "xml"}, "log format must be text or json"),
    ],
)
def test_invalid_settings_say_which_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env)


def test_a_malformed_database_url_is_not_echoed_with_its_password() -> None:
    # No "://": the part before it is the whole URL, password included.
    with pytest.raises(ConfigError, match="must start with sqlite://") as caught:
        Settings.load({"CHATROOM_DATABASE_URL": "postgres:/app:S3cret-pw@db/chat"})
    assert "S3cret" not in str(caught.value)
    assert "'postgres'" in str(caught.value)


def test_secrets_never_appear_in_settings_repr() -> None:
    settings = Settings.load(
        {
            "CHATROOM_JWT_SECRET": "a-very-secret-value-123",
            "CHATROOM_DATABASE_URL": "postgres://chat:pw-secret@db:5432/chat",
        }
    )
    text = repr(settings)
    assert "a-very-secret-value-123" not in text and "pw-secret" not in text
    assert "postgres://chat:***@db:5432/chat" in text
    assert mask_url("sqlite://chat.sqlite3") == "sqlite://chat.sqlite3"


def test_redis_passwords_and_the_metrics_token_never_appear_in_settings_repr() -> None:
    settings = Settings.load(
        {
            "CHATROOM_REDIS_URL": "rediss://:redis-pw-1@cache:6380/0?ssl_cert_reqs=required",
            "CHATROOM_METRICS_TOKEN": "metrics-token-secret-1",
            "CHATROOM_METRICS_PORT": "9100",
        }
    )
    text = repr(settings)
    assert "redis-pw-1" not in text and "metrics-token-secret-1" not in text
    assert "rediss://:***@cache:6380/0?ssl_cert_reqs=required" in text
    assert settings.metrics_port == 9100 and "metrics_token='***'" in text
    assert mask_url("redis://cache/0?password=pw-2&db=1") == "redis://cache/0?password=***&db=1"


async def test_memory_limits_failures_lock_and_lapse() -> None:
    clock = FakeClock()
    limits = MemoryLimits(clock=clock)
    for _ in range(3):
        assert await limits.locked("a", 3) == 0
        await limits.failed("a", 60)
    assert 0 < await limits.locked("a", 3) <= 60
    assert await limits.locked("b", 3) == 0
    clock.now += 61
    assert await limits.locked("a", 3) == 0


async def test_memory_limits_clear_and_bounded_tables() -> None:
    limits = MemoryLimits(max_keys=3, clock=FakeClock())
    await limits.failed("a", 60)
    await limits.clear("a")
    await limits.failed("a", 60)
    assert await limits.locked("a", 2) == 0
    for key in "bcdef":
        await limits.failed(key, 60)
        await limits.take(key, 1, 1)
    assert len(limits._failures) == 3 and len(limits._buckets) == 3


async def test_memory_limits_bucket_and_slots() -> None:
    clock = FakeClock()
    limits = MemoryLimits(clock=clock)
    assert [await limits.take("k", 2, 3) for _ in range(4)][:3] == [0, 0, 0]
    assert await limits.take("k", 2, 3) == pytest.approx(0.5)
    clock.now += 0.5
    assert await limits.take("k", 2, 3) == 0
    assert await limits.acquire("s", "m1", 2, 30) and await limits.acquire("s", "m2", 2, 30)
    assert not await limits.acquire("s", "m3", 2, 30)
    await limits.release("s", "m1")
    assert await limits.acquire("s", "m3", 2, 30)
    clock.now += 20
    await limits.refresh([("s", "m2")], 30)
    clock.now += 15  # m3 lapsed (held by a host that died), m2 was refreshed
    assert await limits.acquire("s", "m4", 2, 30)
    assert not await limits.acquire("s", "m5", 2, 30)


def test_token_bucket_allows_burst_then_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert sum(bucket.take() for _ in range(30)) == 20
    clock.now += 0.5  # five tokens come back
    assert sum(bucket.take() for _ in range(10)) == 5


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{", protocol.INVALID_JSON),
        ("[]", protocol.INVALID_MESSAGE),
        ('{"chatMessage": 5}', protocol.INVALID_MESSAGE),
        ('{"chatMessage": "hi", "chatRoomId": 2}', protocol.WRONG_ROOM),
        ('{"chatMessage": "hi", "chatRoomId": true}', protocol.INVALID_MESSAGE),
        ('{"chatMessage": " \\n "}', protocol.INVALID_MESSAGE),
        ('{"chatMessage": "a\\u0000b"}', protocol.INVALID_MESSAGE),
        ('{"chatMessage": "12345"}', protocol.MESSAGE_TOO_LONG),
        ('{"chatMessage": "hi", "clientMessageId": ""}', protocol.INVALID_MESSAGE),
    ],
)
def test_client_frame_errors(frame: str, code: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        protocol.parse_client_frame(frame, room_id=1, max_chars=4)
    assert caught.value.code == code


def test_client_frame_keeps_text_exactly() -> None:
    parsed = protocol.parse_client_frame(
        '{"chatRoomId": "1", "chatMessage": " a\\tb\\n", "x": 1}', room_id=1, max_chars=10
    )
    assert parsed.text == " a\tb\n" and parsed.client_message_id is None


def test_sqlite_urls_get_wal_pragmas_unless_given() -> None:
    from chatroom_server.db import connection_url

    assert connection_url("sqlite://a.db") == (
        "sqlite://a.db?journal_mode=WAL&synchronous=NORMAL&busy_timeout=5000"
        "&journal_size_limit=67108864"
    )
    assert connection_url("sqlite://a.db?synchronous=FULL").count("synchronous") == 1
    assert connection_url("postgres://u@h/db") == "postgres://u@h/db"


def test_redact_query_hides_secret_parameters() -> None:
    from chatroom_server.logs import redact_query

    assert redact_query("room_id=1&jwt=abc.def&since=4") == "room_id=1&jwt=***&since=4"
    assert redact_query("") == ""
    assert "s3cret" not in redact_query("token=s3cret&password=s3cret")


def test_abuse_limit_settings_must_be_positive() -> None:
    d = Settings()  # SPEC section 11's defaults
    assert (d.user_connections, d.ip_connections, d.user_rate, d.user_burst) == (20, 500, 20, 40)
    assert (d.login_ip_rate, d.login_failures, d.login_window) == (30, 10, 900)
    assert (d.signup_ip_rate, d.room_create_rate, d.proxies_count) == (10, 20, 0)
    assert Settings.load({"CHATROOM_USER_CONNECTIONS": "3"}).user_connections == 3
    for name in ("USER_CONNECTIONS", "IP_CONNECTIONS", "USER_RATE", "USER_BURST",
                 "LOGIN_IP_RATE", "SIGNUP_IP_RATE", "ROOM_CREATE_RATE"):  # fmt: skip
        with pytest.raises(ConfigError, match=f"CHATROOM_{name} must be greater than zero"):
            Settings.load({f"CHATROOM_{name}": "0"})
    with pytest.raises(ConfigError, match="CHATROOM_PROXIES_COUNT"):
        Settings.load({"CHATROOM_PROXIES_COUNT": "-1"})


def test_user_message_check_in_process_is_a_plain_answer() -> None:
    # No coroutine on the message path without Redis: a bool, from a table lookup.
    settings = LimitSettings(20, 500, 1.0, 2, 30, 10, 900, 10, 20, slot_ttl=30)
    limits = AbuseLimits(MemoryLimits(clock=FakeClock()), settings)
    assert [limits.message_allowed(7) for _ in range(3)] == [True, True, False]
    assert limits.message_allowed(8) is True  # another user has a bucket of their own
