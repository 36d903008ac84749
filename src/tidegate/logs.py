"""Logging for the API, workers and scheduler: one line per event, as JSON or as text
(``TIDEGATE_LOG_FORMAT``), with secrets redacted from every line.

Events carry their fields as ``extra`` (``log.info("task_started", extra={"job_id": ...})``);
the JSON format puts them at the top level, the text format appends them as ``key=value``.
While a worker runs a job (:func:`job_scope`), every line it logs, the handler's own
included, carries that job's fields too, so one job's lines can be found by its id.
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

# The fields a job's lifecycle lines carry (those that are known at that point).
JOB_FIELDS = ("job_id", "type", "attempt", "tenant", "lane")

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                            "taskName"}
NOISY = ("httpx", "httpcore", "amqp", "kombu")

# What a secret looks like in text. Order matters: URLs first, then tokens.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host -> scheme://user:***@host (broker, database, Redis URLs)
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)[^@\s]+(?=@)"), r"\g<pre>***"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]+"), r"\1***"),
    (re.compile(r"\btg_[A-Za-z0-9_\-]{8,}"), "tg_***"),          # Tidegate API keys
    (re.compile(r"\bwhsec_[A-Za-z0-9_\-]{8,}"), "whsec_***"),    # webhook secrets
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-***"),          # OpenAI / Anthropic keys
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "AIza***"),       # Google API keys
    # password=..., "secret": "...", api_key: ... in free text
    (re.compile(r"(?i)\b((?:password|passwd|pwd|secret|secret_key|api_key|apikey|token|"
                r"authorization)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&}]+"), r"\1***"),
)
# Keys whose values are secret whatever they look like.
# (Whole words at the end of the name: `webhook_secret`, `access_token`, not `input_tokens`.)
_SECRET_KEY = re.compile(r"(?i)(^|[_.\-])(password|passwd|pwd|secret|secret_key|api_?key|token|"
                         r"authorization|credentials?)$")


def redact_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key) and value not in (None, "", 0):
        return "***"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v) for v in value]
    return value


# The fields of the job this thread (or task) runs now; helper threads that should carry them
# are started in a copy of the context (``contextvars.copy_context().run``).
_job: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "tidegate_log_job", default=None)


@contextmanager
def job_scope(**fields: Any) -> Iterator[dict[str, Any]]:
    """Lines logged inside carry ``fields`` (those a line does not set itself). The dict is
    yielded so that fields learnt later (the claimed job's type, tenant, attempt) can be
    added to it."""
    current = {k: v for k, v in fields.items() if v is not None}
    token = _job.set(current)
    try:
        yield current
    finally:
        _job.reset(token)


class JobFields(logging.Filter):
    """Adds the current job's fields (:func:`job_scope`) to every record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _job.get()
        if fields:
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: redact_value(k, v) for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", <extra fields>, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "event": redact_text(record.getMessage())}
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, then the event's fields as ``key=value``; redacted too."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        return redact_text(f"{line} {fields}" if fields else line)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(fmt: str = "text", level: str | int = "INFO") -> None:
    """Send every logger's lines to stderr in ``fmt`` (``json`` or ``text``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(JobFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings are lines in the same format, not raw stderr
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def uvicorn_log_config(fmt: str, level: str = "INFO") -> dict[str, Any]:
    """A dictConfig for uvicorn, applied in each of its worker processes too. In text mode
    uvicorn's own lines keep their familiar format (``INFO:     Started server process``)."""
    ours = {"()": "tidegate.logs.JsonFormatter" if fmt == "json"
            else "tidegate.logs.TextFormatter"}
    handler = {"class": "logging.StreamHandler", "formatter": "tidegate",
               "stream": "ext://sys.stderr"}
    if fmt != "json":
        from uvicorn.config import LOGGING_CONFIG

        config = copy.deepcopy(LOGGING_CONFIG)
        config["formatters"]["tidegate"] = ours
        config["handlers"]["tidegate"] = handler
        config["root"] = {"handlers": ["tidegate"], "level": level}
        return config
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"tidegate": ours}, "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {name: {"handlers": [], "propagate": True}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def job_fields(*, job_id: str, type: str, attempt: int, tenant: str,
               lane: str | None = None, **more: Any) -> dict[str, Any]:
    """The ``extra`` of a job's lifecycle line (names a Celery setup's logs already use)."""
    fields: dict[str, Any] = {"job_id": job_id, "type": type, "attempt": attempt,
                              "tenant": tenant}
    if lane is not None:
        fields["lane"] = lane
    fields.update(more)
    return fields
