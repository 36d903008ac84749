"""`chat`: one assistant turn, from a list of messages or one message in a conversation."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..adapters.redis_keys import conversation_key
from ..core.context import JobContext
from ..core.registry import registry
from .common import ModelField, ModelSpec

CONVERSATION_TTL_S = 7 * 24 * 3600
MAX_HISTORY_TURNS = 20


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=100_000)


class ChatInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=200)
    message: str | None = Field(default=None, min_length=1, max_length=100_000)
    conversation_id: str | None = Field(default=None, min_length=1, max_length=100,
                                        pattern=r"^[A-Za-z0-9_.:-]+$",
                                        description="with `message`: continue this conversation")
    model: ModelSpec = ModelField
    max_output_tokens: int = Field(default=512, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0, le=2)

    @model_validator(mode="after")
    def _one_form(self) -> ChatInput:
        if (self.messages is None) == (self.message is None):
            raise ValueError("give either `messages` (a list) or `message` (one string)")
        if self.conversation_id and self.message is None:
            raise ValueError("`conversation_id` goes with `message`")
        return self


def _history(ctx: JobContext[ChatInput]) -> list[dict[str, str]]:
    redis = ctx.services.get("redis")
    if redis is None or not ctx.input.conversation_id:
        return []
    raw = redis.hgetall(conversation_key(ctx.tenant, ctx.input.conversation_id))
    turns = sorted((json.loads(v) for v in raw.values()), key=lambda t: t["at"])
    out: list[dict[str, str]] = []
    for turn in turns[-MAX_HISTORY_TURNS:]:
        out += [{"role": "user", "content": turn["user"]},
                {"role": "assistant", "content": turn["assistant"]}]
    return out


def _remember(ctx: JobContext[ChatInput], reply: str) -> None:
    redis = ctx.services.get("redis")
    if redis is None or not ctx.input.conversation_id:
        return
    key = conversation_key(ctx.tenant, ctx.input.conversation_id)
    # One field per job: a re-executed job overwrites its own turn instead of adding one.
    redis.hset(key, ctx.job_id, json.dumps({"at": time.time(), "user": ctx.input.message,
                                            "assistant": reply}))
    redis.expire(key, CONVERSATION_TTL_S)


@registry.job_type("chat", input_model=ChatInput, priority="high", max_attempts=4)
def chat(ctx: JobContext[ChatInput]) -> dict[str, Any]:
    """Answer a chat turn."""
    inp = ctx.input
    if inp.messages is not None:
        messages = [m.model_dump() for m in inp.messages]
    else:
        messages = [*_history(ctx), {"role": "user", "content": inp.message or ""}]
    ctx.progress(10, "Waiting for the model")
    resp, rec = ctx.llm.complete(messages, model=inp.model, max_output_tokens=inp.max_output_tokens,
                                 temperature=inp.temperature, step="reply")
    _remember(ctx, resp.text)
    return {"reply": resp.text, "conversation_id": inp.conversation_id,
            **rec.to_dict(), "usage": rec.usage()}
