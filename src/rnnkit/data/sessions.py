"""Session-parallel mini-batches (GRU4Rec, Hidasi et al. 2016, section 3.1.1) and padded
batches of whole sequences for scoring.

Training: B slots each read one session, one event per step. Step k's batch holds, per
active slot, the current item (input) and the next one (target). When a slot's session
has no next event left, the slot takes the next unread session and its recurrent state is
reset to zeros; when no session is left the slot closes and the batch shrinks. Each batch
says which row of the previous batch each of its rows continues (``rows``) and which rows
start a new session (``reset``), so the model carries the state of every slot exactly:

    state = previous_state[:, rows]; state[:, reset] = 0

The session order is a permutation drawn from the seed and the epoch only, so a resumed
run reads the same batches. (One process only: shares of the sessions would give
processes different numbers of steps, which distributed training cannot have; the task
refuses ``--devices`` above 1.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset

from rnnkit.data.events import EvalSequence


def session_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The reading order of ``count`` sessions in an epoch: a function of seed and epoch."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def session_parallel_batches(sequences: list[np.ndarray], order: np.ndarray,
                             batch_size: int) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Yield ``(inputs [b], targets [b], reset [b] bool, rows [b])`` per step (see the
    module docstring); ``order`` lists the sessions in reading order. Sessions need at
    least two events."""
    lengths = np.array([len(sequences[i]) for i in order], dtype=np.int64)
    if (lengths < 2).any():
        raise ValueError("session-parallel batches need sessions of at least two events")
    flat = np.concatenate([sequences[i] for i in order]) if len(order) else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    slots = min(batch_size, len(order))
    session = np.arange(slots)  # each slot's session (position in the order)
    position = np.zeros(slots, dtype=np.int64)  # the input's position within it
    rows = np.arange(slots)
    following = slots  # the next unread session
    while len(session):
        where = starts[session] + position
        yield (torch.from_numpy(flat[where]), torch.from_numpy(flat[where + 1]),
               torch.from_numpy(position == 0), torch.from_numpy(rows))
        position = position + 1
        done = position + 1 >= lengths[session]
        for slot in np.flatnonzero(done):
            if following < len(order):
                session[slot], position[slot] = following, 0
                following += 1
            else:
                session[slot] = -1
        alive = session >= 0
        rows = np.flatnonzero(alive)
        session, position = session[alive], position[alive]


class SessionParallel(IterableDataset):
    """An epoch of session-parallel batches, ``window`` consecutive steps per item (a list
    of step batches: truncated BPTT over ``window`` steps; 1 is GRU4Rec's one step). The
    epoch comes from ``epoch_of()`` when iteration starts (the trainer's current epoch),
    so each epoch has its own order."""

    def __init__(self, sequences: list[np.ndarray], batch_size: int, seed: int,
                 epoch_of: Callable[[], int] = lambda: 0, window: int = 1) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"--batch-size: expected a positive integer, got {batch_size}")
        if window < 1:
            raise ValueError(f"--bptt: expected a positive integer, got {window}")
        self.sequences, self.batch_size, self.seed = sequences, batch_size, seed
        self.epoch_of, self.window = epoch_of, window

    def __iter__(self):
        order = session_order(len(self.sequences), self.seed, self.epoch_of())
        group: list = []
        for step in session_parallel_batches(self.sequences, order, self.batch_size):
            group.append(step)
            if len(group) == self.window:
                yield group
                group = []
        if group:
            yield group


def padded_batches(sequences: list[EvalSequence], batch_size: int
                   ) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Sequences to score as ``(items [B, T], lengths [B], starts [B])``, padded with 0
    and grouped by length (fewer padded steps), in a fixed order."""
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i].items), i))
    batches = []
    for first in range(0, len(order), batch_size):
        chosen = [sequences[i] for i in order[first: first + batch_size]]
        longest = max(len(s.items) for s in chosen)
        items = torch.zeros(len(chosen), longest, dtype=torch.int64)
        for row, s in enumerate(chosen):
            items[row, : len(s.items)] = torch.from_numpy(s.items)
        batches.append((items, torch.tensor([len(s.items) for s in chosen]),
                        torch.tensor([s.start for s in chosen])))
    return batches
