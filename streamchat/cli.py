"""The ``streamchat`` command: serve, worker, migrate, seed, chat."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Callable
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from streamchat.config import AuthMode, Settings, is_loopback
from streamchat.logs import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="streamchat",
    help="A real-time chat server for streamer communities.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
log = logging.getLogger("streamchat")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy URL \\[env STREAMCHAT_DATABASE_URL].", show_default=False),
]


def _settings(**overrides: Any) -> Settings:
    """Environment first, then the flags that were actually given; exit 2 on a bad one."""
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            where = f"STREAMCHAT_{name.upper()}"
            if name in overrides:  # this command has a flag for it
                where += f" or --{name.replace('_', '-')}"
            console.print(f"[bold red]streamchat:[/] bad setting {name} ({where}): {error['msg']}")
        raise typer.Exit(code=2) from None


def _check_backends(settings: Settings) -> None:
    """Exit 2 with one line, rather than a traceback, for a broker or store URL we can't use."""
    from streamchat.pubsub import ConfigurationError
    from streamchat.pubsub._registry import make_broker, make_store

    try:
        make_broker(settings.broker_url)
        make_store(settings.chat_store_url)
    except ConfigurationError as exc:
        console.print(f"[bold red]streamchat:[/] {exc}")
        raise typer.Exit(code=2) from None


def _check_server() -> None:
    """Exit 2 naming the supported versions when uvicorn or websockets is not one of them."""
    from streamchat.compat import check_server
    from streamchat.errors import CannotStart

    try:
        check_server()
    except CannotStart as exc:
        console.print(f"[bold red]streamchat:[/] {exc}")
        raise typer.Exit(code=2) from None


def refuse_unsafe_bind(settings: Settings) -> str | None:
    """Why the server must not start with these settings, or ``None``."""
    if problems := settings.twitch_problems():
        return "; ".join(problems)
    if (
        settings.auth_mode is AuthMode.DEV
        and not is_loopback(settings.host)
        and not settings.allow_dev_auth_remote
    ):
        return (
            f"refusing to listen on {settings.host}: in dev auth mode anyone can log in as "
            "any user by ID, so only loopback addresses are allowed. Set "
            "STREAMCHAT_ALLOW_DEV_AUTH_REMOTE=true (or --allow-dev-auth-remote) if you "
            "really mean it."
        )
    return None


def _flag_type(annotation: Any) -> Any:
    """The flag's type for a setting's: the same for str, int, float, bool and enums;
    text for the rest (comma-separated lists, choices), checked by the settings model."""
    if isinstance(annotation, type) and issubclass(annotation, str | int | float | enum.Enum):
        return annotation
    arguments = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(arguments) == 1:
        return _flag_type(arguments[0])
    return str


def _setting_flags() -> list[inspect.Parameter]:
    """One flag per setting, made from the Settings model: ``--name`` (``--name/--no-name``
    for a switch), its type, its description and its environment variable."""
    flags = []
    for name, field in Settings.model_fields.items():
        kind = _flag_type(field.annotation)
        flag = "--" + name.replace("_", "-")
        declarations = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        description = (field.description or "").replace("``", "")
        help_text = escape(f"{description} [env STREAMCHAT_{name.upper()}]".strip())
        option = typer.Option(*declarations, help=help_text, show_default=False)
        flags.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind | None, option],
            )
        )
    return flags


