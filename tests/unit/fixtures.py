"""A registry with small job types for exercising the runner."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tidegate.core.context import JobContext
from tidegate.core.errors import JobFailed, RetryLater
from tidegate.core.registry import Registry


class Anything(BaseModel):
    n: int = 0


def make_registry(calls: list[str]) -> Registry:
    reg = Registry()

    @reg.job_type("ok", input_model=Anything, priority="high")
    def ok(ctx: JobContext[Anything]) -> dict[str, Any]:
        calls.append("ok")
        ctx.progress(50, "half")
        return {"n": ctx.input.n * 2}

    @reg.job_type("boom", input_model=Anything, priority="medium", max_attempts=2)
    def boom(ctx: JobContext[Anything]) -> None:
        calls.append("boom")
        raise RuntimeError("kaput")

    @reg.job_type("bad", input_model=Anything, priority="low")
    def bad(ctx: JobContext[Anything]) -> None:
        raise JobFailed("provider_rejected", "401 bad key")

    @reg.job_type("quota", input_model=Anything, priority="medium", max_attempts=1)
    def quota(ctx: JobContext[Anything]) -> str:
        calls.append("quota")
        if len(calls) < 3:
            raise RetryLater(5, reason="lane saturated", counts_as_attempt=False)
        return "done"

    @reg.job_type("steps", input_model=Anything, priority="medium")
    def steps(ctx: JobContext[Anything]) -> list[str]:
        done = ctx.saved
        for name in ("a", "b", "c"):
            if name in done:
                continue
            calls.append(name)
            if name == "b" and ctx.attempt == 1:
                raise RuntimeError("crash after a")
            ctx.save(name, f"{name}-result")
        return [ctx.saved[k] for k in ("a", "b", "c")]

    @reg.job_type("cancel_me", input_model=Anything, priority="medium")
    def cancel_me(ctx: JobContext[Anything]) -> None:
        ctx.cancel_event.set()  # as the heartbeat would on a cancel request
        ctx.progress(10, "checkpoint")

    return reg
