"""The simulator's wire formats and its /_sim control endpoints, over raw HTTP."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import pytest

from tidegate.providers.simulator import SimulatorConfig, key_label

from .helpers import Sim

OPENAI_BODY = {"model": "gpt-4o-mini", "max_tokens": 50,
               "messages": [{"role": "user", "content": "Summarise the startup Zephyr."}]}
AUTH = {"authorization": "Bearer raw-key"}


def _sse_data(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def test_openai_stream_wire_format(sim: Sim) -> None:
    r = httpx.post(f"{sim.url}/v1/chat/completions", headers=AUTH,
                   json={**OPENAI_BODY, "stream": True, "stream_options": {"include_usage": True}})
    assert r.headers["content-type"].startswith("text/event-stream")
    data = _sse_data(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_openai_stream_without_usage(sim: Sim) -> None:
    r = httpx.post(f"{sim.url}/v1/chat/completions", headers=AUTH,
                   json={**OPENAI_BODY, "stream": True})
    assert all("usage" not in json.loads(d) for d in _sse_data(r.text)[:-1])


def test_anthropic_stream_events(sim: Sim) -> None:
    r = httpx.post(f"{sim.url}/v1/messages", headers={"x-api-key": "k"},
                   json={**OPENAI_BODY, "stream": True, "system": "be brief"})
    events = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert events[:2] == ["message_start", "content_block_start"]
    assert "content_block_delta" in events
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_gemini_stream_sse(sim: Sim) -> None:
    r = httpx.post(f"{sim.url}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                   headers={"x-goog-api-key": "k"},
                   json={"contents": [{"role": "user", "parts": [{"text": "hello"}]}]})
    chunks = [json.loads(d) for d in _sse_data(r.text)]
    assert len(chunks) > 1
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] > 0


def test_gemini_key_in_query_and_missing_key(sim: Sim) -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    ok = httpx.post(f"{sim.url}/v1beta/models/g:generateContent?key=abc", json=body)
    assert ok.status_code == 200
    missing = httpx.post(f"{sim.url}/v1beta/models/g:generateContent", json=body)
    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
    unknown = httpx.post(f"{sim.url}/v1beta/models/g:countTokens?key=abc", json=body)
    assert unknown.status_code == 404


def test_models_list_and_bad_requests(sim: Sim) -> None:
    ids = [m["id"] for m in httpx.get(f"{sim.url}/v1/models", headers=AUTH).json()["data"]]
    assert "gpt-4o-mini" in ids
    bad = httpx.post(f"{sim.url}/v1/chat/completions", headers=AUTH, content=b"{nope")
    assert bad.status_code == 400 and "error" in bad.json()
    no_max = httpx.post(f"{sim.url}/v1/messages", headers={"x-api-key": "k"},
                        json={"model": "c", "messages": []})
    assert no_max.json()["error"]["type"] == "invalid_request_error"


def test_embeddings_base64_matches_float(sim: Sim) -> None:
    body = {"model": "text-embedding-3-small", "input": ["alpha beta"]}
    floats = httpx.post(f"{sim.url}/v1/embeddings", headers=AUTH, json=body).json()
    b64 = httpx.post(f"{sim.url}/v1/embeddings", headers=AUTH,
                     json={**body, "encoding_format": "base64"}).json()
    raw = base64.b64decode(b64["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(floats["data"][0]["embedding"], abs=1e-6)
    dims = httpx.post(f"{sim.url}/v1/embeddings", headers=AUTH, json={**body, "dimensions": 64})
    assert len(dims.json()["data"][0]["embedding"]) == 64
    too_many = httpx.post(f"{sim.url}/v1/embeddings", headers=AUTH,
                          json={**body, "input": ["x"] * 2049})
    assert too_many.status_code == 400


def test_config_endpoint_validates_and_applies(sim: Sim) -> None:
    assert httpx.get(f"{sim.url}/_sim/config").json()["rpm"] == 0
    assert sim.configure(rpm=7)["rpm"] == 7
    bad = httpx.post(f"{sim.url}/_sim/config", json={"error_500_rate": 3})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_config"
    assert httpx.post(f"{sim.url}/_sim/config", json={"no_such_knob": 1}).status_code == 422
    assert httpx.post(f"{sim.url}/_sim/config", content=b"[]").status_code == 400
    assert httpx.get(f"{sim.url}/_sim/config").json()["rpm"] == 7
    sim.reset(config=True)
    assert httpx.get(f"{sim.url}/_sim/config").json()["rpm"] == 0


def test_stats_per_key_vendor_and_model_then_reset(sim: Sim) -> None:
    sim.configure(error_500_rate=1.0)
    httpx.post(f"{sim.url}/v1/chat/completions", headers=AUTH, json=OPENAI_BODY)
    sim.configure(error_500_rate=0.0)
    httpx.post(f"{sim.url}/v1/chat/completions", headers=AUTH, json=OPENAI_BODY)
    httpx.post(f"{sim.url}/v1/messages", headers={"x-api-key": "k2"}, json=OPENAI_BODY)
    stats = sim.stats()
    assert stats["total"]["requests"] == 3
    mine = stats["by_key"][key_label("raw-key")]
    assert (mine["requests"], mine["ok"], mine["server_errors"]) == (2, 1, 1)
    assert "raw-key" not in json.dumps(stats)  # keys never appear in stats
    assert stats["by_vendor"]["anthropic"]["ok"] == 1
    assert stats["by_model"]["openai:gpt-4o-mini"]["requests"] == 2
    sim.reset()
    assert sim.stats()["total"]["requests"] == 0


def test_seed_changes_text_and_same_seed_repeats(sim: Sim) -> None:
    def text() -> str:
        r = httpx.post(f"{sim.url}/v1/chat/completions", headers=AUTH, json=OPENAI_BODY)
        return r.json()["choices"][0]["message"]["content"]

    first = text()
    assert text() == first
    sim.configure(seed=42)
    assert text() != first


def test_config_from_env_and_overrides() -> None:
    cfg = SimulatorConfig.from_env({"TIDEGATE_SIM_RPM": "30", "TIDEGATE_SIM_LATENCY_DIST":
                                    "lognormal", "TIDEGATE_SIM_VALID_KEYS": "a, b"}, tpm=5, rpm=None)
    assert (cfg.rpm, cfg.tpm, cfg.latency_dist, cfg.valid_keys) == (30, 5, "lognormal", ["a", "b"])
    with pytest.raises(ValueError, match="latency_max_ms"):
        SimulatorConfig(latency_min_ms=10, latency_max_ms=5)
