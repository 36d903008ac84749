"""Replace direct OpenAI calls with Tidegate's OpenAI-compatible front door.

An application that calls the OpenAI SDK from its request handlers gets 429s as soon as a few
users click at once: each process spends the same quota without knowing about the others.
Point the SDK's ``base_url`` at Tidegate and use a Tidegate key; nothing else changes. Every
call then runs as a high-priority job through the lane's shared limiter (it waits for its turn
instead of failing), falls back to another provider if the lane is down, and shows up in usage,
budgets, the dashboard and the metrics.

    TIDEGATE_URL=http://127.0.0.1:8000 TIDEGATE_API_KEY=tg_... \
        python -m examples.openai_front_door "What is tidal energy?" "And wave energy?"
"""

from __future__ import annotations

import asyncio
import os
import sys

import openai


def client() -> openai.AsyncOpenAI:
    url = os.environ.get("TIDEGATE_URL", "http://127.0.0.1:8000").rstrip("/")
    # Before: openai.AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"])
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=os.environ["TIDEGATE_API_KEY"],
                              timeout=600)


async def ask_all(questions: list[str]) -> list[str]:
    """All at once, as concurrent users would: Tidegate paces them to the lane's quota."""
    async with client() as sdk:
        answers = await asyncio.gather(*(sdk.chat.completions.create(
            model="gpt-4o-mini", max_tokens=200,
            messages=[{"role": "user", "content": q}]) for q in questions))
    return [a.choices[0].message.content or "" for a in answers]


def main(argv: list[str]) -> int:
    questions = argv or ["What is tidal energy?"]
    for question, answer in zip(questions, asyncio.run(ask_all(questions)), strict=True):
        print(f"> {question}\n{answer}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
