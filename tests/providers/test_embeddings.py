"""Embeddings through the OpenAI and Gemini SDKs, batched to the provider's maximum."""

from __future__ import annotations

import math

import pytest

from tidegate.core.llm import RateLimited, TransientError
from tidegate.providers import GeminiProvider, OpenAIProvider, Providers
from tidegate.providers.tokens import estimate_tokens

from .helpers import Sim

MODELS = {"openai": "text-embedding-3-small", "gemini": "text-embedding-004"}


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("vendor", ["openai", "gemini"])
def test_embed(providers: Providers, sim: Sim, vendor: str) -> None:
    texts = ["market size for robotics", "robotics market size", "the team has two founders"]
    resp = providers.embedder(vendor).embed(texts, MODELS[vendor])
    assert len(resp.vectors) == 3
    assert all(len(v) == 256 for v in resp.vectors)
    assert all(math.isclose(_cos(v, v), 1.0, rel_tol=1e-4) for v in resp.vectors)
    # Shared words make closer vectors: good enough for simulated retrieval.
    assert _cos(resp.vectors[0], resp.vectors[1]) > _cos(resp.vectors[0], resp.vectors[2])
    assert resp.input_tokens == sum(estimate_tokens(t) for t in texts)
    assert resp.simulated and resp.provider == vendor and resp.model == MODELS[vendor]
    again = providers.embedder(vendor).embed(texts[:1], MODELS[vendor])
    assert again.vectors[0] == resp.vectors[0]


@pytest.mark.parametrize("cls", [OpenAIProvider, GeminiProvider])
def test_embed_batches(sim: Sim, cls: type) -> None:
    base = f"{sim.url}/v1" if cls is OpenAIProvider else sim.url
    provider = cls("batch-key", base, simulated=True, embed_batch_size=4)
    texts = [f"document number {i}" for i in range(10)]
    resp = provider.embed(texts, "embed-model")
    assert len(resp.vectors) == 10
    single = provider.embed([texts[7]], "embed-model")
    assert resp.vectors[7] == single.vectors[0]  # order kept across batches
    vendor = "openai" if cls is OpenAIProvider else "gemini"
    assert sim.stats()["by_vendor"][vendor]["requests"] == 3 + 1  # 4 + 4 + 2, then 1


def test_embed_default_batch_sizes_fit_the_apis(sim: Sim) -> None:
    assert OpenAIProvider("k", f"{sim.url}/v1").embed_batch_size == 2048
    gemini = GeminiProvider("k", sim.url)
    assert gemini.embed_batch_size == 100
    resp = gemini.embed([f"t{i}" for i in range(150)], "embed-model")  # two batches
    assert len(resp.vectors) == 150


def test_embed_nothing_makes_no_call(providers: Providers, sim: Sim) -> None:
    resp = providers.embedder("openai").embed([], MODELS["openai"])
    assert resp.vectors == [] and resp.input_tokens == 0
    assert sim.stats()["total"]["requests"] == 0


@pytest.mark.parametrize("vendor", ["openai", "gemini"])
def test_embed_errors(providers: Providers, sim: Sim, vendor: str) -> None:
    sim.configure(error_503_rate=1.0)
    with pytest.raises(TransientError):
        providers.embedder(vendor).embed(["x"], MODELS[vendor])
    sim.configure(error_503_rate=0.0, rpm=1)
    providers.embedder(vendor).embed(["x"], MODELS[vendor])
    with pytest.raises(RateLimited):
        providers.embedder(vendor).embed(["x"], MODELS[vendor])
