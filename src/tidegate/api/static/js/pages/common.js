// Pieces several pages share: status badges, progress bars, the jobs table.
import { h } from "../dom.js";
import { duration, localTime, seconds, usd } from "../format.js";

export const STATUSES = ["queued", "running", "retrying", "succeeded", "failed", "cancelled"];

export const badge = (status) => h("span", { class: `status ${status}`, "data-status": status }, status);

export function bar(progress, { big = false, label = "progress" } = {}) {
  const pct = Math.max(0, Math.min(100, Math.round(progress || 0)));
  return h("div", { class: big ? "bar big" : "bar", role: "progressbar", "aria-label": label,
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, title: `${pct} %` },
  h("span", { style: { width: `${pct}%` } }));
}

export function setBar(el, progress) {
  const pct = Math.max(0, Math.min(100, Math.round(progress || 0)));
  el.setAttribute("aria-valuenow", pct);
  el.title = `${pct} %`;
  el.firstChild.style.width = `${pct}%`;
}

export function errorLine(err) {
  return h("p", { class: "error", role: "alert" }, `${err.code ? `${err.code}: ` : ""}${err.message}`);
}

// A name that may wrap after its underscores (startup_report), on a narrow screen only.
export function breakable(name) {
  const parts = String(name).split("_");
  return parts.flatMap((part, i) => (i < parts.length - 1 ? [`${part}_`, h("wbr")] : [part]));
}

// columns: which optional columns to show
export function jobsTable(jobs, { tenants = false, extra = null } = {}) {
  const head = h("tr", {}, h("th", {}, "Job"), h("th", {}, "Status"), h("th", {}, "Type"),
    h("th", { class: "hide-sm" }, "Priority"), tenants && h("th", { class: "hide-sm" }, "Tenant"),
    h("th", { class: "hide-sm" }, "Created"), h("th", { class: "num hide-sm" }, "Duration"),
    h("th", { class: "num hide-sm" }, "Cost"), h("th", {}, "Progress"), extra && h("th", {}, ""));
  const rows = jobs.map((j) => jobRow(j, { tenants, extra }));
  return h("div", { class: "scroll" }, h("table", { class: "jobs" }, h("thead", {}, head), h("tbody", {}, rows)));
}

export function jobRow(j, { tenants = false, extra = null } = {}) {
  const row = h("tr", { dataset: { jobId: j.job_id } },
    h("td", {}, h("a", { href: `#/jobs/${j.job_id}`, title: j.job_id }, j.job_id.slice(0, 8))),
    h("td", { class: "status-cell" }, badge(j.status)),
    h("td", {}, breakable(j.type)), h("td", { class: "hide-sm" }, j.priority),
    tenants && h("td", { class: "hide-sm" }, j.tenant ?? "—"),
    h("td", { class: "hide-sm" }, h("time", { datetime: j.created_at }, localTime(j.created_at))),
    h("td", { class: "num hide-sm" }, seconds(duration(j))),
    h("td", { class: "num hide-sm" }, usd(j.usage ? j.usage.cost_usd : null)),
    h("td", { class: "progress-cell" }, bar(j.progress, { label: `progress of ${j.job_id.slice(0, 8)}` })),
    extra && h("td", {}, extra(j)));
  return row;
}

export function patchRow(row, patch) {
  if (patch.status) row.querySelector(".status-cell").replaceChildren(badge(patch.status));
  if (patch.progress !== undefined) setBar(row.querySelector(".bar"), patch.progress);
}
