"""Ranking metrics by hand, and the baselines on logs small enough to score by eye."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnkit.tasks.nextitem.baselines import ItemKNN, MarkovChain, build_baseline, score_batch
from rnnkit.tasks.nextitem.ranking import RankingMetrics, harmonic, rank_counts, recall_mrr


def _metric(scores, targets, cutoffs=(1, 2, 3), exclude=None, popularity=None):
    scores = torch.as_tensor(scores, dtype=torch.float64)
    n = scores.shape[1]
    metric = RankingMetrics(torch.ones(n) if popularity is None else popularity, cutoffs)
    metric.update(scores, torch.as_tensor(targets), exclude)
    return {k: float(v) for k, v in metric.compute().items()}


def test_distinct_scores_give_the_usual_hit_and_reciprocal_rank():
    scores = [[0.1, 0.9, 0.5, 0.3], [0.4, 0.3, 0.2, 0.1]]
    # row 0: target 2 is second (rank 2); row 1: target 3 is last (rank 4)
    m = _metric(scores, [2, 3], cutoffs=(1, 2, 4))
    assert m["recall1"] == 0.0 and m["recall2"] == 0.5 and m["recall4"] == 1.0
    assert m["mrr2"] == pytest.approx(0.5 / 2) and m["mrr4"] == pytest.approx((1 / 2 + 1 / 4) / 2)


def test_ties_are_broken_at_random_in_expectation():
    # target tied with 2 others, 1 item above: rank uniform on {2, 3, 4}
    scores = [[5.0, 3.0, 3.0, 3.0, 1.0]]
    m = _metric(scores, [1], cutoffs=(1, 2, 3, 5))
    assert m["recall1"] == 0.0
    assert m["recall2"] == pytest.approx(1 / 3) and m["recall3"] == pytest.approx(2 / 3)
    assert m["recall5"] == 1.0
    assert m["mrr3"] == pytest.approx((1 / 2 + 1 / 3) / 3)
    assert m["mrr5"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    # all scores equal: every rank equally likely, as a random ranking
    flat = _metric([[0.0] * 10], [7], cutoffs=(3,))
    assert flat["recall3"] == pytest.approx(0.3)
    assert flat["mrr3"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 10)


def test_recall_mrr_formula_against_enumerating_tie_breaks():
    table = harmonic(60)
    for g in range(12):
        for t in range(9):
            for k in (1, 3, 5, 10):
                ranks = [1 + g + u for u in range(t + 1)]
                recall, mrr = recall_mrr(torch.tensor([g]), torch.tensor([t]), k, table)
                assert float(recall) == pytest.approx(np.mean([r <= k for r in ranks]))
                assert float(mrr) == pytest.approx(np.mean([1 / r if r <= k else 0 for r in ranks]))


def test_excluded_items_cannot_be_shown_and_an_excluded_target_is_a_miss():
    scores = [[9.0, 8.0, 1.0], [9.0, 8.0, 1.0]]
    exclude = torch.tensor([[True, False, False], [False, True, False]])
    m = _metric(scores, [1, 1], cutoffs=(1,), exclude=exclude)
    assert m["recall1"] == 0.5  # row 0: item 0 gone, target first; row 1: target excluded
    assert m["coverage1"] == pytest.approx(2 / 3)  # items 1 (row 0) and 0 (row 1) shown


def test_coverage_and_popularity():
    m = _metric([[3.0, 2.0, 1.0, 0.0]], [0], cutoffs=(2,), popularity=torch.tensor([10., 5, 0, 1]))
    assert m["coverage2"] == 0.5 and m["popularity2"] == pytest.approx((1.0 + 0.5) / 2)


def test_nan_scores_are_an_error_not_a_perfect_score():
    with pytest.raises(ValueError, match="NaN"):
        rank_counts(torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]))


def test_markov_and_knn_by_hand():
    train = [np.array([0, 1, 2]), np.array([0, 1]), np.array([2, 0])]
    pop = np.array([3, 2, 2, 0])
    chain = MarkovChain(train, pop)
    assert chain.transitions[0].tolist() == [0, 2, 0, 0] and chain.transitions[2, 0] == 1
    knn = ItemKNN(train, pop, lam=0.0)
    # items 0 and 1 share 2 sequences; 0 is in 3, 1 in 2: cosine 2 / sqrt(6)
    assert float(knn.similarity[0, 1]) == pytest.approx(2 / math.sqrt(6))
    assert float(knn.similarity[0, 0]) == 0.0 and float(knn.similarity[3].sum()) == 0.0


def test_scoring_loop_uses_only_the_past():
    """score_batch predicts position p from positions < p, from start on, over padding."""
    class Recorder(build_baseline("pop", [], np.ones(5)).__class__):
        def observe(self, t):
            seen.append(t)

        def scores(self, t):
            asked.append(t)
            out = torch.zeros(len(self.items), 5, dtype=torch.float64)
            out[:, 4] = 1.0  # always item 4 first
            return out

    seen, asked = [], []
    items = torch.tensor([[1, 2, 4, 0], [3, 4, 4, 4]])
    metric = RankingMetrics(torch.ones(5), (1,))
    score_batch(Recorder(np.ones(5)), items, torch.tensor([3, 4]), torch.tensor([2, 1]), metric,
                exclude_seen=False)
    assert seen == [0, 1, 2] and asked == [0, 1, 2]
    # targets: row 0 position 2 (item 4); row 1 positions 1, 2, 3 (all item 4)
    assert float(metric.count) == 4 and float(metric.compute()["recall1"]) == 1.0
