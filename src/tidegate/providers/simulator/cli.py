"""``tidegate simulate``: the command function (the top-level CLI registers it)."""

from __future__ import annotations

from typing import Annotated

import typer

from tidegate.providers.simulator.config import SimulatorConfig

_Q = "Quotas"
_L = "Latency and output"
_F = "Fault injection"


def simulate(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8400,
    rpm: Annotated[int | None, typer.Option(
        help="Requests per minute per API key (and model, see --quota-scope); 0 = unlimited. "
             "[env: TIDEGATE_SIM_RPM, default 60]", rich_help_panel=_Q)] = None,
    tpm: Annotated[int | None, typer.Option(
        help="Tokens per minute (input + max output) per key; 0 = unlimited. "
             "[env: TIDEGATE_SIM_TPM, default 100000]", rich_help_panel=_Q)] = None,
    input_tpm: Annotated[int | None, typer.Option(
        help="Separate input-token limit, Anthropic style; 0 = none.", rich_help_panel=_Q)] = None,
    output_tpm: Annotated[int | None, typer.Option(
        help="Separate output-token limit; 0 = none.", rich_help_panel=_Q)] = None,
    quota_scope: Annotated[str | None, typer.Option(
        help="'model': one quota per API key and model (like OpenAI); 'key': one per key.",
        rich_help_panel=_Q)] = None,
    latency_min_ms: Annotated[float | None, typer.Option(
        help="Shortest time to first byte, ms. [default 200]", rich_help_panel=_L)] = None,
    latency_max_ms: Annotated[float | None, typer.Option(
        help="Longest time to first byte (uniform), or twice the median minus min (lognormal). "
             "[default 800]", rich_help_panel=_L)] = None,
    latency_dist: Annotated[str | None, typer.Option(
        help="'uniform' or 'lognormal' (long tail).", rich_help_panel=_L)] = None,
    per_token_ms: Annotated[float | None, typer.Option(
        help="Extra ms per output token; also paces streams. [default 5]",
        rich_help_panel=_L)] = None,
    output_tokens_min: Annotated[int | None, typer.Option(
        help="Shortest answer, tokens (capped by the request's max tokens). [default 150]",
        rich_help_panel=_L)] = None,
    output_tokens_max: Annotated[int | None, typer.Option(
        help="Longest answer, tokens. [default 450]", rich_help_panel=_L)] = None,
    error_500_rate: Annotated[float | None, typer.Option(
        help="Share of requests answered 500.", rich_help_panel=_F)] = None,
    error_503_rate: Annotated[float | None, typer.Option(
        help="Share answered 503.", rich_help_panel=_F)] = None,
    error_529_rate: Annotated[float | None, typer.Option(
        help="Share answered 529 (overloaded).", rich_help_panel=_F)] = None,
    hang_rate: Annotated[float | None, typer.Option(
        help="Share that hang far past any client timeout.", rich_help_panel=_F)] = None,
    malformed_rate: Annotated[float | None, typer.Option(
        help="Share answered 200 with an undecodable body.", rich_help_panel=_F)] = None,
    tokenizer: Annotated[str | None, typer.Option(
        help="How tokens are counted: chars4 (the callers' estimate), classes (CJK 1 per "
             "character, code 1 per 3 characters) or cl100k (OpenAI's BPE, offline). "
             "[default chars4]", rich_help_panel=_L)] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed: the same seed and prompt always give the same text.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run a local stand-in for the OpenAI, Anthropic and Gemini APIs.

    Point the SDKs at it: OPENAI_BASE_URL=http://HOST:PORT/v1, ANTHROPIC_BASE_URL=http://HOST:PORT,
    Gemini base_url http://HOST:PORT; any API key works. Every option can also be set with a
    TIDEGATE_SIM_<OPTION> environment variable, and at run time with POST /_sim/config
    (GET /_sim/stats for counters, POST /_sim/reset to clear them).
    """
    overrides = {k: v for k, v in locals().items() if k not in ("host", "port", "log_level")}
    from tidegate.providers.simulator.server import serve  # uvicorn only when actually serving
    try:
        config = SimulatorConfig.from_env(**overrides)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"tidegate simulator on http://{host}:{port} "
               f"(rpm={config.rpm or 'unlimited'}, tpm={config.tpm or 'unlimited'}, "
               f"seed={config.seed})")
    serve(host, port, config, log_level=log_level)
