"""The reports workflow (SPEC §6): a plain-function core plus a thin Celery task."""
