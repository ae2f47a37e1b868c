"""Session-parallel batches against one session at a time; the losses by hand; the
stream API against a whole-history pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.events import EvalSequence
from rnnkit.data.sessions import SessionParallel, padded_batches, session_parallel_batches
from rnnkit.models.recommender import RecommenderConfig, SessionRecommender, recommendation_loss
from rnnkit.tasks.nextitem.recommend import Recommender
from rnnkit.tasks.nextitem.task import carry


def _sessions(seed=0, count=23, items=30):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, items, n) for n in rng.integers(2, 12, count)]


@pytest.mark.parametrize("batch_size", [1, 4, 7, 50])
def test_batches_replay_every_session_exactly_with_resets(batch_size):
    sessions = _sessions()
    order = np.random.default_rng(3).permutation(len(sessions))
    slots: list[list[int]] = []  # per row of the current batch: the events read so far
    replayed = []
    for inputs, targets, reset, rows in session_parallel_batches(sessions, order, batch_size):
        kept = set(rows.tolist())
        replayed += [s for r, s in enumerate(slots) if r not in kept]  # closed slots
        carried = [slots[r] for r in rows.tolist()] if slots else [[] for _ in inputs]
        slots = []
        for x, y, r, prefix in zip(inputs.tolist(), targets.tolist(), reset.tolist(), carried):
            if r:  # a new session starts in this slot
                if prefix:
                    replayed.append(prefix)
                prefix = [x]
            assert prefix[-1] == x
            slots.append(prefix + [y])
        assert len(inputs) <= batch_size
    replayed += slots
    expected = sorted(tuple(sessions[i].tolist()) for i in order)
    assert sorted(tuple(s) for s in replayed) == expected


def _model(cell="gru", **kw):
    torch.manual_seed(0)
    return SessionRecommender(RecommenderConfig(cell=cell, num_items=30, hidden=8, embedding=6,
                                                **kw)).double().eval()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_session_parallel_steps_equal_one_session_at_a_time(cell):
    model = _model(cell, layers=2)
    sessions = _sessions(1)
    order = np.arange(len(sessions))
    got: dict[int, list[torch.Tensor]] = {}
    state, owner, following = None, [], 0
    for inputs, _, reset, rows in session_parallel_batches(sessions, order, 5):
        owner = [owner[r] for r in rows.tolist()] if owner else [None] * len(inputs)
        for i, r in enumerate(reset.tolist()):
            if r:
                owner[i], following = following, following + 1
        with torch.no_grad():
            queries, state = model.step(inputs, carry(state, rows, reset))
        for i, who in enumerate(owner):
            got.setdefault(who, []).append(queries[i])
    for k, seq in enumerate(sessions):
        with torch.no_grad():
            alone, _ = model(torch.as_tensor(seq[:-1]).view(1, -1))
        torch.testing.assert_close(torch.stack(got[k]), alone[0], rtol=1e-10, atol=1e-10)


def test_epoch_order_depends_on_seed_and_epoch_only():
    sessions = _sessions()
    def inputs(epoch, window=1):
        data = SessionParallel(sessions, 4, seed=5, epoch_of=lambda: epoch, window=window)
        return [step[0].tolist() for group in data for step in group]

    assert inputs(2) == inputs(2) != inputs(3)
    assert inputs(2, window=3) == inputs(2)  # windows group the same steps
    assert [len(g) for g in SessionParallel(sessions, 4, 5, window=3)][:-1] == [3] * (
        len(inputs(0)) // 3 - (len(inputs(0)) % 3 == 0))


def test_padded_batches_keep_each_sequence():
    seqs = [EvalSequence(np.array([1, 2, 3]), 1), EvalSequence(np.array([4, 5]), 1),
            EvalSequence(np.array([6, 7, 8, 9]), 2)]
    out = [(items[i, :n].tolist(), int(s)) for items, lengths, starts in padded_batches(seqs, 2)
           for i, (n, s) in enumerate(zip(lengths.tolist(), starts))]
    assert sorted(out) == sorted((s.items.tolist(), s.start) for s in seqs)


def test_losses_by_hand():
    model = _model()
    queries = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([4, 7, 4])
    negatives = torch.tensor([1, 7, 9])
    full = model.scores(queries)
    assert recommendation_loss(model, queries, targets, "ce").item() == pytest.approx(
        F.cross_entropy(full, targets).item())
    cands = torch.cat([targets, negatives])  # [4, 7, 4, 1, 7, 9]
    sampled, bpr = [], []
    for i in range(3):
        ok = [j for j in range(6) if j == i or cands[j] != targets[i]]
        row = full[i, cands[ok]]
        sampled.append(-torch.log_softmax(row, 0)[ok.index(i)])
        neg = [j for j in range(6) if cands[j] != targets[i]]
        r_neg = full[i, cands[neg]]
        s = torch.softmax(r_neg, 0)
        bpr.append(-torch.log((s * torch.sigmoid(full[i, targets[i]] - r_neg)).sum())
                   + 0.5 * (s * r_neg ** 2).sum())
    assert recommendation_loss(model, queries, targets, "sampled", negatives).item() == \
        pytest.approx(torch.stack(sampled).mean().item())
    assert recommendation_loss(model, queries, targets, "bpr-max", negatives, 0.5).item() == \
        pytest.approx(torch.stack(bpr).mean().item())
    # a batch of one without negatives has no bpr-max term; its loss is 0, not NaN
    lone = recommendation_loss(model, queries[:1], targets[:1], "bpr-max")
    assert lone.item() == 0.0


@pytest.mark.parametrize("tie", [False, True])
def test_stream_equals_whole_history(tie):
    model = _model(tie_embeddings=tie).float()
    items = [f"i{k}" for k in range(30)]
    rec = Recommender(model, items, [f"name {k}" for k in range(30)], exclude_seen=True)
    history = ["i3", "i9", "nope", "i3", "i17"]
    whole = rec.recommend([history], k=5)[0]
    session = rec.session()
    for item in history:
        session.add(item)
    stepwise = session.top(5)
    assert [r["item"] for r in whole] == [r["item"] for r in stepwise]
    assert [r["score"] for r in whole] == pytest.approx([r["score"] for r in stepwise], rel=1e-5)
    assert not {"i3", "i9", "i17"} & {r["item"] for r in whole}  # already seen
    with pytest.raises(ValueError, match="at least one item the run knows"):
        rec.recommend([["nope"]])
