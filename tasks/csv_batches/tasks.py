"""Celery tasks of the CSV batches workflow."""
