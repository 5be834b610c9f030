"""`notify-worker reports` (filled in by its workflow)."""

from __future__ import annotations

COMMANDS: list = []
