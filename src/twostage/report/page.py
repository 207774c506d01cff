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


@dataclass
class Section:
    title: str
    blocks: list[Text | Table | Figure] = field(default_factory=list)
    level: int = 2

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def display(df: pd.DataFrame) -> pd.DataFrame:
    """Round for reading (the CSV keeps full precision); empty cells instead of NaN."""
    return df.round(4).astype(object).where(df.notna(), "")


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_block(block: Text | Table | Figure) -> str:
    if isinstance(block, Text):
        return f"<pre>{_esc(block.text)}</pre>" if block.code else f"<p>{_esc(block.text)}</p>"
    if isinstance(block, Table):
        table = display(block.frame).to_html(index=False, escape=True, border=0)
        link = f'<p class="csv"><a href="{_esc(block.csv)}">CSV</a></p>' if block.csv else ""
        return f'<div class="scroll">{table}</div>{link}'
    return (
        f'<figure><img src="{_esc(block.src)}" alt="{_esc(block.caption)}">'
        f"<figcaption>{_esc(block.caption)}</figcaption></figure>"
    )


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    ".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:85%}"
    "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
    "th{position:sticky;top:0;background:#f6f6f6}"
    "figure{display:inline-block;margin:1em;vertical-align:top}"
    "img{image-rendering:pixelated;max-width:100%}"
    "figcaption{font-size:85%;max-width:440px}pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"
    "nav a{margin-right:1em}.csv{font-size:80%}"
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


def _md_block(block: Text | Table | Figure) -> str:
    if isinstance(block, Text):
        return f"```yaml\n{block.text.rstrip()}\n```\n" if block.code else f"{block.text}\n"
    if isinstance(block, Table):
        link = f"\n[CSV]({block.csv})\n" if block.csv else ""
        return display(block.frame).to_markdown(index=False) + "\n" + link  # tabulate: snakemake
    return f"![{block.caption}]({block.src})\n\n{block.caption}\n"


def render_markdown(title: str, intro: str, sections: list[Section]) -> str:
    out = [f"# {title}", "", intro, ""]
    for s in sections:
        out += [f"{'#' * s.level} {s.title}", ""]
        out += [_md_block(b) for b in s.blocks]
    return "\n".join(out) + "\n"
