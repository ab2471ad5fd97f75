"""Units with no server: settings, throttles, frame parsing."""

from __future__ import annotations

import pytest

from chatroom_server import protocol
from chatroom_server.errors import ConfigError, InvalidMessage
from chatroom_server.realtime.ratelimit import TokenBucket
from chatroom_server.services.throttle import LoginThrottle
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
        ({"CHATROOM_BCRYPT_ROUNDS": "3"}, "between 4 and 31"),
        ({"CHATROOM_LOG_LEVEL": "LOUD"}, "log level must be one of"),
        ({"CHATROOM_LOG_FORMAT": "xml"}, "log format must be text or json"),
    ],
)
def test_invalid_settings_say_which_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env)


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


def test_login_throttle_locks_after_n_failures_and_expires() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(failures=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
    assert 1 <= throttle.retry_after("a") <= 61
    assert throttle.retry_after("b") == 0
    clock.now += 61
    assert throttle.retry_after("a") == 0


def test_login_throttle_success_resets_and_table_is_bounded() -> None:
    throttle = LoginThrottle(failures=2, window=60, max_keys=3, clock=FakeClock())
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    for key in "bcdef":
        throttle.failed(key)
    assert len(throttle._recent) == 3


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
