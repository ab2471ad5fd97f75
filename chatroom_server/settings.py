"""One frozen Settings object: command-line flags > CHATROOM_* environment > a .env
file in the working directory > defaults.

Nothing else in the package reads the environment (or the .env file).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "CHATROOM_"
DOTENV = ".env"  # in the working directory
DOTENV_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    dev: bool = False
    database_url: str = "sqlite://chatroom.sqlite3"
    redis_url: str | None = None
    # The Redis URL names a node of a Redis Cluster (sharded pub/sub, SPEC section 13).
    redis_cluster: bool = False
    # Prefix of every Redis key and channel, so several deployments can share a Redis.
    redis_prefix: str = "chatroom"
    # None: a random secret is generated once and stored in the database.
    jwt_secret: str | None = field(default=None, repr=False)
    token_ttl: int = 86400
    bcrypt_rounds: int = 12
    cors_origins: str = "*"
    ws_origins: str = "*"
    max_frame_bytes: int = 65536
    max_message_chars: int = 4000
    # Seconds after sending in which the author may edit a message; 0: no limit.
    edit_window: float = 0.0
    ws_rate: float = 10.0
    ws_burst: int = 20
    ws_queue: int = 1000
    max_body_bytes: int = 1048576
    login_failures: int = 10
    login_window: int = 900
    # Abuse limits of SPEC section 11; shared by every worker and host with Redis.
    user_connections: int = 20
    ip_connections: int = 500
    user_rate: float = 20.0
    user_burst: int = 40
    login_ip_rate: int = 30  # a minute
    signup_ip_rate: int = 10  # an hour
    room_create_rate: int = 20  # an hour
    # Trusted proxies in front (Sanic's PROXIES_COUNT): the client IP is then taken
    # from X-Forwarded-For; 0 means none, the TCP peer is the client.
    proxies_count: int = 0
    ping_interval: float = 20.0
    presence_ttl: int = 30
    log_level: str = "INFO"
    log_format: str = "text"
    # How long a process trusts a checked session (revocations reach it sooner,
    # through the broker), and, while Redis is away, the bound on staleness: cached
    # answers are re-read and open sockets re-checked this often.
    session_cache_seconds: float = 60.0
    session_recheck: float = 5.0
    # How often a process looks for deleted rooms that still have open sockets.
    room_check_interval: float = 2.0
    # "auto": websockets take the fast path through Sanic's internals when they are
    # all there (web/internals); "off": Sanic's public API only, slower.
    internals: str = "auto"
    # Seconds a request's headers (or a new connection's first byte) may take.
    header_timeout: float = 10.0
    # A port of its own for /metrics (then 404 on the public port); None: the public one.
    metrics_port: int | None = None
    # When set, /metrics requires it as a Bearer token.
    metrics_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("jwt_secret", "metrics_token") and value is not None:
                value = "***"
            elif f.name in ("database_url", "redis_url") and value:
                value = mask_url(value)
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment, then apply non-None overrides (flags).

        Without `environ`: the process environment over the working directory's .env.
        """
        environ = environment() if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.type, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        def positive(name: str) -> None:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)} must be greater than zero.")

        for name in (
            "port",
            "workers",
            "token_ttl",
            "max_frame_bytes",
            "max_message_chars",
            "ws_rate",
            "ws_burst",
            "ws_queue",
            "max_body_bytes",
            "login_failures",
            "login_window",
            "user_connections",
            "ip_connections",
            "user_rate",
            "user_burst",
            "login_ip_rate",
            "signup_ip_rate",
            "room_create_rate",
            "ping_interval",
            "presence_ttl",
            "room_check_interval",
            "session_cache_seconds",
            "session_recheck",
            "header_timeout",
        ):
            positive(name)
        if self.edit_window < 0:
            raise ConfigError("CHATROOM_EDIT_WINDOW must be zero (no limit) or more.")
        if self.proxies_count < 0:
            raise ConfigError("CHATROOM_PROXIES_COUNT must be zero or more.")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("The log level must be one of DEBUG, INFO, WARNING, ERROR.")
        if self.log_format not in ("text", "json"):
            raise ConfigError("The log format must be text or json.")
        if self.internals not in ("auto", "off"):
            raise ConfigError("CHATROOM_INTERNALS must be auto or off.")
        if not 4 <= self.bcrypt_rounds <= 31:
            raise ConfigError("CHATROOM_BCRYPT_ROUNDS must be between 4 and 31.")
        if self.port > 65535:
            raise ConfigError("The port must be between 1 and 65535.")
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535:
            raise ConfigError("CHATROOM_METRICS_PORT must be between 1 and 65535.")
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ConfigError("CHATROOM_METRICS_PORT must differ from the public port.")
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise ConfigError("CHATROOM_METRICS_TOKEN must be at least 16 characters long.")
        scheme = self.database_url.split("://", 1)[0]
        if scheme not in ("sqlite", "postgres", "postgresql", "asyncpg"):
            # Only what precedes the first ":" is shown: without "://" the whole URL,
            # password included, would be echoed.
            shown = scheme.split(":", 1)[0][:20]
            raise ConfigError(
                f"The database URL must start with sqlite:// or postgres:// (got {shown!r})."
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError("The Redis URL must start with redis://, rediss:// or unix://.")
        if self.redis_cluster and self.redis_url is None:
            raise ConfigError("--redis-cluster (CHATROOM_REDIS_CLUSTER) needs a Redis URL.")
        if self.jwt_secret is not None and len(self.jwt_secret) < 16:
            raise ConfigError("CHATROOM_JWT_SECRET must be at least 16 characters long.")

    @property
    def ws_origin_list(self) -> tuple[str, ...]:
        return _split(self.ws_origins)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return _split(self.cors_origins)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def env_var(name: str) -> str | None:
    """The CHATROOM_* variable of the setting `name`; None when there is no such setting."""
    if name in {f.name for f in dataclasses.fields(Settings)}:
        return _env_name(name)
    return None


def environment(dotenv: str = DOTENV) -> dict[str, str]:
    """The CHATROOM_* variables: the process environment over the .env file.

    A variable set to the empty string counts as unset, here as everywhere.
    """
    values = read_dotenv(dotenv)
    values.update((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX) and v != "")
    return values


_KEY = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_dotenv(path: str = DOTENV) -> dict[str, str]:
    """The CHATROOM_* keys of a .env file; {} when there is none.

    One KEY=VALUE a line (an `export ` before it is allowed); blank lines and lines
    starting with # are skipped. VALUE is bare (trimmed, ended by " #"), in single
    quotes (taken as is) or in double quotes (with \\n, \\t, \\", \\\\ escapes); no
    variable expansion, no value over several lines. Any other line is an error:
    it may be a setting someone meant, and silence would hide it.
    """
    try:
        with open(path, "rb") as file:
            raw = file.read(DOTENV_MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if len(raw) > DOTENV_MAX_BYTES:
        raise ConfigError(f"{path} is larger than {DOTENV_MAX_BYTES // 1024} KiB.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not valid UTF-8.") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _KEY.fullmatch(stripped)
        if match is None:
            raise ConfigError(f"{path}, line {number}: expected KEY=VALUE.")
        key, rest = match.groups()
        value = _dotenv_value(rest)
        if value is None:
            # The value is not repeated: it may be a secret.
            raise ConfigError(
                f"{path}, line {number}: the value of {key} has an unclosed quote "
                "or text after its closing quote."
            )
        if key.startswith(ENV_PREFIX):
            values[key] = value
    return values


def _dotenv_value(rest: str) -> str | None:
    """The value after KEY=, or None when it is malformed."""
    if not rest or rest[0] not in "'\"":
        return re.split(r"\s#", rest, maxsplit=1)[0].strip()
    quote, i = rest[0], 1
    chars: list[str] = []
    while i < len(rest):
        char = rest[i]
        if char == quote:
            tail = rest[i + 1 :].strip()
            return "".join(chars) if not tail or tail.startswith("#") else None
        if char == "\\" and quote == '"' and i + 1 < len(rest):
            following = rest[i + 1]
            chars.append(_ESCAPES.get(following, "\\" + following))
            i += 2
            continue
        chars.append(char)
        i += 1
    return None


def _convert(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation).removesuffix(" | None")
    try:
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{_env_name(name)} has an invalid value: {raw!r}.") from None
    return raw


def mask_url(url: str) -> str:
    """Hide the password of a URL such as postgres://user:secret@host/db, and a
    `password=` query value (redis-py and asyncpg both take one there)."""
    url, sep, query = url.partition("?")
    if sep:
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", query)
    scheme, sep_, rest = url.partition("://")
    if sep_ and "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user = userinfo.split(":", 1)[0]
        if ":" in userinfo:
            url = f"{scheme}://{user}:***@{hostpart}"
    return f"{url}{sep}{query}"
