"""``python -m worker`` is ``notify-worker``."""

from worker.cli import main

main()
