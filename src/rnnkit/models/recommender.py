"""Next-item recommender (GRU4Rec, Hidasi et al. 2016; 2018): item embedding, recurrent
layers, a score for every item.

    e_t = E[x_t]                          # [B, T, embedding]
    h_t = RNN(dropout(e_t), h_{t-1})      # any rnnkit cell, stacked
    q_t = dropout(h_t)                    # or P dropout(h_t) with tied embeddings: [D]
    score(j | x_<=t) = W_j . q_t + b_j    # every item j; W = E when tied

With ``tie_embeddings`` the output matrix is the input embedding (GRU4Rec's constrained
embedding), the hidden state projected to its width by P.

Losses (:func:`recommendation_loss`), over the scores of each step's target:

* ``ce``: cross-entropy over all items (the full softmax).
* ``sampled``: cross-entropy over the target, the batch's other targets and extra
  negatives drawn by popularity ** alpha (GRU4Rec's mini-batch plus additional sampling);
  a negative that is the row's own target is masked out.
* ``bpr-max``: -log sum_j s_j sigmoid(r_i - r_j) + lambda sum_j s_j r_j^2, with s the
  softmax of the negatives' scores (Hidasi & Karatzoglou 2018), over the same negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder

State = Tensor | tuple[Tensor, ...]
LOSSES = ("ce", "sampled", "bpr-max")


@dataclass(kw_only=True)
class RecommenderConfig(EncoderConfig):
    """Everything needed to rebuild a :class:`SessionRecommender`."""

    num_items: int
    embedding: int = 64
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_items < 1:
            raise ValueError(f"num_items: expected a positive integer, got {self.num_items}")
        if self.bidirectional:
            raise ValueError("--bidirectional: a recommender predicts the next item from the "
                             "past only, so it cannot read both directions")


class SessionRecommender(nn.Module):
    """Items [B, T] -> queries [B, T, D]; :meth:`scores` turns queries into item scores."""

    def __init__(self, config: RecommenderConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.num_items, config.embedding)
        self.encoder = build_initialised_encoder(config, config.embedding)
        self.dropout = nn.Dropout(config.dropout)
        out = config.proj_size or config.hidden
        if config.tie_embeddings:
            self.project = nn.Linear(out, config.embedding, bias=False)
            self.out_weight = self.embedding.weight
        else:
            self.project = nn.Identity()
            self.out_weight = nn.Parameter(torch.empty(config.num_items, out))
            nn.init.normal_(self.out_weight, std=out ** -0.5)
        self.out_bias = nn.Parameter(torch.zeros(config.num_items))

    def forward(self, items: Tensor, state: State | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """Args: items int64 [B, T]; state from a previous call or None; lengths [B] for
        padded batches. Returns queries [B, T, D] and the final state."""
        embedded = self.dropout(self.embedding(items))
        if lengths is None:
            output, state = self.encoder(embedded, state)
        else:
            output, state = self.encoder(embedded, state, lengths=lengths)
        return self.project(self.dropout(output)), state

    def step(self, items: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One event per row: items int64 [B] -> queries [B, D] and the new state (one
        recurrent step; each new click costs one step, not a re-read of the session)."""
        output, state = self.encoder.step(self.dropout(self.embedding(items)), state)
        return self.project(self.dropout(output)), state

    def scores(self, queries: Tensor, items: Tensor | None = None) -> Tensor:
        """Scores [..., N] of every item, or [..., M] of ``items`` [M] only."""
        if items is None:
            return queries @ self.out_weight.t() + self.out_bias
        return queries @ self.out_weight[items].t() + self.out_bias[items]


def recommendation_loss(model: SessionRecommender, queries: Tensor, targets: Tensor, loss: str,
                        negatives: Tensor | None = None, bpreg: float = 1.0) -> Tensor:
    """The mean loss of queries [b, D] predicting targets [b] (see the module docstring);
    ``negatives`` [n] are the extra sampled items of ``sampled`` and ``bpr-max``."""
    if loss == "ce":
        return F.cross_entropy(model.scores(queries), targets)
    if loss not in LOSSES:
        raise ValueError(f"--loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    candidates = targets if negatives is None else torch.cat([targets, negatives])
    scores = model.scores(queries, candidates)  # [b, b + n]; row i's target in column i
    b = len(targets)
    own = torch.arange(b, device=targets.device)
    hit = candidates.unsqueeze(0) == targets.unsqueeze(1)  # [b, b + n]
    hit[own, own] = False  # accidental hits: the row's target among its negatives
    if loss == "sampled":
        return F.cross_entropy(scores.masked_fill(hit, float("-inf")), own)
    target_score = scores[own, own].unsqueeze(1)  # [b, 1]
    negative = hit.clone()
    negative[own, own] = True  # neither the target nor its copies are negatives
    has = ~negative.all(1)  # rows with at least one negative (a batch of one may have none)
    if not has.any():
        return scores.sum() * 0.0
    scores, negative, target_score = scores[has], negative[has], target_score[has]
    weights = torch.softmax(scores.masked_fill(negative, float("-inf")), dim=1)  # s_j
    ranked = (weights * torch.sigmoid(target_score - scores)).sum(1)
    penalty = (weights * scores.pow(2)).sum(1)
    return (-torch.log(ranked + 1e-24) + bpreg * penalty).mean()
