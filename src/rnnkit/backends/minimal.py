"""The minimal cells' engines (minGRU, minLSTM) as PyTorch operators.

``torch.ops.rnnkit.min_scan(engine, cell, activation, proj, h0, lengths) -> h`` runs the
linear recurrence ``h_t = a_t h_{t-1} + b_t`` of :mod:`rnnkit.functional.minimal` over the
projections ``proj`` [T, B, G] (the matrix product ``W x + b`` stays outside, a plain torch
op), and ``min_scan_backward(..., h, dh) -> [dproj, dh0]`` is its hand-derived backward.
Past a sequence's length the state carries on, so ``h[-1]`` holds every final state.

Engines:

* ``native``: the C++ loop (``backends/native/minimal.cpp``), CPU, float32 and float64;
  gate maps fused into one pass over memory each way.
* ``triton``: one Triton kernel each way (``backends/triton_engine``), CUDA (on the CPU
  only in Triton's interpreter), float32 and float64; a program per block of channels
  walks the steps, so every byte moves once.
* ``scan``: the chunked parallel scan in torch operations
  (:func:`rnnkit.functional.minimal.scan_forward`, ``scan_backward``), any device and dtype.
* ``reference``: the step-by-step loop with autograd
  (:func:`~rnnkit.functional.minimal.sequential_forward`), the oracle; not an operator.

What registration buys is the contract of :mod:`rnnkit.backends.ops`: a fake kernel
(``torch.compile(fullgraph=True)``), registered autograd (the backward operator; under
``create_graph`` the gradients of the ``scan`` engine's differentiable recomputation, so
double backward is exact), and a batching rule (``torch.func.vmap``, ``jacrev``). Inputs
are checked here, for every engine, and again by the native code at its own boundary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.backends.native import build
from rnnkit.backends.op_autograd import _needs_differentiable, _plain_eager
from rnnkit.backends.ops import NAMESPACE, OperatorInputError, _loop_vmap
from rnnkit.functional.minimal import (
    ACTIVATIONS,
    MIN_CELLS,
    scan_backward,
    scan_forward,
    sequential_forward,
)

MIN_ENGINES = ("triton", "native", "scan", "reference")
_OPS = ("triton", "native", "scan")  # the engines that run through the operators


def _fail(msg: str) -> None:
    raise OperatorInputError(f"rnnkit.ops.min_scan: {msg}")


def check_min_inputs(engine: str, cell: str, activation: str, proj: Tensor, h0: Tensor,
                     lengths: Tensor | None) -> None:
    """Every assumption the kernels make (names, shapes, dtypes, devices, lengths)."""
    if engine not in _OPS:
        _fail(f"engine: expected one of {', '.join(_OPS)}, got {engine!r}")
    if cell not in MIN_CELLS:
        _fail(f"cell: expected one of {', '.join(MIN_CELLS)}, got {cell!r}")
    if activation not in ACTIVATIONS:
        _fail(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if proj.dim() != 3 or not proj.dtype.is_floating_point:
        _fail(f"proj: expected a floating-point [T, B, gates * H] tensor, got {proj.dtype} "
              f"{tuple(proj.shape)}")
    _, B, G = proj.shape
    if h0.dim() != 2 or h0.shape[0] != B or h0.shape[1] * MIN_CELLS[cell].gates != G:
        _fail(f"h0: expected shape ({B}, {G // MIN_CELLS[cell].gates}) (B, H with "
              f"{MIN_CELLS[cell].gates} gate blocks of H in proj's {G}), got {tuple(h0.shape)}")
    if h0.dtype != proj.dtype or h0.device != proj.device:
        _fail(f"h0: expected {proj.dtype} on {proj.device} (proj's), got {h0.dtype} on "
              f"{h0.device}")
    if engine == "native":
        if proj.device.type != "cpu" or proj.dtype not in (torch.float32, torch.float64):
            _fail(f"engine 'native' runs float32 and float64 on the CPU, got {proj.dtype} on "
                  f"{proj.device}")
        if build.load() is not None:
            _fail(f"engine 'native' is unavailable ({build.load()}); use engine 'scan'")
    if engine == "triton":
        reason = _triton_unsupported(proj.device, proj.dtype)
        if reason is not None:
            _fail(f"engine 'triton': {reason}; use engine 'scan'")
    if lengths is not None and (lengths.dim() != 1 or lengths.shape[0] != B
                                or lengths.dtype != torch.int64 or lengths.device.type != "cpu"):
        _fail(f"lengths: expected an int64 CPU tensor of shape ({B},), got {lengths.dtype} "
              f"{tuple(lengths.shape)} on {lengths.device}")


def _check_length_values(lengths: Tensor | None, T: int) -> None:
    if lengths is not None and lengths.numel() and (int(lengths.min()) < 1
                                                    or int(lengths.max()) > T):
        _fail(f"lengths: expected every length in 1..{T}, got values from "
              f"{int(lengths.min())} to {int(lengths.max())}")


def _codes(cell: str, activation: str) -> tuple[int, int]:
    return list(MIN_CELLS).index(cell), ACTIVATIONS.index(activation)


def _forward_impl(engine: str, cell: str, activation: str, proj: Tensor, h0: Tensor,
                  lengths: Tensor | None) -> Tensor:
    check_min_inputs(engine, cell, activation, proj, h0, lengths)
    T, B, _ = proj.shape
    if T == 0 or B == 0:
        return proj.new_zeros(T, B, h0.shape[1])
    _check_length_values(lengths, T)
    if engine == "triton":
        from rnnkit.backends.triton_engine import loops

        return loops.min_forward(cell, activation, proj, h0, lengths)
    if engine == "native":
        return torch.ops.rnnkit.min_forward(*_codes(cell, activation), proj.contiguous(),
                                            h0.contiguous(), lengths)
    return scan_forward(cell, proj, h0, activation, lengths)


def _forward_fake(engine, cell, activation, proj, h0, lengths):
    check_min_inputs(engine, cell, activation, proj, h0, lengths)
    return proj.new_empty(proj.shape[0], proj.shape[1], h0.shape[1])


def _backward_impl(engine: str, cell: str, activation: str, proj: Tensor, h0: Tensor,
                   lengths: Tensor | None, h: Tensor, dh: Tensor) -> list[Tensor]:
    check_min_inputs(engine, cell, activation, proj, h0, lengths)
    for name, t in (("h", h), ("dh", dh)):
        if t.shape != (*proj.shape[:2], h0.shape[1]) or t.dtype != proj.dtype:
            _fail(f"{name}: expected {proj.dtype} {(*proj.shape[:2], h0.shape[1])}, got "
                  f"{t.dtype} {tuple(t.shape)}")
    T, B, _ = proj.shape
    if T == 0 or B == 0:
        return [torch.zeros_like(proj), torch.zeros_like(h0)]
    _check_length_values(lengths, T)
    if engine == "triton":
        from rnnkit.backends.triton_engine import loops

        return loops.min_backward(cell, activation, proj, h0, lengths, h, dh)
    if engine == "native":
        dproj, dh0 = torch.ops.rnnkit.min_backward(
            *_codes(cell, activation), proj.contiguous(), h0.contiguous(), lengths,
            h.contiguous(), dh.contiguous())
        return [dproj, dh0]
    return list(scan_backward(cell, proj, h0, activation, lengths, h, dh))


def _backward_fake(engine, cell, activation, proj, h0, lengths, h, dh):
    return [torch.empty_like(proj), torch.empty_like(h0)]


def _setup_context(ctx, inputs, output) -> None:
    engine, cell, activation, proj, h0, lengths = inputs
    ctx.names = (engine, cell, activation)
    ctx.has_lengths = lengths is not None
    ctx.save_for_backward(proj, h0, output, *([lengths] if ctx.has_lengths else []))


def _backward(ctx, dh: Tensor | None):
    proj, h0, h, *rest = ctx.saved_tensors
    lengths = rest[0] if ctx.has_lengths else None
    engine, cell, activation = ctx.names
    need = ctx.needs_input_grad[3:5]
    if dh is None or not any(need):
        return None, None, None, None, None, None
    if not torch.compiler.is_compiling() and _needs_differentiable([proj, h0], dh, []):
        dproj, dh0 = differentiable_backward(cell, activation, proj, h0, lengths, dh)
    else:
        args = (engine, cell, activation, proj, h0, lengths, h, dh)
        if torch.compiler.is_compiling():
            dproj, dh0 = torch.ops.rnnkit.min_scan_backward(*args)
        elif _plain_eager(proj) and not torch._C._are_functorch_transforms_active():
            dproj, dh0 = _backward_impl(*args)
        else:
            with torch._C._AutoDispatchBelowAutograd():
                dproj, dh0 = torch.ops.rnnkit.min_scan_backward(*args)
    return (None, None, None, dproj if need[0] else None, dh0 if need[1] else None, None)


def differentiable_backward(cell: str, activation: str, proj: Tensor, h0: Tensor,
                            lengths: Tensor | None, dh: Tensor) -> tuple[Tensor, Tensor]:
    """The gradients as a differentiable function of the inputs and of ``dh``: autograd
    through the ``scan`` engine's recomputation of the forward, with ``create_graph``."""
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in (proj, h0)]
        h = scan_forward(cell, inputs[0], inputs[1], activation, lengths)
        dproj, dh0 = torch.autograd.grad(h, inputs, dh, create_graph=True, allow_unused=True)
    return (torch.zeros_like(proj) if dproj is None else dproj,
            torch.zeros_like(h0) if dh0 is None else dh0)


