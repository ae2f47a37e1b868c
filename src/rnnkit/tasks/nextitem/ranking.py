"""Ranking metrics of next-item prediction: Recall@K and MRR@K against every item, with
ties broken at random in expectation, and the coverage and popularity of what is shown.

For one prediction, let g be the number of items scored above the target and t the number
of other items scored exactly as high. Breaking ties at random, the target's rank is
1 + g + U with U uniform on 0..t, so (exactly, without drawing U)

    Recall@K = P(rank <= K) = clamp((K - g) / (t + 1), 0, 1)
    MRR@K    = E[1/rank; rank <= K] = (H(min(K, g + t + 1)) - H(g)) / (t + 1)  if g < K, else 0

with H(n) = 1 + 1/2 + ... + 1/n. Without ties (t = 0) these are the usual hit and
reciprocal rank. Counting ties as wins (only higher scores) would reward a method that
scores many items alike; counting them as losses would punish it.

With ``exclude`` (items already in the sequence, for data where an item is never chosen
twice, such as ratings), excluded items cannot be recommended; a target that is excluded
counts as a miss.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

CUTOFFS = (5, 10, 20)


def harmonic(n: int) -> Tensor:
    """H(0..n) as float64 [n + 1]."""
    return torch.cat([torch.zeros(1, dtype=torch.float64),
                      torch.cumsum(1.0 / torch.arange(1, n + 1, dtype=torch.float64), 0)])


def rank_counts(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(g, t): items scored above each row's target, and other items tied with it.

    Args: scores [M, N] (excluded items at -inf); targets int64 [M].
    Raises ValueError on a NaN score: it would compare as neither above nor below.
    """
    if torch.isnan(scores).any():
        raise ValueError("the scores hold NaN; the model's weights are not finite (did "
                         "training diverge?)")
    own = scores.gather(1, targets.view(-1, 1))  # [M, 1]
    greater = (scores > own).sum(1)
    ties = (scores == own).sum(1) - 1
    return greater, ties


def recall_mrr(greater: Tensor, ties: Tensor, k: int, table: Tensor) -> tuple[Tensor, Tensor]:
    """Recall@k and MRR@k per prediction (float64 [M]) from :func:`rank_counts`;
    ``table`` is :func:`harmonic` of at least the number of items."""
    g, t = greater.to(torch.float64), ties.to(torch.float64)
    recall = ((k - g) / (t + 1)).clamp(0.0, 1.0)
    top = torch.minimum(torch.full_like(greater, k), greater + ties + 1)
    mrr = (table[top] - table[greater.clamp(max=k)]) / (t + 1)
    return recall, torch.where(greater < k, mrr, torch.zeros_like(mrr))


class RankingMetrics(Metric):
    """Recall@K, MRR@K (K in ``cutoffs``), coverage@K and popularity@K over predictions.

    ``coverage`` is the share of all items that appear in at least one top-K list;
    ``popularity`` the mean, over top-K lists, of their items' training counts divided
    by the most popular item's (GRU4Rec's popularity bias measure; 1 = the most popular).
    """

    full_state_update = False

    def __init__(self, popularity: Tensor, cutoffs: tuple[int, ...] = CUTOFFS) -> None:
        super().__init__()
        self.cutoffs = tuple(cutoffs)
        self.register_buffer("relative_popularity",
                             popularity.to(torch.float64) / max(float(popularity.max()), 1.0),
                             persistent=False)
        self._table = harmonic(len(popularity) + 1)
        n = len(self.cutoffs)
        self.add_state("recall", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("mrr", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("shown", torch.zeros(len(popularity), dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("popular", torch.zeros(1, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(1, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: Tensor, targets: Tensor, exclude: Tensor | None = None) -> None:
        """scores [M, N]; targets [M]; exclude [M, N] bool or None."""
        if not len(targets):
            return
        missed = None
        if exclude is not None:
            missed = exclude.gather(1, targets.view(-1, 1)).squeeze(1)
            scores = scores.masked_fill(exclude, float("-inf"))
        greater, ties = rank_counts(scores, targets)
        table = self._table.to(scores.device)
        for i, k in enumerate(self.cutoffs):
            recall, mrr = recall_mrr(greater, ties, k, table)
            if missed is not None:
                recall, mrr = recall.masked_fill(missed, 0.0), mrr.masked_fill(missed, 0.0)
            self.recall[i] += recall.sum()
            self.mrr[i] += mrr.sum()
        k = min(max(self.cutoffs), scores.shape[1])
        top = scores.topk(k, dim=1).indices  # [M, k]
        self.shown.index_add_(0, top.reshape(-1),
                              torch.ones(top.numel(), dtype=torch.float64, device=top.device))
        self.popular += self.relative_popularity[top].mean(1).sum()
        self.count += len(targets)

    def compute(self) -> dict[str, Tensor]:
        n = self.count.clamp(min=1.0)
        out = {}
        for i, k in enumerate(self.cutoffs):
            out[f"recall{k}"] = self.recall[i] / n
            out[f"mrr{k}"] = self.mrr[i] / n
        k = max(self.cutoffs)
        out[f"coverage{k}"] = (self.shown > 0).to(torch.float64).mean()
        out[f"popularity{k}"] = self.popular[0] / n
        return out
