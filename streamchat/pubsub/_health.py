"""The state of the broker link, as exposed by ``PubSub.health``."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Health", "LinkState"]


class LinkState(enum.Enum):
    """Where the broker link is in its life."""

    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


@dataclass(frozen=True, slots=True)
class Health:
    """A snapshot of the broker link.

    ``since`` is the UNIX time the link entered ``state``; ``last_error`` the most recent
    failure (kept after recovery, for diagnosis); ``reconnects`` counts recoveries;
    ``publishing`` is False while the broker does not take broadcasts (it fails them or
    does not answer in time), which a receiving link alone may not show for a while.
    """

    state: LinkState
    since: float
    last_error: str | None = None
    reconnects: int = 0
    publishing: bool = True

    @property
    def connected(self) -> bool:
        """The receiving link is up."""
        return self.state is LinkState.CONNECTED

    @property
    def ok(self) -> bool:
        """The broker both delivers to this process and takes its broadcasts."""
        return self.state is LinkState.CONNECTED and self.publishing
