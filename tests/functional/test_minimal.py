"""The minimal cells' maths and engines: the step loop (autograd), the chunked scan, the
native loop and their hand-derived backward agree on outputs and every gradient; each is
checked against an independent form (a closed-form geometric series, the paper's
log-space formula, gradcheck in float64) and at long T."""

from __future__ import annotations

import pytest
import torch

from rnnkit.backends.minimal import native_available, run_min
from rnnkit.backends.ops import OperatorInputError
from rnnkit.functional.minimal import (
    ACTIVATIONS,
    MIN_CELLS,
    coefficients,
    linear_scan,
    scan_backward,
    scan_forward,
    sequential_forward,
)
from tests.helpers import random_lengths

CASES = [(cell, act) for cell in MIN_CELLS for act in ACTIVATIONS]
ENGINES = ["scan"] + (["native"] if native_available() else [])
needs_native = pytest.mark.skipif(not native_available(), reason="native engine not built")


def _inputs(cell, T, B, H, dtype=torch.float64, scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    proj = (torch.randn(T, B, MIN_CELLS[cell].gates * H, generator=g, dtype=dtype) * scale)
    h0 = torch.randn(B, H, generator=g, dtype=dtype)
    return proj.requires_grad_(), h0.requires_grad_()


def test_linear_scan_equals_the_loop_for_every_chunk_size():
    torch.manual_seed(0)
    for T in (0, 1, 2, 7, 16, 33):
        a, b, h0 = torch.rand(T, 3, 2, dtype=torch.float64), torch.randn(T, 3, 2,
                                                                        dtype=torch.float64), \
            torch.randn(3, 2, dtype=torch.float64)
        h, expected = h0, []
        for t in range(T):
            h = a[t] * h + b[t]
            expected.append(h)
        for chunk in (None, 1, 2, 3, 5, 64):
            got = linear_scan(a, b, h0, chunk)
            assert got.shape == (T, 3, 2)
            if T:
                torch.testing.assert_close(got, torch.stack(expected), rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell,act", CASES)
def test_closed_form_constant_input(cell, act):
    """A constant projection gives a geometric series:
    h_t = a^t h_0 + b (1 - a^t) / (1 - a)."""
    H, T = 3, 25
    p = torch.linspace(-2, 2, MIN_CELLS[cell].gates * H, dtype=torch.float64)
    proj = p.expand(T, 1, -1)
    h0 = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    a, b = coefficients(cell, p, act)
    t = torch.arange(1, T + 1, dtype=torch.float64).view(T, 1, 1)
    expected = a ** t * h0 + b * (1 - a ** t) / (1 - a)
    for engine in ENGINES:
        torch.testing.assert_close(run_min(engine, cell, act, proj, h0, None), expected,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell,act", CASES)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_engines_equal_the_step_loop_with_every_gradient(cell, act, with_lengths):
    """scan and native against autograd through the step loop: outputs, d proj, d h0, with a
    random upstream gradient, in float64 to 1e-10."""
    T, B, H = 29, 6, 5
    proj, h0 = _inputs(cell, T, B, H)
    lengths = random_lengths(B, T) if with_lengths else None
    ref = sequential_forward(cell, proj, h0, act, lengths)
    dh = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (proj, h0), dh)
    for engine in ENGINES:
        out = run_min(engine, cell, act, proj, h0, lengths)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
        grads = torch.autograd.grad(out, (proj, h0), dh)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=0, atol=1e-10)
    # the torch scan's hand-derived backward, called directly
    dproj, dh0 = scan_backward(cell, proj.detach(), h0.detach(), act, lengths, ref.detach(), dh)
    torch.testing.assert_close(dproj, ref_grads[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(dh0, ref_grads[1], rtol=0, atol=1e-10)
    if lengths is not None:  # past the end: the state carries on, no gradient to proj
        for b, n in enumerate(lengths.tolist()):
            assert torch.equal(ref[n:, b], ref[n - 1, b].expand_as(ref[n:, b]))
            assert not ref_grads[0][n:, b].any()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell", list(MIN_CELLS))
def test_gradcheck_and_double_backward(engine, cell):
    T, B, H = 9, 3, 2
    lengths = torch.tensor([9, 4, 1])
    for act in ACTIVATIONS:
        proj, h0 = _inputs(cell, T, B, H, scale=1.0, seed=3)
        # keep the g activation's kink at 0 away from the finite differences
        with torch.no_grad():
            proj += 0.1 * torch.sign(proj)

        def f(p, h, act=act):
            return run_min(engine, cell, act, p, h, lengths)

        assert torch.autograd.gradcheck(f, (proj, h0))
        assert torch.autograd.gradgradcheck(f, (proj, h0))


@pytest.mark.parametrize("cell", list(MIN_CELLS))
def test_long_sequences_match_the_papers_log_space_formula(cell):
    """At T = 16k the g variant (positive states) against the paper's log-space scan,
    h_t = exp(A_t + logcumsumexp(log b - A)) with A = cumsum(log a), in float64; and float32
    stays finite where a ratio-of-products scan would overflow."""
    T, B, H = 16384, 2, 3
    g = torch.Generator().manual_seed(1)
    proj = torch.randn(T, B, MIN_CELLS[cell].gates * H, generator=g, dtype=torch.float64) * 3
    h0 = torch.rand(B, H, generator=g, dtype=torch.float64) + 0.1
    a, b = coefficients(cell, proj, "g")
    log_a = torch.cat([torch.zeros(1, B, H, dtype=torch.float64), a.log()]).cumsum(0)
    values = torch.cat([h0.log().unsqueeze(0), b.log()])
    expected = torch.exp(log_a + torch.logcumsumexp(values - log_a, dim=0))[1:]
    for engine in ENGINES:
        got = run_min(engine, cell, "g", proj, h0, None)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
        p32 = proj.float().mul(10).requires_grad_()
        out = run_min(engine, cell, "g", p32, h0.float(), None)
        out.square().mean().backward()
        assert torch.isfinite(out).all() and torch.isfinite(p32.grad).all()
        ref = scan_forward(cell, p32.detach().double(), h0, "g")
        torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("engine", ENGINES)
def test_saturated_gates_give_numbers_as_in_float64(engine):
    """Projections of size 1e4 saturate every gate: no NaN, and the float64 answer."""
    for cell in MIN_CELLS:
        proj, h0 = _inputs(cell, 12, 3, 4, dtype=torch.float32, scale=1e4)
        out = run_min(engine, cell, "identity", proj, h0, None)
        grads = torch.autograd.grad(out.sum(), (proj, h0))
        ref_p, ref_h = proj.detach().double().requires_grad_(), h0.detach().double().requires_grad_()
        ref = sequential_forward(cell, ref_p, ref_h, "identity")
        ref_grads = torch.autograd.grad(ref.sum(), (ref_p, ref_h))
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-2)
        for g, r in zip(grads, ref_grads):
            assert torch.isfinite(g).all()
            torch.testing.assert_close(g.double(), r, rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("engine", ENGINES)
def test_compile_fullgraph_and_torch_func(engine):
    cell, act = "minlstm", "g"
    proj, h0 = _inputs(cell, 11, 2, 3, seed=5)
    lengths = torch.tensor([11, 6])

    def f(p, h):
        return run_min(engine, cell, act, p, h, lengths)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(proj, h0)
    ref = sequential_forward(cell, proj, h0, act, lengths)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    dh = torch.randn_like(ref)
    for g, r in zip(torch.autograd.grad(out, (proj, h0), dh),
                    torch.autograd.grad(ref, (proj, h0), dh)):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-12)
    jac = torch.func.jacrev(lambda h: f(proj.detach(), h))(h0.detach())
    jac_ref = torch.func.jacrev(
        lambda h: sequential_forward(cell, proj.detach(), h, act, lengths))(h0.detach())
    torch.testing.assert_close(jac, jac_ref, rtol=0, atol=1e-12)
    batch = torch.randn(3, *proj.shape, dtype=proj.dtype)
    mapped = torch.func.vmap(lambda p: f(p, h0.detach()))(batch)
    for k in range(3):
        torch.testing.assert_close(mapped[k], f(batch[k], h0.detach()), rtol=0, atol=1e-14)


def test_the_operator_checks_its_inputs():
    proj, h0 = _inputs("mingru", 5, 2, 3)
    cases = [
        (("nonesuch", "mingru", "g", proj, h0, None), "engine"),
        (("scan", "gru", "g", proj, h0, None), "cell"),
        (("scan", "mingru", "tanh", proj, h0, None), "activation"),
        (("scan", "mingru", "g", proj[0], h0, None), "proj"),
        (("scan", "mingru", "g", proj, h0[:, :2], None), "h0"),
        (("scan", "mingru", "g", proj, h0.float(), None), "h0"),
        (("scan", "mingru", "g", proj, h0, torch.tensor([5, 0])), "lengths"),
        (("scan", "mingru", "g", proj, h0, torch.tensor([5, 6])), "lengths"),
        (("scan", "mingru", "g", proj, h0, torch.tensor([5.0, 1.0])), "lengths"),
    ]
    for engine in ENGINES:
        for args, name in cases:
            args = (engine if args[0] == "scan" else args[0], *args[1:])
            with pytest.raises(OperatorInputError, match=name):
                torch.ops.rnnkit.min_scan(*args)
    if native_available():
        with pytest.raises(OperatorInputError, match="native"):
            torch.ops.rnnkit.min_scan("native", "mingru", "g", proj.half(), h0.half(), None)


@needs_native
def test_the_native_ops_check_every_assumption_themselves():
    """Called directly (past the Python checks), the C++ ops still refuse bad input."""
    proj, h0 = _inputs("minlstm", 4, 2, 3)
    proj, h0 = proj.detach(), h0.detach()
    op = torch.ops.rnnkit.min_forward
    for args in [(2, 0, proj, h0, None), (1, 5, proj, h0, None), (1, 0, proj[:, :, :-1], h0, None),
                 (1, 0, proj, h0[:1], None), (1, 0, proj, h0.float(), None),
                 (1, 0, proj, h0, torch.tensor([4, 9])), (1, 0, proj, h0, torch.tensor([4])),
                 (1, 0, proj.transpose(0, 1), h0, None)]:
        with pytest.raises(RuntimeError, match="rnnkit.ops.min_"):
            op(*args)
    h = op(1, 0, proj, h0, None)
    with pytest.raises(RuntimeError, match="dh"):
        torch.ops.rnnkit.min_backward(1, 0, proj, h0, None, h, h[:-1])


def test_empty_batch():
    for engine in ENGINES:
        proj = torch.zeros(4, 0, 6, requires_grad=True)
        h0 = torch.zeros(0, 3, requires_grad=True)
        out = run_min(engine, "mingru", "g", proj, h0, None)
        assert out.shape == (4, 0, 3)
        out.sum().backward()
        assert proj.grad.shape == proj.shape


def test_softplus_route_equals_the_papers_normalised_gates():
    """minLSTM's f' = f / (f + i), computed through softplus, equals the direct ratio."""
    k = torch.randn(50, 9, dtype=torch.float64) * 4
    a, b = coefficients("minlstm", k, "identity")
    kf, ki, u = k.chunk(3, dim=-1)
    f, i = torch.sigmoid(kf), torch.sigmoid(ki)
    torch.testing.assert_close(a, f / (f + i), rtol=1e-13, atol=0)
    torch.testing.assert_close(b, i / (f + i) * u, rtol=1e-13, atol=1e-15)
    z = torch.sigmoid(k[:, :3])
    a2, b2 = coefficients("mingru", k[:, :6], "g")
    u2 = k[:, 3:6]
    torch.testing.assert_close(a2, 1 - z, rtol=1e-13, atol=1e-15)  # 1 - z rounds
    g = torch.where(u2 >= 0, u2 + 0.5, torch.sigmoid(u2))
    torch.testing.assert_close(b2, z * g, rtol=1e-13, atol=0)


@needs_native
def test_native_gradients_flush_denormals_to_zero():
    """A gradient decaying back over 2000 steps (a = 1/2) crosses the float32 denormal range,
    where the native loop flushes it to zero (denormals.h: a hundred times slower
    arithmetic otherwise); every value above that range is the float64 answer."""
    T, H = 2000, 4
    proj = torch.zeros(T, 1, 2 * H)  # z = 1/2: a = 1/2 at every step
    h0 = torch.ones(1, H)
    dh = torch.zeros(T, 1, H)
    dh[-1] = 1.0
    h = run_min("native", "mingru", "identity", proj, h0, None)
    dproj, _ = torch.ops.rnnkit.min_backward(0, 1, proj, h0, None, h, dh)
    tiny = (dproj != 0) & (dproj.abs() < torch.finfo(torch.float32).tiny)
    assert not tiny.any()
    ref, _ = scan_backward("mingru", proj.double(), h0.double(), "identity", None, h.double(),
                           dh.double())
    normal = ref.abs() >= 1e-30
    torch.testing.assert_close(dproj.double()[normal], ref[normal], rtol=1e-5, atol=0)
    assert normal.sum() > 100 and not dproj[ref.abs() < 1e-45].any()
