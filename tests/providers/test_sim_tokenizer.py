"""The simulator's tokenizers disagree with the callers' chars/4, as real providers do."""

from __future__ import annotations

import httpx
import pytest

from tidegate.providers.simulator.tokenizer import count_classes, counter
from tidegate.providers.tokens import estimate_tokens

from .helpers import Sim

PROSE = "The board asked for a short summary of the quarter and the plans for next year."
CODE = 'def f(x):\n    return {"a": [x * 2 for x in range(10)], "b": (x, x + 1)}\n'
CJK = "東京は日本の首都であり、人口が最も多い都市です。"


def test_classes_counts_cjk_per_character_and_code_per_three() -> None:
    assert count_classes(CJK) == len(CJK)
    assert count_classes(PROSE) == estimate_tokens(PROSE)
    assert count_classes(CODE) >= round(len(CODE) / 3) - 1
    assert count_classes("") == 0


def test_cl100k_is_a_real_bpe_offline() -> None:
    count = counter("cl100k")
    assert count("hello world") == 2  # cl100k_base: "hello", " world"
    assert count(CJK) > 2.5 * estimate_tokens(CJK)  # CJK costs far more than chars/4
    assert 0.7 < count(PROSE) / estimate_tokens(PROSE) < 1.2


def test_unknown_tokenizer_is_refused(sim: Sim) -> None:
    r = httpx.post(f"{sim.url}/_sim/config", json={"tokenizer": "words"})
    assert r.status_code == 422 or r.status_code == 400


@pytest.mark.parametrize("tokenizer", ["classes", "cl100k"])
def test_reported_usage_follows_the_tokenizer(sim: Sim, tokenizer: str) -> None:
    sim.configure(tokenizer=tokenizer)
    try:
        r = httpx.post(f"{sim.url}/v1/chat/completions",
                       headers={"authorization": "Bearer k"},
                       json={"model": "m", "max_tokens": 20,
                             "messages": [{"role": "user", "content": CJK}]})
        assert r.status_code == 200
        assert r.json()["usage"]["prompt_tokens"] == counter(tokenizer)(CJK)  # type: ignore[arg-type]
    finally:
        sim.reset()
