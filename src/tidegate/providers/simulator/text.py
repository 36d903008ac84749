"""Deterministic, plausible text for the simulator.

The same (seed, prompt) always gives the same answer, so tests and benchmarks are repeatable;
different prompts give different answers built from the prompt's own words, so a generated
startup report mentions the startup and reads like one section per prompt.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from tidegate.providers.simulator.wordbank import (
    JSON_LISTS,
    SECTION_WORDS,
    SLOTS,
    STOPWORDS,
    TEMPLATES,
)
from tidegate.providers.tokens import CHARS_PER_TOKEN, estimate_tokens

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]+")
# A name is up to three capitalised words on one line; a trailing full stop is not part of it.
_NAMED = re.compile(r"""(?i:startup|company|called|named|about|for)[ \t]*[:"“']*[ \t]*([A-Z][\w&-]*(?:\.[\w&-]+)*(?:[ \t]+[A-Z][\w&-]*(?:\.[\w&-]+)*){0,2})""")
_QUOTED = re.compile(r"""["“]([^"”]{2,40})["”]""")
JSON_HINT = re.compile(r"respond with json|json object|in json|as json", re.IGNORECASE)


def rng_for(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def subject_of(prompt: str) -> str:
    """The thing the prompt is about: a quoted or introduced proper name, else a keyword."""
    raw = subject_of_raw(prompt)
    if raw:
        return raw
    words = keywords(prompt)
    return words[0].capitalize() if words else "The company"


def keywords(prompt: str, limit: int = 6) -> list[str]:
    """Topic words: long, not filler, not the subject's own name, not a section heading."""
    skip = {w.lower() for w in _WORD.findall(subject_of_raw(prompt) or "")}
    skip |= {h for hints in SECTION_WORDS.values() for h in hints}
    seen: list[str] = []
    for w in _WORD.findall(prompt):
        lw = w.lower()
        if len(lw) >= 5 and lw not in STOPWORDS and lw not in skip and lw not in seen:
            seen.append(lw)
        if len(seen) >= limit:
            break
    return seen


def subject_of_raw(prompt: str) -> str | None:
    for pattern in (_QUOTED, _NAMED):
        m = pattern.search(prompt)
        if m and m.group(1).strip():
            return m.group(1).strip().rstrip(".")
    return None


def section_of(prompt: str) -> str:
    words = set(w.lower() for w in _WORD.findall(prompt))
    for section, hints in SECTION_WORDS.items():
        if words & set(hints):
            return section
    return "overview"


# Facts that must not change between sentences, or between the sections of one report: they
# are drawn once per (seed, subject), so every section about "Acme" agrees on Acme's market.
_PROFILE_SLOTS = ("segment", "buyer", "competitor", "moat", "gap")


def _profile(seed: int, prompt: str) -> dict[str, Any]:
    rng = rng_for(seed, "profile", subject_of(prompt))
    values: dict[str, Any] = {k: rng.choice(SLOTS[k]) for k in _PROFILE_SLOTS}
    values.update(name=subject_of(prompt), bn=rng.choice((2, 4, 7, 12, 18, 35)),
                  pct=rng.randint(8, 40), num=rng.randint(4, 60),
                  cadence=rng.choice(("week", "two weeks")))
    values["competitor2"] = rng.choice([c for c in SLOTS["competitor"] if c != values["competitor"]])
    return values


def _slots(rng: random.Random, prompt: str, profile: dict[str, Any]) -> dict[str, Any]:
    kws = keywords(prompt) or ["automation", "workflow"]
    values: dict[str, Any] = {k: rng.choice(v) for k, v in SLOTS.items()}
    values.update(kw=rng.choice(kws), kw2=rng.choice(kws), pct2=rng.randint(55, 130),
                  small=rng.randint(3, 15), months=rng.randint(6, 24))
    values.update(profile)
    return values


def _sentence(rng: random.Random, template: str, prompt: str,
              profile: dict[str, Any] | None = None) -> str:
    return template.format(**_slots(rng, prompt, profile or _profile(0, prompt)))


def generate_text(seed: int, prompt: str, target_tokens: int, *, whole_sentences: bool = False) -> str:
    """At most ``target_tokens`` tokens (by :func:`estimate_tokens`) of prose on the prompt's
    topic. ``whole_sentences`` ends on a full stop (a natural finish); otherwise the text is cut
    mid-sentence at the budget, like an answer stopped by max_tokens."""
    rng = rng_for(seed, "text", prompt)
    profile = _profile(seed, prompt)
    section = section_of(prompt)
    other = [t for s, ts in TEMPLATES.items() if s != section for t in ts]
    paragraphs: list[str] = []
    sentences: list[str] = []
    budget_chars = max(1, target_tokens) * CHARS_PER_TOKEN
    used = 0
    own: list[str] = []
    # Open with a sentence that names the subject, as a section of a report would.
    openers = [t for t in TEMPLATES[section] if t.startswith("{name}")] or \
        [t for t in TEMPLATES["overview"] if t.startswith("{name}")]
    template = rng.choice(openers)
    while used < budget_chars:
        if not own:  # deal the section's templates like cards: no repeats until all are used
            own = [t for t in rng.sample(TEMPLATES[section], k=len(TEMPLATES[section]))
                   if t != template]
        if sentences or paragraphs:
            template = own.pop() if rng.random() < 0.8 else rng.choice(other)
        s = _sentence(rng, template, prompt, profile)
        sentences.append(s)
        used += len(s) + 1
        if len(sentences) >= rng.randint(3, 5):
            paragraphs.append(" ".join(sentences))
            sentences = []
            used += 1
    if sentences:
        paragraphs.append(" ".join(sentences))
    return _trim("\n\n".join(paragraphs), budget_chars, whole_sentences)


def _trim(text: str, max_chars: int, whole_sentences: bool = False) -> str:
    """Cut at a word boundary so the token estimate never exceeds the target."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    stop = cut.rfind(".")
    if whole_sentences and stop > max_chars // 2:
        return cut[:stop + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip(" ,;:")


def generate_json(seed: int, prompt: str, max_tokens: int) -> str:
    """A valid JSON object; the section-review shape for analysis prompts. Items are dropped,
    never cut mid-way, to stay under ``max_tokens``: callers parse this, so it must stay valid."""
    rng = rng_for(seed, "json", prompt)
    low = prompt.lower()
    if any(w in low for w in ("strength", "issue", "suggest", "analy", "review", "section")):
        obj: dict[str, Any] = {
            key: [_sentence(rng, t, prompt, _profile(seed, prompt))
                  for t in rng.sample(ts, k=rng.randint(2, 3))]
            for key, ts in JSON_LISTS.items()
        }
        obj["score"] = rng.randint(5, 9)
    else:
        obj = {"summary": generate_text(seed, prompt, 40),
               "points": [_sentence(rng, t, prompt, _profile(seed, prompt))
                          for t in rng.sample(TEMPLATES["overview"], k=3)]}
    while estimate_tokens(json.dumps(obj)) > max_tokens:
        lists = [v for v in obj.values() if isinstance(v, list) and v]
        longest = max(lists, key=len, default=None)
        if not longest:
            break
        longest.pop()
    return json.dumps(obj)


def wants_json(prompt: str, json_mode: bool) -> bool:
    return json_mode or bool(JSON_HINT.search(prompt))


def output_length(seed: int, prompt: str, lo: int, hi: int, max_tokens: int) -> tuple[int, bool]:
    """``(tokens, truncated)``: a per-prompt length in [lo, hi], capped by the caller's max."""
    want = rng_for(seed, "len", prompt).randint(lo, hi)
    return (min(want, max_tokens), want > max_tokens)
