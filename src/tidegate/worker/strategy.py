"""A guard around Celery's task-message strategy, so one malformed message cannot stop a worker.

Celery discards messages it recognises as invalid (unknown task, disallowed content type,
undecodable body), but a message that names our task and decodes, yet has the wrong shape (a
body that is not ``[args, kwargs, embed]``, an unparsable ``expires`` or ``timelimit``
header, ...) raises from deep inside the consumer, which Celery treats as an unrecoverable
error: the worker process exits. The message is still unacknowledged, so it comes back and
stops the next worker too. Here such a message is logged and discarded like any other invalid
task message. Nothing is lost by that: the job row is the truth, and the scheduler sends a job
again if its message never ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default
from kombu.exceptions import ContentDisallowed, DecodeError


def guarded(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    handle = default(task, app, consumer, **kwargs)

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any,
                             **kw: Any) -> Any:
        try:
            return handle(message, body, ack, reject, callbacks, **kw)
        except (InvalidTaskError, ContentDisallowed, DecodeError):
            raise  # the consumer already discards these
        except Exception as exc:
            if message.acknowledged:  # handed over already: not a message problem
                raise
            raise InvalidTaskError(
                f"malformed {task.name} message: {type(exc).__name__}: {exc}") from exc

    return task_message_handler
