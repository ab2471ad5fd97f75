"""Site administration commands (SPEC 10): users, admins, deactivation, passwords.

The database work is in services/admin.py; running servers learn of what ends a
user's tokens, or a site admin's right, as that module says (through Redis if
given, and the accounts mark).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

import click

from .cli_support import database_option, fail, load_settings, run_db, say, warn
from .domain import Revocation, RoomEvent
from .errors import ChatError
from .settings import Settings

if TYPE_CHECKING:  # the services load the ORM: only when a command runs
    from .services.admin import Account

_redis_url = click.option(
    "--redis-url",
    default=None,
    metavar="URL",
    help="The servers' Redis, to tell them at once (env CHATROOM_REDIS_URL); without it "
    "they notice through the database within about a second.",
)
_redis_cluster = click.option(
    "--redis-cluster",
    is_flag=True,
    default=None,
    help="The Redis URL names a Redis Cluster node (env CHATROOM_REDIS_CLUSTER).",
)


def redis_option(command: Any) -> Any:
    return _redis_url(_redis_cluster(command))


def _who(account: Account) -> str:
    return f"user {account.id} ({account.user_name})"


def _cell(value: str) -> str:
    # One user a line, one field a column, whatever a legacy name holds.
    return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")


@click.command("list-users")
@database_option
def list_users(database_url: str | None) -> None:
    """List users: ID, name, email, admin, deactivated (tab-separated, by ID).

    The admin column says "admin" or "-"; the deactivated one the time it
    happened (UTC) or "-".
    """
    from .services import admin

    settings = load_settings(database_url=database_url)

    async def job() -> int:
        count, after = 0, 0
        while page := await admin.list_accounts(after):
            for a in page:
                since = "-"
                if a.deactivated_at is not None:
                    since = a.deactivated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                flag = "admin" if a.is_admin else "-"
                say(f"{a.id}\t{_cell(a.user_name)}\t{_cell(a.email)}\t{flag}\t{since}")
            count, after = count + len(page), page[-1].id
        return count

    if not run_db(settings.database_url, job):
        say("No users.")


def _announce(settings: Settings, change: Revocation | RoomEvent) -> str | None:
    """Tell running servers through Redis (if configured): None, or why it failed."""
    return None if settings.redis_url is None else asyncio.run(_publish(settings, change))


async def _publish(settings: Settings, change: Revocation | RoomEvent) -> str | None:
    from . import protocol
    from .pubsub import CONTROL_ROOM, publish_once

    assert settings.redis_url is not None
    if isinstance(change, Revocation):
        payload = protocol.bus_revocation(change)
    else:
        payload = protocol.bus_room_event(change)
    try:
        await publish_once(
            settings.redis_url, CONTROL_ROOM, payload, settings.redis_prefix, settings.redis_cluster
        )
    except ChatError as exc:
        return exc.message
    return None


def _report_announcement(settings: Settings, change: Revocation | RoomEvent) -> None:
    problem = _announce(settings, change)
    if problem is not None:
        warn(
            f"could not tell the servers through Redis ({problem}); "
            "they notice through the database within about a second."
        )


@click.command("deactivate-user")
@click.argument("user")
@database_option
@redis_option
def deactivate_user(
    user: str, database_url: str | None, redis_url: str | None, redis_cluster: bool | None
) -> None:
    """Deactivate USER (an ID or a name): every token refused, sockets closed (1008),
    sessions ended; their messages stay."""
    from .services import admin

    settings = load_settings(
        database_url=database_url, redis_url=redis_url, redis_cluster=redis_cluster
    )
    account, revocation = run_db(settings.database_url, lambda: admin.deactivate(user))
    if revocation is None:
        say(f"The {_who(account)} was already deactivated.")
        return
    _report_announcement(settings, revocation)
    say(f"Deactivated {_who(account)}: their tokens are refused and sessions ended.")


@click.command("reactivate-user")
@click.argument("user")
@database_option
def reactivate_user(user: str, database_url: str | None) -> None:
    """Let USER (an ID or a name) log in again."""
    from .services import admin

    settings = load_settings(database_url=database_url)
    account, changed = run_db(settings.database_url, lambda: admin.reactivate(user))
    if not changed:
        say(f"The {_who(account)} is not deactivated.")
        return
    say(f"Reactivated {_who(account)}: they may log in again.")


@click.command("set-admin")
@click.argument("user")
@click.option(
    "--off",
    is_flag=True,
    help="Take the site admin right away instead: their sockets to rooms they may no "
    "longer see close (1008).",
)
@database_option
@redis_option
def set_admin(
    user: str,
    off: bool,
    database_url: str | None,
    redis_url: str | None,
    redis_cluster: bool | None,
) -> None:
    """Make USER (a name or an ID) a site admin: sees and moderates every room."""
    from .services import admin

    settings = load_settings(
        database_url=database_url, redis_url=redis_url, redis_cluster=redis_cluster
    )
    account, changed = run_db(settings.database_url, lambda: admin.set_admin(user, not off))
    if changed and off:
        _report_announcement(settings, RoomEvent("admin_off", 0, account.id))
    now = "no longer" if off else "now"
    if not changed:
        now = "already not" if off else "already"
    say(f"The {_who(account)} is {now} a site admin.")


@click.command(
    "reset-password",
    # Anything after USER is refused by us, not echoed back by click's usage error:
    # it may well be a password typed where it does not belong.
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("user")
@database_option
@redis_option
@click.pass_context
def reset_password(
    ctx: click.Context,
    user: str,
    database_url: str | None,
    redis_url: str | None,
    redis_cluster: bool | None,
) -> None:
    """Set a new password for USER (a name or an ID) and end every session of theirs.

    The password is read from stdin (one line) when that is not a terminal, else
    asked for twice without echo; never from the command line.
    """
    from .services import admin

    if ctx.args:
        fail(
            "reset-password takes only the user: the new password is never taken from "
            "the command line (pipe it on stdin, or answer the prompt)."
        )
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, redis_cluster=redis_cluster
    )
    run_db(settings.database_url, lambda: admin.find_account(user))  # before asking
    password = _read_new_password()
    account, revocation = run_db(
        settings.database_url,
        lambda: admin.reset_password(user, password, settings.bcrypt_rounds),
    )
    _report_announcement(settings, revocation)
    say(f"Set a new password for {_who(account)} and ended their sessions.")


def _read_new_password() -> str:
    from . import protocol

    stdin = sys.stdin
    if stdin.isatty():
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    else:
        raw = stdin.buffer.readline(4 * protocol.PASSWORD_MAX_BYTES)
        if not raw:
            fail("No password on stdin: pipe the new password in, one line.")
        try:
            password = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            fail("The password on stdin is not valid UTF-8.")
        if not password:
            fail("The password on stdin is empty.")
    try:
        return protocol.check_new_password(password)
    except ValueError as exc:
        fail(f"Invalid password: {exc}")
    raise AssertionError("unreachable")


COMMANDS = (list_users, deactivate_user, reactivate_user, set_admin, reset_password)
