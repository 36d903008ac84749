// Numbers with units, times in the browser's own zone.
const dt = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
const tm = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const int = new Intl.NumberFormat();

export const localTime = (iso) => (iso ? dt.format(new Date(iso)) : "—");
export const localClock = (iso) => (iso ? tm.format(new Date(iso)) : "—");
export const count = (n) => (n === null || n === undefined ? "—" : int.format(n));
export const tokens = (n) => (n === null || n === undefined ? "—" : `${int.format(n)} tok`);

export function usd(x) {
  if (x === null || x === undefined) return "unpriced";
  if (x === 0) return "$0";
  return x < 0.01 ? `$${x.toFixed(6)}` : `$${x.toFixed(4)}`;
}

export function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function duration(job) {
  if (!job.started_at) return null;
  const end = job.finished_at ? new Date(job.finished_at) : new Date();
  return (end - new Date(job.started_at)) / 1000;
}

export const perMinute = (n, what) => (n === null || n === undefined ? "no limit" : `${int.format(n)} ${what}/min`);

export const plural = (n, one, many = `${one}s`) => `${count(n)} ${n === 1 ? one : many}`;
