"""Calibrated token estimates: what a lane's provider really counts, learned from its usage.

A caller must reserve tokens before a call, so it estimates them (about four characters per
token). Providers count with their own tokenizers, and code, JSON and CJK text can cost two to
four times what that predicts; a TPM-bound lane then runs into 429s no pacing prevents. So each
lane learns, per direction (``input``, ``output``) and content class (``prose``, ``code``,
``cjk``), the ratio of the usage the provider reported to the raw estimate, and input
reservations are the raw estimate times that ratio.

* Before a class has been seen on a lane, its ratio is a conservative prior (:data:`PRIOR`):
  what chars/4 under-counts by for common BPE tokenizers, at worst. A reservation too large
  only delays a call a little (the settle replaces it by the real usage); one too small
  overruns the provider.
* A learned ratio is an exponentially weighted mean of per-call ratios (the first sample
  replaces the prior, later ones weigh :data:`ALPHA`), reserved with :data:`HEADROOM` on top.
* Output reservations stay the caller's ``max_output_tokens``: OpenAI and Anthropic charge
  that at admission. The output ratio (reported output / max output) is learned and shown
  (``GET /v1/limits``), for operators choosing ``max_output_tokens``.

The store is shared by every worker (Redis in production: one lane learns once for all).
"""

from __future__ import annotations

import math
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

ContentClass = Literal["prose", "code", "cjk"]
Direction = Literal["input", "output"]
CLASSES: tuple[ContentClass, ...] = ("prose", "code", "cjk")
DIRECTIONS: tuple[Direction, ...] = ("input", "output")
# Tokens per chars/4 estimate before anything is learned. cl100k/o200k give about 0.9-1.1 for
# English prose, 1.3-2 for code and JSON, 2.5-4 for Chinese and Japanese.
PRIOR: Mapping[ContentClass, float] = {"prose": 1.25, "code": 2.0, "cjk": 4.0}
OUTPUT_PRIOR = 1.0  # output is reserved as max_output_tokens whatever is learned
ALPHA = 0.2  # weight of a new sample once the first one replaced the prior
HEADROOM = 0.05  # reserve this much above the learned ratio: per-call ratios scatter
RATIO_MIN, RATIO_MAX = 0.05, 20.0  # a sample outside is clamped (an empty answer, a bug)

_CODE_CHARS = frozenset("{}[]()<>;=:+-*/\\|&%$#@!^~`\"'_,.")
_CJK_MIN_SHARE = 0.2  # of the non-space characters
_CODE_MIN_SHARE = 0.12


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF
            or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x2FA1F)


def classify(texts: Iterable[str]) -> ContentClass:
    """The content class of a prompt: ``cjk`` when a fifth of its visible characters are CJK
    (or other wide scripts), ``code`` when punctuation and operators are dense, else ``prose``."""
    visible = cjk = symbols = newlines_indented = 0
    for text in texts:
        for line in text.splitlines():
            if line.startswith(("    ", "\t")):
                newlines_indented += 1
        for ch in text:
            if ch.isspace():
                continue
            visible += 1
            if _is_cjk(ch) or unicodedata.east_asian_width(ch) in ("W", "F"):
                cjk += 1
            elif ch in _CODE_CHARS:
                symbols += 1
    if not visible:
        return "prose"
    if cjk / visible >= _CJK_MIN_SHARE:
        return "cjk"
    if symbols / visible >= _CODE_MIN_SHARE or (newlines_indented >= 3
                                                and symbols / visible >= 0.06):
        return "code"
    return "prose"


@dataclass(frozen=True, slots=True)
class Ratio:
    """One learned ratio: reported usage / raw estimate, and how many calls taught it."""

    ratio: float
    samples: int


def prior(direction: Direction, cls: ContentClass) -> float:
    return PRIOR[cls] if direction == "input" else OUTPUT_PRIOR


def updated(old: Ratio | None, sample: float) -> Ratio:
    """The running ratio after one more call (the first sample replaces the prior)."""
    x = min(RATIO_MAX, max(RATIO_MIN, sample))
    if old is None or old.samples <= 0:
        return Ratio(x, 1)
    return Ratio(old.ratio + ALPHA * (x - old.ratio), old.samples + 1)


def reserve_factor(learned: Ratio | None, direction: Direction, cls: ContentClass) -> float:
    """What to multiply a raw estimate by for the reservation."""
    if learned is None or learned.samples <= 0:
        return prior(direction, cls)
    return learned.ratio * (1.0 + HEADROOM)


def calibrated(raw: int, factor: float) -> int:
    """A raw estimate scaled by a factor: never below one token for a non-empty prompt."""
    if raw <= 0:
        return 0
    return max(1, math.ceil(raw * factor))


def report(ratios: Mapping[tuple[Direction, ContentClass], Ratio]) -> dict[str, object]:
    """How ``GET /v1/limits`` shows a lane's calibration: per direction and class, the learned
    ratio and its samples, or the prior that is used until then."""
    out: dict[str, object] = {}
    for direction in DIRECTIONS:
        rows: dict[str, object] = {}
        for cls in CLASSES:
            r = ratios.get((direction, cls))
            rows[cls] = ({"ratio": round(r.ratio, 4), "samples": r.samples, "source": "learned"}
                         if r is not None and r.samples > 0 else
                         {"ratio": prior(direction, cls), "samples": 0, "source": "prior"})
        out[direction] = rows
    return out


class Calibrator(Protocol):
    """Per-lane ratios shared by every worker (see module doc)."""

    def ratio(self, lane: str, direction: Direction, cls: ContentClass) -> Ratio | None: ...

    def learn(self, lane: str, direction: Direction, cls: ContentClass, *, estimate: int,
              actual: int) -> None:
        """One call's reported usage against its raw estimate (ignored if either is 0)."""
        ...

    def ratios(self, lane: str) -> dict[tuple[Direction, ContentClass], Ratio]: ...


class InMemoryCalibrator:
    """The calibrator for one process (tests, single-node use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, Direction, ContentClass], Ratio] = {}

    def ratio(self, lane: str, direction: Direction, cls: ContentClass) -> Ratio | None:
        with self._lock:
            return self._data.get((lane, direction, cls))

    def learn(self, lane: str, direction: Direction, cls: ContentClass, *, estimate: int,
              actual: int) -> None:
        if estimate <= 0 or actual <= 0:
            return
        with self._lock:
            key = (lane, direction, cls)
            self._data[key] = updated(self._data.get(key), actual / estimate)

    def ratios(self, lane: str) -> dict[tuple[Direction, ContentClass], Ratio]:
        with self._lock:
            return {(d, c): r for (ln, d, c), r in self._data.items() if ln == lane}
