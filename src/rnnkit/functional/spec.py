"""What describes a cell: :class:`CellSpec` (the registry in :mod:`rnnkit.functional`
holds one per cell), the extra parameters a variant adds, the regularisation masks, and
the per-step views of the gate buffers the fused loop hands a cell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor


class GateBlock(NamedTuple):
    """One time step of a [T, B, gates * H] buffer, in the shapes the cells use.

    The views are made for all steps at once before the loop: inside it, each slice
    would cost a dispatch.
    """

    flat: Tensor  # [n, G], for the matrix products
    split: Tensor  # [n, gates, H], for products broadcast over the gate blocks
    gates: tuple[Tensor, ...]  # one [n, H] view per gate block

    def rows(self, n: int) -> GateBlock:
        """The first ``n`` rows (the sequences still running)."""
        return GateBlock(self.flat[:n], self.split[:n], tuple(g[:n] for g in self.gates))


def gate_blocks(buf: Tensor, gates: int) -> list[GateBlock]:
    """Per-step :class:`GateBlock` views of ``buf`` [T, B, gates * H]."""
    T, B, G = buf.shape
    split = buf.view(T, B, gates, G // gates)
    per_gate = [g.unbind(0) for g in split.unbind(2)]
    return [GateBlock(f, s, tuple(g[t] for g in per_gate))
            for t, (f, s) in enumerate(zip(buf.unbind(0), split.unbind(0)))]


class Masks(NamedTuple):
    """The regularisation masks of one run (see the module docstring); all optional."""

    recurrent: Tensor | None = None  # [B, H], multiplies h_{t-1} in the recurrent product
    zoneout: tuple[Tensor | None, ...] = ()  # one [T, B, H] per state (or None), indexed by step


class ExtraParam(NamedTuple):
    """A per-direction parameter a variant adds to W_ih, W_hh, b_ih, b_hh."""

    name: str  # e.g. "ln_hh_weight"; the layer registers it as f"{name}_l{k}[_reverse]"
    width: int  # in units of H
    init: float  # initial value of every element


LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class CellSpec:
    """Everything rnnkit knows about one cell type: the single description every layer,
    engine, task, export and server asks (see :func:`rnnkit.functional.register_cell`).

    A cell needs only ``name``, ``gates``, ``num_states`` and ``step``: it then runs on the
    reference engine (autograd through ``step``). The hand-derived fields (``step_into``,
    ``local_derivatives``, ``backward_step``...) add the fused engine's loop.

    Attributes:
        name: the cell's one name, as ``--cell`` spells it, e.g. ``"ln-lstm"``.
        gates: number of gate blocks stacked in ``W_ih`` / ``W_hh`` (1, 3 or 4).
        num_states: 1 (``h``) or 2 (``h, c``).
        step: the plain, autograd-friendly step
            ``(x_proj_t, state, w_hh, b_hh, extra=(), h_in=None) -> (state, cache)``.
        forget_gate: the gate block whose bias is the forget gate's (``--forget-bias``
            sets it), or None for a cell without one.
        keep_gate: the gate block that keeps the previous state (an LSTM's forget gate,
            a GRU's update gate ``z`` in ``h_t = (1 - z) n + z h_{t-1}``), or None; with
            ``write_gate`` (the LSTM's input gate, or None) it is what ``--chrono`` sets.
        aliases: other spellings accepted for ``name`` (older run folders, torch.nn's
            ``mode`` strings).
        fold_hidden_bias: True when ``b_hh`` enters the cell only through the sum
            ``W_ih x + b_ih + W_hh h + b_hh`` and can be added to the input projection.
        separate_hidden_grads: True when the gradient reaching ``W_hh h + b_hh``
            differs from the one reaching ``W_ih x + b_ih`` (GRU's reset gate).
        cache_widths: width, in units of H, of each extra cache buffer the step fills.
            The first cache buffer is always the input projection [T, B, G], which
            the step may overwrite in place (LSTM and GRU turn it into their gate
            activations, so the hidden product is accumulated without a copy).
        step_into: fused forward step ``(x_t: GateBlock, prev, w_hh_t, b_hh, out, cache)``,
            writing into preallocated slots.
        local_derivatives: ``(cache, states) -> tensors [T, B, ...]``, the per-step
            Jacobian factors, computed for all steps at once.
        backward_step: one step of hand-derived BPTT
            ``(drec, derivs_t, w_hh, dgx: GateBlock, dgh: GateBlock, dy_prev)``.
        prepare: optional, called once per sequence as ``prepare(x_proj, w_hh_t, extra)``
            with the input projections [T, B, G] and the transposed recurrent weight
            [H, G] (both private copies) to put them in the form ``step_into`` expects;
            returns the extra parameters as the step should see them.
        extra: the parameters the cell adds to the four of torch.nn (layer norm gains...).
        input_norm: layer-normalise ``W_ih x_t`` (gain ``extra[0]``) before the biases.
        recurrent_norm: the recurrent product ``W_hh h_{t-1}`` goes through a layer norm
            inside the step, so the gradient reaching it (buffer ``dr``, from which
            ``dW_hh`` is made) differs from the one reaching the pre-activation.
        norm_stats: how many layer norms the step applies; each gets two [T, B, 1]
            cache buffers (mean, 1/std) after the ``cache_widths`` ones.
        accumulators: width (units of H) of zeroed vectors handed to every backward step,
            in which it sums the extra parameters' gradients over the steps.
        extra_grads: ``(accumulators) -> grads`` of the extra parameters (all but the
            input-norm gain, which the loop handles).
    """

    name: str
    gates: int
    num_states: int
    step: Callable[..., tuple[tuple[Tensor, ...], Any]]
    forget_gate: int | None = None
    keep_gate: int | None = None
    write_gate: int | None = None
    aliases: tuple[str, ...] = ()
    fold_hidden_bias: bool = True
    separate_hidden_grads: bool = False
    cache_widths: tuple[int, ...] = ()
    step_into: Callable[..., None] | None = None
    local_derivatives: Callable[..., tuple[Tensor, ...]] | None = None
    backward_step: Callable[..., None] | None = None
    prepare: Callable[..., tuple[Tensor, ...]] | None = None
    extra: tuple[ExtraParam, ...] = ()
    input_norm: bool = False
    recurrent_norm: bool = False
    norm_stats: int = 0
    accumulators: tuple[int, ...] = ()
    extra_grads: Callable[..., tuple[Tensor, ...]] | None = None
