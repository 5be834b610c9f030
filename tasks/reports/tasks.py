"""Celery tasks of the reports workflow (thin wrappers over the core)."""
