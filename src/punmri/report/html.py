"""A small Markdown-to-HTML converter for the report (headings, paragraphs, lists, pipe tables,
code blocks) whose images are embedded, so that the HTML file reads on its own.

Figures are embedded as light previews (:func:`embed_figure`: at most :data:`EMBED_MAX_WIDTH`
pixels wide and :data:`EMBED_MAX_PIXELS` pixels, JPEG or 256-colour PNG, whichever is smaller),
each linking to its full-resolution file in ``figures/``: a demo run with 17 reconstruction grids
stays around a megabyte instead of 10-16 MB.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

#: Widest embedded preview (pixels): about the report's text column (1070 CSS pixels).
EMBED_MAX_WIDTH = 1000

#: Most pixels of an embedded preview (a reconstruction grid of three slices: about 590 x 670).
EMBED_MAX_PIXELS = 400_000

#: JPEG quality of the previews (1-95).
EMBED_JPEG_QUALITY = 75

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "color:#222}.table{overflow-x:auto;margin:1em 0}table{border-collapse:collapse;"
    "font-size:.9em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right;"
    "white-space:nowrap}th{background:#eee}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}code,pre{background:#f4f4f4}pre{padding:.6em;overflow-x:auto}"
)


def preview_size(width: int, height: int) -> tuple[int, int]:
    """The size of a figure's preview: ``(width, height)`` scaled down (never up, aspect kept to
    the pixel) to at most :data:`EMBED_MAX_WIDTH` wide and :data:`EMBED_MAX_PIXELS` pixels."""
    w = max(1, min(width, EMBED_MAX_WIDTH, math.isqrt(EMBED_MAX_PIXELS * width // height)))
    return w, max(1, height * w // width)


def embed_figure(path: Path) -> str:
    """A ``data:`` URI of the figure at ``path`` (any image Pillow reads) as a light preview.

    The image is flattened on white, resized to :func:`preview_size` and encoded both as JPEG
    (quality :data:`EMBED_JPEG_QUALITY`; small for images such as reconstruction grids) and as
    256-colour PNG (small and sharp for line plots); the smaller encoding is kept.
    """
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    image = Image.new("RGB", rgba.size, "white")
    image.paste(rgba, mask=rgba.getchannel("A"))
    size = preview_size(*image.size)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    jpeg, png = io.BytesIO(), io.BytesIO()
    image.save(jpeg, "JPEG", quality=EMBED_JPEG_QUALITY, optimize=True)
    image.quantize(256).save(png, "PNG", optimize=True)
    mime, data = min(("jpeg", jpeg), ("png", png), key=lambda c: c[1].tell())
    return f"data:image/{mime};base64,{base64.b64encode(data.getvalue()).decode()}"


def _inline(text: str, base: Path) -> str:
    def image(m: re.Match) -> str:
        alt, src = m.group(1).replace('"', "&quot;"), m.group(2)  # text already escaped
        path = base / src
        try:
            preview = embed_figure(path) if path.is_file() else None
        except UnidentifiedImageError:  # not an image Pillow reads: linked, not embedded
            preview = None
        if preview is None:
            return f'<img alt="{alt}" src="{src}">'
        return (
            f'<a href="{src}" title="full resolution: {src}"><img alt="{alt}" src="{preview}"></a>'
        )

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
            cells = "".join(f"<th>{_inline(c, base)}</th>" for c in header)
            out.append(f'<div class="table"><table><tr>{cells}</tr>')
            for r in body:
                out.append("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in r) + "</tr>")
            out.append("</table></div>")
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
