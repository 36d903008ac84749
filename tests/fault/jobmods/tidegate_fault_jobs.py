"""Job types for the fault-injection suite (loaded through TIDEGATE_JOB_MODULES).

Every handler appends one line per execution to the file named by TIDEGATE_FAULT_EXEC_LOG
(O_APPEND, one write per line, so lines from concurrent processes never interleave and a line
survives the process dying right after it), which is how the tests count executions per job.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pydantic import BaseModel, Field

from tidegate.core.context import JobContext
from tidegate.core.errors import RetryLater
from tidegate.core.registry import registry


def record(ctx: JobContext[Any], event: str = "start") -> None:
    path = os.environ.get("TIDEGATE_FAULT_EXEC_LOG")
    if not path:
        raise RuntimeError("TIDEGATE_FAULT_EXEC_LOG is not set")
    line = json.dumps({"job": ctx.job_id, "attempt": ctx.attempt, "pid": os.getpid(),
                       "ev": event, "type": ctx.job_type, "t": time.time()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class WorkInput(BaseModel):
    sleep_s: float = Field(default=0.5, ge=0, le=600)
    steps: int = Field(default=5, ge=1, le=1000)
    fail_attempts: int = Field(default=0, ge=0, description="raise on attempts up to this one")
    retry_in_s: float = Field(default=0, ge=0, le=600,
                              description="first attempt asks to run again after this long")
    tag: str = ""


@registry.job_type("fault_work", input_model=WorkInput, priority="medium", max_attempts=3)
def fault_work(ctx: JobContext[WorkInput]) -> dict[str, Any]:
    """Sleep in steps (cancellation points), reporting progress."""
    record(ctx)
    if ctx.attempt <= ctx.input.fail_attempts:
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    if ctx.attempt == 1 and ctx.input.retry_in_s:
        raise RetryLater(ctx.input.retry_in_s, reason="planned retry", error_code="planned")
    step = ctx.input.sleep_s / ctx.input.steps
    for i in range(ctx.input.steps):
        ctx.sleep(step)
        ctx.progress(100 * (i + 1) / ctx.input.steps, f"step {i + 1}")
    record(ctx, "end")
    return {"tag": ctx.input.tag, "attempt": ctx.attempt, "pid": os.getpid()}


class CrashInput(BaseModel):
    delay_s: float = Field(default=0.2, ge=0, le=60)


@registry.job_type("fault_crash", input_model=CrashInput, priority="medium", max_attempts=2)
def fault_crash(ctx: JobContext[CrashInput]) -> None:
    """Takes its whole worker process down, every time."""
    record(ctx)
    time.sleep(ctx.input.delay_s)
    os._exit(17)


class HangInput(BaseModel):
    mode: str = Field(default="sleep", pattern="^(sleep|block|llm)$")
    hang_s: float = Field(default=300, ge=0, le=3600)


@registry.job_type("fault_hang", input_model=HangInput, priority="medium", max_attempts=2)
def fault_hang(ctx: JobContext[HangInput]) -> Any:
    return _hang(ctx)


@registry.job_type("fault_hang_once", input_model=HangInput, priority="medium", max_attempts=1)
def fault_hang_once(ctx: JobContext[HangInput]) -> Any:
    """The same, with a single attempt."""
    return _hang(ctx)


def _hang(ctx: JobContext[HangInput]) -> Any:
    """A provider that never answers: a cooperative wait, a blocking call, or a real LLM call
    to a server that accepts the connection and never replies."""
    record(ctx)
    if ctx.input.mode == "sleep":
        ctx.sleep(ctx.input.hang_s)
    elif ctx.input.mode == "block":
        time.sleep(ctx.input.hang_s)
    else:
        resp, _ = ctx.llm.complete([{"role": "user", "content": "hello?"}],
                                   model="openai:gpt-4o-mini", timeout_s=ctx.input.hang_s)
        return {"text": resp.text}
    record(ctx, "end")
    return {"hung_for": ctx.input.hang_s}


@registry.job_type("fault_limited", input_model=WorkInput, priority="medium", max_attempts=1,
                   concurrency=3, per_minute=30)
def fault_limited(ctx: JobContext[WorkInput]) -> dict[str, Any]:
    """fault_work with job type limits of its own (the settings may lower them)."""
    return fault_work(ctx)
