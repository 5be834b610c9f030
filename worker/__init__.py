"""The Celery side: app, task base class, settings, CLI, beat schedule and web-app client."""
