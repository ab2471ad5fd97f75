"""The .env parser of settings.py: what each line form means, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatroom_server.errors import ConfigError
from chatroom_server.settings import DOTENV_MAX_BYTES, Settings, environment, read_dotenv


def parse(tmp_path: Path, text: str | bytes) -> dict[str, str]:
    path = tmp_path / ".env"
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return read_dotenv(str(path))


def test_line_forms(tmp_path: Path) -> None:
    values = parse(
        tmp_path,
        "# a comment\n"
        "   # an indented comment\n"
        "\n"
        "CHATROOM_HOST=0.0.0.0\n"
        "export CHATROOM_PORT = 9000 \n"
        "CHATROOM_REDIS_PREFIX=bare value # a comment\n"
        "CHATROOM_CORS_ORIGINS='single # kept \\n as is'\n"
        'CHATROOM_WS_ORIGINS="a\\"b\\\\c\\td" # comment\n'
        "CHATROOM_LOG_FORMAT=\n"
        "CHATROOM_INTERNALS=x#y\n"
        "CHATROOM_LOG_LEVEL=INFO\n"
        "CHATROOM_LOG_LEVEL=DEBUG\n"
        "PATH=/not/ours\n",
    )
    assert values == {
        "CHATROOM_HOST": "0.0.0.0",
        "CHATROOM_PORT": "9000",
        "CHATROOM_REDIS_PREFIX": "bare value",
        "CHATROOM_CORS_ORIGINS": "single # kept \\n as is",
        "CHATROOM_WS_ORIGINS": 'a"b\\c\td',
        "CHATROOM_LOG_FORMAT": "",
        "CHATROOM_INTERNALS": "x#y",
        "CHATROOM_LOG_LEVEL": "DEBUG",  # the last one wins
    }


def test_crlf_and_a_byte_order_mark(tmp_path: Path) -> None:
    values = parse(tmp_path, b"\xef\xbb\xbfCHATROOM_HOST=h\r\nCHATROOM_PORT='1'\r\n")
    assert values == {"CHATROOM_HOST": "h", "CHATROOM_PORT": "1"}


def test_no_file_is_no_values(tmp_path: Path) -> None:
    assert read_dotenv(str(tmp_path / ".env")) == {}


@pytest.mark.parametrize(
    "line, expected",
    [
        ("CHATROOM_HOST", "line 2: expected KEY=VALUE."),
        ("just some words", "line 2: expected KEY=VALUE."),
        ("CHATROOM-HOST=x", "line 2: expected KEY=VALUE."),
        ("=value", "line 2: expected KEY=VALUE."),
        ("CHATROOM_JWT_SECRET='secret-text", "line 2: the value of CHATROOM_JWT_SECRET"),
        ('CHATROOM_JWT_SECRET="secret-text', "line 2: the value of CHATROOM_JWT_SECRET"),
        ("CHATROOM_JWT_SECRET='secret-text' more", "text after its closing quote"),
    ],
)
def test_malformed_lines(tmp_path: Path, line: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, f"CHATROOM_HOST=h\n{line}\n")
    assert expected in caught.value.message
    assert "secret-text" not in caught.value.message
    assert "\n" not in caught.value.message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        parse(tmp_path, b"CHATROOM_HOST=\xff\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        parse(tmp_path, b"# " + b"x" * DOTENV_MAX_BYTES + b"\n")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ConfigError, match="Cannot read"):
        read_dotenv(str(tmp_path / "dir"))


def test_the_environment_goes_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "CHATROOM_HOST=file-host\nCHATROOM_PORT=1111\nCHATROOM_WORKERS=3\n"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("CHATROOM_HOST", "CHATROOM_PORT", "CHATROOM_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHATROOM_PORT", "2222")
    monkeypatch.setenv("CHATROOM_WORKERS", "")  # empty: unset, the file's value stands
    assert environment()["CHATROOM_HOST"] == "file-host"
    settings = Settings.load(port=None, host="flag-host")
    assert (settings.host, settings.port, settings.workers) == ("flag-host", 2222, 3)
    # An explicit mapping is all there is: no file, no process environment.
    assert Settings.load({}).port == 8080
