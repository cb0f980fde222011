"""Alembic migrations of streamchat's own tables."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

__all__ = ["alembic_config"]


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at these migrations, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url)
    return config
