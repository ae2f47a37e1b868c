"""Decoding CTC outputs (Graves et al. 2006): best path and prefix beam search.

Both read log-probabilities ``[B, T, V]`` over the blank (label 0) and the labels, with
each sequence's number of valid frames, and return label ids. A labelling's probability
under CTC is the sum over every frame-level path that collapses to it (repeats merged,
then blanks dropped); best-path decoding collapses the single most likely path, while
the prefix beam search (Hannun et al. 2014, without a language model) keeps the ``beam``
most probable labellings, each with its probability summed over the paths that end in a
blank and those that end in its last label.
"""

from __future__ import annotations

import math

import torch

BLANK = 0  # CTC's blank label; the others are 1..V-1
_NEG = -math.inf


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best-path decoding: the most likely label per frame, repeats merged, blanks dropped."""
    best = log_probs.argmax(-1).tolist()
    out = []
    for path, n in zip(best, lengths.tolist()):
        labels, previous = [], None
        for label in path[:n]:
            if label != previous and label != BLANK:
                labels.append(label)
            previous = label
        out.append(labels)
    return out


def _add(a: float, b: float) -> float:
    """log(exp(a) + exp(b))."""
    if a == _NEG:
        return b
    if b == _NEG:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: torch.Tensor, beam: int,
                       prune: float = math.log(1e-4)) -> tuple[list[int], float]:
    """The most probable labelling found by a prefix beam search of width ``beam``.

    Args:
        log_probs: ``[T, V]`` of one sequence (its valid frames only).
        beam: labellings kept after each frame.
        prune: labels less likely than this log-probability at a frame are not tried there
            (the blank always is); ``-inf`` tries every label.

    Returns:
        The label ids and the labelling's log-probability (summed over its paths; exact
        when no labelling was ever pruned).
    """
    if beam < 1:
        raise ValueError(f"beam: expected at least 1, got {beam}")
    rows = log_probs.detach().double().cpu().tolist()
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, _NEG)}  # (ends blank, not)
    for row in rows:
        tried = [c for c, p in enumerate(row) if c != BLANK and p >= prune]
        following: dict[tuple[int, ...], list[float]] = {}
        entry = following.setdefault
        for prefix, (blank, label) in beams.items():
            total = _add(blank, label)
            here = entry(prefix, [_NEG, _NEG])
            here[0] = _add(here[0], total + row[BLANK])
            if prefix:  # the last label again, merged into it
                here[1] = _add(here[1], label + row[prefix[-1]])
            for c in tried:
                grown = entry((*prefix, c), [_NEG, _NEG])
                # after the same label, a new one needs a blank between them
                before = blank if prefix and prefix[-1] == c else total
                grown[1] = _add(grown[1], before + row[c])
        ranked = sorted(following.items(), key=lambda kv: _add(*kv[1]), reverse=True)
        beams = {prefix: (b, n) for prefix, (b, n) in ranked[:beam]}
    best, (blank, label) = max(beams.items(), key=lambda kv: _add(*kv[1]))
    return list(best), _add(blank, label)


def beam_decode(log_probs: torch.Tensor, lengths: torch.Tensor, beam: int) -> list[list[int]]:
    """:func:`prefix_beam_search` of each sequence of a batch ``[B, T, V]``."""
    return [prefix_beam_search(row[:n], beam)[0] for row, n in zip(log_probs, lengths.tolist())]
