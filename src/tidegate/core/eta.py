"""When a waiting job will start and finish: a pure estimate over a picture of the system.

The adapters (``tidegate.adapters.eta_feed``) fill a :class:`Picture` from the job table, the
shared limiter and a job type's recent runs; :func:`estimate` reads nothing else. Times are
seconds since the epoch (floats), durations seconds.

Two bounds, the later one wins:

* **Worker slots.** Jobs that wait in the broker queues ahead of this one (every higher
  priority, then the same priority submitted earlier) leave at the observed throughput; the job
  then runs for its type's recent duration.
* **The lane.** A job whose type calls a provider needs lane capacity: its type's calls and
  tokens over the lane's learned rate (limits times rate factor), in *lane-seconds*. Waiters
  are served as the limiter ranks them: a higher priority goes first (its handicap is the
  limiter's ``aging_s`` per step, minutes in service, so within an estimate's horizon it is
  strict). Within a priority each tenant is a flow, and flows share the lane in proportion to
  their weights (the limiter's fair shares); within a flow calls go first in, first out, and a
  job's next call re-enters behind the calls already waiting, so the flow's jobs take turns,
  one call each, in the order they came. Before this job's last call, a job ahead of it in its
  flow has had at most as much as this one needs, one behind it a call less, and another flow
  ``g`` at most that much times ``weight_g / weight``, or all it needs if less. Jobs still to come share the lane too: higher priorities take their whole load
  (``rho_ahead``), the same priority about half of what each would take (``rho_same``), so the
  work ahead is stretched by ``1 / (1 - rho_ahead - rho_same * share)``. A paused lane adds its
  pause.

``confidence`` (0-1) grows with the number of recent runs the type's figures rest on, and
falls when the lane's rate is unknown or the lane is near saturation (the stretch is large).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import isfinite
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .models import Job

PRIORITY_ORDER: tuple[str, ...] = ("high", "medium", "low")
# Stretch of the work ahead at most (load at 90 % of the lane): beyond, the queue grows
# without bound and the estimate says so through a low confidence instead of a date in 2090.
MAX_STRETCH = 10.0
# A type with no history: one call, a few seconds.
DEFAULT_RUN_S = 5.0
DEFAULT_CALLS = 1.0
DEFAULT_OUTPUT_TOKENS = 512.0


@dataclass(frozen=True, slots=True)
class TypeStats:
    """A job type's recent successful runs (means, except ``run_s``: the median)."""

    samples: int = 0
    run_s: float = DEFAULT_RUN_S  # started -> finished, median (with the waits of its time)
    service_s: float = DEFAULT_RUN_S  # the fast end of the durations: its own work, unqueued
    calls: float = DEFAULT_CALLS  # provider calls per job
    input_tokens: float = 0.0
    output_tokens: float = DEFAULT_OUTPUT_TOKENS


@dataclass(frozen=True, slots=True)
class LaneRate:
    """What the shared limiter knows about a lane: per-minute limits times the rate factor
    (None: not limited, or not known yet) and how long it stays paused."""

    rpm: float | None = None
    input_tpm: float | None = None
    output_tpm: float | None = None
    tpm: float | None = None
    paused_for_s: float = 0.0
    learned: bool = True  # False: nothing configured nor learned (the rate is a guess)

    def seconds_of(self, calls: float, input_tokens: float, output_tokens: float) -> float:
        """Lane-seconds a job with this need takes: its tightest dimension over the rate."""
        need = 0.0
        for per_min, amount in ((self.rpm, calls), (self.input_tpm, input_tokens),
                                (self.output_tpm, output_tokens),
                                (self.tpm, input_tokens + output_tokens)):
            if per_min and per_min > 0 and amount > 0:
                need = max(need, amount * 60.0 / per_min)
        return need

    @property
    def limited(self) -> bool:
        return any(v for v in (self.rpm, self.input_tpm, self.output_tpm, self.tpm))


@dataclass(frozen=True, slots=True)
class Waiter:
    """A job not yet finished as the estimate sees it, or ``count`` alike jobs (same type,
    priority, tenant and state) submitted from ``submitted_at`` to ``last_at``, evenly."""

    job_id: str
    type: str
    priority: str
    tenant: str
    submitted_at: float
    running: bool = False  # claimed by a worker (possibly waiting for quota in its handler)
    parked: bool = False  # waiting for quota off a worker slot (status retrying)
    progress: float = 0.0  # 0-100, the job's own report (a group's mean)
    started_at: float | None = None
    count: int = 1
    last_at: float | None = None

    def same_kind(self, other: Waiter) -> bool:
        return (self.type, self.priority, self.tenant, self.running, self.parked) == (
            other.type, other.priority, other.tenant, other.running, other.parked)


