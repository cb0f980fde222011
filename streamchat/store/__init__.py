"""Persistence: the database handle, the tables and the queries over them."""

from __future__ import annotations

from streamchat.store.database import Database

__all__ = ["Database"]
