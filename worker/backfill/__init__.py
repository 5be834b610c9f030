"""Backfills: the framework (progress, concurrency, resume, Ctrl-C) that runs items from each
workflow's item source (``tasks.<workflow>.backfill``) in-process or through the workers."""