def _with_setting_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` a flag for every setting, besides its own parameters."""
    own = [
        parameter
        for parameter in inspect.signature(command, eval_str=True).parameters.values()
        if parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    parameters = [*_setting_flags(), *own]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


@app.command()
@_with_setting_flags
def serve(
    *,
    no_workers: Annotated[
        bool,
        typer.Option(
            "--no-workers",
            help="Leave the singleton actors (stream watcher, retention) to `streamchat worker` "
            "processes \\[env STREAMCHAT_RUN_SINGLETONS=false]",
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            envvar="STREAMCHAT_WORKERS",
            help="Server processes sharing the port (SO_REUSEPORT), for a multi-core host; "
            "more than 1 needs a cross-process broker (redis://, nats://, postgresql://) "
            "\\[env STREAMCHAT_WORKERS]",
        ),
    ] = 1,
    **settings_flags: Any,
) -> None:
    """Run the server. Every setting is a flag; a flag given wins over its environment
    variable."""
    import uvicorn

    from streamchat.app import create_app, server_options
    from streamchat.processes import refuse_processes, serve_processes

    if no_workers:
        settings_flags["run_singletons"] = False
    settings = _settings(**settings_flags)
    if (reason := refuse_unsafe_bind(settings) or refuse_processes(settings, workers)) is not None:
        console.print(f"[bold red]streamchat:[/] {reason}")
        raise typer.Exit(code=2)
    _check_backends(settings)
    _check_server()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.run_singletons and settings.broker_url.startswith("memory:"):
        log.warning(
            "--no-workers with the memory:// broker: no worker can reach this process, so "
            "nothing will watch streams or prune history"
        )
    if settings.auth_mode is AuthMode.DEV:
        log.warning(
            "dev auth mode: anyone can log in by Twitch ID (listening on %s:%d)",
            settings.host,
            settings.port,
        )
    if workers > 1:
        raise typer.Exit(code=serve_processes(settings, workers))
    # Logging is configured above (text or JSON); uvicorn's loggers go through it.
    uvicorn.run(create_app(settings), log_config=None, **server_options(settings))


@app.command()
def worker(
    database_url: DatabaseUrl = None,
    broker_url: Annotated[str | None, typer.Option(help="\\[env STREAMCHAT_BROKER_URL]")] = None,
    store_url: Annotated[
        str | None,
        typer.Option(help="Chat history store; default the database \\[env STREAMCHAT_STORE_URL]"),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="\\[env STREAMCHAT_LOG_LEVEL]")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text or json \\[env STREAMCHAT_LOG_FORMAT]")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics on this port (127.0.0.1 unless --metrics-host)"
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics port")] = "127.0.0.1",
) -> None:
    """Run the singleton actors (stream watcher, retention) beside the servers.

    Start as many as you like: one leads, the others stand by and take over
    within seconds if it dies.
    """
    from streamchat.errors import CannotStart
    from streamchat.worker import refuse_worker, run_worker

    settings = _settings(
        database_url=database_url,
        broker_url=broker_url,
        store_url=store_url,
        log_level=log_level,
        log_format=log_format,
    )
    if (reason := refuse_worker(settings)) is not None:
        console.print(f"[bold red]streamchat worker:[/] {reason}")
        raise typer.Exit(code=2)
    _check_backends(settings)
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(
            run_worker(settings, metrics=(metrics_host, metrics_port) if metrics_port else None)
        )
    except CannotStart as exc:
        console.print(f"[bold red]streamchat worker:[/] {exc}")
        raise typer.Exit(code=1) from None


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Bring the database schema up to date."""
    from streamchat.store.database import Database

    settings = _settings(database_url=database_url)

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(run())
    console.print(f"migrated {db_label(settings)}")


@app.command()
def seed(database_url: DatabaseUrl = None) -> None:
    """Load (or refresh) the bundled sample streamers."""
    from streamchat.store.database import Database
    from streamchat.store.streamers import StreamerStore
    from streamchat.twitch.sample import sample_streamer_rows

    settings = _settings(database_url=database_url)

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            await db.migrate()
            return await StreamerStore(db).upsert(sample_streamer_rows())
        finally:
            await db.close()

    written = asyncio.run(run())
    console.print(f"seeded {written} streamers into {db_label(settings)}")


@app.command()
def chat(
    room: Annotated[str, typer.Argument(help="The room: a streamer's login.")],
    twitch_id: Annotated[str, typer.Option(help="Your Twitch user ID (dev auth mode).")],
    login: Annotated[str | None, typer.Option(help="Your login, when registering.")] = None,
    url: Annotated[str, typer.Option(help="The server's base URL.")] = "http://127.0.0.1:8000",
    since: Annotated[
        int | None, typer.Option(help="Replay the room from after this sequence number.")
    ] = None,
) -> None:
    """Chat in a room from the terminal: shows it live and sends what you type."""
    from streamchat.terminal import run_chat

    raise typer.Exit(code=run_chat(url, room, twitch_id, login, since))


def db_label(settings: Settings) -> str:
    """The database URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


def main() -> None:
    app()
