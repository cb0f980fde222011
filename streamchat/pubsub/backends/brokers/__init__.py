"""Brokers: memory, redis, nats, postgres; one module each, imported lazily."""

from __future__ import annotations
