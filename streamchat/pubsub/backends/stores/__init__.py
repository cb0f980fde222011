"""Stores: memory and SQL; one module each, imported lazily."""

from __future__ import annotations
