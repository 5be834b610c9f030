"""Test-only: a pause between a letter's copy and its delete, for crash tests.

A prefork worker started with ``--include=tests.plugins.letters_pause`` loads this module before
it forks, so every pool child copies letters through ``_copy_then_pause``. When
``LETTERS_PAUSE_MARKER`` names a file that does not exist yet, the first move to finish its copy
creates the file and sleeps (``LETTERS_PAUSE_SECONDS``, default 60) before the delete, so a test
can SIGKILL the worker at exactly that point. Production code has no such hook.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from tasks.letters import moves

MARKER_ENV = "LETTERS_PAUSE_MARKER"
SECONDS_ENV = "LETTERS_PAUSE_SECONDS"

logger = logging.getLogger(__name__)
_copy_checked = moves._copy_checked


def _copy_then_pause(*args: Any, **kwargs: Any) -> bool:
    multipart = _copy_checked(*args, **kwargs)
    marker = os.environ.get(MARKER_ENV)
    if marker:
        try:
            Path(marker).touch(exist_ok=False)  # only the first run to get here pauses
        except FileExistsError:
            return multipart
        logger.warning("test plug-in: pausing between copy and delete")
        time.sleep(float(os.environ.get(SECONDS_ENV) or 60))
    return multipart


moves._copy_checked = _copy_then_pause
