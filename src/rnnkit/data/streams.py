"""Stateful batching for truncated BPTT: a token sequence as B parallel streams.

The classic word-language-model recipe (Zaremba et al. 2014; PyTorch's
``word_language_model`` example): cut the N tokens into B contiguous streams of
N // B tokens (the last N mod B tokens are dropped), stack them as rows of a [B, L]
matrix, and walk along the columns in windows of ``bptt`` steps. Row b of window k+1
continues exactly where row b of window k stopped, so a model that carries its
hidden state from one window to the next (detached, so gradients stay within a
window) reads each stream as one long text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import IterableDataset


def batchify(tokens: Tensor, streams: int) -> Tensor:
    """``tokens`` [N] -> [streams, N // streams]: row b is the b-th contiguous block."""
    if streams < 1:
        raise ValueError(f"streams: expected a positive integer, got {streams}")
    length = tokens.numel() // streams
    if length < 2:
        raise ValueError(f"cannot cut {tokens.numel()} tokens into {streams} streams of at least "
                         "2 tokens; use a smaller --batch-size or more text")
    return tokens[: streams * length].view(streams, length)


def _distributed() -> tuple[int, int]:
    """(rank, world size) of the running process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamWindows(IterableDataset):
    """Consecutive windows ``(x, y)`` of B streams: x [B, T] tokens, y [B, T] the next tokens.

    Window k covers columns ``k*bptt .. k*bptt+bptt-1`` of the stream matrix (the last
    window may be shorter); y is x shifted by one token. Under DDP the tokens are cut
    into ``world * B`` streams and each process reads its own B of them, so each
    process still sees unbroken streams.

    Args:
        tokens: int64 [N], the whole split in reading order.
        batch_size: streams per process (B).
        bptt: window length in tokens (T).
    """

    def __init__(self, tokens: Tensor, batch_size: int, bptt: int) -> None:
        super().__init__()
        if bptt < 1:
            raise ValueError(f"--bptt: expected a positive integer, got {bptt}")
        self.tokens, self.batch_size, self.bptt = tokens, batch_size, bptt
        self.matrix()  # fail early on a split too short for the streams

    def matrix(self) -> Tensor:
        """This process's [B, L] stream matrix."""
        rank, world = _distributed()
        rows = batchify(self.tokens, self.batch_size * world)
        return rows[rank * self.batch_size: (rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return math.ceil((self.matrix().shape[1] - 1) / self.bptt)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        rows = self.matrix()
        for start in range(0, rows.shape[1] - 1, self.bptt):
            end = min(start + self.bptt, rows.shape[1] - 1)
            yield rows[:, start:end], rows[:, start + 1: end + 1]