_LIB = torch.library.Library(NAMESPACE, "FRAGMENT")
_INPUTS = "str engine, str cell, str activation, Tensor proj, Tensor h0, Tensor? lengths"


def _register() -> None:
    _LIB.define(f"min_scan({_INPUTS}) -> Tensor")
    _LIB.define(f"min_scan_backward({_INPUTS}, Tensor h, Tensor dh) -> Tensor[]")
    _LIB.impl("min_scan", _forward_impl, "CompositeExplicitAutograd")
    _LIB.impl("min_scan_backward", _backward_impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"{NAMESPACE}::min_scan", _forward_fake, lib=_LIB)
    torch.library.register_fake(f"{NAMESPACE}::min_scan_backward", _backward_fake, lib=_LIB)
    torch.library.register_autograd(f"{NAMESPACE}::min_scan", _backward,
                                    setup_context=_setup_context, lib=_LIB)

    torch.library.register_vmap(f"{NAMESPACE}::min_scan", _vmap_forward, lib=_LIB)
    torch.library.register_vmap(f"{NAMESPACE}::min_scan_backward", _vmap_backward, lib=_LIB)


def _vmap_forward(info, in_dims, *args):
    out, dims = _loop_vmap(lambda *a: [torch.ops.rnnkit.min_scan(*a)], info, in_dims, *args)
    return out[0], dims[0]


