"""The reports workflow (docs/reports.md): a plain-function core plus a thin Celery task."""
