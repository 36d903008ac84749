"""What the ETA estimate (core/eta.py) reads, gathered from the job table and the limiter.

One :class:`EtaFeed` per process. A picture of the system costs three small queries (the jobs
not yet finished, those finished in the last :data:`WINDOW_S`, and per job type its last
:data:`RECENT_RUNS` successful runs by ``ix_tg_jobs_type_status_finished`` with their calls
counted in the events) and one limiter snapshot per lane; it is kept :data:`PICTURE_S`, and a
type's figures :data:`STATS_S`, so answering a poll of many jobs costs one picture.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ..core.eta import Eta, LaneRate, Picture, TypeStats, Waiter, estimate, need_s
from ..core.models import Job
from ..core.statuses import TERMINAL, WAITING, Status
from .sql.tables import job_events, jobs

log = logging.getLogger(__name__)

WINDOW_S = 120.0  # finished and submitted jobs over this long give the throughput and load
RECENT_RUNS = 50
PICTURE_S = 1.0
STATS_S = 10.0
_ACTIVE = [s.value for s in (*WAITING, Status.RUNNING)]
_ENDED = [s.value for s in TERMINAL]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    picture: Picture
    at: float


class EtaFeed:
    """``lane_of(job_type, made_calls)`` names the lane a type's calls use, or None for a type
    that makes none (``made_calls``: its recent runs made some, None: it has no runs yet);
    ``limiter`` is the shared limiter (its ``snapshot``); ``weights`` a tenant's lane share."""

    def __init__(self, engine: sa.Engine, limiter: Any,
                 lane_of: Callable[[str, bool | None], str | None],
                 *, weights: Callable[[str], float] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.limiter = limiter
        self._lane_of = lane_of
        self._weights = weights
        self._clock = clock
        self._lock = threading.Lock()
        self._snap: _Snapshot | None = None
        self._stats: dict[str, tuple[float, TypeStats]] = {}

    # -- estimates ---------------------------------------------------------------------------
    def eta_of(self, job: Job) -> Eta | None:
        """The estimate of a waiting job (None for one running or ended, or when the picture
        cannot be taken: an estimate is advice, never a reason to fail a read)."""
        if job.status not in WAITING:
            return None
        try:
            snap = self._snapshot()
        except Exception:
            log.warning("no ETA for job %s: the picture could not be taken", job.id,
                        exc_info=True)
            return None
        me = _waiter(job)
        counted = any(w.same_kind(me) for w in snap.picture.waiters)
        return estimate(me, snap.picture, counted=counted)

    def eta_of_new(self, job: Job) -> Eta | None:
        """The estimate of a job about to be stored: the newest of its priority."""
        try:
            snap = self._snapshot()
        except Exception:
            log.warning("no ETA for a new %s job", job.type, exc_info=True)
            return None
        return estimate(_waiter(job, submitted_at=snap.picture.now), snap.picture)

    # -- the picture -------------------------------------------------------------------------
    def _snapshot(self, *, fresh: bool = False) -> _Snapshot:
        with self._lock:
            now = self._clock()
            if not fresh and self._snap is not None and now - self._snap.at < PICTURE_S:
                return self._snap
            self._snap = self._take(now)
            return self._snap

    def _take(self, now: float) -> _Snapshot:
        since = datetime.fromtimestamp(now - WINDOW_S, UTC)
        with self.engine.connect() as conn:
            # Alike jobs as one group each: a backlog of any size is a handful of rows.
            active = conn.execute(sa.select(
                jobs.c.type, jobs.c.priority, jobs.c.tenant, jobs.c.status,
                sa.func.count().label("n"), sa.func.avg(jobs.c.progress).label("progress"),
                sa.func.min(jobs.c.created_at).label("first"),
                sa.func.max(jobs.c.created_at).label("last"),
            ).where(jobs.c.status.in_(_ACTIVE)).group_by(
                jobs.c.type, jobs.c.priority, jobs.c.tenant, jobs.c.status)).all()
            ended = conn.execute(sa.select(
                jobs.c.type, jobs.c.priority, sa.func.count().label("n"),
            ).where(jobs.c.status.in_(_ENDED), jobs.c.finished_at >= since,
                    jobs.c.created_at >= since).group_by(jobs.c.type, jobs.c.priority)).all()
            finished = conn.execute(sa.select(sa.func.count()).where(
                jobs.c.status.in_(_ENDED), jobs.c.finished_at >= since)).scalar_one()
        waiters = [Waiter(job_id=f"{r.type}/{r.priority}/{r.tenant}/{r.status}", type=r.type,
                          priority=r.priority, tenant=r.tenant,
                          submitted_at=_ts(r.first), last_at=_ts(r.last), count=int(r.n),
                          running=r.status == Status.RUNNING.value,
                          parked=r.status == Status.RETRYING.value,
                          progress=float(r.progress or 0))
                   for r in active]
        types = {r.type for r in active} | {r.type for r in ended}
        stats = {t: self._type_stats(t, now) for t in types}
        lane_of: dict[str, str] = {}
        for t in types:
            lane = self._lane(t, stats[t])
            if lane is not None:
                lane_of[t] = lane
        lanes = {lane: self._lane_rate(lane, now) for lane in set(lane_of.values())}
        tenants = {w.tenant for w in waiters}
        weights = {t: self._weight(t) for t in tenants}
        picture = Picture(now=now, waiters=waiters, stats=stats, lane_of=lane_of, lanes=lanes,
                          weights=weights, throughput_per_s=finished / WINDOW_S)
        # The load to come: what was submitted over the window, per lane and priority (the
        # waiting groups count in the share of their span inside the window).
        load: dict[tuple[str, str], float] = {}
        submitted = [(r.type, r.priority, float(r.n)) for r in ended] + [
            (r.type, r.priority, _within(r, now - WINDOW_S)) for r in active]
        for job_type, priority, n in submitted:
            lane = lane_of.get(job_type)
            need = need_s(picture, job_type)
            if lane is None or need is None or n <= 0:
                continue
            load[(lane, priority)] = load.get((lane, priority), 0.0) + n * need / WINDOW_S
        return _Snapshot(replace(picture, load=load), now)

    def _lane(self, job_type: str, stats: TypeStats) -> str | None:
        if stats.samples and stats.calls == 0:
            return None  # a type that made no calls lately needs no lane
        try:
            return self._lane_of(job_type, stats.calls > 0 if stats.samples else None)
        except Exception:
            return None

    def _weight(self, tenant: str) -> float:
        if self._weights is None:
            return 1.0
        try:
            return float(self._weights(tenant))
        except Exception:
            return 1.0

    def _lane_rate(self, lane: str, now: float) -> LaneRate:
        try:
            snap = self.limiter.snapshot(lane)
        except Exception:
            log.warning("lane %s unreadable for the ETA", lane, exc_info=True)
            return LaneRate(learned=False)
        f = float(snap.rate_factor)
        lim = snap.limits

        def scaled(v: int | None) -> float | None:
            return None if v is None else v * f

        paused = 0.0 if snap.paused_until is None else max(0.0, snap.paused_until - now)
        return LaneRate(rpm=scaled(lim.rpm), input_tpm=scaled(lim.input_tpm),
                        output_tpm=scaled(lim.output_tpm), tpm=scaled(lim.tpm),
                        paused_for_s=paused, learned=bool(snap.sources))

    def _type_stats(self, job_type: str, now: float) -> TypeStats:
        cached = self._stats.get(job_type)
        if cached is not None and now - cached[0] < STATS_S:
            return cached[1]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(
                jobs.c.id, jobs.c.started_at, jobs.c.finished_at, jobs.c.input_tokens,
                jobs.c.output_tokens,
            ).where(jobs.c.type == job_type, jobs.c.status == Status.SUCCEEDED.value,
                    jobs.c.finished_at.is_not(None))
              .order_by(jobs.c.finished_at.desc()).limit(RECENT_RUNS)).all()
            calls: dict[str, int] = {}
            if rows:
                counted = conn.execute(
                    sa.select(job_events.c.job_id, sa.func.count())
                    .where(job_events.c.job_id.in_([r.id for r in rows]),
                           job_events.c.kind == "llm_call")
                    .group_by(job_events.c.job_id)).all()
                calls = {job_id: int(n) for job_id, n in counted}
        stats = type_stats(rows, calls)
        self._stats[job_type] = (now, stats)
        return stats


