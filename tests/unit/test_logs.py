"""Structured log lines: one JSON object per event with the job's fields, secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tidegate import logs


def _emit(fmt: str, message: str, *args: object, exc: bool = False, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(fmt))
    logger = logging.getLogger(f"tidegate.test.{fmt}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    if exc:
        try:
            raise RuntimeError("could not reach amqp://tidegate:s3cr3t-pw@rabbit:5672//")
        except RuntimeError:
            logger.exception(message, *args, extra=extra)
    else:
        logger.info(message, *args, extra=extra)
    return stream.getvalue()


def test_json_line_carries_the_event_and_the_job_fields() -> None:
    out = _emit("json", "task_started", **logs.job_fields(
        job_id="j1", type="startup_report", attempt=2, tenant="acme", lane="openai:gpt-4o-mini"))
    assert out.count("\n") == 1
    line = json.loads(out)
    assert line["event"] == "task_started"
    assert line["level"] == "info"
    assert {k: line[k] for k in logs.JOB_FIELDS} == {
        "job_id": "j1", "type": "startup_report", "attempt": 2, "tenant": "acme",
        "lane": "openai:gpt-4o-mini"}
    assert line["ts"].endswith("+00:00")


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize(("secret", "leak"), [
    ("postgresql+psycopg://tidegate:hunter2@db.internal/tidegate", "hunter2"),
    ("amqp://guest:rabbit-pw@127.0.0.1:5672//", "rabbit-pw"),
    ("redis://:redis-pw@cache:6379/1", "redis-pw"),
    ("Authorization: Bearer tg_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "AbCdEfGhIjKl"),
    ("key tg_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 refused", "AbCdEfGhIjKl"),
    ("OPENAI_API_KEY=sk-proj-abcdefghijklmnop", "abcdefghijklmnop"),
    ("webhook secret whsec_q1w2e3r4t5y6u7i8", "q1w2e3r4t5y6u7i8"),
    ('{"password": "p4ssw0rd!"}', "p4ssw0rd!"),
])
def test_secrets_in_messages_are_redacted(fmt: str, secret: str, leak: str) -> None:
    out = _emit(fmt, "connecting to %s", secret)
    assert leak not in out
    assert "***" in out


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_in_fields_and_tracebacks_are_redacted(fmt: str) -> None:
    out = _emit(fmt, "task_failed", exc=True, api_key="tg_plainkeyplainkey", password="pw-123456",
                error="call to https://user:tok-999999@example.com failed",
                settings={"secret_key": "my-very-secret", "port": 8000})
    for leak in ("plainkeyplainkey", "pw-123456", "tok-999999", "my-very-secret", "s3cr3t-pw"):
        assert leak not in out, out
    assert "8000" in out  # only secrets go
    if fmt == "json":
        line = json.loads(out)
        assert line["password"] == "***" and "Traceback" in line["exc"]


def test_counts_named_like_secrets_are_kept() -> None:
    line = json.loads(_emit("json", "llm_call", input_tokens=173, output_tokens=752,
                            max_tokens=500, tokenizer="cl100k", access_token="abc123secret",
                            webhook_secret="s3cr3t"))
    assert (line["input_tokens"], line["output_tokens"], line["max_tokens"]) == (173, 752, 500)
    assert line["tokenizer"] == "cl100k"
    assert line["access_token"] == "***" and line["webhook_secret"] == "***"


def test_text_format_appends_fields_as_key_value() -> None:
    out = _emit("text", "task_completed", job_id="j9", type="echo", attempt=1, tenant="t")
    assert "task_completed job_id=j9 type=echo attempt=1 tenant=t" in out


def test_lines_inside_a_job_scope_carry_its_fields_in_helper_threads_too() -> None:
    import contextvars
    import threading

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json"))
    handler.addFilter(logs.JobFields())
    logger = logging.getLogger("tidegate.test.scope")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.info("before")
    with logs.job_scope(job_id="j7") as scope:
        logger.info("claiming")
        scope.update(type="echo", attempt=2, tenant="acme")
        logger.info("the handler's own line")
        logger.info("llm_call", extra={"lane": "openai:m", "tenant": "explicit"})
        helper = threading.Thread(target=contextvars.copy_context().run,
                                  args=(logger.warning, "from a helper thread"))
        helper.start()
        helper.join()
        bare = threading.Thread(target=logger.info, args=("a thread outside the job",))
        bare.start()
        bare.join()
    logger.info("after")
    lines = {line["event"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    assert "job_id" not in lines["before"] and "job_id" not in lines["after"]
    assert "job_id" not in lines["a thread outside the job"]
    assert lines["claiming"]["job_id"] == "j7" and "type" not in lines["claiming"]
    fields = {"job_id": "j7", "type": "echo", "attempt": 2, "tenant": "acme"}
    for event in ("the handler's own line", "from a helper thread"):
        assert {k: lines[event].get(k) for k in fields} == fields, event
    # A line's own fields win over the scope's.
    assert lines["llm_call"]["tenant"] == "explicit" and lines["llm_call"]["lane"] == "openai:m"


def test_configure_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("json", "WARNING")
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, logs.JsonFormatter)
        assert root.level == logging.WARNING
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])
        logging.captureWarnings(False)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_uvicorn_config_is_a_valid_dict_config(fmt: str) -> None:
    import logging.config

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved_named = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
                   for n in names}
    try:
        logging.config.dictConfig(logs.uvicorn_log_config(fmt))
        expected = logs.JsonFormatter if fmt == "json" else logs.TextFormatter
        assert isinstance(root.handlers[0].formatter, expected)
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])
        for n, (handlers, propagate) in saved_named.items():
            logging.getLogger(n).handlers = handlers
            logging.getLogger(n).propagate = propagate