def _vmap_backward(info, in_dims, *args):
    return _loop_vmap(torch.ops.rnnkit.min_scan_backward, info, in_dims, *args)


_register()


def native_available() -> bool:
    """Whether the native loop is built and loaded (it builds on first use)."""
    return build.load() is None


def _triton_unsupported(device: torch.device, dtype: torch.dtype) -> str | None:
    from rnnkit.backends.triton_engine import TritonBackend

    return TritonBackend().unsupported_reason("lstm", device, dtype)


def select_min_engine(backend: str | None, device: torch.device, dtype: torch.dtype) -> str:
    """The engine a minimal layer runs: ``backend`` if given (checked), else ``triton`` on
    CUDA in float32/float64 where Triton is installed, ``native`` on the CPU in
    float32/float64 when built, else ``scan``."""
    if backend is not None:
        if backend not in MIN_ENGINES:
            raise ValueError(f"backend: the minimal cells run on {', '.join(MIN_ENGINES)}, "
                             f"got {backend!r}")
        if backend == "triton" and _triton_unsupported(device, dtype) is not None:
            raise ValueError(f"backend: 'triton' cannot run {dtype} on {device} "
                             f"({_triton_unsupported(device, dtype)})")
        if backend == "native" and (device.type != "cpu"
                                    or dtype not in (torch.float32, torch.float64)
                                    or not native_available()):
            raise ValueError(f"backend: 'native' runs float32 and float64 on the CPU with the "
                             f"native engine built; got {dtype} on {device}"
                             + ("" if native_available() else f" ({build.load()})"))
        return backend
    if device.type == "cuda" and _triton_unsupported(device, dtype) is None:
        return "triton"
    if device.type == "cpu" and dtype in (torch.float32, torch.float64) and native_available():
        return "native"
    return "scan"


class MinScanFunction(torch.autograd.Function):
    """``torch.ops.rnnkit.min_scan`` as an autograd.Function with a separate
    ``setup_context`` and a generated batching rule: what ``torch.func`` transforms need
    (the operator's own registered autograd serves direct calls); the same backward."""

    generate_vmap_rule = True

    @staticmethod
    def forward(engine, cell, activation, proj, h0, lengths):
        return torch.ops.rnnkit.min_scan(engine, cell, activation, proj, h0, lengths)

    setup_context = staticmethod(_setup_context)

    @staticmethod
    def backward(ctx, dh):
        return _backward(ctx, dh)


def run_min(engine: str, cell: str, activation: str, proj: Tensor, h0: Tensor,
            lengths: Tensor | None) -> Tensor:
    """h [T, B, H] (carried past each sequence's end) from ``proj`` [T, B, G], ``h0`` [B, H],
    with the engine named (``reference`` runs the step loop with autograd)."""
    if engine == "reference":
        return sequential_forward(cell, proj, h0, activation, lengths)
    return MinScanFunction.apply(engine, cell, activation, proj, h0, lengths)


__all__ = ["MIN_ENGINES", "MinScanFunction", "check_min_inputs", "differentiable_backward", "native_available",
           "run_min", "select_min_engine"]
