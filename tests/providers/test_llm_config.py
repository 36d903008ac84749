"""LLM settings: shipped defaults, a user file merged over them, and clear errors."""

from __future__ import annotations

from decimal import Decimal
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
    assert cfg.cost_usd("openai", "gpt-4o-mini", 1_000_000, 1_000_000) == Decimal("0.75")
    assert cfg.cost_usd("anthropic", "claude-3-5-haiku-latest", 1000, 500) == Decimal(
        "0.0028")  # (1000 * 0.80 + 500 * 4.00) / 1e6


def test_lane_limits_lookup_order(tmp_path: Path) -> None:
    cfg = load_llm_config(_write(tmp_path, """
[lanes."openai:gpt-4o"]
rpm = 30
[lanes."openai:*"]
rpm = 500
[lanes."anthropic:*"]
input_tpm = 50000
output_tpm = 10000
"""))
    assert cfg.lane_limits("openai:gpt-4o").rpm == 30
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
fallbacks = ["house", "openai:gpt-4o"]
"""))
    assert cfg.resolve("fast") == ("gemini", "gemini-2.0-flash")
    assert cfg.resolve("house") == ("gemini", "gemini-2.0-flash")  # aliases may chain
    assert cfg.resolve("smart") == ("openai", "gpt-4o")  # untouched defaults stay
    assert cfg.cost_usd("openai", "my-finetune", 10**6, 0) == 3
    assert cfg.default_model("chat").startswith("anthropic:")  # tables merge key by key
    assert cfg.fallbacks("chat") == ["gemini:gemini-2.0-flash", "openai:gpt-4o"]


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
    assert parse_lane("openai:ft:gpt-4o-mini:org::abc1") == ("openai", "ft:gpt-4o-mini:org::abc1")
    with pytest.raises(LLMConfigError, match="accounts"):
        parse_lane("openai:gpt-4o@acct")
    with pytest.raises(LLMConfigError):
        parse_lane("openai:")


# -- models a tenant may ask for ----------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    "nosuchalias", "openai:", ":gpt-4o", "nosuchprovider:x", "openai:../x", "openai:x/../../y",
    "gemini:a?b", "gemini:a#b", "openai:a\r\nb", "openai:a b", "openai:gpt-4o@acct", "",
])
def test_invalid_models_are_refused(spec: str) -> None:
    cfg = load_llm_config(None)
    with pytest.raises(LLMConfigError):
        cfg.check_model(spec)


def test_only_operator_configured_models_are_allowed(tmp_path: Path) -> None:
    cfg = load_llm_config(None)
    assert cfg.check_model("fast") == "openai:gpt-4o-mini"  # an alias
    assert cfg.check_model("gemini:gemini-2.5-pro") == "gemini:gemini-2.5-pro"  # priced
    with pytest.raises(LLMConfigError, match="not allowed") as info:
        cfg.check_model("openai:made-up-model-1")  # well-formed, but nobody configured it
    assert "openai:gpt-4o-mini" in str(info.value) and "fast" in str(info.value)
    cfg = load_llm_config(_write(tmp_path, '[models]\nallow = ["openai:gpt-4o-*", '
                                           '"openai:my-local-model"]\n'))
    assert cfg.check_model("openai:gpt-4o-2024-08-06") == "openai:gpt-4o-2024-08-06"
    assert cfg.check_model("openai:my-local-model") == "openai:my-local-model"
    with pytest.raises(LLMConfigError, match="openai:gpt-4o-\\*"):
        cfg.check_model("openai:gpt-5")


@pytest.mark.parametrize(("text", "match"), [
    ('[aliases]\nteam = "openai:gpt-4o@team-b"', "accounts"),
    ('[lanes."openai:gpt-4o@team-b"]\nrpm = 5', "accounts"),
    ('[jobs.chat]\nfallbacks = ["openai:gpt-4o@backup"]', "accounts"),
    ('[models]\nallow = ["mistral:*"]', "unknown provider"),
    ('[models]\nallow = ["openai:a?b"]', "invalid model"),
])
def test_account_lanes_and_bad_patterns_fail_at_load(tmp_path: Path, text: str,
                                                     match: str) -> None:
    with pytest.raises(LLMConfigError, match=match):
        load_llm_config(_write(tmp_path, text))


# -- money --------------------------------------------------------------------------------------

def test_costs_are_exact_decimals() -> None:
    cfg = load_llm_config(None)
    cost = cfg.cost_usd("openai", "gpt-4o-mini", 1, 1)
    assert isinstance(cost, Decimal) and cost == Decimal("0.00000075")
    total = sum((cfg.cost_usd("openai", "gpt-4o-mini", 1, 1) for _ in range(10**4)), Decimal(0))
    assert total == Decimal("0.0075")  # no float drift


@pytest.mark.parametrize(("model", "family"), [
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"),
])
def test_dated_ids_cost_their_family_price(model: str, family: str) -> None:
    cfg = load_llm_config(None)
    provider = {"gpt": "openai", "cla": "anthropic", "gem": "gemini"}[model[:3]]
    assert cfg.cost_usd(provider, model, 10**6, 10**6) == cfg.cost_usd(provider, family,
                                                                         10**6, 10**6) > 0


def test_unpriced_models_cost_none_not_zero() -> None:
    cfg = load_llm_config(None)
    assert cfg.cost_usd("openai", "my-finetune", 10**6, 10**6) is None
    assert cfg.cost_usd("gemini", "text-embedding-004", 10**6, 0) == 0  # priced at zero: free


def test_job_types_declare_their_models_and_the_file_wins_field_by_field(
        tmp_path: Path) -> None:
    from types import SimpleNamespace

    def declared_type(name: str, **kw: object) -> SimpleNamespace:
        return SimpleNamespace(**({"name": name, "model": None, "fallbacks": [],
                                   "dedup": False, "cache_ttl_s": None} | kw))

    declared = [declared_type("brief", model="anthropic:claude-3-5-haiku-latest",
                              fallbacks=["gemini:gemini-2.0-flash"], cache_ttl_s=60.0),
                declared_type("plain")]
    config = load_llm_config().with_job_defaults(declared)
    assert config.default_model("brief") == "anthropic:claude-3-5-haiku-latest"
    assert config.fallbacks("brief") == ["gemini:gemini-2.0-flash"]
    assert config.default_model("plain") == config.default_model("no-such-type")
    assert "anthropic:claude-3-5-haiku-latest" in config.configured_models()
    assert config.reuse_of("brief") == (False, 60.0)
    assert config.reuse_of("plain") == (False, None)
    path = tmp_path / "llm.toml"
    path.write_text('[jobs.brief]\nfallbacks = []\ndedup = true\n')
    config = load_llm_config(str(path)).with_job_defaults(declared)
    assert config.default_model("brief") == "anthropic:claude-3-5-haiku-latest"
    assert config.fallbacks("brief") == []
    assert config.reuse_of("brief") == (True, 60.0)
    bad = [declared_type("typo", model="opnai:gpt-4o")]
    with pytest.raises(LLMConfigError, match="job type 'typo'"):
        load_llm_config().with_job_defaults(bad)
