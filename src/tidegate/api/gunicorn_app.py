"""`tidegate api`: Gunicorn (master, graceful HUP reload, worker recycling) with Uvicorn
workers, configured by the readable ``gunicorn.conf.py`` beside this module plus the flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gunicorn.app.base import Application

CONFIG_FILE = Path(__file__).with_name("gunicorn.conf.py")
APP = "tidegate.api.app:create_app()"


class ApiServer(Application):  # type: ignore[misc]
    """The config file first, then the options given (``None`` keeps the file's value; an
    empty ``accesslog`` turns access logs off)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = {k: v for k, v in options.items() if v is not None}
        super().__init__()

    def load_config(self) -> None:
        # Called again on HUP: the file and the same flags are read once more.
        self.load_config_from_file(str(CONFIG_FILE))
        for key, value in self.options.items():
            self.cfg.set(key, None if value == "" else value)

    def load(self) -> Any:
        from gunicorn.util import import_app

        return import_app(APP)


def serve(**options: Any) -> None:
    ApiServer(options).run()
