"""The fused engine on a GPU: same results as the reference engine and as torch.nn (cuDNN).

Skipped where no CUDA device is present (CI has none); run on a GPU machine with
``pytest tests/backends/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.backends import run_direction
from tests.backends.test_fused_vs_reference import random_masks
from tests.helpers import CELLS, NUM_STATES, make_extra, make_weights, random_lengths

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("with_masks", [False, True])
def test_fused_matches_reference_on_cuda(cell, with_lengths, with_masks):
    T, B, I, H = 12, 5, 4, 8
    dtype, dev = torch.float64, torch.device("cuda")
    x = torch.randn(T, B, I, dtype=dtype, device=dev, requires_grad=True)
    states0 = tuple(torch.randn(B, H, dtype=dtype, device=dev, requires_grad=True)
                    for _ in range(NUM_STATES[cell]))
    weights = [w.detach().to(dev).requires_grad_() for w in make_weights(cell, I, H, dtype)]
    extra = [w.detach().to(dev).requires_grad_() for w in make_extra(cell, H, dtype)]
    lengths = random_lengths(B, T) if with_lengths else None
    masks = None
    if with_masks:
        drawn = random_masks(cell, T, B, H, dtype)
        masks = type(drawn)(drawn.recurrent.to(dev), tuple(m.to(dev) for m in drawn.zoneout))
    leaves = [x, *states0, *weights, *extra]
    dy = torch.randn(T, B, H, dtype=dtype, device=dev)
    results = []
    for backend in ("reference", "fused"):
        y, final = run_direction(cell, x, states0, *weights, lengths=lengths, backend=backend,
                                 extra=extra, masks=masks)
        grads = torch.autograd.grad([y, *final], leaves, [dy, *[torch.ones_like(f) for f in final]])
        results.append([y, *final, *grads])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layer_matches_cudnn(kind, dtype, monkeypatch):
    # cuDNN would use TF32 tensor cores for float32 on Ampere and later; compare exact maths.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    reference = getattr(torch.nn, kind)(16, 32, num_layers=2, bidirectional=True).to("cuda", dtype)
    ours = getattr(rnnkit.nn, kind)(16, 32, num_layers=2, bidirectional=True).to("cuda", dtype)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(50, 8, 16, device="cuda", dtype=dtype, requires_grad=True)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    out_r, _ = reference(x)
    out_o, _ = ours(x)
    torch.testing.assert_close(out_o, out_r, **tol)
    g_r = torch.autograd.grad(out_r.sum(), [x, *reference.parameters()])
    g_o = torch.autograd.grad(out_o.sum(), [x, *ours.parameters()])
    if dtype == torch.float32:  # gradients sum hundreds of float32 terms in another order
        tol = {"rtol": 1e-3, "atol": 1e-3}
    for a, b in zip(g_o, g_r):
        torch.testing.assert_close(a, b, **tol)
