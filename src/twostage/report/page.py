"""Render report sections to one HTML page and one Markdown file.

A section is a title plus blocks (paragraphs, tables, figures, preformatted
text); both renderers walk the same list, so the two files never disagree.
Every string that reaches the HTML goes through :func:`html.escape` (run names,
params values and metrics files are user input); the only markup is ours.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import pandas as pd

from twostage.report.figures import Figure


@dataclass
class Text:
    text: str  # plain text: escaped in HTML
    code: bool = False  # preformatted (YAML, listings)


@dataclass
class Table:
    frame: pd.DataFrame
    csv: str | None = None  # relative path of the same table as CSV
    collapsed: str | None = None  # HTML: folded away under this summary line


@dataclass
class CompactTable:
    """A table that must fit the page without scrolling: short display strings, text
    columns that may wrap, one highlighted row and some muted ones (references)."""

    frame: pd.DataFrame  # strings, already formatted
    caption: str
    text_columns: tuple[str, ...] = ()  # left-aligned, may wrap; the rest are numbers
    best: int | None = None  # row position
    muted: list[int] = field(default_factory=list)  # row positions


@dataclass
class Gallery:
    """Pictures side by side, each with its caption under it."""

    figures: list[Figure]


Block = Text | Table | CompactTable | Gallery | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def display(df: pd.DataFrame) -> pd.DataFrame:
    """Round for reading (the CSV keeps full precision); empty cells instead of NaN."""
    return df.round(4).astype(object).where(df.notna(), "")


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_compact(block: CompactTable) -> str:
    text = [c in block.text_columns for c in block.frame.columns]
    head = "".join(
        f'<th class="txt">{_esc(c)}</th>' if t else f"<th>{_esc(c)}</th>"
        for c, t in zip(block.frame.columns, text, strict=True)
    )
    rows = []
    for i, values in enumerate(block.frame.itertuples(index=False)):
        cls = "best" if i == block.best else "ref" if i in block.muted else ""
        cells = "".join(
            f'<td class="txt">{_esc(v)}</td>' if t else f"<td>{_esc(v)}</td>"
            for v, t in zip(values, text, strict=True)
        )
        rows.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return (
        f'<div class="fit"><table class="headline"><caption>{_esc(block.caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _html_figure(block: Figure) -> str:
    return (
        f'<figure><img src="{_esc(block.src)}" alt="{_esc(block.caption)}">'
        f"<figcaption>{_esc(block.caption)}</figcaption></figure>"
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<pre>{_esc(block.text)}</pre>" if block.code else f"<p>{_esc(block.text)}</p>"
    if isinstance(block, Table):
        table = display(block.frame).to_html(index=False, escape=True, border=0)
        link = f'<p class="csv"><a href="{_esc(block.csv)}">CSV</a></p>' if block.csv else ""
        out = f'<div class="scroll">{table}</div>'
        if block.collapsed:
            out = f"<details><summary>{_esc(block.collapsed)}</summary>{out}</details>"
        return out + link
    if isinstance(block, CompactTable):
        return _html_compact(block)
    if isinstance(block, Gallery):
        return f'<div class="gallery">{"".join(_html_figure(f) for f in block.figures)}</div>'
    return _html_figure(block)


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    ".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:85%}"
    "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
    "th{position:sticky;top:0;background:#f6f6f6}"
    "figure{display:inline-block;margin:1em;vertical-align:top}"
    "img{image-rendering:pixelated;max-width:100%}"
    "figcaption{font-size:85%;max-width:440px}pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"
    "nav a{margin-right:1em}.csv{font-size:80%}"
    # The headline: fits its column; text cells wrap anywhere rather than widen the table.
    "table.headline{width:100%;margin:.5em 0 1em}"
    "caption{text-align:left;font-weight:bold;padding:.3em 0}.headline .txt{text-align:left}"
    "table.headline td.txt{white-space:normal;overflow-wrap:anywhere}"
    "tr.best td{font-weight:bold;background:#e8f4e8}tr.ref td{color:#666;font-style:italic}"
    ".gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:1em}"
    ".gallery figure{margin:0}.gallery img{width:100%}.gallery figcaption{font-size:80%}"
    "summary{cursor:pointer;margin:.5em 0}"
)


def render_html(title: str, intro: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{_esc(s.title)}</a>' for s in sections if s.level == 2)
    body = [f"<h1>{_esc(title)}</h1>", f"<p>{_esc(intro)}</p>", f"<nav>{nav}</nav>"]
    for s in sections:
        body.append(f'<h{s.level} id="{s.anchor}">{_esc(s.title)}</h{s.level}>')
        body += [_html_block(b) for b in s.blocks]
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _md_gallery(block: Gallery, per_row: int = 4) -> str:
    """Rows of pictures with their captions under them (a Markdown table)."""
    out = []
    for start in range(0, len(block.figures), per_row):
        chunk = block.figures[start : start + per_row]
        out.append("| " + " | ".join(f"![{f.caption}]({f.src})" for f in chunk) + " |")
        out.append("|" + "---|" * len(chunk))
        out.append("| " + " | ".join(f.caption for f in chunk) + " |")
        out.append("")
    return "\n".join(out)


def _md_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"```yaml\n{block.text.rstrip()}\n```\n" if block.code else f"{block.text}\n"
    if isinstance(block, Table):
        link = f"\n[CSV]({block.csv})\n" if block.csv else ""
        return display(block.frame).to_markdown(index=False) + "\n" + link  # tabulate: snakemake
    if isinstance(block, CompactTable):
        # The cells are formatted already: tabulate must not reparse "32.0" into 32.
        align = ["left" if c in block.text_columns else "right" for c in block.frame.columns]
        table = block.frame.to_markdown(index=False, disable_numparse=True, colalign=align)
        return f"**{block.caption}**\n\n{table}\n"
    if isinstance(block, Gallery):
        return _md_gallery(block)
    return f"![{block.caption}]({block.src})\n\n{block.caption}\n"


def render_markdown(title: str, intro: str, sections: list[Section]) -> str:
    out = [f"# {title}", "", intro, ""]
    for s in sections:
        out += [f"{'#' * s.level} {s.title}", ""]
        out += [_md_block(b) for b in s.blocks]
    return "\n".join(out) + "\n"
