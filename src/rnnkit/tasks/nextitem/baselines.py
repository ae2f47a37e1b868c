"""The classical next-item baselines of the GRU4Rec papers, scored like the model, and the
loop that scores any method over padded sequences.

* ``pop``: the items most often seen in training, for everyone.
* ``session-pop``: the items seen most often so far in the sequence, then by popularity.
* ``item-knn``: items similar to the last one, by co-occurrence in training sequences:
  sim(i, j) = c_ij / (s_i^0.5 s_j^0.5 + lambda), with c_ij the sequences holding both,
  s_i those holding i, and lambda = 20 damping coincidences among rare items (the
  regularised cosine of GRU4Rec's item-kNN baseline).
* ``markov``: a first-order Markov chain: how often each item followed the last one in
  training.

Ties (an item never seen after the last one) are broken by popularity, as a practitioner
would; any tie left is broken at random in expectation by :mod:`.ranking`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from rnnkit.tasks.nextitem.ranking import RankingMetrics

BASELINES = ("pop", "session-pop", "item-knn", "markov")
KNN_LAMBDA = 20.0


class Scorer:
    """Scores of every item for the next event, position by position: ``start`` a padded
    batch, then ``observe(t)`` for t = 0, 1, ... (the item at t has been read) and
    ``scores(t)`` [B, N] for the item at t + 1 when a target needs them."""

    def start(self, items: Tensor, lengths: Tensor) -> None:
        self.items = items

    def observe(self, t: int) -> None:
        pass

    def scores(self, t: int) -> Tensor:
        raise NotImplementedError


def _rows(matrix: Tensor, index: Tensor) -> Tensor:
    """Rows of a dense or sparse COO matrix, dense [len(index), N]."""
    if matrix.is_sparse:
        return matrix.index_select(0, index).to_dense()
    return matrix[index]


class Popularity(Scorer):
    def __init__(self, popularity: np.ndarray) -> None:
        pop = torch.as_tensor(popularity, dtype=torch.float64)
        self.relative = pop / max(float(pop.max()), 1.0)  # in [0, 1]

    def scores(self, t: int) -> Tensor:
        return self.relative.expand(len(self.items), -1)


class SessionPopularity(Popularity):
    def start(self, items: Tensor, lengths: Tensor) -> None:
        super().start(items, lengths)
        self.counts = torch.zeros(len(items), len(self.relative), dtype=torch.float64)

    def observe(self, t: int) -> None:
        self.counts[torch.arange(len(self.items)), self.items[:, t]] += 1.0

    def scores(self, t: int) -> Tensor:
        return self.counts + 0.5 * self.relative  # counts first, popularity breaks ties


DENSE_LIMIT = 4096  # items up to which the item-item matrices are kept dense


def _item_matrix(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n: int) -> Tensor:
    index = torch.from_numpy(np.stack([rows, cols]))
    matrix = torch.sparse_coo_tensor(index, torch.from_numpy(values), (n, n),
                                     check_invariants=True).coalesce()
    return matrix.to_dense() if n <= DENSE_LIMIT else matrix


class MarkovChain(Popularity):
    def __init__(self, sequences: list[np.ndarray], popularity: np.ndarray) -> None:
        super().__init__(popularity)
        firsts = np.concatenate([s[:-1] for s in sequences])
        nexts = np.concatenate([s[1:] for s in sequences])
        self.transitions = _item_matrix(firsts, nexts, np.ones(len(firsts)), len(popularity))

    def scores(self, t: int) -> Tensor:
        return _rows(self.transitions, self.items[:, t]) + 0.5 * self.relative


class ItemKNN(Popularity):
    def __init__(self, sequences: list[np.ndarray], popularity: np.ndarray,
                 lam: float = KNN_LAMBDA) -> None:
        super().__init__(popularity)
        n = len(popularity)
        sets = [np.unique(s) for s in sequences]
        rows = np.concatenate([np.full(len(s), k) for k, s in enumerate(sets)])
        incidence = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([rows, np.concatenate(sets)])),
            torch.ones(len(rows), dtype=torch.float64), (len(sets), n),
            check_invariants=True).coalesce()
        with warnings.catch_warnings():  # "sparse CSR support is in beta", said inside mm
            warnings.simplefilter("ignore", UserWarning)
            common = torch.sparse.mm(incidence.t().coalesce(), incidence).coalesce()  # c_ij
        i, j = common.indices()
        support = torch.zeros(n, dtype=torch.float64).index_add_(
            0, incidence.indices()[1], incidence.values())  # s_i
        values = common.values() / (support[i].sqrt() * support[j].sqrt() + lam)
        off = i != j
        self.similarity = _item_matrix(i[off].numpy(), j[off].numpy(), values[off].numpy(), n)

    def scores(self, t: int) -> Tensor:
        return _rows(self.similarity, self.items[:, t]) + 1e-6 * self.relative


def build_baseline(name: str, sequences: list[np.ndarray], popularity: np.ndarray) -> Scorer:
    if name == "pop":
        return Popularity(popularity)
    if name == "session-pop":
        return SessionPopularity(popularity)
    if name == "item-knn":
        return ItemKNN(sequences, popularity)
    if name == "markov":
        return MarkovChain(sequences, popularity)
    raise ValueError(f"baseline: expected one of {', '.join(BASELINES)}, got {name!r}")


def score_batch(scorer: Scorer, items: Tensor, lengths: Tensor, starts: Tensor,
                metric: RankingMetrics, exclude_seen: bool) -> None:
    """Feed every target of a padded batch to ``metric``: the item at position p >= start
    (p < length) is predicted from the items before it."""
    scorer.start(items, lengths)
    size, steps = items.shape
    seen = None
    if exclude_seen:
        seen = torch.zeros(size, len(metric.relative_popularity), dtype=torch.bool,
                           device=items.device)
    rows = torch.arange(size, device=items.device)
    for t in range(steps - 1):
        scorer.observe(t)
        if seen is not None:
            active = t < lengths
            seen[rows[active], items[active, t]] = True
        valid = (t + 1 < lengths) & (t + 1 >= starts)
        if valid.any():
            scores = scorer.scores(t)[valid]
            metric.update(scores, items[valid, t + 1], seen[valid] if seen is not None else None)
