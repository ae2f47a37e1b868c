"""Each plain cell's hand-derived backward step equals autograd of its forward step.

(The variants' steps are checked through whole sequences, tests/backends.)
"""

from __future__ import annotations

import pytest
import torch

from rnnkit.functional import CELLS as SPECS
from rnnkit.functional import gate_blocks
from tests.helpers import GATES, NUM_STATES, PLAIN_CELLS


@pytest.mark.parametrize("cell", PLAIN_CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_backward_step_matches_autograd(cell: str, bias: bool) -> None:
    B, H = 5, 7
    dtype = torch.float64
    spec = SPECS[cell]
    G = GATES[cell] * H
    x_proj = torch.randn(B, G, dtype=dtype, requires_grad=True)
    state = tuple(torch.randn(B, H, dtype=dtype, requires_grad=True) for _ in range(NUM_STATES[cell]))
    w_hh = (torch.randn(G, H, dtype=dtype) * H ** -0.5).requires_grad_()
    b_hh = torch.randn(G, dtype=dtype, requires_grad=True) if bias else None

    new_state, cache = SPECS[cell].step(x_proj, state, w_hh, b_hh)
    upstream = [torch.randn_like(s) for s in new_state]
    leaves = [x_proj, *state, w_hh] + ([b_hh] if bias else [])
    expected = torch.autograd.grad(new_state, leaves, upstream)

    # Hand-derived: local derivatives of this one step, then the backward step.
    states = tuple(torch.stack([s0, s1]).detach() for s0, s1 in zip(state, new_state))
    derivs = spec.local_derivatives(tuple(c.detach().unsqueeze(0) for c in cache), states)
    drec = [u.clone() for u in upstream]
    dgx_buf = torch.empty(1, B, G, dtype=dtype)
    dgh_buf = torch.empty(1, B, G, dtype=dtype) if spec.separate_hidden_grads else dgx_buf
    dgx, dgh = dgx_buf[0], dgh_buf[0]
    spec.backward_step(drec, [d[0] for d in derivs], w_hh.detach(),
                       gate_blocks(dgx_buf, spec.gates)[0], gate_blocks(dgh_buf, spec.gates)[0],
                       dgh_buf[0])

    torch.testing.assert_close(dgx, expected[0], rtol=1e-10, atol=1e-12)
    for got, want in zip(drec, expected[1: 1 + len(state)]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    prev_h = state[0].detach()
    torch.testing.assert_close(dgh.t() @ prev_h, expected[1 + len(state)], rtol=1e-10, atol=1e-12)
    if bias:
        torch.testing.assert_close(dgh.sum(0), expected[-1], rtol=1e-10, atol=1e-12)
