"""Self-contained HTML reports: PNG figures embedded as base64, tables from DataFrames."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #1f5fa8;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:1.8em;color:#1f5fa8}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0 1.2em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#eef3f9}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
.meta{color:#666;font-size:.85em}
.tw{overflow-x:auto;max-width:100%}
.note{background:#f7f7f2;border-left:4px solid #e0b000;padding:.5em 1em;font-size:.9em}
.green{background:#d8f0dd}.yellow{background:#fff2c2}.red{background:#f6d2d0}
"""


@dataclass
class Report:
    """An HTML report assembled section by section."""

    title: str
    subtitle: str = ""
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, css: str = "") -> None:
        cls = f' class="{css}"' if css else ""
        self.parts.append(f"<p{cls}>{text}</p>")

    def bullets(self, items: Sequence[str]) -> None:
        self.parts.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")

    def figure(self, png: Path, caption: str) -> None:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        self.parts.append(f'<figure><img alt="{html.escape(caption)}" '
                          f'src="data:image/png;base64,{data}"/>'
                          f"<figcaption>{html.escape(caption)} ({png.name})</figcaption></figure>")

    def table(self, df: pd.DataFrame, float_format: str = "{:,.4g}", max_rows: int = 60) -> None:
        d = df.head(max_rows)
        styled = d.to_html(index=False, border=0, na_rep="-", escape=True,
                           float_format=lambda x: float_format.format(x))
        for z in ("green", "yellow", "red"):
            styled = styled.replace(f"<td>{z}</td>", f'<td class="{z}">{z}</td>')
        self.parts.append(f'<div class="tw">{styled}</div>')
        if len(df) > max_rows:
            self.text(f"({len(df) - max_rows} more rows in the data files)", "meta")

    def render(self) -> str:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1><p class=\"meta\">{self.subtitle} - "
                f"generated {now} by marginproof</p>" + "\n".join(self.parts) + "</body></html>")

    def write(self, path: Path) -> Path:
        path.write_text(self.render(), encoding="utf-8")
        return path
