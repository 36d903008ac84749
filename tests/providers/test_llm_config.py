"""LLM settings: shipped defaults, a user file merged over them, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidegate.llm_config import LLMConfigError, load_llm_config, parse_lane


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "llm.toml"
    p.write_text(text)
    return str(p)


def test_shipped_defaults() -> None:
    cfg = load_llm_config(None)
    assert cfg.resolve("fast") == ("openai", "gpt-4o-mini")
    assert cfg.resolve("anthropic:claude-3-5-haiku-latest") == ("anthropic",
                                                                "claude-3-5-haiku-latest")
    sections = cfg.jobs["startup_report"].sections
    assert {cfg.resolve(s)[0] for s in sections.values()} == {"openai", "anthropic", "gemini"}
    assert cfg.default_model("embeddings") == "openai:text-embedding-3-small"
    assert cfg.default_model("chat").startswith("anthropic:")
    assert cfg.default_model("startup_report", "team") == "gemini:gemini-2.0-flash"
    assert cfg.default_model("startup_report", "no-such-section") == "openai:gpt-4o-mini"
    assert cfg.default_model("some_new_job") == "openai:gpt-4o-mini"


def test_costs() -> None:
    cfg = load_llm_config(None)
    assert cfg.cost_usd("openai", "gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cfg.cost_usd("anthropic", "claude-3-5-haiku-latest", 1000, 500) == pytest.approx(
        (1000 * 0.80 + 500 * 4.00) / 1e6)
    assert cfg.cost_usd("openai", "my-finetune", 10**6, 10**6) == 0.0


def test_lane_limits_lookup_order(tmp_path: Path) -> None:
    cfg = load_llm_config(_write(tmp_path, """
[lanes."openai:gpt-4o"]
rpm = 30
[lanes."openai:gpt-4o@team-b"]
rpm = 5
concurrency = 1
[lanes."openai:*"]
rpm = 500
[lanes."anthropic:*"]
input_tpm = 50000
output_tpm = 10000
"""))
    assert cfg.lane_limits("openai:gpt-4o").rpm == 30
    assert cfg.lane_limits("openai:gpt-4o@team-a").rpm == 30  # account falls back to the model
    assert cfg.lane_limits("openai:gpt-4o@team-b").concurrency == 1
    assert cfg.lane_limits("openai:gpt-4o-mini").rpm == 500  # provider pattern
    anth = cfg.lane_limits("anthropic:claude-3-5-haiku-latest")
    assert (anth.input_tpm, anth.output_tpm) == (50000, 10000)
    with pytest.raises(LLMConfigError, match="unknown provider"):
        cfg.lane_limits("mistral:large")


def test_user_file_merges_over_defaults(tmp_path: Path) -> None:
    cfg = load_llm_config(_write(tmp_path, """
[aliases]
fast = "gemini:gemini-2.0-flash"
house = "fast"

[prices."openai:my-finetune"]
input = 3.0
output = 12.0

[jobs.chat]
fallbacks = ["house", "openai:gpt-4o@backup"]
"""))
    assert cfg.resolve("fast") == ("gemini", "gemini-2.0-flash")
    assert cfg.resolve("house") == ("gemini", "gemini-2.0-flash")  # aliases may chain
    assert cfg.resolve("smart") == ("openai", "gpt-4o")  # untouched defaults stay
    assert cfg.cost_usd("openai", "my-finetune", 10**6, 0) == 3.0
    assert cfg.default_model("chat").startswith("anthropic:")  # tables merge key by key
    assert cfg.fallbacks("chat") == ["gemini:gemini-2.0-flash", "openai:gpt-4o@backup"]


def test_fallbacks_skip_the_failed_lane() -> None:
    cfg = load_llm_config(None)
    chain = cfg.fallbacks("startup_report")
    assert len(chain) == 3
    assert cfg.fallbacks("startup_report", exclude=chain[0]) == chain[1:]
    assert cfg.fallbacks("embeddings") == []
    assert cfg.fallbacks("unknown_job") == []


@pytest.mark.parametrize(("text", "match"), [
    ("[aliases\nfast = 1", "invalid TOML"),
    ('[aliases]\nx = "mistral:large"', "unknown provider 'mistral'"),
    ('[aliases]\nx = "nowhere"', "unknown model 'nowhere'"),
    ('[aliases]\na = "b"\nb = "a"', "alias loop"),
    ('[jobs.chat]\nmodel = "cohere:command"', "unknown provider 'cohere'"),
    ('[lanes."openai:gpt-4o"]\nrpm = -1', "lanes.openai:gpt-4o.rpm"),
    ('[lanes."openai:gpt-4o"]\nrmp = 5', "Extra inputs"),
    ('[prices."openai:x"]\ninput = "cheap"', "prices.openai:x.input"),
])
def test_bad_files_fail_clearly(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(LLMConfigError, match=match) as info:
        load_llm_config(path)
    assert path in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LLMConfigError, match="cannot read"):
        load_llm_config(str(tmp_path / "absent.toml"))


def test_resolve_errors() -> None:
    cfg = load_llm_config(None)
    with pytest.raises(LLMConfigError, match="use provider:model"):
        cfg.resolve("gpt-4o")
    with pytest.raises(LLMConfigError, match="unknown provider"):
        cfg.resolve("azure:gpt-4o")
    assert parse_lane("openai:gpt-4o@acct") == ("openai", "gpt-4o", "acct")
    with pytest.raises(LLMConfigError):
        parse_lane("openai:")
