"""Prompt caching through the official SDKs against the simulator: Anthropic's cache_control
(asked for with ``cache_prefix``) and OpenAI's automatic prefix cache; the cached tokens are
priced at the models' cache prices, and a report's sections share one cached context."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from tidegate.core.llm import LLMRequest, Message
from tidegate.llm_config import load_llm_config
from tidegate.providers.registry import Providers
from tidegate.testing import JobHarness

# Long enough for the vendors' minimum cacheable prefix (1024 tokens).
MATERIAL = " ".join(f"Fact {i}: the turbine array delivered {i * 7} MWh." for i in range(400))


def request(system: str, question: str, *, cache_prefix: bool) -> LLMRequest:
    return LLMRequest(model="claude-3-5-haiku-latest",
                      messages=(Message("system", system), Message("user", question)),
                      max_output_tokens=40, cache_prefix=cache_prefix)


def test_anthropic_writes_then_reads_a_marked_system_prompt(providers: Providers) -> None:
    anthropic = providers.get("anthropic")
    first = anthropic.complete(request(MATERIAL, "Summarise.", cache_prefix=True))
    second = anthropic.complete(request(MATERIAL, "List the risks.", cache_prefix=True))
    assert first.cache_write_tokens > 1000 and first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens
    assert second.cache_write_tokens == 0 and second.input_tokens > second.cache_read_tokens
    unmarked = anthropic.complete(request(MATERIAL + " More.", "Again.", cache_prefix=False))
    assert unmarked.cache_read_tokens == unmarked.cache_write_tokens == 0


def test_short_prefixes_are_not_cached(providers: Providers) -> None:
    anthropic = providers.get("anthropic")
    for _ in range(2):
        r = anthropic.complete(request("You are brief.", "Hi.", cache_prefix=True))
        assert r.cache_read_tokens == r.cache_write_tokens == 0


def test_openai_caches_a_long_prefix_by_itself(providers: Providers) -> None:
    openai = providers.get("openai")
    req = replace(request(MATERIAL, "Summarise.", cache_prefix=False), model="gpt-4o-mini")
    assert openai.complete(req).cache_read_tokens == 0
    again = openai.complete(replace(req, messages=(req.messages[0], Message("user", "Why?"))))
    assert again.cache_read_tokens > 1000


def test_cached_tokens_cost_their_price() -> None:
    config = load_llm_config()
    full = config.cost_usd("anthropic", "claude-3-5-haiku-latest", 10_000, 100)
    read = config.cost_usd("anthropic", "claude-3-5-haiku-latest", 10_000, 100, cache_read=9_000)
    write = config.cost_usd("anthropic", "claude-3-5-haiku-latest", 10_000, 100,
                            cache_write=9_000)
    # $0.80/M fresh, $0.08/M read, $1.00/M written, $4/M output
    assert full == Decimal("0.0084")
    assert read == (1_000 * Decimal("0.80") + 9_000 * Decimal("0.08") + 100 * 4) / 1_000_000
    assert write == (1_000 * Decimal("0.80") + 9_000 * Decimal("1.00") + 100 * 4) / 1_000_000
    # a model without cache prices pays the input price for every input token
    assert config.cost_usd("openai", "text-embedding-3-small", 1000, 0, cache_read=500) == \
        config.cost_usd("openai", "text-embedding-3-small", 1000, 0)


def test_a_reports_later_sections_read_its_context_from_the_cache() -> None:
    with JobHarness(simulator=True) as h:  # the vendors' SDKs against a simulator of its own
        run = h.run_job("startup_report", {"startup": "Tidal Co", "context": MATERIAL})
    assert run.status == "succeeded", run.error
    sections = run.result["sections"]
    # market and competition on OpenAI, product and risks on Anthropic: the second of each
    # pair reads the shared system prompt (the context) from the cache
    assert sections["competition"].get("cache_read_tokens", 0) > 1000
    assert sections["product"].get("cache_write_tokens", 0) > 1000
    assert sections["risks"].get("cache_read_tokens", 0) > 1000
    assert sections["verdict"].get("cache_read_tokens", 0) > 1000  # Gemini, implicitly
    reads = [e.detail for e in run.events
             if e.kind == "llm_call" and e.detail.get("cache_read_tokens")]
    assert reads and all(d["cost_usd"] is not None for d in reads)
