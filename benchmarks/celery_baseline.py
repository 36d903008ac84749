"""The hand-wired baseline: a plain Celery app built the way the seeds build it.

Per-worker ``rate_limit``, ``autoretry_for`` the SDK's rate-limit and transient errors with
``retry_backoff=True`` and ``max_retries=3``, the official ``openai`` SDK pointed at the
provider simulator, one task per report (all its calls, in the same order, models and sizes as
Tidegate's ``startup_report``) or per chat turn. A retry re-runs the whole task, as in the
seeds. Started by ``benchmarks.quota_bench`` as four ``celery worker -P solo`` processes; it
reads its settings from ``BASELINE_*`` variables, so importing it has no other side effect
than building the Celery app and the SDK client.

Each task records how it ended (and when) in the Redis hash ``baseline:done``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import openai
import redis
from celery import Celery, Task

from tidegate.jobs.report import (
    SECTIONS,
    ReportInput,
    _section_prompt,
    _synthesis_prompt,
    _system,
)
from tidegate.llm_config import load_llm_config

BROKER = os.environ.get("BASELINE_BROKER_URL", "redis://127.0.0.1:6379/11")
SIMULATOR = os.environ.get("BASELINE_SIMULATOR_URL", "http://127.0.0.1:8400")
API_KEY = os.environ.get("BASELINE_API_KEY", "baseline-key")
RATE_LIMIT = os.environ.get("BASELINE_RATE_LIMIT") or None  # e.g. "10/m", per worker
MAX_RETRIES = int(os.environ.get("BASELINE_MAX_RETRIES", "3"))
SDK_RETRIES = int(os.environ.get("BASELINE_SDK_RETRIES", "0"))
DONE_KEY = "baseline:done"
QUEUE = "baseline"

RETRY_ON = (openai.RateLimitError, openai.APIConnectionError, openai.APITimeoutError,
            openai.InternalServerError)

app = Celery("baseline", broker=BROKER)
app.conf.update(task_default_queue=QUEUE, task_serializer="json", accept_content=["json"],
                task_ignore_result=True, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True)
client = openai.OpenAI(api_key=API_KEY, base_url=f"{SIMULATOR}/v1", max_retries=SDK_RETRIES,
                       timeout=60)
_redis = redis.Redis.from_url(BROKER)


def _models() -> dict[str, str]:
    """The model of each report step, from Tidegate's shipped settings (same call structure)."""
    cfg = load_llm_config(None)
    steps = [key for key, _, _ in SECTIONS] + ["synthesis"]
    return {s: cfg.default_model("startup_report", s).partition(":")[2] for s in steps}


MODELS = _models()
CHAT_MODEL = load_llm_config(None).default_model("chat").partition(":")[2]


class Recorded(Task):  # type: ignore[misc]
    """Writes the task's final outcome to ``baseline:done`` (retries are not final)."""

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        _redis.hset(DONE_KEY, task_id, json.dumps({"status": "succeeded", "t": time.time()}))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        _redis.hset(DONE_KEY, task_id, json.dumps({"status": "failed", "t": time.time(),
                                                   "error": type(exc).__name__}))


def _complete(model: str, system: str, prompt: str, max_tokens: int) -> str:
    resp = client.chat.completions.create(
        model=model, max_tokens=max_tokens,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}])
    return resp.choices[0].message.content or ""


@app.task(base=Recorded, bind=True, name="baseline.report", rate_limit=RATE_LIMIT,
          autoretry_for=RETRY_ON, retry_backoff=True, max_retries=MAX_RETRIES)
def report(self: Task, startup: str) -> dict[str, Any]:
    inp = ReportInput(startup=startup)
    sections: dict[str, Any] = {}
    for key, _title, about in SECTIONS:
        sections[key] = {"text": _complete(MODELS[key], _system(inp), _section_prompt(about),
                                           500)}
    summary = _complete(MODELS["synthesis"], _system(inp), _synthesis_prompt(inp, sections),
                        300)
    return {"startup": startup, "summary_chars": len(summary)}


@app.task(base=Recorded, bind=True, name="baseline.chat", rate_limit=RATE_LIMIT,
          autoretry_for=RETRY_ON, retry_backoff=True, max_retries=MAX_RETRIES)
def chat(self: Task, message: str, max_tokens: int) -> dict[str, Any]:
    resp = client.chat.completions.create(model=CHAT_MODEL, max_tokens=max_tokens,
                                          messages=[{"role": "user", "content": message}])
    return {"chars": len(resp.choices[0].message.content or "")}
