"""The ``triton`` engine's kernels against the reference engine (autograd through the
plain steps): outputs, final states and every gradient, for every built-in cell, with
variable lengths, both directions, recurrent-dropout and zoneout masks.

Without a GPU the kernels run in Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``,
through numpy), at small shapes, chosen so that every kernel sees several row and column
tiles, ragged edges and several slices of its inner products. On a CUDA machine the same
tests run the compiled kernels, and ``test_layers_match_cudnn`` compares the layers with
torch.nn's. Skipped where Triton is not installed (``pip install 'rnnkit[gpu]'``).
"""

from __future__ import annotations

import os
import sys
import warnings

import pytest
import torch

import rnnkit
from rnnkit.backends import record_state_gradients, run_direction, select_backend
from rnnkit.backends.ops import run_sequence
from tests.backends.test_fused_vs_reference import random_masks
from tests.helpers import CELLS, NUM_STATES, make_extra, make_weights, random_lengths

CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if CUDA else "cpu")

if not CUDA:
    # Triton fixes at import whether its own library (tl.zeros...) is interpreted; the
    # variable is set for the import only, then for each test here (the fixture below), so
    # the rest of the suite never sees the engine offered on the CPU.
    # Deliberate skip: only when something earlier in the same process imported Triton
    # compiled (nothing else in the default suite imports it). The
    # kernels cannot then be interpreted here, so say how to run them.
    if "triton" in sys.modules and not type(sys.modules["triton"].language.zeros).__name__.startswith("Interpreted"):
        pytest.skip("Triton was imported compiled before this file; run it alone, or with "
                    "TRITON_INTERPRET=1 set before Python starts", allow_module_level=True)
    _before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        pytest.importorskip("triton.language")
        from rnnkit.backends.triton_engine import loops  # its kernels: interpreted ones
    finally:
        if _before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _before
else:
    pytest.importorskip("triton")
    from rnnkit.backends.triton_engine import loops


@pytest.fixture(autouse=True)
def _interpret(monkeypatch):
    """On the CPU, Triton's interpreter (the kernels were defined as interpreted ones at
    import, above); the variable also offers the engine for CPU tensors."""
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("RNNKIT_BACKEND", raising=False)


