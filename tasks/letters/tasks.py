"""Celery tasks of the letters workflow (thin wrappers over the core)."""
