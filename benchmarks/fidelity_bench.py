"""Quota fidelity: Tidegate with nothing configured against providers whose limits and token
counts it must learn, in one run.

    .venv/bin/python -m benchmarks.fidelity_bench --case all     # about 5 minutes

Cases (``--case llmock|tpm|all``):

* ``llmock``: chat jobs against llmock (PyPI; ``make bench-tools``), an independent
  OpenAI-compatible mock that enforces RPM and TPM as continuously refilled buckets and sends
  OpenAI's ``x-ratelimit-*`` headers. Tidegate's openai provider points at it
  (``OPENAI_BASE_URL``); no lane limit is configured, so every limit is learned from headers.
  Target: all jobs succeed, no 429, makespan at most 1.05x the quota's minimum.
* ``tpm``: long prompts (a third prose, a third CJK, a third code) on one lane of Tidegate's
  simulator counting tokens with its ``classes`` tokenizer (CJK one token per character, code
  one per three characters: not the chars/4 Tidegate estimates with), a TPM quota binding and
  nothing configured. Target: no job fails, at most one 429 per lane, token-quota utilisation
  at least 90%.

The minimum makespan is the quota's: a bucket holding C units refilled at r per second admits
D units no earlier than (D - C) / r after the first call. Utilisation = units the provider
charged / (C + r x makespan). Where the makespan goes is printed too: from the first
submission to the first provider call (start), how far the last admission came after the
bucket allowed it (pacing), and from the last admission to the last job's end (tail).

Every process is started here and stopped by its PID; the Redis database
(``TIDEGATE_BENCH_REDIS_URL``, default 127.0.0.1:6379/11) is flushed, and the PostgreSQL
database is created and dropped here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from benchmarks import quota_bench as qb
from tidegate.embedded import free_port
from tidegate.providers.simulator.tokenizer import count_classes

LANE = "openai:gpt-4o-mini"
MODEL = LANE.partition(":")[2]
LLMOCK_LATENCY_MS = 200


@dataclass
class Profile:
    start_s: float  # first submission -> first provider call
    pacing_s: float  # last admission minus the earliest the bucket allowed it
    tail_s: float  # last admission -> last job finished

    def line(self) -> str:
        return (f"  where the makespan went: start {self.start_s:.2f} s, pacing "
                f"{self.pacing_s:+.2f} s, tail {self.tail_s:.2f} s")


def profile(t0: float, admitted: list[tuple[float, float]], capacity: float, rate_s: float,
            end: float) -> Profile:
    """``admitted``: (time, units) of each admitted call on the machine clock, any order."""
    admitted = sorted(admitted)
    first = admitted[0][0]
    total = sum(u for _, u in admitted)
    earliest = first + max(0.0, total - capacity) / rate_s
    return Profile(first - t0, admitted[-1][0] - earliest, end - admitted[-1][0])


def call_starts(jobs: list[qb.Job]) -> list[float]:
    """When each succeeded job's provider call started: its end minus the call's latency."""
    out = []
    for j in jobs:
        rec = j.record
        if rec.get("status") == "succeeded" and rec.get("finished_at"):
            out.append(float(qb.iso(rec["finished_at"]) or 0) - rec["result"]["latency_s"])
    return out


def last_end(jobs: list[qb.Job]) -> float:
    ends = [qb.iso(j.record.get("finished_at")) for j in jobs]
    return max((e for e in ends if e is not None), default=time.time())


def chats(texts: list[str], max_tokens: int) -> list[qb.Job]:
    return [qb.Job("chat", {"message": t, "max_output_tokens": max_tokens, "model": LANE})
            for t in texts]


# ----------------------------------------------------------------------------- llmock


class Llmock:
    def __init__(self, procs: qb.Procs, rpm: int, tpm: int) -> None:
        exe = Path(sys.executable).with_name("llmock")
        if not exe.exists():
            raise SystemExit("llmock is not installed: run `make bench-tools`")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        procs.start("llmock", [str(exe), "serve", "--host", "127.0.0.1", "--port",
                               str(self.port), "--rpm", str(rpm), "--tpm", str(tpm),
                               "--latency-ms", str(LLMOCK_LATENCY_MS), "--tool-mode", "off",
                               "--log-level", "warning"], qb.clean_env())
        self.http = httpx.Client(base_url=self.url, timeout=30)
        qb.wait_until("llmock", lambda: self.http.get("/_llmock/requests").status_code == 200,
                      procs=procs)

    def reset(self) -> None:
        self.http.post("/_llmock/reset").raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        got = self.http.get("/_llmock/requests").json()["requests"]
        return [r for r in got if r.get("path", "").endswith("/chat/completions")]


def case_llmock(ctx: qb.Ctx, n: int = 60, rpm: int = 30, tpm: int = 1_000_000,
                max_tokens: int = 64) -> str:
    mock = Llmock(ctx.procs, rpm, tpm)
    tg = qb.Tidegate(ctx.procs, None, ctx.db_url, None, ctx.tmp, extra_env={
        "OPENAI_BASE_URL": f"{mock.url}/v1", "OPENAI_API_KEY": "bench-key"})
    qb.log(f"llmock: starting Tidegate, nothing configured; {n} chats at {rpm} RPM")
    tg.start()
    try:
        mock.reset()
        jobs = chats([qb.chat_text(i) for i in range(n)], max_tokens)
        t0 = time.time()
        tg.submit(jobs)
        done = tg.wait(jobs, 60 + 3 * n * 60 / rpm, poll_s=0.5)
        journal = mock.requests()
    finally:
        tg.stop()
        ctx.procs.stop(lambda name: name == "llmock")
    ok = sum(1 for j in jobs if j.record.get("status") == "succeeded")
    statuses = [r["status"] for r in journal]
    end = last_end(jobs)
    makespan = end - t0
    minimum = max(0, n - rpm) * 60 / rpm
    prof = profile(t0, [(s, 1.0) for s in call_starts(jobs)], rpm, rpm / 60, end)
    met = ok == n and statuses.count(429) == 0 and makespan <= 1.05 * minimum
    return "\n".join([
        f"(llmock) {n} chats against llmock {version('llmock')} at {rpm} RPM "
        f"(latency {LLMOCK_LATENCY_MS} ms), nothing configured in Tidegate",
        f"  succeeded {ok}/{n}{'' if done else ' (timed out)'}; provider calls "
        f"{len(statuses)}, 429s {statuses.count(429)}",
        f"  makespan {makespan:.1f} s, minimum {minimum:.1f} s -> {makespan / minimum:.3f}x; "
        f"utilisation {statuses.count(200) / (rpm + rpm / 60 * makespan):.1%}"
        f"  -> {'met' if met else 'NOT met'} (target 0 429s, <= 1.05x)",
        prof.line()])


# ----------------------------------------------------------------------------- TPM


PROSE = ("Tidal energy is predictable months ahead, which makes it easier to plan a grid "
         "around than wind or sun; the open questions are the cost of the turbines, their "
         "maintenance under salt water and the effect on the fish that share the estuary. ")
CJK = ("潮汐能可以提前几个月准确预测，因此比风能和太阳能更容易纳入电网规划；"
       "尚待解决的问题是涡轮机的成本、在海水中的维护以及对河口鱼类的影响。")
CODE = ("def refill(bucket: dict[str, float], now: float) -> float:\n"
        "    elapsed = max(0.0, now - bucket['stamp'])\n"
        "    bucket['level'] = min(bucket['cap'], bucket['level'] + elapsed * bucket['rate'])\n"
        "    bucket['stamp'] = now\n"
        "    return bucket['level']\n\n")


def long_prompt(kind: str, i: int, size: int) -> str:
    """A prompt of about ``size`` characters (varied by job, so calibration sees a spread)."""
    unit = {"prose": PROSE, "cjk": CJK, "code": CODE}[kind]
    target = int(size * (0.8 + 0.4 * ((i * 37) % 11) / 10))
    head = {"prose": "Summarise for an investor:\n", "cjk": "请为投资人总结：\n",
            "code": "Review this code:\n"}[kind]
    return f"{head}{(unit * (target // len(unit) + 1))[:target]}\n({i})"


def case_tpm(ctx: qb.Ctx, n: int = 48, tpm: int = 20_000, rpm: int = 1000,
             max_tokens: int = 200) -> str:
    sizes = {"prose": 3200, "cjk": 700, "code": 2400}
    kinds = ["prose", "cjk", "code"]
    texts = [long_prompt(kinds[i % 3], i, sizes[kinds[i % 3]]) for i in range(n)]
    jobs = chats(texts, max_tokens)
    tg = qb.Tidegate(ctx.procs, ctx.sim, ctx.db_url, None, ctx.tmp)
    qb.log(f"tpm: starting Tidegate, nothing configured; {n} long chats at {tpm} TPM")
    tg.start()
    try:
        ctx.sim.fresh(rpm=rpm, tpm=tpm, tokenizer="classes")
        t0 = time.time()
        tg.submit(jobs)
        done = tg.wait(jobs, 600, poll_s=0.5)
        stats = ctx.sim.stats()
    finally:
        tg.stop()
    status = [j.record.get("status") for j in jobs]
    row = next((r for k, r in stats["by_model"].items() if k.partition(":")[2] == MODEL), {})
    charged = row.get("input_tokens", 0) + row.get("ok", 0) * max_tokens
    end = last_end(jobs)
    makespan = end - t0
    minimum = max(0, charged - tpm) * 60 / tpm
    util = charged / (tpm + tpm / 60 * makespan)
    limited = {k: r["rate_limited"] for k, r in stats["by_model"].items() if r["rate_limited"]}
    worst = max(limited.values(), default=0)
    costs = {j.id: count_classes(j.input["message"]) + max_tokens for j in jobs}
    admitted = [(s, float(costs[j.id])) for s, j in zip(call_starts(jobs), [
        j for j in jobs if j.record.get("status") == "succeeded"], strict=True)]
    prof = profile(t0, admitted, tpm, tpm / 60, end)
    estimate = sum(len(t) // 4 + max_tokens for t in texts)
    met = status.count("failed") == 0 and worst <= 1 and util >= 0.9
    return "\n".join([
        f"(tpm) {n} long chats (prose, CJK, code in turn; max {max_tokens} output tokens) on "
        f"the simulator's {LANE} at {tpm} TPM, tokenizer 'classes', nothing configured",
        f"  provider charged {charged} tokens (chars/4 would say {estimate}); succeeded "
        f"{status.count('succeeded')}/{n}, failed {status.count('failed')}"
        f"{'' if done else ' (timed out)'}; 429s per lane: {limited or 0}",
        f"  makespan {makespan:.1f} s, minimum {minimum:.1f} s -> {makespan / minimum:.3f}x; "
        f"token-quota utilisation {util:.1%}  -> {'met' if met else 'NOT met'} "
        f"(target no failure, <= 1 429 per lane, >= 90%)",
        prof.line()])


CASES = {"llmock": case_llmock, "tpm": case_tpm}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="all", choices=[*CASES, "all"])
    parser.add_argument("--runs", type=int, default=1, help="repeat each case this many times")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    args = parser.parse_args(argv)
    names = list(CASES) if args.case == "all" else [args.case]
    tmp = Path(tempfile.mkdtemp(prefix="tidegate-fidelity-"))
    procs = qb.Procs(tmp)
    out: list[str] = []
    try:
        with qb.pg_database() as db_url:
            sim = qb.Simulator(procs)
            ctx = qb.Ctx(procs, sim, db_url, tmp, False, out)
            for name in names:
                for _ in range(args.runs):
                    text = CASES[name](ctx)
                    print(text, flush=True)
                    out.append(text)
    finally:
        qb.wind_up(procs, tmp, keep_logs=args.keep_logs)
    print("\n===== summary =====\n" + "\n\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
