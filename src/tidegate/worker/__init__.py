"""The Celery worker: the app with its one task, and the process-wide runtime behind it."""
