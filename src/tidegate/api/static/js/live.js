// Live updates for the pages that list jobs. The tenant-wide event stream (GET /v1/events)
// is used when the API has it; otherwise (or when it drops for good) the page polls its REST
// routes every few seconds. This is the one place that decides between the two.
import { stream } from "./sse.js";

export const POLL_MS = 3000;

// onEvent(eventJson) for each persisted job event; refresh() re-reads the REST route.
// Returns a stop() function.
export function follow({ query = "", onEvent, refresh }) {
  const ctrl = new AbortController();
  let timer = null;
  const poll = () => {
    if (timer || ctrl.signal.aborted) return;
    timer = setInterval(() => refresh().catch(() => {}), POLL_MS);
  };
  stream(`/v1/events${query}`, {
    signal: ctrl.signal,
    onEvent: (ev) => {
      try { onEvent(JSON.parse(ev.data)); } catch (e) { /* not a job event (keep-alive, end) */ }
    },
  }).then(() => { if (!ctrl.signal.aborted) poll(); }, () => poll());
  return () => { ctrl.abort(); if (timer) clearInterval(timer); };
}

// The persisted wire format names the job's status after the event; progress comes in
// `progress` events. Returns the fields of a jobs-table row to patch.
export function patchOf(ev) {
  const patch = { status: ev.status };
  if (ev.kind === "progress" && ev.detail && typeof ev.detail.percent === "number") {
    patch.progress = Math.round(ev.detail.percent);
    if (ev.detail.message !== undefined) patch.message = ev.detail.message;
  }
  if (ev.kind === "succeeded") patch.progress = 100;
  return patch;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

// One job, live: its own event stream in either format the API speaks (`event: job` with the
// whole job each time it changes, or one persisted event per change, resumable after
// `afterId`), or polling when there is no stream. onJob(job) when the job is (re)read,
// onEvent(event) for each persisted event. Returns stop().
export function followJob(jobId, { afterId = null, onJob, onEvent, reload }) {
  const ctrl = new AbortController();
  let timer = null;
  const poll = () => {
    if (timer || ctrl.signal.aborted) return;
    timer = setInterval(() => reload().then((job) => {
      if (TERMINAL.has(job.status)) clearInterval(timer);
    }).catch(() => {}), POLL_MS);
  };
  stream(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
    signal: ctrl.signal,
    lastEventId: afterId,
    // Closed before its terminal event: connect again, unless the job has ended meanwhile
    // (its stream, resumed after its last event, has nothing more to send).
    onClosed: () => reload().then((job) => !TERMINAL.has(job.status), () => true),
    onEvent: (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      if (ev.event === "job") onJob(data);
      else if (ev.event === "end") return false;
      else if (data && data.kind) {
        onEvent(data);
        if (TERMINAL.has(data.kind)) { reload().catch(() => {}); return false; }
      }
      return undefined;
    },
  }).catch(() => poll());
  return () => { ctrl.abort(); if (timer) clearInterval(timer); };
}
