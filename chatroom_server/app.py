"""create_app(settings): wiring only."""

from __future__ import annotations

import logging

from sanic import Sanic
from sanic_ext import Extend

from . import __version__
from .db import close_database
from .db.store import make_store
from .errors import ConfigError
from .logs import setup_logging
from .pubsub import Broker, Deliver, Resync, make_broker
from .pubsub.limits import make_limits
from .pubsub.presence import make_presence
from .realtime.hub import Hub
from .realtime.keys import KeyWatch
from .realtime.reads import ReadFanout
from .realtime.relay import Relay
from .realtime.revocations import Revocations
from .realtime.room_events import ControlRoom, RoomEvents
from .services import access
from .services import admin as admin_service
from .services import rooms as room_service
from .services import secrets as secrets_service
from .services.changes import MessageChanges
from .services.limits import AbuseLimits, LimitSettings
from .services.members import RoomAdmin
from .services.messages import plan_batch
from .services.reads import ReadService
from .services.sessions import SessionService
from .services.users import UserService
from .settings import Settings
from .web import auth, members, messages, ops, rooms, static, ws
from .web.context import App, Ctx
from .web.errors import ChatErrorHandler, setup_errors
from .web.internals import choose_protocol, choose_wire, launcher, orm
from .web.keepalive import Keepalive
from .web.openapi import configure_docs, setup_openapi

log = logging.getLogger("chatroom_server")


def create_app(settings: Settings | object = None, name: str = "chatroom_server") -> App:
    """The app, wired for `settings`.

    Sanic's own launcher (`sanic chatroom_server.app:create_app --factory`) calls this
    with its argument namespace instead (or with nothing): then the settings come from
    the CHATROOM_* environment and logging is set up as `chatroom-server serve` does.
    """
    if not isinstance(settings, Settings):
        return _for_sanic_launcher(settings)
    wire = choose_wire(settings.internals, settings.ping_interval)
    store = make_store(settings.database_url, plan_batch)
    hub = Hub(wire.encode)

    def broker(deliver: Deliver, resync: Resync) -> Broker:
        return make_broker(
            settings.redis_url, deliver, resync, settings.redis_prefix, settings.redis_cluster
        )

    relay = Relay(
        hub,
        store,
        broker,
        make_presence(
            settings.redis_url, settings.redis_prefix, settings.presence_ttl, settings.redis_cluster
        ),
        room_service.deleted_among,
        settings.room_check_interval,
        presence_ttl=settings.presence_ttl,
    )
    sessions = SessionService(
        settings.token_ttl,
        cache_seconds=settings.session_cache_seconds,
        recheck=settings.session_recheck,
        healthy=lambda: relay.broker.healthy,
    )
    room_events = RoomEvents(
        hub,
        access.seers,
        relay.publish_control,
        access.verdicts,
        access.load_room,
        lambda: relay.broker.healthy,
        settings.session_recheck,
        sweep_every=settings.session_cache_seconds,
    )
    revocations = Revocations(
        hub,
        sessions,
        relay.publish_control,
        lambda: relay.broker.healthy,
        settings.session_recheck,
        sweep_every=settings.session_cache_seconds,
        # The admin CLI's changes (deactivate-user, reset-password, set-admin --off),
        # which a server without Redis cannot hear: within the SPEC's 2 s with room
        # to spare.
        mark=admin_service.accounts_mark,
        mark_every=min(1.0, settings.room_check_interval),
        on_mark=room_events.admins_changed,
    )
    read_fanout = ReadFanout(hub, relay.publish_control)
    keys = KeyWatch(
        lambda: secrets_service.key_ring(settings.jwt_secret),
        secrets_service.keys_version,
        revocations,
        # rotate-secret without Redis: picked up within about a second (SPEC 14: 10 s).
        every=min(1.0, settings.room_check_interval),
    )
    relay.control = ControlRoom(revocations, room_events, read_fanout, keys)
    sessions.announce_with(revocations.announce)
    room_admin = RoomAdmin()
    room_admin.announce_with(room_events.announce)
    limits = AbuseLimits(
        make_limits(settings.redis_url, settings.redis_prefix, settings.redis_cluster),
        LimitSettings.of(settings),
    )
    ctx = Ctx(
        settings=settings,
        users=UserService(settings.bcrypt_rounds, limits),
        limits=limits,
        sessions=sessions,
        revocations=revocations,
        keys=keys,
        room_events=room_events,
        rooms=room_admin,
        reads=ReadService(),
        read_fanout=read_fanout,
        wire=wire,
        store=store,
        hub=hub,
        relay=relay,
        changes=MessageChanges(store.live_message, relay.change, settings.edit_window),
        keepalive=Keepalive(settings.ping_interval, wire.pings),
    )
    app: App = Sanic(name, ctx=ctx, error_handler=ChatErrorHandler())
    _configure(app, settings)
    setup_errors(app)
    setup_openapi(app)
    app.blueprint([auth.bp, rooms.bp, members.bp, messages.bp, ws.bp, ops.bp, static.bp])
    # First of every request middleware (blueprints' auth included): the access line's
    # duration covers them.
    app.on_request(ops.stamp_request, priority=1000)
    app.on_response(ops.count_request)  # type: ignore[no-untyped-call]
    _setup_lifecycle(app)
    return app


