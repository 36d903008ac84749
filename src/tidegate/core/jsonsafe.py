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
from .models import Job, Usage

# Deeper documents are refused: no job needs them, and every JSON encoder on the way (Python's,
# the drivers', the response's) recurses per level.
MAX_DEPTH = 64


def text_problem(s: str) -> str | None:
    """Why ``s`` cannot be stored, or None."""
    if "\x00" in s:
        return "contains NUL (\\u0000), which cannot be stored"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate such as \\ud800)"
    return None


def storable_text(s: str) -> str:
    """``s`` made storable: NUL and lone surrogates become U+FFFD. For text Tidegate writes
    itself from what handlers and providers produce (error and progress messages), where
    refusing is no option."""
    if text_problem(s) is None:
        return s
    return s.replace("\x00", "\ufffd").encode("utf-8", "surrogatepass").decode(
        "utf-8", "replace")


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    name = shorten(part, 40, quote=False) if text_problem(part) is None else "?"
    return f"{path}.{name}" if path else name


def _scalar_problem(item: Any) -> str | None:
    kind = type(item)
    if kind is str:
        problem = text_problem(item)
        return f"string {problem}" if problem else None
    if kind is float:
        return None if math.isfinite(item) else "NaN and Infinity are not JSON numbers"
    if item is None or kind is bool or kind is int:
        return None
    if isinstance(item, str):  # subclasses (str enums, ...): judge the value
        return _scalar_problem(str(item))
    if isinstance(item, float):
        return _scalar_problem(float(item))
    # Other objects (a datetime a caller passes to submit, ...) are the models' business:
    # this check is about the text and numbers inside JSON.
    return None


def find_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first (path, reason) in ``value`` that cannot be stored as JSON, or None.

    Iterative, so a deeply nested document cannot exhaust the stack; the path is built only
    for the value at fault, so a large clean document costs one pass over its leaves.
    """
    # Each frame: (container, depth, parent frame, key in the parent).
    Frame = tuple[Any, int, Any, "str | int | None"]
    stack: list[Frame] = [(value, 0, None, None)]

    def where(frame: Frame | None, key: str | int | None = None) -> str:
        parts: list[str | int] = [] if key is None else [key]
        while frame is not None and frame[3] is not None:
            parts.append(frame[3])
            frame = frame[2]
        out = path
        for part in reversed(parts):
            out = _join(out, part)
        return out or "body"

    if not isinstance(value, dict | list | tuple):
        problem = _scalar_problem(value)
        return None if problem is None else (path or "body", problem)
    while stack:
        frame = stack.pop()
        item, depth = frame[0], frame[1]
        if depth >= MAX_DEPTH:
            return where(frame), f"is nested deeper than {MAX_DEPTH} levels"
        pending: list[Frame] = []
        if isinstance(item, dict):
            for key, child in item.items():
                if type(key) is not str:
                    return where(frame), "object keys must be strings"
                problem = text_problem(key)
                if problem:
                    return where(frame), f"a key {problem}"
                if isinstance(child, dict | list | tuple):
                    pending.append((child, depth + 1, frame, key))
                elif type(child) is not int and (problem := _scalar_problem(child)):
                    return where(frame, key), problem
        else:
            for index, child in enumerate(item):
                kind = type(child)
                if kind is float:
                    if child - child == 0:  # finite (inf - inf and nan - nan are nan)
                        continue
                elif kind is int:
                    continue
                elif isinstance(child, dict | list | tuple):
                    pending.append((child, depth + 1, frame, index))
                    continue
                problem = _scalar_problem(child)
                if problem:
                    return where(frame, index), problem
        stack.extend(reversed(pending))
    return None


def require_storable(fields: Any) -> None:
    """Raise InvalidRequest naming the first path in ``fields`` that cannot be stored."""
    found = find_problem(fields)
    if found is not None:
        where, reason = found
        raise InvalidRequest(f"{where}: {reason}")


# -- reads -------------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return type(value) is int


def _usage_ok(usage: object) -> bool:
    return (isinstance(usage, Usage) and _is_int(usage.input_tokens)
            and _is_int(usage.output_tokens) and _is_int(usage.cost_nanos)
            and type(usage.unpriced) is bool)


def _counts_ok(job: Job) -> bool:
    return (all(_is_int(v) for v in (job.progress, job.attempts, job.max_attempts))
            and _usage_ok(job.usage) and _usage_ok(job.late_usage)
            and type(job.cancel_requested) is bool)


def _read_problem(job: Job) -> str | None:
    if not isinstance(job.input, dict):
        return "input is not an object"
    if not isinstance(job.metadata, dict):
        return "metadata is not an object"
    for name in ("type", "message"):
        if not isinstance(getattr(job, name), str):
            return f"{name} is not text"
    for name in ("error_code", "error_message"):
        if not isinstance(getattr(job, name), str | None):
            return f"{name} is not text"
    if not _counts_ok(job):
        return "a count (progress, attempts, usage) is not a number"
    found = find_problem({"type": job.type, "tenant": job.tenant, "input": job.input,
                          "metadata": job.metadata, "result": job.result,
                          "message": job.message, "error_code": job.error_code,
                          "error_message": job.error_message,
                          "idempotency_key": job.idempotency_key})
    return None if found is None else f"{found[0]} {found[1]}"


def unreadable(job: Job, reason: str) -> Job:
    """The job with its stored content replaced by an ``unreadable`` error; what identifies
    it (id, tenant, status, times) is kept so it can still be listed, cancelled and purged."""
    fine_type = isinstance(job.type, str) and text_problem(job.type) is None
    counts: dict[str, Any] = {} if _counts_ok(job) else {
        "progress": 0, "usage": Usage(), "cancel_requested": bool(job.cancel_requested),
        "attempts": job.attempts if _is_int(job.attempts) else 0,
        "max_attempts": job.max_attempts if _is_int(job.max_attempts) else 0}
    return replace(job, type=job.type if fine_type else "unreadable", input={}, metadata={},
                   result=None, checkpoint={}, message="", idempotency_key=None,
                   error_code="unreadable",
                   error_message=f"this job's stored data cannot be read ({shorten(reason)})",
                   **counts)


def readable(job: Job) -> Job:
    """``job`` itself when every field can be sent back as JSON, else its unreadable form."""
    problem = _read_problem(job)
    return job if problem is None else unreadable(job, problem)
