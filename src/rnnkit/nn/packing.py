"""PackedSequence in and out of the layers, as registered operators.

``torch.nn.utils.rnn.pad_packed_sequence`` gives a tensor whose batch size is a value of
``batch_sizes`` (data, not a shape), so ``torch.compile`` cannot trace it without a graph
break, and torch.nn's recurrent layers break the graph on every packed input. Here the two
conversions are operators with fake kernels: the padded batch size is the length of
``sorted_indices`` when the sequence has one (``enforce_sorted=False``), else a size the
compiler treats as data-dependent; the packed size is that of the input's data. Both are
linear maps, so each one's backward is the other.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence


@torch.library.custom_op("rnnkit::unpack_sequence", mutates_args=())
def unpack_sequence(data: Tensor, batch_sizes: Tensor,
                    unsorted_indices: Tensor | None) -> tuple[Tensor, Tensor]:
    """Packed ``data`` [N, *] -> padded [T, B, *] in the caller's batch order, and the
    int64 CPU lengths [B] in that order."""
    T = batch_sizes.shape[0]
    padded, lengths = torch._VF._pad_packed_sequence(data, batch_sizes, False, 0.0, T)
    if unsorted_indices is not None:
        padded = padded.index_select(1, unsorted_indices)
        lengths = lengths.index_select(0, unsorted_indices.cpu())
    return padded, lengths.clone()


@unpack_sequence.register_fake
def _unpack_fake(data, batch_sizes, unsorted_indices):
    T = batch_sizes.shape[0]
    if unsorted_indices is not None:
        B = unsorted_indices.shape[0]
    else:
        B = torch.library.get_ctx().new_dynamic_size()
    return (data.new_empty(T, B, *data.shape[1:]),
            torch.empty(B, dtype=torch.int64, device="cpu"))


@torch.library.custom_op("rnnkit::pack_sequence", mutates_args=())
def pack_sequence(padded: Tensor, batch_sizes: Tensor, sorted_indices: Tensor | None,
                  total: int) -> Tensor:
    """Padded [T, B, *] in the caller's batch order -> packed data [total, *] laid out as
    ``batch_sizes`` and ``sorted_indices`` say."""
    if sorted_indices is not None:
        padded = padded.index_select(1, sorted_indices)
    rows = torch.arange(padded.shape[1])
    lengths = (batch_sizes.unsqueeze(1) > rows.unsqueeze(0)).sum(0)  # [B], longest first
    data, _ = torch._VF._pack_padded_sequence(padded, lengths, False)
    return data.clone() if data.data_ptr() == padded.data_ptr() else data


@pack_sequence.register_fake
def _pack_fake(padded, batch_sizes, sorted_indices, total):
    return padded.new_empty(total, *padded.shape[2:])


def _unpack_setup(ctx, inputs, output):
    data, batch_sizes, unsorted_indices = inputs
    ctx.total = data.shape[0]
    ctx.save_for_backward(batch_sizes, unsorted_indices)
    ctx.mark_non_differentiable(output[1])


def _unpack_backward(ctx, grad_padded, grad_lengths):
    batch_sizes, unsorted_indices = ctx.saved_tensors
    if grad_padded is None:
        return None, None, None
    sorted_indices = None if unsorted_indices is None else torch.argsort(unsorted_indices)
    return pack_sequence(grad_padded, batch_sizes, sorted_indices, ctx.total), None, None


def _pack_setup(ctx, inputs, output):
    padded, batch_sizes, sorted_indices, _total = inputs
    ctx.B = padded.shape[1]
    ctx.save_for_backward(batch_sizes, sorted_indices)


def _pack_backward(ctx, grad_data):
    batch_sizes, sorted_indices = ctx.saved_tensors
    unsorted = None if sorted_indices is None else torch.argsort(sorted_indices)
    padded, _ = unpack_sequence(grad_data, batch_sizes, unsorted)
    return padded, None, None, None


unpack_sequence.register_autograd(_unpack_backward, setup_context=_unpack_setup)
pack_sequence.register_autograd(_pack_backward, setup_context=_pack_setup)


def unpack(seq: PackedSequence) -> tuple[Tensor, Tensor]:
    """A PackedSequence as a padded time-major tensor and its lengths, both in the
    caller's batch order (what ``pad_packed_sequence`` returns)."""
    return unpack_sequence(seq.data, seq.batch_sizes, seq.unsorted_indices)


def repack(output: Tensor, like: PackedSequence) -> PackedSequence:
    """A padded [T, B, *] output packed exactly as ``like``."""
    data = pack_sequence(output, like.batch_sizes, like.sorted_indices, like.data.shape[0])
    return like._replace(data=data)


__all__ = ["pack_sequence", "repack", "unpack", "unpack_sequence"]
