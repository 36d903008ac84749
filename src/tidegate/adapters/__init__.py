"""Adapters: the SQL store, Redis keys and scripts, Celery, Prometheus."""