def _case(cell, T, B, I, H, dtype, lengths=None, reverse=False, masks=False, bias=True):
    x = torch.randn(T, B, I, dtype=dtype, device=DEV, requires_grad=True)
    states0 = tuple(torch.randn(B, H, dtype=dtype, device=DEV, requires_grad=True)
                    for _ in range(NUM_STATES[cell]))
    weights = [None if w is None else w.detach().to(DEV).requires_grad_()
               for w in make_weights(cell, I, H, dtype, bias=bias)]
    extra = [w.detach().to(DEV).requires_grad_() for w in make_extra(cell, H, dtype)]
    leaves = [x, *states0, *[w for w in weights if w is not None], *extra]
    run_masks = None
    if masks:
        drawn = random_masks(cell, T, B, H, dtype)
        run_masks = type(drawn)(drawn.recurrent.to(DEV), tuple(m.to(DEV) for m in drawn.zoneout))
    dy = torch.randn(T, B, H, dtype=dtype, device=DEV)
    dfinal = [torch.randn(B, H, dtype=dtype, device=DEV) for _ in states0]
    out = {}
    for backend in ("reference", "triton"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a fallback to another engine fails the test
            y, final = run_direction(cell, x, states0, *weights, lengths=lengths,
                                     reverse=reverse, backend=backend, extra=extra,
                                     masks=run_masks)
        grads = torch.autograd.grad([y, *final], leaves, [dy, *dfinal])
        out[backend] = [y, *final, *grads]
    return out


def _assert_same(out, tol):
    for got, want in zip(out["triton"], out["reference"]):
        torch.testing.assert_close(got, want, **tol)


F64 = {"rtol": 1e-10, "atol": 1e-10}


@pytest.mark.parametrize(("cell", "loop"), [(c, "step") for c in CELLS]
                         + [(c, "persistent") for c in CELLS if not c.startswith("ln-")])
def test_every_cell_float64(cell, loop, monkeypatch):
    """Full length; then lengths, reverse direction and both kinds of masks together; with
    a launch per step and with the loop persistent over time (the layer-norm cells always
    step)."""
    monkeypatch.setenv(loops.LOOP_VAR, loop)
    _assert_same(_case(cell, T=5, B=3, I=4, H=6, dtype=torch.float64), F64)
    _assert_same(_case(cell, T=6, B=5, I=3, H=5, dtype=torch.float64,
                       lengths=random_lengths(5, 6), reverse=True, masks=True), F64)


@pytest.mark.parametrize(("cell", "loop"), [("lstm", "step"), ("lstm", "persistent"),
                                         ("gru", "persistent"), ("ln-lstm", "step")])
def test_several_tiles_float32(cell, loop, monkeypatch):
    """B = 18 rows (two row tiles), H = 40 (two hidden tiles, ragged; two 32-wide slices
    of each product), float32, lengths and masks."""
    monkeypatch.setenv(loops.LOOP_VAR, loop)
    out = _case(cell, T=4, B=18, I=7, H=40, dtype=torch.float32,
                lengths=random_lengths(18, 4), masks=True)
    tol = {"rtol": 2e-3, "atol": 2e-3} if cell.startswith("ln-") else {"rtol": 1e-4, "atol": 1e-5}
    _assert_same(out, tol)


@pytest.mark.parametrize("cell", ["gru", "carry-lstm"])
def test_without_biases_and_saturated_gates(cell):
    out = _case(cell, T=3, B=2, I=3, H=4, dtype=torch.float64, bias=False)
    _assert_same(out, F64)
    # Pre-activations of 1e4: the gates saturate to exactly 0 or 1, never NaN.
    x = torch.full((3, 2, 3), 1e4, dtype=torch.float32, device=DEV)
    x[:, 1] = -1e4
    w = [None if v is None else v.detach().to(DEV) for v in make_weights(cell, 3, 4, torch.float32)]
    s0 = tuple(torch.zeros(2, 4, device=DEV) for _ in range(NUM_STATES[cell]))
    y_t, _ = run_direction(cell, x, s0, *w, backend="triton")
    y_r, _ = run_direction(cell, x, s0, *w, backend="reference")
    assert torch.isfinite(y_t).all()
    torch.testing.assert_close(y_t, y_r)


def test_gradcheck():
    """gradcheck (float64, finite differences) of the ln-gru loop, which has the most
    hand-derived maths (two layer norms' backward inside the GRU's), with lengths."""
    cell, T, B, I, H = "ln-gru", 2, 2, 2, 2
    dtype = torch.float64
    x = torch.randn(T, B, I, dtype=dtype, device=DEV, requires_grad=True)
    s0 = (torch.randn(B, H, dtype=dtype, device=DEV),)
    w = [v.detach().to(DEV) for v in make_weights(cell, I, H, dtype)]
    w[1].requires_grad_()
    extra = [v.detach().to(DEV) for v in make_extra(cell, H, dtype)]
    lengths = torch.tensor([2, 1])

    def f(x, w_hh):
        y, final = run_direction(cell, x, s0, w[0], w_hh, w[2], w[3], lengths=lengths,
                                 backend="triton", extra=extra)
        return (y, *final)

    # fast mode: a random directional derivative against v^T J u (the interpreter is slow)
    assert torch.autograd.gradcheck(f, (x, w[1]), fast_mode=True)


def test_state_gradient_recording_matches_the_fused_engine():
    """record_state_gradients() takes the unfused backward path (dL/dh_t whole before each
    step); its norms, and the gradients, equal the fused engine's."""
    torch.manual_seed(0)
    T, B, I, H = 5, 4, 3, 6
    x = torch.randn(T, B, I, dtype=torch.float64, device=DEV, requires_grad=True)
    w = [v.detach().to(DEV) for v in make_weights("gru", I, H, torch.float64)]
    s0 = (torch.zeros(B, H, dtype=torch.float64, device=DEV),)
    lengths = torch.tensor([5, 3, 4, 1])
    runs = {}
    for backend in ("fused", "triton"):
        with record_state_gradients() as norms:
            y, _ = run_direction("gru", x, s0, *w, lengths=lengths, backend=backend)
            (gx,) = torch.autograd.grad(y.square().sum(), x)
        runs[backend] = (norms[0], gx)
    torch.testing.assert_close(runs["triton"][0], runs["fused"][0], **F64)
    torch.testing.assert_close(runs["triton"][1], runs["fused"][1], **F64)


def test_double_backward_and_the_operator_contract():
    """Through torch.ops.rnnkit.sequence like every engine: a second derivative (from the
    reference recomputation) equals autograd's through the reference engine; an empty
    batch runs; a malformed input is refused at the boundary."""
    T, B, I, H = 3, 2, 2, 4
    x = torch.randn(T, B, I, dtype=torch.float64, device=DEV, requires_grad=True)
    w = [v.detach().to(DEV).requires_grad_() for v in make_weights("lstm", I, H, torch.float64)]
    s0 = tuple(torch.zeros(B, H, dtype=torch.float64, device=DEV) for _ in range(2))
    second = {}
    for backend in ("reference", "triton"):
        y, _ = run_direction("lstm", x, s0, *w, backend=backend)
        (g,) = torch.autograd.grad(y.sum(), w[1], create_graph=True)
        second[backend] = torch.autograd.grad(g.square().sum(), x)[0]
    torch.testing.assert_close(second["triton"], second["reference"], **F64)
    empty = torch.zeros(T, 0, I, dtype=torch.float64, device=DEV)
    y, final = run_sequence("triton", "lstm", empty, tuple(s[:0] for s in s0), *w, None)
    assert y.shape == (T, 0, H) and final[0].shape == (0, H)
    with pytest.raises(RuntimeError, match=r"rnnkit.ops.sequence: lengths"):
        run_sequence("triton", "lstm", x, s0, *w, torch.tensor([4, 1]))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_layers_match_torch_nn(kind):
    """rnnkit.nn layers on the triton engine with torch.nn's weights: stacked,
    bidirectional, packed sequences (cuDNN on a GPU, oneDNN or torch's loop on the CPU)."""
    torch.manual_seed(0)
    dtype = torch.float64
    reference = getattr(torch.nn, kind)(5, 16, num_layers=2, bidirectional=True).to(DEV, dtype)
    ours = getattr(rnnkit.nn, kind)(5, 16, num_layers=2, bidirectional=True,
                                    backend="triton").to(DEV, dtype)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(6, 3, 5, dtype=dtype, device=DEV, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([6, 4, 2]))
    (out_r, _), (out_o, _) = reference(packed), ours(packed)
    torch.testing.assert_close(out_o.data, out_r.data, **F64)
    g_r = torch.autograd.grad(out_r.data.sum(), [x, *reference.parameters()], retain_graph=True)
    g_o = torch.autograd.grad(out_o.data.sum(), [x, *ours.parameters()])
    for a, b in zip(g_o, g_r):
        torch.testing.assert_close(a, b, **F64)


@pytest.mark.skipif(not CUDA, reason="full size on a GPU only (the interpreter is slow)")
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_full_size_parity_with_cudnn(kind, monkeypatch):
    """PyTorch's fastrnns shape (T = 100, B = 64, H = 512), float32 with TF32 off in
    cuDNN: outputs and gradients as cuDNN's, to float32 rounding over 100 steps."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    reference = getattr(torch.nn, kind)(512, 512).cuda()
    ours = getattr(rnnkit.nn, kind)(512, 512, backend="triton").cuda()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(100, 64, 512, device="cuda", requires_grad=True)
    (out_r, _), (out_o, _) = reference(x), ours(x)
    torch.testing.assert_close(out_o, out_r, rtol=1e-4, atol=1e-4)
    g_r = torch.autograd.grad(out_r.sum(), [x, *reference.parameters()])
    g_o = torch.autograd.grad(out_o.sum(), [x, *ours.parameters()])
    for a, b in zip(g_o, g_r):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("activation", ["g", "identity"])
def test_minimal_cells(cell, activation):
    """The minimal cells' scan kernels against the step loop with autograd, float64, with
    lengths; B H = 300 channels (two programs of 256, the second ragged)."""
    from rnnkit.backends.minimal import run_min

    T, B, H = 6, 5, 60
    G = H * (2 if cell == "mingru" else 3)
    proj = (3 * torch.randn(T, B, G, dtype=torch.float64, device=DEV)).requires_grad_()
    h0 = torch.randn(B, H, dtype=torch.float64, device=DEV, requires_grad=True)
    dh = torch.randn(T, B, H, dtype=torch.float64, device=DEV)
    for lengths in (None, torch.tensor([6, 2, 5, 1, 3])):
        out = {}
        for engine in ("reference", "triton"):
            h = run_min(engine, cell, activation, proj, h0, lengths)
            out[engine] = [h, *torch.autograd.grad(h, [proj, h0], dh)]
        for got, want in zip(out["triton"], out["reference"]):
            torch.testing.assert_close(got, want, **F64)


def test_minimal_layer_on_triton_equals_scan():
    torch.manual_seed(0)
    layer = rnnkit.nn.MinLSTM(4, 8, num_layers=2, bidirectional=True).to(DEV, torch.float64)
    x = torch.randn(7, 3, 4, dtype=torch.float64, device=DEV, requires_grad=True)
    outs = {}
    for engine in ("scan", "triton"):
        layer.backend = engine
        y, h = layer(x)
        outs[engine] = [y, h, *torch.autograd.grad(y.sum() + h.sum(), [x, *layer.parameters()])]
    for got, want in zip(outs["triton"], outs["scan"]):
        torch.testing.assert_close(got, want, **F64)
    layer.backend = None  # the automatic choice: triton only on CUDA
    from rnnkit.backends.minimal import select_min_engine

    automatic = select_min_engine(None, DEV, torch.float64)
    assert automatic == "triton" if CUDA else automatic in ("native", "scan")


def test_selection():
    """On the CPU the triton engine is chosen only in the interpreter; on CUDA it is the
    automatic choice for every built-in cell, float32 and float64."""
    if CUDA:
        for cell in CELLS:
            assert select_backend(None, cell, DEV, torch.float32).name == "triton"
        assert select_backend(None, "lstm", DEV, torch.float16).name == "fused"
    else:
        assert select_backend(None, "lstm", DEV, torch.float32).name == "triton"
    engine = rnnkit.backends.get_backend("triton")
    assert "float32 or float64" in engine.unsupported_reason("lstm", DEV, torch.bfloat16)

    # A GPU older than Triton supports is refused, by name, before any kernel is built.
    from rnnkit.backends import triton_engine

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(triton_engine, "_capability", lambda index: (6, 1))
        reason = engine.unsupported_reason("lstm", torch.device("cuda:0"), torch.float32)
    assert reason == "GPU compute capability 6.1 is below Triton's 7.0"


def test_loop_choice():
    """Persistent over time where W_hh fits on chip, a launch per step otherwise; the
    layer-norm cells always step; a bad RNNKIT_TRITON_LOOP is named."""
    lstm, ln_lstm = 2, 5
    assert loops.persistent(lstm, 100, 64, 128, 4)  # 4 x 128 x 128 x 4 bytes = 256 KiB
    assert not loops.persistent(lstm, 100, 64, 256, 4)
    assert not loops.persistent(ln_lstm, 100, 64, 32, 4)
    assert not loops.persistent(lstm, 2 ** 20, 64, 64, 4)  # offsets past 2**31
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(loops.LOOP_VAR, "persistent")
        assert loops.persistent(lstm, 100, 64, 1024, 4)
        mp.setenv(loops.LOOP_VAR, "fast")
        with pytest.raises(ValueError, match="RNNKIT_TRITON_LOOP: expected auto, step or "
                                             "persistent, got 'fast'"):
            loops.persistent(lstm, 100, 64, 128, 4)


def test_not_chosen_on_the_cpu_outside_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cpu = torch.device("cpu")
    assert select_backend(None, "lstm", cpu, torch.float32).name in ("native", "fused")
    reason = rnnkit.backends.get_backend("triton").unsupported_reason("lstm", cpu, torch.float32)
    assert "TRITON_INTERPRET=1" in reason
    from rnnkit.backends.minimal import run_min, select_min_engine

    assert select_min_engine(None, cpu, torch.float32) in ("native", "scan")
    with pytest.raises(ValueError, match=r"backend: 'triton' cannot run torch.float32 on cpu "
                                         r"\(device cpu is not CUDA"):
        select_min_engine("triton", cpu, torch.float32)
    with pytest.raises(RuntimeError, match=r"rnnkit.ops.min_scan: engine 'triton': device cpu "
                                           r"is not CUDA.*use engine 'scan'"):
        run_min("triton", "mingru", "g", torch.zeros(2, 1, 4), torch.zeros(1, 2), None)


@pytest.mark.skipif(CUDA, reason="on a GPU the benchmark itself is the check")
def test_gpu_benchmark_script_runs_in_the_interpreter(tmp_path):
    """benchmarks/gpu.py cannot be timed without a GPU; its --interpret smoke run checks
    the script end to end (the correctness check before timing, every competitor, the
    JSON) so that it is ready when one is lent."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "gpu.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu.py"), "--interpret",
                             "--cells", "gru", "--min-cells", "mingru", "--json", str(out)],
                            check=False, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(out.read_text())
    assert payload["interpreted"] and payload["goals"] == []
    (fwd, both) = payload["results"]
    assert {"torch.nn", "triton", "triton-step", "triton-persistent", "fused"} <= set(both["ms"])
    assert fwd["tolerance_score"] <= 1
    assert [(r["cell"], r["mode"]) for r in payload["minimal"]] == [("mingru", "forward"),
                                                                    ("mingru", "fwd+bwd")]
    assert payload["minimal"][1]["bound_ms"] > payload["minimal"][0]["bound_ms"] > 0
