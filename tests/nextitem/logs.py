"""Event logs generated for the next-item tests (no fetch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def rule_table(items: int = 12, seed: int = 0) -> np.ndarray:
    """next = table[a, b]: a fixed random function of the previous two items."""
    return np.random.default_rng([seed, 99]).integers(0, items, (items, items))


def rule_log(path: Path, sessions: int = 400, length: int = 8, items: int = 12,
             seed: int = 0, prefix: str = "item",
             columns: tuple[str, str, str, str] = ("session", "item", "time", "kind")) -> Path:
    """A click log whose next item is a fixed function of the previous two (:func:`rule_table`),
    from two random first items per session; the sessions end at increasing times, a day
    apart every 40 sessions (so --split days has parts)."""
    rng = np.random.default_rng(seed)
    table = rule_table(items, seed)
    lines = [",".join(columns)]
    for s in range(sessions):
        seq = list(rng.integers(0, items, 2))
        while len(seq) < length:
            seq.append(table[seq[-2], seq[-1]])
        start = s * 86_400 / 40
        for i, item in enumerate(seq):
            lines.append(f"s{s},{prefix}{item},{start + i:.0f},view")
            if i == 3:  # a purchase in between, which --events view leaves out
                lines.append(f"s{s},{prefix}{(item + 1) % items},{start + i:.0f},buy")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
