"""What may be stored and sent back as JSON: one check for requests, one guard for reads.

Python's JSON decoder accepts things no store and no response can carry: lone UTF-16
surrogates (``"\\ud800"``: not Unicode, so UTF-8 encoding of the response fails), NUL (which
PostgreSQL text and JSONB refuse) and ``NaN``/``Infinity`` (not JSON: JSONB refuses them and
the response encoder raises). Such a value is refused at submit with its path; a row that
holds one anyway (written by hand or by an older version) is shown as ``unreadable`` instead
of breaking every read that touches it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from .errors import InvalidRequest, shorten
from .models import Job

MAX_DEPTH = 64  # deeper documents are refused: walking them is cheap, storing them is not


def text_problem(s: str) -> str | None:
    """Why ``s`` cannot be stored, or None."""
    if "\x00" in s:
        return "contains NUL (\\u0000), which cannot be stored"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate such as \\ud800)"
    return None


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    name = shorten(part, 40, quote=False) if text_problem(part) is None else "?"
    return f"{path}.{name}" if path else name


def find_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first (path, reason) in ``value`` that cannot be stored as JSON, or None.

    Iterative, so a deeply nested document cannot exhaust the stack.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where or "body", f"is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return where or "body", f"string {problem}"
        elif isinstance(item, bool) or item is None or isinstance(item, int):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return where or "body", "NaN and Infinity are not JSON numbers"
        elif isinstance(item, dict):
            children: list[tuple[Any, str, int]] = []
            for key, child in item.items():
                if not isinstance(key, str):
                    return where or "body", "object keys must be strings"
                problem = text_problem(key)
                if problem:
                    return where or "body", f"a key {problem}"
                children.append((child, _join(where, key), depth + 1))
            stack.extend(reversed(children))  # report the first problem in document order
        elif isinstance(item, list | tuple):
            stack.extend((child, _join(where, i), depth + 1)
                         for i, child in reversed(list(enumerate(item))))
        else:
            return where or "body", f"{type(item).__name__} is not a JSON value"
    return None


def require_storable(fields: Any) -> None:
    """Raise InvalidRequest naming the first path in ``fields`` that cannot be stored."""
    found = find_problem(fields)
    if found is not None:
        where, reason = found
        raise InvalidRequest(f"{where}: {reason}")


# -- reads -------------------------------------------------------------------------------------

def _read_problem(job: Job) -> str | None:
    if not isinstance(job.input, dict):
        return "input is not an object"
    if not isinstance(job.metadata, dict):
        return "metadata is not an object"
    for name in ("error_code", "error_message"):
        if not isinstance(getattr(job, name), str | None):
            return f"{name} is not text"
    if not isinstance(job.message, str):
        return "message is not text"
    found = find_problem({"type": job.type, "tenant": job.tenant, "input": job.input,
                          "metadata": job.metadata, "result": job.result,
                          "message": job.message, "error_code": job.error_code,
                          "error_message": job.error_message,
                          "idempotency_key": job.idempotency_key})
    return None if found is None else f"{found[0]} {found[1]}"


def unreadable(job: Job, reason: str) -> Job:
    """The job with its stored content replaced by an ``unreadable`` error; what identifies
    it (id, tenant, status, times, attempts) is kept so it can still be listed, cancelled
    and purged."""
    return replace(job, type=job.type if isinstance(job.type, str) and text_problem(job.type)
                   is None else "unreadable", input={}, metadata={}, result=None,
                   checkpoint={}, message="", idempotency_key=None,
                   error_code="unreadable",
                   error_message=f"this job's stored data cannot be read ({shorten(reason)})")


def readable(job: Job) -> Job:
    """``job`` itself when every field can be sent back as JSON, else its unreadable form."""
    problem = _read_problem(job)
    return job if problem is None else unreadable(job, problem)
