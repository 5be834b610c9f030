"""Small output helpers shared by the commands: JSON for machines, rich for people."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Wide enough for summaries when piped (rich assumes 80 columns without a terminal).
_WIDTH = None if sys.stdout.isatty() else 120
console = Console(stderr=False, highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=_WIDTH)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
