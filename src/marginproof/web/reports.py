"""Report library: backtest and stress reports found in a directory (shell: reads files).

A report is either one file (``.html``, ``.md``, ``.json``, ``.csv``, ``.txt``, ``.svg``,
``.png``) or a folder whose main file is ``index.html``, ``report.html``, ``report.md`` or
``README.md`` (its other files, e.g. charts, are served next to it). The kind is ``backtest`` or
``stress`` from the first folder name (``reports/backtest/...``), the path or the title (the
reports of ``marginproof backtest|stress --out DIR`` are folders with a ``report.html`` titled
"Backtest of ..." / "Stress replay of ..."), else ``other``. Files are served read-only, only
from inside the directory (symbolic links that leave it, hidden files and other extensions are
refused).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginproof.errors import InputError

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8", ".json": "application/json",
    ".csv": "text/csv; charset=utf-8", ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
}
REPORT_EXTS = (".html", ".htm", ".md", ".json", ".csv", ".txt", ".svg", ".png")
MAIN_FILES = ("index.html", "report.html", "report.md", "README.md")
KINDS = ("backtest", "stress")
MAX_BYTES = 20_000_000
MAX_REPORTS = 2000
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Report:
    """One report: ``path`` (relative, ``/``-separated) is its id."""

    path: str
    title: str
    kind: str
    format: str
    size_bytes: int
    modified_ms: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _kind(rel: Path, title: str) -> str:
    """``backtest``/``stress`` from the first folder, else the path, else the title."""
    parts = [p.lower() for p in rel.parts]
    if parts and parts[0] in KINDS:
        return parts[0]
    for text in (rel.as_posix().lower(), title.lower()):
        for k in KINDS:
            if k in text:
                return k
    return "other"


def _title(path: Path, fmt: str) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return path.stem
    if fmt == "html":
        m = _TITLE.search(head)
        if m:
            return html.unescape(m.group(1).decode("utf-8", "replace")).strip()[:200]
    elif fmt == "md":
        for line in head.decode("utf-8", "replace").splitlines():
            if line.startswith("# "):
                return line[2:].strip()[:200]
    elif fmt == "json":
        try:
            obj = json.loads(path.read_bytes()) if path.stat().st_size < 2_000_000 else None
        except (OSError, ValueError):
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("title"), str):
            return str(obj["title"])[:200]
    stem = path.parent.name if path.name in MAIN_FILES else path.stem
    return stem.replace("_", " ").replace("-", " ")


class ReportLibrary:
    """Reports under ``root`` (see module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _report(self, main: Path) -> Report:
        rel = main.relative_to(self.root)
        ext = main.suffix.lower().lstrip(".")
        fmt = "html" if ext == "htm" else ext
        st = main.stat()
        title = _title(main, fmt)
        return Report(rel.as_posix(), title, _kind(rel, title), fmt, st.st_size,
                      int(st.st_mtime * 1000))

    def reports(self) -> list[Report]:
        """Every report, newest first (at most :data:`MAX_REPORTS`)."""
        if not self.root.is_dir():
            return []
        out: list[Report] = []
        self._scan(self.root, 0, out)
        out.sort(key=lambda r: (-r.modified_ms, r.path))
        return out[:MAX_REPORTS]

    def _scan(self, d: Path, depth: int, out: list[Report]) -> None:
        try:
            children = sorted(d.iterdir())
        except OSError:
            return
        mains = [d / m for m in MAIN_FILES if (d / m).is_file()]
        if depth > 0 and mains:  # a report folder: one entry, its other files are assets
            out.append(self._report(mains[0]))
            return
        for c in children:
            if c.name.startswith(".") or len(out) >= MAX_REPORTS:
                continue
            if c.is_dir() and not c.is_symlink() and depth < 3:
                self._scan(c, depth + 1, out)
            elif c.is_file() and c.suffix.lower() in REPORT_EXTS:
                out.append(self._report(c))

    def resolve(self, rel: str) -> Path:
        """The file ``rel`` inside the root; anything else raises :class:`InputError`."""
        if not rel or len(rel) > 512 or "\\" in rel or "\x00" in rel:
            raise InputError("path", "invalid report path")
        parts = rel.split("/")
        if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise InputError("path", "invalid report path")
        path = self.root / Path(*parts)
        if path.suffix.lower() not in MEDIA_TYPES:
            raise InputError("path", "not a report file type")
        try:
            real = path.resolve(strict=True)
            root = self.root.resolve(strict=True)
        except (OSError, RuntimeError):
            raise InputError("path", "no such report file") from None
        if not real.is_relative_to(root) or not real.is_file():
            raise InputError("path", "no such report file")
        if real.stat().st_size > MAX_BYTES:
            raise InputError("path", "report file too large to serve")
        return real

    @staticmethod
    def media_type(path: Path) -> str:
        return MEDIA_TYPES[path.suffix.lower()]
