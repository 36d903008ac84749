// One job: status, progress, timeline, LLM calls, the result, its error, Cancel and Retry.
import { api, session } from "../api.js";
import { fill, h, toast } from "../dom.js";
import { count, duration, localClock, localTime, seconds, tokens, usd } from "../format.js";
import { followJob, patchOf, TERMINAL } from "../live.js";
import { renderMarkdown } from "../markdown.js";
import { badge, bar, errorLine, setBar } from "./common.js";

// Every call record inside a result (a report keeps one per section), for jobs whose calls
// are not in the event stream.
function callsIn(value, path = [], out = []) {
  if (value && typeof value === "object") {
    if (typeof value.lane === "string" && "input_tokens" in value && "output_tokens" in value) {
      out.push({ step: path.join("."), ...value });
    } else {
      for (const [k, v] of Object.entries(value)) if (k !== "usage") callsIn(v, [...path, k], out);
    }
  }
  return out;
}

function renderResult(job) {
  const r = job.result;
  if (r === null || r === undefined) return h("p", { class: "muted" }, TERMINAL.has(job.status) ? "No result." : "Not finished yet.");
  if (typeof r === "object" && typeof r.report === "string") return renderMarkdown(r.report);
  if (typeof r === "object" && typeof r.reply === "string") return h("div", { class: "chat-reply" }, r.reply);
  return h("pre", {}, JSON.stringify(r, null, 2));
}

function detailText(ev) {
  const d = ev.detail || {};
  switch (ev.kind) {
    case "progress": return `${Math.round(d.percent ?? 0)} %${d.message ? ` — ${d.message}` : ""}`;
    case "llm_call": return `${d.lane} · ${tokens(d.input_tokens)} in, ${tokens(d.output_tokens)} out · ${usd(d.cost_usd)}${d.latency_ms !== undefined ? ` · ${count(d.latency_ms)} ms` : ""}`;
    case "quota_wait": return `${d.lane}: waiting ${seconds(d.wait_s)}`;
    case "retrying": return `${d.reason ?? d.code ?? ""}${d.delay_s !== undefined ? ` · again in ${seconds(d.delay_s)}` : ""}`;
    case "failed": return `${d.code ?? ""} ${d.message ?? ""}`;
    default: return Object.entries(d).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
  }
}

