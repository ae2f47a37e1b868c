"""Length-bucketed batches: every sequence once per epoch, similar lengths together."""

from __future__ import annotations

import numpy as np
import torch

from rnnkit.data.batching import LengthBuckets, pad_batch


def test_every_index_once_and_len_matches():
    lengths = np.random.default_rng(0).integers(1, 60, size=1003)
    for shuffle in (True, False):
        sampler = LengthBuckets(lengths, 16, shuffle)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(1003))
    sorted_batches = list(LengthBuckets(lengths, 16, False))
    assert all(lengths[b].max() - lengths[b].min() <= 2 for b in sorted_batches)


def test_pad_batch_keeps_true_lengths():
    tokens, lengths, labels = pad_batch([(np.array([4, 5, 6]), 1), (np.array([7]), 0)])
    assert tokens.tolist() == [[4, 5, 6], [7, 0, 0]]
    assert lengths.tolist() == [3, 1] and labels.tolist() == [1, 0]
    assert tokens.dtype == torch.long
