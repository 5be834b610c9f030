"""Celery tasks of the cleanup workflow (thin wrappers over the core)."""
