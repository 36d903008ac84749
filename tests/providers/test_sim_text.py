"""The simulator's text: deterministic per (seed, prompt), on topic, sized as asked."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tidegate.providers.simulator.text import (
    generate_json,
    generate_text,
    output_length,
    subject_of,
)
from tidegate.providers.tokens import estimate_tokens

PROMPT = 'Write the competition section of a due-diligence report on the startup "Nimbus Freight".'


def test_deterministic_per_seed_and_prompt() -> None:
    assert generate_text(1, PROMPT, 200) == generate_text(1, PROMPT, 200)
    assert generate_text(1, PROMPT, 200) != generate_text(2, PROMPT, 200)
    assert generate_text(1, PROMPT, 200) != generate_text(1, PROMPT + " Focus on pricing.", 200)


def test_reads_like_the_requested_section() -> None:
    text = generate_text(0, PROMPT, 300)
    assert subject_of(PROMPT) == "Nimbus Freight"
    assert text.count("Nimbus Freight") >= 2
    assert "compet" in text.lower()
    assert text.strip().endswith((".", "!", "?")) or len(text) > 100
    assert 250 <= estimate_tokens(text) <= 300


def test_length_is_capped_by_max_tokens() -> None:
    n, truncated = output_length(0, PROMPT, 200, 400, 50)
    assert (n, truncated) == (50, True)
    assert estimate_tokens(generate_text(0, PROMPT, n)) <= 50


def test_analysis_json_is_valid_and_fits() -> None:
    prompt = "Analyze this section and list strengths, issues and suggestions. Respond with JSON."
    data = json.loads(generate_json(0, prompt, 2000))
    assert {"strengths", "issues", "suggestions"} <= set(data)
    small = generate_json(0, prompt, 60)
    assert estimate_tokens(small) <= 60 or all(len(v) <= 1 for v in json.loads(small).values()
                                               if isinstance(v, list))
    json.loads(small)


def test_cli_help_lists_the_knobs() -> None:
    import typer

    from tidegate.providers.simulator.cli import simulate

    app = typer.Typer()
    app.command()(simulate)
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    for flag in ("--rpm", "--tpm", "--latency-min-ms", "--error-529-rate", "--hang-rate",
                 "--malformed-rate", "--seed", "--port"):
        assert flag in result.output
