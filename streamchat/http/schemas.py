"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from streamchat.store.models import Streamer, User

__all__ = [
    "NOT_BLANK",
    "ErrorOut",
    "FavoriteIn",
    "LoginIn",
    "NotReadyOut",
    "RegisterIn",
    "RoomName",
    "RoomPageOut",
    "SessionOut",
    "StreamerOut",
    "StreamerRef",
    "UserOut",
    "printable",
    "stripped_printable",
]


def printable(value: str) -> str:
    if any(not ch.isprintable() for ch in value):
        raise ValueError("must not contain control characters")
    return value


def stripped_printable(value: str) -> str:
    """``value`` without its surrounding whitespace: not blank, no control characters."""
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return printable(value)


#: A JSON Schema (and pydantic) pattern: not only whitespace.
NOT_BLANK = r"\S"

TwitchId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]
Login = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,25}$")]
# The length is the one sent, as the schema states; surrounding whitespace is dropped after.
DisplayName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=50, pattern=NOT_BLANK),
    AfterValidator(stripped_printable),
]


StreamerRef = Annotated[
    str, Path(description="A streamer's login or Twitch ID.", examples=["sablesignal"])
]
RoomName = Annotated[
    str, Path(description="A room: its streamer's login.", examples=["sablesignal"])
]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RegisterIn(_In):
    twitch_id: TwitchId = Field(
        description="The Twitch user ID: 1 to 20 digits.", examples=["1001"]
    )
    login: Login | None = Field(
        default=None, description="Twitch login: 1 to 25 of A-Z a-z 0-9 _.", examples=["viewer"]
    )
    display_name: DisplayName | None = Field(default=None, examples=["Viewer"])


class LoginIn(_In):
    twitch_id: TwitchId = Field(examples=["1001"])


class FavoriteIn(_In):
    streamer: Annotated[str, StringConstraints(min_length=1, max_length=25)] = Field(
        description="The streamer's login or Twitch ID.", examples=["sablesignal"]
    )


class StreamerOut(BaseModel):
    id: str
    login: str
    display_name: str
    description: str
    profile_image_url: str
    offline_image_url: str
    broadcaster_type: str
    live: bool
    title: str
    game_id: str
    game_name: str
    viewer_count: int
    started_at: datetime | None
    language: str
    is_favorite: bool = False

    @classmethod
    def of(cls, streamer: Streamer, *, favorite_id: str | None = None) -> StreamerOut:
        return cls(
            id=streamer.id,
            login=streamer.login,
            display_name=streamer.display_name,
            description=streamer.description,
            profile_image_url=streamer.profile_image_url,
            offline_image_url=streamer.offline_image_url,
            broadcaster_type=streamer.broadcaster_type,
            live=streamer.live,
            title=streamer.title,
            game_id=streamer.game_id,
            game_name=streamer.game_name,
            viewer_count=streamer.viewer_count,
            started_at=streamer.started_at,
            language=streamer.language,
            is_favorite=favorite_id is not None and streamer.id == favorite_id,
        )


class UserOut(BaseModel):
    twitch_id: str
    login: str | None
    display_name: str | None
    #: Twitch's, for users who logged in with Twitch.
    profile_image_url: str | None = None
    created_at: datetime
    favorite: StreamerOut | None = None

    @classmethod
    def of(cls, user: User, *, favorite: Streamer | None = None) -> UserOut:
        return cls(
            twitch_id=user.twitch_id,
            login=user.login,
            display_name=user.display_name,
            profile_image_url=user.profile_image_url,
            created_at=user.created_at,
            favorite=StreamerOut.of(favorite, favorite_id=favorite.id) if favorite else None,
        )


class SessionOut(BaseModel):
    user: UserOut | None = Field(description="The logged-in user; null without a session.")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable and machine-readable: `invalid_input`, `not_found`, …")
    message: str = Field(description="For people; names the field at fault.")
    details: Any = Field(
        default=None,
        description="More about the error when there is more: each problem of an "
        "`invalid_input`, the `retry_after` seconds of a `too_many_attempts`.",
    )


class ErrorOut(BaseModel):
    """Every error the API answers with."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class NotReadyOut(BaseModel):
    status: str = Field(description="`unavailable`.")
    error: ErrorDetail
    checks: dict[str, str] = Field(description="Each dependency: `ok`, or what is wrong with it.")


class RoomPageOut(BaseModel):
    room: str
    messages: list[dict[str, Any]] = Field(
        description="`message` frames as the WebSocket sends them (docs/protocol.md), oldest first."
    )
