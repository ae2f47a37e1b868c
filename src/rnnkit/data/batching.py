"""Batches of variable-length token sequences: grouped by length, padded, with true lengths."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

POOL = 50  # batches per pool of similar lengths (see LengthBuckets)


class LengthBuckets(Sampler[list[int]]):
    """Batches of sentences of similar lengths, so padding costs little.

    Training: shuffle, cut into pools of ``POOL`` batches, sort each pool by length, cut
    it into batches and shuffle the batches, all from a generator seeded by ``seed`` and
    the epoch (Lightning calls :meth:`set_epoch`). In a distributed run each process
    takes every N-th batch of that one order, and all take the same number (a last
    batch short of a share is dropped). Evaluation: one pass sorted by length.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.lengths, self.batch_size, self.shuffle = np.asarray(lengths), batch_size, shuffle
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pools(self, order: np.ndarray) -> list[np.ndarray]:
        size = self.batch_size * POOL if self.shuffle else len(order)
        return [order[i:i + size] for i in range(0, len(order), size)]

    def _share(self) -> tuple[int, int]:
        import torch.distributed as dist

        if self.shuffle and dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def __iter__(self):
        n = len(self.lengths)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=generator).numpy() if self.shuffle else np.arange(n)
        batches = []
        for pool in self._pools(order):
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i:i + self.batch_size].tolist()
                        for i in range(0, len(pool), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        world, rank = self._share()
        if world > 1:
            batches = batches[rank:len(batches) - len(batches) % world:world]
        return iter(batches)

    def __len__(self) -> int:
        total = sum(math.ceil(len(p) / self.batch_size)
                    for p in self._pools(np.arange(len(self.lengths))))
        world, _ = self._share()
        return total // world


def bucketed_loader(items: list, lengths: np.ndarray, batch_size: int, train: bool, seed: int,
                    collate) -> DataLoader:
    """A DataLoader over ``items`` in :class:`LengthBuckets` batches (shuffled and seeded
    for training, one sorted pass otherwise), collated by ``collate``."""
    return DataLoader(items, batch_sampler=LengthBuckets(lengths, batch_size, train, seed),
                      collate_fn=collate)


class SplitLoaders:
    """A LightningDataModule's three loaders from its own ``_loader(split)`` (split one of
    ``train``, ``validation``, ``test``). Put it before LightningDataModule in the bases."""

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def pad_batch(items: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token ids, label) pairs -> tokens [B, T] padded with 0, lengths [B], labels [B]."""
    lengths = torch.tensor([len(ids) for ids, _ in items])
    tokens = torch.zeros(len(items), int(lengths.max()), dtype=torch.long)
    for row, (ids, _) in enumerate(items):
        tokens[row, :len(ids)] = torch.from_numpy(ids)
    return tokens, lengths, torch.tensor([label for _, label in items])