def type_stats(rows: Iterable[Any], calls: dict[str, int]) -> TypeStats:
    """A type's figures from its recent runs (``id, started_at, finished_at, input_tokens,
    output_tokens``) and the provider calls each made."""
    rows = [r for r in rows if r.started_at is not None and r.finished_at is not None]
    if not rows:
        return TypeStats()
    runs = sorted(max(0.0, (r.finished_at - r.started_at).total_seconds()) for r in rows)
    n = len(rows)
    return TypeStats(samples=n, run_s=statistics.median(runs),
                     service_s=runs[max(0, (n - 1) // 10)],  # the tenth percentile
                     calls=sum(calls.get(r.id, 0) for r in rows) / n,
                     input_tokens=sum(r.input_tokens for r in rows) / n,
                     output_tokens=sum(r.output_tokens for r in rows) / n)


def _ts(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _within(row: Any, since: float) -> float:
    """How many of a group's jobs were submitted after ``since``, spread evenly."""
    first, last, n = _ts(row.first), _ts(row.last), float(row.n)
    if first >= since:
        return n
    if last <= since or last <= first:
        return 0.0
    return n * (last - since) / (last - first)


def _waiter(job: Job, *, submitted_at: float | None = None) -> Waiter:
    return Waiter(job_id=job.id, type=job.type, priority=job.priority.value, tenant=job.tenant,
                  submitted_at=job.created_at.timestamp() if submitted_at is None
                  else submitted_at,
                  running=job.status is Status.RUNNING, parked=job.status is Status.RETRYING,
                  progress=float(job.progress),
                  started_at=job.started_at.timestamp() if job.started_at else None)
