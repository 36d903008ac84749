"""Provider-quota admission: the port (types and the ``Limiter`` protocol) and an in-memory twin.

Every worker on every machine asks one limiter per lane ("provider:model[@account]") before a
provider call. The production implementation is ``tidegate.adapters.limiter.RedisLimiter``;
:class:`InMemoryLimiter` has the same semantics (the unit tests run one body against both).

Semantics, shared by both implementations (times are whole milliseconds of the limiter clock):

* Rate dimensions: requests, input tokens, output tokens, total tokens (input + output). Each
  limited dimension is checked twice, and both checks scale with the lane's rate factor:
  - a *pacer*: a continuously refilled token bucket (rate quota/window, capacity
    ``burst_s`` worth of quota). With ``burst_s`` < ``window_s`` the quota is spread over the
    minute instead of being spent in one burst that a provider enforcing per-second slices
    would reject; with ``burst_s`` = ``window_s`` it is a twin of the bucket OpenAI and
    Anthropic enforce (a minute of quota, refilled continuously);
  - a *sliding window* (unless ``sliding_window`` is off): what was granted in the last
    ``window_s`` (an entry frees its share ``window_s`` + 1 ms after its grant) may never
    exceed the quota, the guarantee "never more than the quota in any 60 s window" that a
    provider counting per window needs. Against a bucket provider it is stricter than the
    provider: after a burst the lane idles until the burst leaves the window.
  A request larger than a capacity is admitted only when that bucket (or window) is full, and
  charged in full, so oversized requests neither starve nor overrun the rate.
* Concurrency: open reservations; each expires ``ttl_s`` after its grant (a dead worker's slot
  comes back on its own).
* Priorities: a refused caller becomes a *waiter* ranked by ``start + priority handicap``
  (high 0, medium ``aging_s``, low 2 x ``aging_s``; ``start`` is the arrival time, or later
  for a tenant with a backlog, see "Fair shares"): high goes first, but a low waiter outranks
  every caller that starts more than ``2 x aging_s`` after it, so it is never starved. A caller
  is granted only if the capacity left after it still covers the needs of every live waiter
  ranked ahead of it: capacity beyond what those waiters need is used at once (no idle
  quota while the top waiter is not back yet), and none of them is delayed by a lower one.
  A waiter stays live until ``wait_s + waiter_grace_s`` after its last refusal; one that comes
  back later keeps its rank for ``waiter_memory_s`` more (a re-queued job keeps its place).
* Priority reserve (``priority_reserve_s``, 0 by default): while a high-priority call has
  asked on the lane within the last ``priority_memory_s``, a call below high is granted only if every
  limited pacer bucket keeps ``priority_reserve_s`` worth of quota after it (capped at the
  bucket's capacity, so an oversized call still goes when the bucket is full); high calls may
  take it. A saturated backlog then rides at the reserve instead of taking each unit as it
  refills, and a fresh high call waits at most a unit less the reserve (the lane's first high
  call, before any reserve was kept, a whole unit). It costs the backlog that much quota once
  (the level it rides at), and nothing on a lane without high-priority calls. The sliding
  window keeps no reserve.
* Fair shares: each (tenant, priority) is a flow with a virtual finish time ``F``. A new
  caller starts at ``start = max(V, F)``, where ``V``, the lane's virtual time, is the later of
  now and the start of the last call granted. If it has to wait, its flow's ``F`` moves to
  ``start + tick / weight``: ``tick`` is the ms of lane capacity the call takes (its cost over
  the lane's rate in the tightest limited dimension; without rate limits
  ``concurrency_poll_s`` over the concurrency). So a flow's calls keep their arrival order,
  while a tenant with a backlog of 500 has its later calls ranked as far ahead as the lane
  needs to serve them, and another tenant's first call goes in between: weighted round-robin
  (a weight-2 tenant gets two calls to a weight-1 tenant's one). A call granted without
  waiting moves no ``F``: a lane's spare capacity is no debt.
* A 429 pauses the lane until now + retry_after (never shortens a pause) and multiplies the rate
  factor by ``decrease`` (floor ``min_factor``), at most once per ``cut_cooldown_s`` so a burst
  of 429s from calls already in flight counts as one signal. Each successful settle at least
  ``window_s`` after the last cut or increase adds ``increase`` (cap 1.0).
* Learned limits: what the provider advertises fills every limit that is not configured;
  configured values win field by field. Remaining counts (with limit and reset, the
  provider's refill rate) resync the pacer downwards only: the provider is the truth, and
  others may share its quota. A count that is ``age_s`` old (the provider counted when the
  request arrived, the answer came a call's latency later) is brought up to now first: plus
  what refilled since, and for tokens minus what the provider charges for calls granted
  since (input as known now, the real count once settled; output as reserved). Calls granted
  just before or after ours may reach the provider in either order; the resync only ever
  lowers our level, so each dimension assumes what keeps it from lowering it wrongly:
  requests are never refunded (our count can only lag the provider's, unless others share
  the quota), so they assume the provider saw every call granted since; tokens may have been
  refunded at settle for a provider that charged max output at admission, so they assume it
  saw none of them. A whole remaining count rounds the bucket down (at 30 RPM one request is
  two seconds of quota); a per-minute reset tells the fraction, which the resync keeps (never
  past the next whole unit). A limit first learned while calls are in flight (a lane's first
  calls, made before any headers) starts its pacer net of what the window already granted.
  One exception to "only lowers": an answer with nothing else of ours in flight, nothing
  granted since it was counted and no other call ended since (a "quiet" lane) is the lane's
  whole state, so the level may rise to that count as it was, less the margin; that gives
  back what a burst, reaching the provider in another order than granted, deducted twice.
* Lost state: a store can lose everything (Redis restarted without persistence, a failover to
  an empty replica, FLUSHDB, eviction), while the workers that configured its lanes run on.
  So configured limits carry a stamp (``LaneLimits.stamp``), and callers send their limits
  with every acquire: one whose stamp differs from the lane's is set as ``configure`` would
  (levels kept, clamped to the new capacities); one that finds no stamp at all also starts
  the pacer empty, not with a fresh burst, since the provider's quota was probably spent
  before the loss. The lane then runs at its configured rate at once. What is not recovered:
  learned limits until the next headers, the window and in-flight reservations (calls still
  running then are not counted against concurrency), the rate factor and any pause.
"""

from .memory import InMemoryLimiter
from .policy import SERVICE_POLICY, LimiterPolicy, pause_ms, round_factor
from .port import (
    DIMS,
    LIMIT_FIELDS,
    MAX_LANE_LEN,
    MAX_WEIGHT,
    MIN_WEIGHT,
    PRIORITIES,
    Admission,
    LaneLimits,
    LaneSnapshot,
    Limiter,
    Priority,
    effective,
    limits_from,
    validate_acquire,
    validate_age,
    validate_lane,
    validate_share,
    validate_usage,
)
from .resync import Remaining, learned_from, resync_target

__all__ = [
    "DIMS", "LIMIT_FIELDS", "MAX_LANE_LEN", "MAX_WEIGHT", "MIN_WEIGHT", "PRIORITIES",
    "SERVICE_POLICY", "Admission", "InMemoryLimiter", "LaneLimits", "LaneSnapshot", "Limiter",
    "LimiterPolicy", "Priority", "Remaining", "effective", "learned_from", "limits_from",
    "pause_ms", "resync_target", "round_factor", "validate_acquire", "validate_age",
    "validate_lane", "validate_share", "validate_usage",
]
