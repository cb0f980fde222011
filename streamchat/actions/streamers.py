"""Adding streamers to the catalogue, and removing them (operators, through Twitch)."""

from __future__ import annotations

import logging

from streamchat.errors import LoginTaken, StreamchatError, StreamerNotFound, TwitchDisabled
from streamchat.pubsub import PubSubError
from streamchat.services import Services
from streamchat.store.models import Streamer
from streamchat.twitch.helix import streamer_rows

__all__ = ["add_streamer", "remove_streamer"]

log = logging.getLogger("streamchat")


async def add_streamer(services: Services, login: str) -> Streamer:
    """Look ``login`` up in Helix and add (or refresh) that streamer and their room."""
    twitch = services.twitch
    if twitch is None:
        raise TwitchDisabled(
            "adding streamers needs Twitch: set STREAMCHAT_TWITCH_CLIENT_ID and _SECRET"
        )
    found = await twitch.users(logins=[login])
    if not found:
        raise StreamerNotFound(f"Twitch knows no user {login!r}")
    holder = await services.streamers.find(found[0].login)
    if holder is not None and holder.id != found[0].id:
        # A renamed account's old row: which room the name means is the operator's call.
        raise LoginTaken(
            f"login {found[0].login!r} belongs to streamer {holder.id} in the catalogue; "
            "remove that one first"
        )
    streams = await twitch.streams([found[0].id])
    await services.streamers.upsert(streamer_rows(found, streams))
    streamer = await services.streamers.get(found[0].id)
    assert streamer is not None
    await _tell_directory(services, "streamer.added", streamer)
    try:
        # Subscribed to EventSub now rather than at the watcher's next round.
        await services.cluster.command("stream-watcher", "subscribe", {})
    except StreamchatError as exc:
        log.info("streamer %s added; EventSub will follow (%s)", streamer.login, exc)
    return streamer


async def remove_streamer(services: Services, login: str) -> None:
    """Remove a streamer from the catalogue: their room stops taking subscriptions."""
    streamer = await services.streamers.find(login)
    if not await services.streamers.delete(login):
        raise StreamerNotFound(f"no streamer {login!r}")
    services.rooms.forget(login.lower())
    if streamer is not None and streamer.login == login.lower():
        await _tell_directory(services, "streamer.removed", streamer)


async def _tell_directory(services: Services, kind: str, streamer: Streamer) -> None:
    """Pages showing the directory learn of the change (they read the streamer anew)."""
    data = {"id": streamer.id, "login": streamer.login, "display_name": streamer.display_name}
    try:
        await services.rooms.events.streamer_changed(kind, data)
    except PubSubError as exc:
        log.warning("%s %s: not announced (%s)", kind, streamer.login, exc)
