"""A small Markdown-to-HTML converter for the report (headings, paragraphs, lists, pipe tables,
code blocks, images embedded as base64 so the HTML file is self-contained)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    "code,pre{background:#f4f4f4}pre{padding:.6em;overflow-x:auto}"
)


def _inline(text: str, base: Path) -> str:
    def image(m: re.Match) -> str:
        alt, src = m.group(1), m.group(2)
        path = base / src
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode()
            src = f"data:image/png;base64,{data}"
        return f'<img alt="{html.escape(alt)}" src="{src}">'

    out = html.escape(text, quote=False)
    out = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", image, out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return out


def markdown_to_html(markdown: str, base: Path, title: str = "punmri report") -> str:
    """Convert the report's Markdown subset to a standalone HTML page."""
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1 : j])) + "</pre>")
            i = j + 1
            continue
        if m := re.match(r"(#{1,4}) (.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2), base)}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            header, body = rows[0], [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c, base)}</th>" for c in header))
            for r in body:
                out.append("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in r) + "</tr>")
            out.append("</table>")
            continue
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{_inline(lines[i][2:], base)}</li>")
                i += 1
            out.append("</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line, base)}</p>")
        i += 1
    body = "\n".join(out)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )
