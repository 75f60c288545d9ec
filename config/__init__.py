"""Typed settings, Celery configuration and an example fleet file."""
