"""Where settings come from (SPEC 3 and 14): flags over the environment over the
working directory's .env; every flag's --help names its variable."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from chatroom_server.cli import main
from chatroom_server.settings import env_var

from .test_cli_errors import run_cli


def migrated_files(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.sqlite3")}


def test_a_value_from_dotenv_is_used(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# the database of this checkout\n"
        "\n"
        "export CHATROOM_DATABASE_URL='sqlite://from-dotenv.sqlite3'  # quoted\n"
        "OTHER_TOOL=whatever\n"
    )
    run = run_cli(["migrate"], tmp_path)
    assert run.code == 0, run.err
    assert "Applied migration" in run.out
    assert migrated_files(tmp_path) == {"from-dotenv.sqlite3"}


def test_the_environment_overrides_dotenv_and_a_flag_both(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CHATROOM_DATABASE_URL=sqlite://from-dotenv.sqlite3\n")
    env = {"CHATROOM_DATABASE_URL": "sqlite://from-env.sqlite3"}
    run = run_cli(["migrate"], tmp_path, env=env)
    assert run.code == 0, run.err
    assert migrated_files(tmp_path) == {"from-env.sqlite3"}

    run = run_cli(["migrate", "--database-url", "sqlite://from-flag.sqlite3"], tmp_path, env=env)
    assert run.code == 0, run.err
    assert migrated_files(tmp_path) == {"from-env.sqlite3", "from-flag.sqlite3"}


def test_dotenv_values_are_checked_like_the_environment_s(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('CHATROOM_PORT="eighty"\n')
    run = run_cli(["serve", "--database-url", f"sqlite://{tmp_path / 'c.sqlite3'}"], tmp_path)
    run.assert_one_line_error("CHATROOM_PORT has an invalid value")


@pytest.mark.parametrize(
    "line, expected",
    [
        ("CHATROOM_PORT 8080", ".env, line 2: expected KEY=VALUE."),
        ("CHATROOM_JWT_SECRET='s3cret-value-xyz", "line 2: the value of CHATROOM_JWT_SECRET"),
        ('CHATROOM_JWT_SECRET="s3cret-value-xyz" tail', "has an unclosed quote or text after"),
        ("2FA=on", ".env, line 2: expected KEY=VALUE."),
    ],
)
def test_a_malformed_dotenv_line_is_one_error_line(
    line: str, expected: str, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"# settings\n{line}\nCHATROOM_PORT=8080\n")
    for args in (["list-rooms"], ["serve"]):
        run = run_cli(args, tmp_path)
        run.assert_one_line_error(expected)
        assert "s3cret-value" not in run.err
    assert migrated_files(tmp_path) == set()


def settings_flags(command: click.Command) -> dict[str, str]:
    """The command's flags that set a setting, with their CHATROOM_* variable."""
    found = {}
    for param in command.params:
        env = env_var(param.name or "")
        if isinstance(param, click.Option) and env is not None:
            found[param.opts[0]] = env
    return found


def test_serve_help_names_every_variable_its_flags_map_to(tmp_path: Path) -> None:
    flags = settings_flags(main.commands["serve"])
    # The serve flags the README's configuration table lists, at least.
    assert {"--host", "--port", "--workers", "--database-url", "--redis-url", "--dev"} <= set(flags)
    run = run_cli(["serve", "--help"], tmp_path)
    assert run.code == 0, run.err
    shown = " ".join(run.out.split())  # click wraps the help at 80 columns
    for flag, env in flags.items():
        assert flag in shown and env in shown, (flag, env, run.out)
    # Each next to its own flag: the help text click shows for that option.
    CliRunner().invoke(main, ["serve", "--help"])
    for param in main.commands["serve"].params:
        if isinstance(param, click.Option) and param.opts[0] in flags:
            assert flags[param.opts[0]] in (param.help or ""), param.opts


@pytest.mark.parametrize("name", sorted(set(main.commands) - {"serve"}))
def test_every_command_s_help_names_its_variables(name: str, tmp_path: Path) -> None:
    flags = settings_flags(main.commands[name])
    run = run_cli([name, "--help"], tmp_path)
    assert run.code == 0, run.err
    shown = " ".join(run.out.split())
    for flag, env in flags.items():
        assert env in shown, (name, flag, env)
