"""How a classifier's predictions are reported, the same way for every task."""

from __future__ import annotations

from typing import Any

import torch


def ranked_predictions(probs: torch.Tensor, classes: list[str], top: int) -> list[dict[str, Any]]:
    """Per row of ``probs`` [N, C]: the label, the ``top`` most likely classes with their
    probabilities, and a one-line summary such as ``pos  (pos 91.2%, neg 8.8%)``."""
    results = []
    for i, p in enumerate(probs):
        values, idx = p.topk(min(top, len(p)))
        ranked = [(classes[int(j)], float(v)) for v, j in zip(values, idx)]
        shown = ", ".join(f"{name} {prob:.1%}" for name, prob in ranked)
        results.append({"index": i, "label": ranked[0][0], "probabilities": dict(ranked),
                        "summary": f"{ranked[0][0]}  ({shown})"})
    return results
