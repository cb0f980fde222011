"""Options that backends read from their URL's query string."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import ConfigurationError

__all__ = ["boolean", "option", "pop_options", "positive_float", "positive_int"]


def pop_options(url: str, names: set[str]) -> tuple[str, dict[str, str]]:
    """Split our options out of ``url``'s query; return the URL without them, and them."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in names:
            ours[key] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def positive_int(name: str, value: str | float | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {value!r}") from None
    if number < 1:
        raise ConfigurationError(f"{name} must be at least 1, got {number}")
    return number


def positive_float(name: str, value: str | float | None, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if not number > 0:
        raise ConfigurationError(f"{name} must be positive, got {number}")
    return number


def boolean(name: str, value: str | float | None, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}")


def option(keyword: str | float | None, options: dict[str, str], name: str) -> str | float | None:
    """The keyword argument when given, else the URL option."""
    return keyword if keyword is not None else options.get(name)
