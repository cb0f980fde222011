"""Backends chosen by URL scheme, imported lazily so optional dependencies stay optional."""

from __future__ import annotations

import importlib
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from ._errors import ConfigurationError
from .backends.base import Broker, Store

__all__ = ["BROKERS", "STORES", "make_broker", "make_store", "redact"]

_PREFIX = "streamchat.pubsub.backends"

#: Broker URL scheme -> "module:Class".
BROKERS: dict[str, str] = {
    "memory": f"{_PREFIX}.brokers.memory:MemoryBroker",
    "redis": f"{_PREFIX}.brokers.redis:RedisBroker",
    "rediss": f"{_PREFIX}.brokers.redis:RedisBroker",
    "nats": f"{_PREFIX}.brokers.nats:NatsBroker",
    "tls": f"{_PREFIX}.brokers.nats:NatsBroker",
    "postgresql": f"{_PREFIX}.brokers.postgres:PostgresBroker",
    "postgres": f"{_PREFIX}.brokers.postgres:PostgresBroker",
}

#: Store URL scheme (the dialect, before any "+driver") -> "module:Class".
STORES: dict[str, str] = {
    "memory": f"{_PREFIX}.stores.memory:MemoryStore",
    "sqlite": f"{_PREFIX}.stores.sql:SQLStore",
    "postgresql": f"{_PREFIX}.stores.sql:SQLStore",
    "postgres": f"{_PREFIX}.stores.sql:SQLStore",
}

# The pip extra that brings each optional top-level dependency.
_EXTRAS = {"redis": "redis", "nats": "nats", "asyncpg": "postgresql", "sqlalchemy": "sql"}

_T = TypeVar("_T", Broker, Store)
# mypy takes no abstract class where type[_T] is expected; these serve only for checks.
_BROKER: type[Broker] = Broker  # type: ignore[type-abstract]
_STORE: type[Store] = Store  # type: ignore[type-abstract]


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


def _scheme(url: str, kind: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"{kind} URL must look like 'scheme://...', got {url!r}")
    return url.split("://", 1)[0].split("+", 1)[0].lower()


def _load(path: str, base: type[_T], url: str) -> type[_T]:
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top in _EXTRAS:
            raise ConfigurationError(
                f"{redact(url)} needs the optional dependency {top!r}: "
                f"pip install 'streamchat[{_EXTRAS[top]}]'"
            ) from exc
        raise
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigurationError(f"{path} is not a {base.__name__}")
    return cls


def _make(url: str, registry: dict[str, str], base: type[_T], kind: str) -> _T:
    scheme = _scheme(url, kind)
    path = registry.get(scheme)
    if path is None:
        known = ", ".join(sorted(registry))
        raise ConfigurationError(
            f"unknown {kind} scheme {scheme!r} in {redact(url)!r}; expected one of: {known}"
        )
    cls = _load(path, base, url)
    return cls(url)  # type: ignore[call-arg]


def make_broker(url: str) -> Broker:
    """The Broker for ``url``, e.g. ``redis://127.0.0.1:6379``."""
    return _make(url, BROKERS, _BROKER, "broker")


def make_store(url: str) -> Store:
    """The Store for ``url``, e.g. ``sqlite+aiosqlite:///chat.db``."""
    return _make(url, STORES, _STORE, "store")
