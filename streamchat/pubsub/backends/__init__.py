"""Backends: brokers (transport between processes) and stores (history)."""

from __future__ import annotations

from .base import Broker, Store

__all__ = ["Broker", "Store"]
