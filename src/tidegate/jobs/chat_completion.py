"""`chat_completion`: one completion as the OpenAI-compatible `/v1/chat/completions` asks it.

The front door (api/routes/openai_compat.py) submits it at `high` priority and answers when it
ends. Unlike `chat`, a named model is followed by the job type's fallback chain: an application
that only changed its SDK's base URL keeps getting answers while its first lane is down.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.context import JobContext
from ..core.registry import registry
from .chat import ChatMessage
from .common import ModelField, ModelSpec


class ChatCompletionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(min_length=1, max_length=500)
    model: ModelSpec = ModelField
    max_output_tokens: int = Field(default=1024, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    json_output: bool = False


@registry.job_type("chat_completion", input_model=ChatCompletionInput, priority="high",
                   max_attempts=4)
def chat_completion(ctx: JobContext[ChatCompletionInput]) -> dict[str, Any]:
    """One completion of an OpenAI-format request, with the job type's fallbacks."""
    inp = ctx.input
    resp, rec = ctx.llm.complete([m.model_dump() for m in inp.messages], model=inp.model,
                                 max_output_tokens=inp.max_output_tokens,
                                 temperature=inp.temperature, json_output=inp.json_output,
                                 step="completion", fallback=True)
    finish = "length" if resp.output_tokens >= inp.max_output_tokens else "stop"
    return {"text": resp.text, "finish_reason": finish, **rec.to_dict(),
            "usage": rec.usage()}
