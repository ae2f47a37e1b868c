"""MkDocs hook: the speed page's tables are rendered from ``benchmarks/results/*.json`` at
build time, so a number has one home (the JSON a benchmark wrote) and the page cannot
drift from it.

A page marks a table with ``<!-- results: FILE.json -->``; the hook replaces the marker
with the file's rows as a Markdown table and a line naming the machine, versions, commit
and date the benchmark recorded. A marker naming a missing or unreadable file fails the
build (``mkdocs build --strict`` runs in the test suite).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MARKER = re.compile(r"<!-- results: ([\w.-]+\.json) -->")


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value == 0 or abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _flatten(row: dict) -> dict:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                flat[f"{key}: {inner}"] = item
        elif not isinstance(value, list):
            flat[key] = value
    return flat


def _rows(data: dict) -> list[dict]:
    """The benchmark's table: its first list of records, or a dict of per-case records."""
    for key in ("results", "cases"):
        value = data.get(key)
        if isinstance(value, list):
            return [_flatten(r) for r in value]
        if isinstance(value, dict):
            return [{"case": name, **_flatten(r if isinstance(r, dict) else {"value": r})}
                    for name, r in value.items()]
    tables = {k: v for k, v in data.items() if isinstance(v, dict) and k != "machine"
              and all(not isinstance(x, (dict, list)) for x in v.values())}
    shapes = [tuple(v) for v in tables.values()]
    if shapes:  # the measures over the same cases: one column each, one row per case
        common = max(set(shapes), key=shapes.count)
        tables = {k: v for k, v in tables.items() if tuple(v) == common}
        cases = list(next(iter(tables.values())))
        return [{"case": c, **{k: t.get(c) for k, t in tables.items()}} for c in cases]
    raise ValueError("no table of results found")


def render(path: Path) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = _rows(data)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_number(row.get(c, "")) for c in columns) + " |" for row in rows]
    m = data.get("machine", {})
    source = (f"*From `benchmarks/results/{path.name}`: {m.get('cpu', '?')}, "
              f"{m.get('cores', '?')} cores, torch {m.get('torch', '?')}, Python "
              f"{m.get('python', '?')}, rnnkit {m.get('rnnkit', '?')} at "
              f"{m.get('commit', '?')}, {m.get('date', '?')}.*")
    lines += ["", source]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    results = Path(config["docs_dir"]).parent / "benchmarks" / "results"

    def table(match: re.Match) -> str:
        path = results / match.group(1)
        if not path.is_file():
            raise FileNotFoundError(f"{page.file.src_path}: {path} does not exist")
        return render(path)

    return MARKER.sub(table, markdown)
