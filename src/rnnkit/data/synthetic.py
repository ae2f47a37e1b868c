"""The classic long-range-dependency problems, generated from a seed.

* Adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015): each
  step carries a value drawn from U(0, 1) and a marker; exactly two steps are marked,
  one in each half of the sequence; the target is the sum of the two marked values.
  Always predicting 1 (the mean of the sum) scores MSE = Var(sum) = 2/12 = 1/6 ~ 0.167.
* Copy memory (Arjovsky et al. 2016): 10 symbols drawn from {1..8}, then ``delay - 1``
  blanks (0), a delimiter (9), and 10 more blanks; the target is blank everywhere except
  the last 10 steps, which must reproduce the 10 symbols. A memoryless model that
  predicts blanks and then guesses uniformly scores cross-entropy 10 log 8 / (delay + 20).
"""

from __future__ import annotations

import math

import torch

COPY_SYMBOLS = 10  # symbols to remember
COPY_ALPHABET = 8  # data symbols 1..8; 0 is blank, 9 the delimiter
COPY_CLASSES = COPY_ALPHABET + 2


def adding_problem(n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` adding-problem sequences.

    Returns:
        x: [n, length, 2] float32, (value, marker) per step;
        y: [n] float32, the sum of the two marked values.
    """
    if length < 2:
        raise ValueError(f"length: expected at least 2 steps, got {length}")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, markers], dim=-1), y


def adding_baseline_mse() -> float:
    """MSE of always predicting 1: the variance of the sum of two U(0, 1) values."""
    return 2.0 / 12.0


def copy_memory(n: int, delay: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` copy-memory sequences of length ``delay + 20``.

    Returns:
        x: [n, delay + 20] int64 input symbols; y: [n, delay + 20] int64 targets.
    """
    if delay < 1:
        raise ValueError(f"delay: expected at least 1 step, got {delay}")
    g = torch.Generator().manual_seed(seed)
    total = delay + 2 * COPY_SYMBOLS
    symbols = torch.randint(1, COPY_ALPHABET + 1, (n, COPY_SYMBOLS), generator=g)
    x = torch.zeros(n, total, dtype=torch.long)
    x[:, :COPY_SYMBOLS] = symbols
    x[:, COPY_SYMBOLS + delay - 1] = COPY_ALPHABET + 1  # the delimiter: "now repeat"
    y = torch.zeros(n, total, dtype=torch.long)
    y[:, -COPY_SYMBOLS:] = symbols
    return x, y


def copy_baseline_cross_entropy(delay: int) -> float:
    """Memoryless baseline: blanks, then a uniform guess over 8 symbols for 10 steps."""
    return COPY_SYMBOLS * math.log(COPY_ALPHABET) / (delay + 2 * COPY_SYMBOLS)