@dataclass(frozen=True, slots=True)
class Picture:
    """Everything an estimate reads, taken at ``now``."""

    now: float
    waiters: Sequence[Waiter]
    stats: Mapping[str, TypeStats] = field(default_factory=dict)
    lane_of: Mapping[str, str] = field(default_factory=dict)  # job type -> lane (LLM types)
    lanes: Mapping[str, LaneRate] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)  # tenant -> lane share
    throughput_per_s: float = 0.0  # jobs finished per second, recently
    # Lane-seconds per second submitted recently, per lane and priority (the load to come).
    load: Mapping[tuple[str, str], float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Eta:
    start_at: float
    finish_at: float
    confidence: float


class Estimator(Protocol):
    """Where the service gets estimates (``tidegate.adapters.eta_feed.EtaFeed``). Both answer
    None when no estimate can be made: an estimate is advice, never a reason to fail."""

    def eta_of(self, job: Job) -> Eta | None:
        """A stored job's estimate; None unless it is waiting."""
        ...

    def eta_of_new(self, job: Job) -> Eta | None:
        """The estimate of a job about to be stored, as the newest of its priority."""
        ...


def stats_of(picture: Picture, job_type: str) -> TypeStats:
    return picture.stats.get(job_type) or TypeStats()


def need_s(picture: Picture, job_type: str) -> float | None:
    """Lane-seconds one job of the type takes on its lane; None when it uses none."""
    lane = picture.lane_of.get(job_type)
    rate = picture.lanes.get(lane) if lane is not None else None
    if rate is None or not rate.limited:
        return None
    st = stats_of(picture, job_type)
    return rate.seconds_of(st.calls, st.input_tokens, st.output_tokens)


def estimate(job: Waiter, picture: Picture, *, counted: bool = False) -> Eta:
    """The job's estimate. ``counted``: ``job`` is among ``picture.waiters`` (itself, or in
    the group of its kind); else it is a job about to be submitted."""
    now = picture.now
    st = stats_of(picture, job.type)
    confidence = st.samples / (st.samples + 5.0)
    slot_start = (now if job.running or job.parked
                  else now + _slot_wait(job, picture, counted))
    lane = picture.lane_of.get(job.type)
    rate = picture.lanes.get(lane) if lane is not None else None
    own = need_s(picture, job.type)
    if lane is None or rate is None or own is None:
        run = st.run_s * (1.0 - min(job.progress, 99.0) / 100.0)
        if job.running and job.started_at is not None:
            run = max(run, st.run_s - (now - job.started_at))
        return _bounded(slot_start, slot_start + max(0.0, run), confidence * 0.9, now)
    if not rate.learned:
        confidence *= 0.5
    mine = _remaining(job, own)
    per_call = own / max(1.0, st.calls)
    my_rank = PRIORITY_ORDER.index(job.priority)
    higher = flow_all = flow_first = 0.0
    others: dict[str, float] = {}  # other tenants' flows at this priority: their remaining need
    for w in picture.waiters:
        if picture.lane_of.get(w.type) != lane:
            continue
        w_need = need_s(picture, w.type)
        if w_need is None:
            continue
        before, after = _split(w, job, counted)
        rem = _remaining(w, w_need)
        rank = PRIORITY_ORDER.index(w.priority)
        if rank < my_rank:
            higher += rem * (before + after)
        elif rank > my_rank:
            continue
        elif w.tenant != job.tenant:
            others[w.tenant] = others.get(w.tenant, 0.0) + rem * (before + after)
        else:
            # Ahead in the flow: a call per turn, up to this job's need; behind: its turn
            # comes after this job's in every round but the last.
            flow_all += before * min(rem, mine) + after * min(rem, max(0.0, mine - per_call))
            flow_first += before * min(rem, per_call)
    flow_all += mine
    flow_first += per_call
    phi = picture.weights.get(job.tenant, 1.0)
    ahead = higher + flow_all - mine
    served_first = higher + flow_first
    for tenant, rem in others.items():
        ratio = picture.weights.get(tenant, 1.0) / phi
        ahead += min(rem, flow_all * ratio)
        served_first += min(rem, flow_first * ratio)
    rho_ahead = sum(v for (ln, p), v in picture.load.items()
                    if ln == lane and PRIORITY_ORDER.index(p) < my_rank)
    rho_same = picture.load.get((lane, job.priority), 0.0)
    typical = max(own, 1e-9)
    # An arrival during the wait takes about half of what this job still needs, at most its own.
    share = min(1.0, 0.5 * mine / typical)
    room = 1.0 - rho_ahead - rho_same * share
    stretch = MAX_STRETCH if room <= 1.0 / MAX_STRETCH else 1.0 / room
    if stretch >= MAX_STRETCH / 2:
        confidence *= 0.5
    start = now + rate.paused_for_s + served_first / (1.0 - min(rho_ahead, 0.9))
    finish = now + rate.paused_for_s + (ahead + mine) * stretch
    # The lane grants the last call; the job still runs it and whatever follows.
    tail = st.service_s / max(1.0, st.calls)
    start_at = max(slot_start, start)
    finish_at = max(start_at + st.service_s * (1.0 - min(job.progress, 99.0) / 100.0),
                    finish + tail)
    return _bounded(start_at, finish_at, confidence, now)


def moved(before: Eta, after: Eta, now: float, *, min_s: float = 10.0,
          fraction: float = 0.2) -> bool:
    """Whether a new estimate is news: its finish moved by more than ``fraction`` of the wait
    left (and at least ``min_s``), so a stream shows changes, not every tick's jitter."""
    left = max(0.0, before.finish_at - now)
    return abs(after.finish_at - before.finish_at) > max(min_s, fraction * left)


def _remaining(w: Waiter, need: float) -> float:
    return need * (1.0 - min(max(w.progress, 0.0), 99.0) / 100.0)


def _split(w: Waiter, job: Waiter, counted: bool) -> tuple[float, float]:
    """How many of ``w``'s jobs were submitted before ``job``, and after it (``job`` itself
    left out)."""
    n = float(w.count)
    mine = counted and (w.job_id == job.job_id if w.count == 1 else w.same_kind(job))
    if mine:
        n -= 1.0
        if w.count == 1:
            return 0.0, 0.0
    if w.count == 1:
        return ((1.0, 0.0) if (w.submitted_at, w.job_id) < (job.submitted_at, job.job_id)
                else (0.0, 1.0))
    first, last = w.submitted_at, w.last_at if w.last_at is not None else w.submitted_at
    if job.submitted_at >= last:
        frac = 1.0
    elif job.submitted_at <= first or last <= first:
        frac = 0.0
    else:
        frac = (job.submitted_at - first) / (last - first)
    return n * frac, n * (1.0 - frac)


def _slot_wait(job: Waiter, picture: Picture, counted: bool) -> float:
    """Seconds until a worker takes the job: the queued jobs ahead at the observed rate."""
    rank = PRIORITY_ORDER.index(job.priority)
    ahead = 0.0
    for w in picture.waiters:
        if w.running or w.parked:
            continue
        before, after = _split(w, job, counted)
        w_rank = PRIORITY_ORDER.index(w.priority)
        if w_rank < rank:
            ahead += before + after
        elif w_rank == rank:
            ahead += before
    if ahead < 0.5:
        return 0.0
    if picture.throughput_per_s > 0:
        return ahead / picture.throughput_per_s
    running = sum(w.count for w in picture.waiters if w.running)
    # Nothing finished lately: each running job frees its slot after a typical run.
    return ahead * stats_of(picture, job.type).run_s / max(1, running)


def _bounded(start_at: float, finish_at: float, confidence: float, now: float) -> Eta:
    start_at = max(now, start_at) if isfinite(start_at) else now
    finish_at = max(start_at, finish_at) if isfinite(finish_at) else start_at
    return Eta(start_at, finish_at, round(min(0.95, max(0.05, confidence)), 2))


def eta_json(eta: Eta) -> dict[str, str | float]:
    """The estimate as the API shows it: RFC 3339 times (UTC) and the confidence."""
    return {"start_at": _iso(eta.start_at), "finish_at": _iso(eta.finish_at),
            "confidence": eta.confidence}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
