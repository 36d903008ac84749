"""POST /v1/jobs refuses models the operator did not configure, before anything is queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidegate.api.app import create_app
from tidegate.core.errors import ConfigurationError
from tidegate.llm_config import LLMConfigError

from .helpers import settings_for
from .test_api import _client

BAD_MODELS = ["nosuchalias", "openai:", "nosuchprovider:x", "openai:../x", "gemini:a?b",
              "gemini:a#b", "openai:a\r\nb", "openai:gpt-4o@team-b", "openai:made-up-model"]


@pytest.fixture
def api(tmp_path: Path, redis_url: str):
    llm = tmp_path / "llm.toml"
    llm.write_text('[models]\nallow = ["openai:my-local-*"]\n')
    client, a, _ = _client(settings_for(tmp_path, redis_url=redis_url, llm_config=llm))
    with client:
        yield client, a


@pytest.mark.parametrize("model", BAD_MODELS)
def test_invalid_or_unconfigured_models_get_422(api, model: str) -> None:
    client, a = api
    for job_type, inp in [("chat", {"message": "hi"}), ("embeddings", {"texts": ["x"]}),
                          ("startup_report", {"startup": "Acme"}),
                          ("analyze_section", {"section": "s", "content": "c"})]:
        r = client.post("/v1/jobs", json={"type": job_type, "input": {**inp, "model": model}},
                        headers=a)
        assert r.status_code == 422, (job_type, model, r.text)
        assert r.json()["error"]["code"] == "invalid_input"
    assert client.get("/v1/jobs", headers=a).json()["jobs"] == []  # nothing was stored


def test_not_allowed_names_what_is(api) -> None:
    client, a = api
    r = client.post("/v1/jobs", json={"type": "chat", "input": {
        "message": "hi", "model": "openai:made-up-model"}}, headers=a)
    message = r.json()["error"]["message"]
    assert "not allowed" in message and "openai:my-local-*" in message and "fast" in message


@pytest.mark.parametrize("model", ["fast", "openai:gpt-4o", "openai:my-local-llama"])
def test_configured_models_are_accepted(api, model: str) -> None:
    client, a = api
    r = client.post("/v1/jobs", json={"type": "chat", "input": {"message": "hi", "model": model}},
                    headers=a)
    assert r.status_code == 202, r.text


def test_the_api_refuses_to_start_with_a_bad_llm_config(tmp_path: Path, redis_url: str) -> None:
    llm = tmp_path / "llm.toml"
    llm.write_text('[aliases]\nx = "mistral:large"\n')
    with pytest.raises((LLMConfigError, ConfigurationError), match="mistral"):
        create_app(settings_for(tmp_path, redis_url=redis_url, llm_config=llm))
