"""CTC decoding: best path by hand-made examples, and the prefix beam search against an
enumeration of every frame-level path and against torch's CTC loss."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models.ctc import beam_decode, greedy_decode, prefix_beam_search


def _one_hot_log_probs(paths: list[list[int]], vocab: int = 4) -> torch.Tensor:
    steps = max(len(p) for p in paths)
    out = torch.full((len(paths), steps, vocab), math.log(0.01))
    for row, path in enumerate(paths):
        for t, label in enumerate(path):
            out[row, t, label] = math.log(0.97)
    return out


def test_greedy_decoding_merges_repeats_then_drops_blanks():
    paths = [[1, 1, 0, 1, 2, 2, 0, 0], [0, 0, 0, 0], [3, 0, 3, 3, 0, 3, 1, 1], [2, 2, 2, 2]]
    lengths = torch.tensor([8, 4, 8, 2])
    assert greedy_decode(_one_hot_log_probs(paths), lengths) == [[1, 1, 2], [], [3, 3, 3, 1],
                                                                 [2]]
    # frames past a sequence's length are never read
    assert greedy_decode(_one_hot_log_probs([[1, 0, 2, 3]]), torch.tensor([2])) == [[1]]


def _exact_best(log_probs: torch.Tensor) -> tuple[tuple[int, ...], float]:
    """The most probable labelling by summing every path's probability (V ** T paths)."""
    steps, vocab = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(vocab), repeat=steps):
        labels, previous = [], None
        for label in path:
            if label != previous and label != 0:
                labels.append(label)
            previous = label
        p = math.exp(sum(log_probs[t, c].item() for t, c in enumerate(path)))
        totals[tuple(labels)] = totals.get(tuple(labels), 0.0) + p
    best = max(totals, key=totals.get)
    return best, math.log(totals[best])


@pytest.mark.parametrize("seed", range(12))
def test_prefix_beam_search_finds_the_most_probable_labelling(seed):
    generator = torch.Generator().manual_seed(seed)
    steps, vocab = (5, 3) if seed % 2 else (4, 4)
    log_probs = torch.log_softmax(2 * torch.randn(steps, vocab, generator=generator,
                                                  dtype=torch.float64), -1)
    best, log_p = _exact_best(log_probs)
    found, score = prefix_beam_search(log_probs, beam=200, prune=-math.inf)
    assert tuple(found) == best
    assert score == pytest.approx(log_p, abs=1e-9)
    # torch's CTC loss is the same sum over paths, computed by its forward recursion
    target = torch.tensor([list(best)], dtype=torch.long).reshape(1, -1)
    loss = F.ctc_loss(log_probs[:, None], target, torch.tensor([steps]),
                      torch.tensor([len(best)]), reduction="sum")
    assert score == pytest.approx(-loss.item(), abs=1e-9)


def test_beam_search_beats_the_best_path_where_paths_add_up():
    # the best single path is blank, blank, blank; but "1" has more probability in total
    flat = torch.tensor([[0.5, 0.3, 0.2]] * 3, dtype=torch.float64).log()
    assert greedy_decode(flat[None], torch.tensor([3])) == [[]]
    found, score = prefix_beam_search(flat, beam=8, prune=-math.inf)
    best, log_p = _exact_best(flat)
    assert tuple(found) == best == (1,) and score == pytest.approx(log_p)
    assert log_p > 3 * math.log(0.5)  # more than the all-blank path's probability
    assert beam_decode(flat[None].float(), torch.tensor([3]), beam=8) == [[1]]
    with pytest.raises(ValueError, match="beam: expected at least 1"):
        prefix_beam_search(flat, beam=0)