def create_served_app(settings: Settings) -> App:
    """The app as `chatroom-server serve` runs it: with our log handlers set up."""
    app = create_app(settings)  # Sanic configures its loggers here: ours come after
    setup_logging("DEBUG" if settings.dev else settings.log_level, settings.log_format)
    return app


def _for_sanic_launcher(args: object) -> App:
    settings = Settings.load()
    if launcher.several_processes(args) and settings.redis_url is None:
        raise ConfigError(
            "More than one worker needs CHATROOM_REDIS_URL: each worker is a separate "
            "process, and without Redis every room would be split between them."
        )
    app = create_served_app(settings)
    launcher.serve_protocol_under_launcher(app, app.ctx.http_protocol)
    return app


def _configure(app: App, settings: Settings) -> None:
    app.config.REQUEST_MAX_SIZE = settings.max_body_bytes
    if settings.proxies_count:
        # Then request.remote_addr is the client X-Forwarded-For names (web.context.client_ip).
        app.config.PROXIES_COUNT = settings.proxies_count
    app.config.WEBSOCKET_MAX_SIZE = settings.max_frame_bytes
    app.ctx.wire.configure(app.config, settings.ping_interval)  # who pings the sockets
    app.ctx.http_protocol = choose_protocol(settings.internals, app.config, settings.header_timeout)
    # Access lines would carry ?jwt= tokens; we log our own events instead.
    app.config.ACCESS_LOG = False
    app.config.CORS_ORIGINS = settings.cors_origins
    app.config.CORS_ALLOW_HEADERS = "authorization,content-type"
    configure_docs(app.config)
    app.config.API_TITLE = "chatroom-server"
    app.config.API_VERSION = __version__
    Extend(app)


def _setup_lifecycle(app: App) -> None:
    @app.before_server_start
    async def open_resources(app: App) -> None:
        settings = app.ctx.settings
        await orm.open_database(settings.database_url)
        await app.ctx.store.open()
        app.ctx.tokens = await app.ctx.keys.open(settings.token_ttl)
        await app.ctx.relay.start()
        app.ctx.revocations.start()
        app.ctx.keys.start()
        app.ctx.room_events.start()
        app.ctx.limits.start()
        app.ctx.keepalive.start()

    @app.before_server_stop
    async def close_sockets(app: App) -> None:
        # The listening socket stays open until the listeners are done: a client that
        # reconnects at once must be refused, or it holds the shutdown up (15 s
        # measured with 5,000 sockets, benchmarks/README.md, the storm).
        app.ctx.stopping = True
        # Close with 1001 ourselves: Sanic would otherwise close them with 1000.
        await app.ctx.keepalive.stop()
        await app.ctx.revocations.stop()
        await app.ctx.keys.stop()
        await app.ctx.room_events.stop()
        await app.ctx.relay.stop()
        await app.ctx.wire.wait_closed()
        # After the sockets: their handlers give their connection slots back first.
        await app.ctx.limits.stop()

    @app.after_server_stop
    async def close_resources(app: App) -> None:
        await app.ctx.store.close()
        await close_database()
