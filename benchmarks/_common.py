"""Helpers shared by the benchmark scripts: a printed table and a JSON record."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyformer.book.profiling import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def write_json(name: str, command: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    record = {
        "benchmark": name,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **payload,
    }
    suffix = "-gpu" if record["machine"]["cuda"] else ""
    path = RESULTS / f"{name}{suffix}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path
