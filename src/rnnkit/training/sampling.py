"""The order of training examples: a function of the seed and the epoch only.

Every process of a DDP run takes its share of one permutation per epoch (that of
``torch.utils.data.DistributedSampler``): process ``r`` of ``N`` gets positions
``r, r + N, ...``. With ``--batch-size B`` per process, the union of the processes'
i-th batches is then exactly the i-th batch of size ``N * B`` that a single process
draws from the same permutation. So a run on N processes follows the same global batches
as a single process with N times the batch size, and ends at the same model up to the
order of floating-point reductions. (When the examples do not divide by N the sampler
repeats a few of them to even the shares.)
"""

from __future__ import annotations

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


def epoch_shuffled(dataset: Dataset, seed: int) -> DistributedSampler:
    """A sampler shuffled afresh each epoch (Lightning calls ``set_epoch``) from ``seed``,
    sharded across the processes of a distributed run (one process: all examples)."""
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    else:
        world, rank = 1, 0
    return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
