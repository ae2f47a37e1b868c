"""The ``triton`` engine: the time loops of every built-in cell as Triton kernels, for CUDA.

What it shares with the native engine (:class:`rnnkit.backends.native.NativeKernel`): the
saved buffers, the whole-sequence products (input projections and input layer norm before
the loop, weight and input gradients after it, cuBLAS through torch) and the operator
contract (:mod:`rnnkit.backends.ops`: boundary checks, ``torch.compile``, ``torch.func``,
double backward through the reference recomputation). What it brings: the loops
(:mod:`.loops`), a step of a plain cell fused into one kernel launch forward and one
backward (:mod:`.kernels`).

Cases: float32 and float64 on CUDA, every built-in cell, with recurrent dropout, zoneout
and variable lengths. On the CPU it runs only in Triton's interpreter
(``TRITON_INTERPRET=1``, how the tests check it without a GPU), and never as the automatic
choice there unless that variable is set. Triton is an extra: ``pip install rnnkit[gpu]``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.backends import ops
from rnnkit.backends.native import CELLS, KINDS, NativeKernel
from rnnkit.functional import Masks

DTYPES = (torch.float32, torch.float64)


def interpreting() -> bool:
    """True when Triton's interpreter is on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def installed() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


class TritonKernel(NativeKernel):
    """The native engine's buffers and whole-sequence maths, with Triton time loops."""

    @staticmethod
    def forward_loop(*args) -> None:
        from rnnkit.backends.triton_engine import loops

        loops.cell_forward(*args)

    @staticmethod
    def backward_loop(*args) -> None:
        from rnnkit.backends.triton_engine import loops

        loops.cell_backward(*args)


class TritonBackend:
    """Triton kernels; CUDA (or the interpreter), float32 and float64, every built-in cell."""

    name = "triton"

    def unsupported_reason(self, cell: str, device: torch.device, dtype: torch.dtype) -> str | None:
        if cell not in KINDS:
            return f"cell {cell!r} has no Triton loop (it has: {', '.join(CELLS)})"
        if device.type != "cuda" and not (device.type == "cpu" and interpreting()):
            return (f"device {device} is not CUDA (on the CPU the kernels run only in "
                    "Triton's interpreter, TRITON_INTERPRET=1)")
        if dtype not in DTYPES:
            return f"dtype {dtype} is not float32 or float64"
        if not installed():
            return "Triton is not installed (pip install 'rnnkit[gpu]')"
        if device.type == "cuda":
            major, minor = _capability(device.index if device.index is not None
                                       else torch.cuda.current_device())
            if major < 7:  # as torch.utils._triton.has_triton
                return f"GPU compute capability {major}.{minor} is below Triton's 7.0"
        return None

    def run(self, cell: str, x: Tensor, states0: tuple[Tensor, ...], w_ih: Tensor,
            w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None,
            lengths: Tensor | None, extra: Sequence[Tensor] = (),
            masks: Masks | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        return ops.run_sequence("triton", cell, x.contiguous(),
                                tuple(s.contiguous() for s in states0),
                                w_ih, w_hh, b_ih, b_hh, lengths, extra, masks)


ops.register_kernel("triton", TritonKernel())

__all__ = ["DTYPES", "TritonBackend", "TritonKernel", "installed", "interpreting"]
