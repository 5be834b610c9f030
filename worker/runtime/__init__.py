"""The runtime every task builds on: the Celery app, the task base class, settings, queue and
task names, the Redis state store, dead letters, logging, plug-in loading and the beat schedule.

Nothing here imports a workflow (``tasks``) or a front-end (``worker.cli``, ``worker.backfill``,
``worker.demo``, ``worker.local``); the app names the task modules by string only.
"""
