"""Shared test set-up.

Inputs are fresh random numbers on every run: the seed is drawn per session and
printed in pytest's header, so a failure can be reproduced with
``RNNKIT_TEST_SEED=<seed> pytest ...``.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

SEED = int(os.environ.get("RNNKIT_TEST_SEED", random.SystemRandom().randrange(2**31)))

from rnnkit.functional import CELLS as SPECS

PLAIN_CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]  # the ones torch.nn has
CELLS = list(SPECS)  # and the variants
GATES = {name: spec.gates for name, spec in SPECS.items()}
NUM_STATES = {name: spec.num_states for name, spec in SPECS.items()}


def pytest_report_header(config):
    return f"rnnkit test seed: {SEED} (set RNNKIT_TEST_SEED to reproduce)"


@pytest.fixture(autouse=True)
def _seed(request):
    # Different but reproducible numbers for every test.
    torch.manual_seed(SEED + hash(request.node.nodeid) % 100_003)
    yield


def make_weights(cell: str, input_size: int, hidden: int, dtype: torch.dtype, bias: bool = True,
                 requires_grad: bool = True) -> list[torch.Tensor | None]:
    """w_ih, w_hh, b_ih, b_hh with torch.nn's scale, as leaf tensors."""
    g = GATES[cell] * hidden
    scale = hidden ** -0.5
    shapes = [(g, input_size), (g, hidden)] + ([(g,), (g,)] if bias else [])
    ws = [((torch.rand(s, dtype=dtype) * 2 - 1) * scale).requires_grad_(requires_grad)
          for s in shapes]
    return ws + ([] if bias else [None, None])


def make_extra(cell: str, hidden: int, dtype: torch.dtype, requires_grad: bool = True
               ) -> list[torch.Tensor]:
    """The cell's extra parameters (layer-norm gains and biases), near their initial values
    but not at them, so that every term of their gradients is exercised."""
    return [(e.init + 0.3 * torch.randn(e.width * hidden, dtype=dtype)).requires_grad_(requires_grad)
            for e in SPECS[cell].extra]


def random_lengths(batch: int, steps: int) -> torch.Tensor:
    """Unsorted lengths in 1..steps, always including steps and 1 when batch allows."""
    lengths = torch.randint(1, steps + 1, (batch,))
    if batch >= 2:
        lengths[torch.randperm(batch)[:2]] = torch.tensor([steps, 1])
    return lengths
