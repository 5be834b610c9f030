"""The cleanup workflow (docs/cleanup.md): a plain-function core plus a thin Celery task."""