export function jobPage(root, jobId) {
  const head = h("div");
  const timeline = h("ol", { class: "timeline", "aria-label": "events" });
  const calls = h("div");
  const result = h("div");
  const seen = new Set();
  const llmEvents = [];
  let job = null;
  let stop = null;

  const reload = async () => { render(await api(`/v1/jobs/${encodeURIComponent(jobId)}`)); return job; };

  function addEvent(ev) {
    if (ev.id !== undefined && seen.has(ev.id)) return;
    seen.add(ev.id);
    if (ev.kind === "llm_call") llmEvents.push(ev.detail || {});
    timeline.append(h("li", { dataset: { kind: ev.kind } },
      h("time", { datetime: ev.at, title: localTime(ev.at) }, localClock(ev.at)),
      h("span", { class: "kind" }, ev.kind), ev.attempt ? h("span", { class: "muted" }, ` · attempt ${ev.attempt}`) : null,
      detailText(ev) ? h("div", { class: "muted" }, detailText(ev)) : null));
  }

  function onEvent(ev) {
    addEvent(ev);
    if (!job) return;
    // The same reading of an event as the jobs table's (a success is 100 %, whatever the
    // last report said), so the page never shows a finished job short of its end.
    for (const [field, value] of Object.entries(patchOf(ev))) if (value !== undefined) job[field] = value;
    render(job);
  }

  function renderCalls() {
    const list = llmEvents.length ? llmEvents : callsIn(job && job.result);
    if (!list.length) { fill(calls, h("p", { class: "muted" }, "No LLM calls recorded yet.")); return; }
    fill(calls, h("div", { class: "scroll" }, h("table", { class: "calls" },
      h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Lane"), h("th", { class: "num" }, "Input"),
        h("th", { class: "num" }, "Output"), h("th", { class: "num" }, "Cost"), h("th", { class: "num hide-sm" }, "Latency"))),
      h("tbody", {}, list.map((c) => h("tr", {}, h("td", {}, c.step || c.model || "—"), h("td", {}, c.lane),
        h("td", { class: "num" }, tokens(c.input_tokens)), h("td", { class: "num" }, tokens(c.output_tokens)),
        h("td", { class: "num" }, usd(c.cost_usd)),
        h("td", { class: "num hide-sm" }, c.latency_ms !== undefined ? `${count(c.latency_ms)} ms` : seconds(c.latency_s))))))));
  }

  async function act(label, fn) {
    try { render(await fn()); toast(label); } catch (err) { toast(`${err.code}: ${err.message}`); }
  }

  function render(next) {
    const first = job === null;
    const focused = head.contains(document.activeElement) ? document.activeElement.id : null;
    job = next;
    const terminal = TERMINAL.has(job.status);
    const u = job.usage || {};
    fill(head, 
      h("h1", {}, `${job.type} `, badge(job.status)),
      h("p", { class: "muted" }, `Job ${job.job_id}`),
      bar(job.progress, { big: true, label: "job progress" }),
      h("p", { class: "progress-text" }, `${job.progress} %`, job.message ? ` — ${job.message}` : ""),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "danger", id: "cancel", disabled: terminal, title: terminal ? `the job has ended (${job.status})` : "stop the job at its next step", onclick: () => act("Cancel requested", () => api(`/v1/jobs/${jobId}`, { method: "DELETE" })) }, "Cancel"),
        h("button", { type: "button", class: "secondary", id: "retry", disabled: job.status !== "failed", title: job.status === "failed" ? "run it again with a fresh attempt budget" : "only failed jobs can be retried", onclick: () => act("Replayed", () => api(`/v1/jobs/${jobId}/retry`, { method: "POST" }).then((j) => { stop && stop(); stop = start(); return j; })) }, "Retry")),
      job.error ? h("div", { class: "card error", role: "alert" }, h("strong", {}, job.error.code), `: ${job.error.message}`) : null,
      h("dl", { class: "card grid" },
        h("div", {}, h("dt", {}, "Priority"), h("dd", {}, job.priority)),
        session.admin && h("div", {}, h("dt", {}, "Tenant"), h("dd", {}, job.tenant)),
        h("div", {}, h("dt", {}, "Attempts"), h("dd", {}, `${job.attempts} of ${job.max_attempts}`)),
        h("div", {}, h("dt", {}, "Created"), h("dd", {}, localTime(job.created_at))),
        h("div", {}, h("dt", {}, "Started"), h("dd", {}, localTime(job.started_at))),
        h("div", {}, h("dt", {}, "Finished"), h("dd", {}, localTime(job.finished_at))),
        h("div", {}, h("dt", {}, "Duration"), h("dd", {}, seconds(duration(job)))),
        h("div", {}, h("dt", {}, "Tokens"), h("dd", {}, `${tokens(u.input_tokens)} in, ${tokens(u.output_tokens)} out`)),
        h("div", {}, h("dt", {}, "Cost"), h("dd", {}, usd(u.cost_usd)))));
    if (first || terminal || job.result) fill(result, renderResult(job));
    renderCalls();
    setBar(head.querySelector(".bar"), job.progress);
    if (focused) head.querySelector(`#${focused}`)?.focus();
  }

  function start() {
    const afterId = seen.size ? String(Math.max(...[...seen].filter(Number.isFinite))) : null;
    return followJob(jobId, {
      afterId, onEvent, reload,
      onJob: (j) => {
        render(j);
        // This API streams whole jobs: read the timeline again for what changed.
        api(`/v1/jobs/${encodeURIComponent(jobId)}/history`).then((evs) => evs.forEach(addEvent)).catch(() => {});
      },
    });
  }

  root.append(head,
    h("section", { class: "card", "aria-labelledby": "h-result" }, h("h2", { id: "h-result" }, "Result"), result),
    h("section", { class: "card", "aria-labelledby": "h-calls" }, h("h2", { id: "h-calls" }, "LLM calls"), calls),
    h("section", { class: "card", "aria-labelledby": "h-timeline" }, h("h2", { id: "h-timeline" }, "Timeline"), timeline));
  Promise.all([reload(), api(`/v1/jobs/${encodeURIComponent(jobId)}/history`)])
    .then(([, evs]) => { evs.forEach(addEvent); stop = start(); })
    .catch((err) => fill(root, h("h1", {}, "Job"), errorLine(err)));
  return () => { if (stop) stop(); };
}
