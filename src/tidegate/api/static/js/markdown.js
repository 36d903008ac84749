// A small Markdown renderer that builds DOM nodes directly: headings, paragraphs, lists,
// block quotes, code, rules, **bold**, *italic*, `code` and [links](https://...). Text is
// inserted as text nodes and only http(s) links are made, so a report cannot inject markup.
import { h } from "./dom.js";

const INLINE = /(\*\*[^*]+\*\*|__[^_]+__|\*[^*\s][^*]*\*|_[^_\s][^_]*_|`[^`]+`|\[[^\]]+\]\([^)\s]+\))/;

function inline(text) {
  const out = [];
  for (const part of text.split(INLINE)) {
    if (!part) continue;
    if (/^(\*\*|__)/.test(part) && part.length > 4) out.push(h("strong", {}, inline(part.slice(2, -2))));
    else if (/^`/.test(part) && part.length > 2) out.push(h("code", {}, part.slice(1, -1)));
    else if (/^[*_]/.test(part) && part.length > 2) out.push(h("em", {}, inline(part.slice(1, -1))));
    else if (/^\[/.test(part)) {
      const m = part.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
      if (m && /^https?:\/\//i.test(m[2])) out.push(h("a", { href: m[2], rel: "noopener noreferrer", target: "_blank" }, m[1]));
      else out.push(part);
    } else out.push(part);
  }
  return out;
}

export function renderMarkdown(src) {
  const root = h("div", { class: "markdown" });
  const lines = String(src).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    let m;
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      i++;
      root.append(h("pre", {}, h("code", {}, code.join("\n"))));
    } else if ((m = line.match(/^(#{1,6})\s+(.*)$/))) {
      root.append(h(`h${m[1].length}`, {}, inline(m[2])));
      i++;
    } else if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      root.append(h("hr"));
      i++;
    } else if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = h(ordered ? "ol" : "ul");
      while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
        list.append(h("li", {}, inline(lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ""))));
        i++;
      }
      root.append(list);
    } else if (line.startsWith(">")) {
      const quote = [];
      while (i < lines.length && lines[i].startsWith(">")) quote.push(lines[i++].replace(/^>\s?/, ""));
      root.append(h("blockquote", {}, inline(quote.join(" "))));
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|```|>|\s*([-*+]|\d+[.)])\s+)/.test(lines[i])) para.push(lines[i++]);
      root.append(h("p", {}, inline(para.join(" "))));
    }
  }
  return root;
}
