"""Tidegate: durable background LLM jobs with one shared rate limit per provider lane."""

__version__ = "0.1.0"
