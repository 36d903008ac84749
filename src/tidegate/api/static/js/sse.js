// Server-sent events over fetch(), so the API key travels in the Authorization header
// (EventSource cannot send one). Parses the text/event-stream format and reconnects with
// Last-Event-ID after a dropped connection.
import { authHeaders } from "./api.js";

// The key was revoked or has expired (at connect, or while the stream was open): the page
// goes back to sign-in at once, as a REST call answered 401 does.
const signedOut = () => window.dispatchEvent(new Event("tidegate:unauthorized"));

export class StreamUnavailable extends Error {
  constructor(status) { super(`event stream answered ${status}`); this.status = status; }
}

function parseBlock(block) {
  const ev = { id: null, event: "message", data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") ev.data.push(value);
    else if (field === "event") ev.event = value;
    else if (field === "id") ev.id = value;
  }
  return ev.data.length ? { id: ev.id, event: ev.event, data: ev.data.join("\n") } : null;
}

// Calls onEvent({id, event, data}) per message. Resolves when onEvent returns false (the
// caller has seen the end: a terminal event) or after an `error` event (a revoked key);
// rejects with StreamUnavailable when the route is missing or refuses. A connection that
// drops or is closed by the server before then (an API process restarting) is made again
// after the server's `retry:` hint, resuming after the last id seen, unless `onClosed()`
// (awaited) answers false: the caller knows there is nothing more to come. `signal` aborts it.
export async function stream(path, { onEvent, signal, lastEventId = null, retries = 5, onClosed = null }) {
  let last = lastEventId;
  let retryMs = 1000;
  const pause = (ms) => new Promise((r) => setTimeout(r, ms));
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (last) headers["Last-Event-ID"] = last;
      res = await fetch(path, { headers, signal, cache: "no-store" });
    } catch (e) {
      if (signal && signal.aborted) return;
      if (attempt >= retries) throw e;
      await pause(retryMs * (attempt + 1));
      continue;
    }
    const type = res.headers.get("content-type") || "";
    if (res.status === 401) signedOut();
    if (!res.ok || !type.startsWith("text/event-stream")) throw new StreamUnavailable(res.status);
    attempt = 0;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break; // closed by the server before the end: connect again
        buf += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const hint = /^retry: ?(\d+)$/m.exec(block);
          if (hint) retryMs = Math.min(30000, Math.max(100, Number(hint[1])));
          const ev = parseBlock(block);
          if (!ev) continue;
          if (ev.id) last = ev.id;
          if (ev.event === "error" && /"code":\s*"unauthorized"/.test(ev.data)) signedOut();
          if (onEvent(ev) === false || ev.event === "error") { reader.cancel(); return; }
        }
      }
    } catch (e) {
      if (signal && signal.aborted) return;
      // dropped mid-stream: reconnect and resume after the last id seen
    }
    if (signal && signal.aborted) return;
    if (onClosed && !(await onClosed())) return;
    await pause(retryMs);
  }
}
