"""The OpenAI-compatible front door under a burst: N concurrent chat calls from the official
`openai` SDK against one lane with an RPM quota, through Tidegate and, as the baseline in the
same run, straight to the provider (the SDK's own retries: what an application does today).

    .venv/bin/python -m benchmarks.front_door_bench            # 60 chats, 30 RPM

The provider is Tidegate's simulator with the quota (a bucket of one minute of requests,
refilled continuously, sending OpenAI's rate-limit headers). Nothing about the quota is
configured in Tidegate: it learns it from the headers. The front door's fallback lanes are
switched off so that both sides have exactly one lane's quota.

The quota's minimum makespan: the bucket holds C = RPM requests and refills at RPM per minute,
so N requests cannot all be admitted before (N - C) / (RPM / 60) seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import openai

from .quota_bench import Procs, Simulator, Tidegate, log, pg_database

MODEL = "gpt-4o-mini"
LATENCY = {"latency_min_ms": 100, "latency_max_ms": 300, "per_token_ms": 0}


@dataclass
class Outcome:
    side: str
    calls: int
    answered: int
    failed: int
    provider_429s: int
    makespan_s: float
    minimum_s: float

    @property
    def ratio(self) -> float:
        return self.makespan_s / self.minimum_s if self.minimum_s else float("nan")


async def burst(sdk: openai.AsyncOpenAI, n: int) -> tuple[int, int]:
    async def one(i: int) -> bool:
        try:
            r = await sdk.chat.completions.create(
                model=MODEL, max_tokens=50,
                messages=[{"role": "user", "content": f"Say something about tides ({i})."}])
        except openai.APIError as exc:
            log(f"call {i}: {type(exc).__name__}: {str(exc)[:120]}")
            return False
        return bool(r.choices[0].message.content)

    async with sdk:
        ok = await asyncio.gather(*(one(i) for i in range(n)))
    return sum(ok), n - sum(ok)


def measure(side: str, sim: Simulator, sdk: openai.AsyncOpenAI, n: int, rpm: int) -> Outcome:
    sim.fresh(rpm=rpm, tpm=0, **LATENCY)
    t0 = time.monotonic()
    answered, failed = asyncio.run(burst(sdk, n))
    makespan = time.monotonic() - t0
    limited = sim.stats()["by_model"].get(f"openai:{MODEL}", {}).get("rate_limited", 0)
    out = Outcome(side, n, answered, failed, limited, round(makespan, 2),
                  max(0.0, (n - rpm) / (rpm / 60)))
    log(f"{side}: {answered}/{n} answered, {failed} failed, {limited} 429s from the provider, "
        f"{makespan:.1f} s ({out.ratio:.3f}x the minimum {out.minimum_s:.0f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chats", type=int, default=60, help="concurrent calls (default 60)")
    ap.add_argument("--rpm", type=int, default=30, help="the lane's quota (default 30)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tg-front-door-") as tmpdir:
        tmp = Path(tmpdir)
        procs = Procs(tmp)
        try:
            sim = Simulator(procs)
            direct = measure("openai SDK straight to the provider", sim, openai.AsyncOpenAI(
                base_url=f"{sim.url}/v1", api_key="sk-sim", timeout=600), args.chats, args.rpm)
            config = tmp / "llm.toml"
            config.write_text("[jobs.chat_completion]\nfallbacks = []\n")
            with pg_database() as db:
                tg = Tidegate(procs, sim, db, str(config), tmp)
                tg.start()
                try:
                    front = measure("openai SDK through Tidegate's front door", sim,
                                    openai.AsyncOpenAI(base_url=f"{str(tg.http.base_url).rstrip('/')}/v1",
                                                       api_key="unused", timeout=600),
                                    args.chats, args.rpm)
                finally:
                    tg.stop()
        finally:
            procs.stop()
    rows = [direct, front]
    print(f"\n{args.chats} concurrent chat calls, one lane at {args.rpm} RPM "
          f"(minimum makespan {front.minimum_s:.0f} s)\n")
    print(f"| {'side':<42} | answered | failed | provider 429s | makespan | vs minimum |")
    print(f"|{'-' * 44}|----------|--------|---------------|----------|------------|")
    for r in rows:
        print(f"| {r.side:<42} | {r.answered:>8} | {r.failed:>6} | {r.provider_429s:>13} "
              f"| {r.makespan_s:>7.1f}s | {r.ratio:>9.3f}x |")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows],
                                        indent=2))
    return 0 if front.answered == args.chats else 1


if __name__ == "__main__":
    sys.exit(main())
