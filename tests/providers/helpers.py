"""Helpers shared by the provider tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tidegate.core.llm import LLMRequest, Message


@dataclass
class Sim:
    url: str

    def configure(self, **changes: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/_sim/config", json=changes)
        r.raise_for_status()
        return r.json()

    def reset(self, config: bool = True) -> None:
        httpx.post(f"{self.url}/_sim/reset", json={"config": config}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_sim/stats").json()


def make_request(text: str = "Write the market section of a report on the startup \"Acme Robotics\".",
                 *, system: str | None = "You are a venture analyst.", model: str = "sim-model",
                 max_output_tokens: int = 120, timeout_s: float = 10.0,
                 json_output: bool = False) -> LLMRequest:
    messages = ((Message("system", system),) if system else ()) + (Message("user", text),)
    return LLMRequest(model=model, messages=messages, max_output_tokens=max_output_tokens,
                      timeout_s=timeout_s, json_output=json_output)
