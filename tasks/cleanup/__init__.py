"""The cleanup workflow (SPEC §7): a plain-function core plus a thin Celery task."""
