"""The HTTP API (FastAPI). ``create_app()`` is the only entry point."""
