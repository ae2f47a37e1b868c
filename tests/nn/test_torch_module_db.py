"""PyTorch's own test cases for its recurrent modules, run against rnnkit's.

``torch.testing._internal.common_modules`` (shipped in every torch wheel) describes how
PyTorch tests ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` and the three cells: for each, a list of
module inputs (constructor arguments and forward inputs: every combination of bias,
batch_first, bidirectional, nonlinearity, ``proj_size``, unbatched input, initial states
and packed sequences) and a list of error inputs (what must raise, and which exception
class). ``test_modules.py`` then runs generic checks over them. Here the same generators
feed rnnkit's classes, and each case is checked against torch.nn itself:

* every module input: outputs, final states and the gradients of the inputs and of every
  parameter equal torch.nn's with copied weights (float64), in train and eval mode;
* ``test_modules``' gradient checks: ``gradcheck`` and ``gradgradcheck`` over inputs and
  parameters, with ``check_batched_grad=True`` (the first three cases of each module: the
  finite differences over every parameter of a stacked bidirectional layer take seconds a
  case, and the rest differ only in flags the parity check covers);
* ``test_modules``' generic checks: repr, pickling, ``state_dict`` round trip,
  ``dtype=``/``device=`` factory arguments, non-contiguous inputs;
* every error input raises the exception class torch.nn raises (rnnkit's messages are its
  own, so the regexes are not compared), but for four cell cases that pass a string as
  ``bias``, which rnnkit refuses (TypeError) where torch.nn's cells accept it.

Left out: ``test_cpu_gpu_parity`` and device transfers (no GPU in CI; the CUDA tests in
``tests/backends/test_cuda.py`` cover the device), ``test_memory_format`` (no channels
for recurrent layers), and ``test_to_empty`` / meta-device construction (torch internals).
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence
from torch.utils._pytree import tree_flatten, tree_map

import rnnkit

common_modules = pytest.importorskip(
    "torch.testing._internal.common_modules",
    reason="PyTorch's test helpers need the test extra (expecttest): pip install -e '.[test]'")

TWINS = {torch.nn.RNN: rnnkit.nn.RNN, torch.nn.GRU: rnnkit.nn.GRU, torch.nn.LSTM: rnnkit.nn.LSTM,
         torch.nn.RNNCell: rnnkit.nn.RNNCell, torch.nn.GRUCell: rnnkit.nn.GRUCell,
         torch.nn.LSTMCell: rnnkit.nn.LSTMCell}
INFOS = {info.module_cls: info for info in common_modules.module_db if info.module_cls in TWINS}
DT = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-10}


def module_inputs(cls, requires_grad=True, training=True):
    info = INFOS[cls]
    kwargs = {"with_packed_sequence": True} if cls in (torch.nn.RNN, torch.nn.GRU) else {}
    return info.module_inputs_func(info, device="cpu", dtype=DT, requires_grad=requires_grad,
                                   training=training, **kwargs)


def error_inputs(cls):
    info = INFOS[cls]
    return info.module_error_inputs_func(info, device="cpu", dtype=DT, requires_grad=False,
                                         training=True)


def cases(make):
    return [pytest.param(cls, i, id=f"{cls.__name__}-{i}")
            for cls in TWINS for i in range(len(make(cls)))]


def build_pair(cls, sample):
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    ref = cls(*args, **kwargs).to(DT)
    ours = TWINS[cls](*args, **kwargs).to(DT)
    ours.load_state_dict(ref.state_dict())  # strict: the same names and shapes
    return ref, ours


def fresh_inputs(sample):
    """A copy of the sample's forward inputs, leaves with gradients where they had them."""
    def copy_leaf(t):
        if isinstance(t, PackedSequence):
            return t._replace(data=t.data.detach().clone().requires_grad_(t.data.requires_grad))
        if isinstance(t, torch.Tensor):
            return t.detach().clone().requires_grad_(t.requires_grad)
        return t
    args = tuple(tree_map(copy_leaf, a, is_leaf=lambda x: isinstance(x, PackedSequence))
                 for a in sample.forward_input.args)
    return args, dict(sample.forward_input.kwargs)


def leaves(args):
    found, _ = tree_flatten(args, is_leaf=lambda x: isinstance(x, PackedSequence))
    out = []
    for t in found:
        t = t.data if isinstance(t, PackedSequence) else t
        if isinstance(t, torch.Tensor) and t.requires_grad:
            out.append(t)
    return out


def outputs(result):
    found, _ = tree_flatten(result, is_leaf=lambda x: isinstance(x, PackedSequence))
    return [t.data if isinstance(t, PackedSequence) else t for t in found]


def run(model, sample, seed):
    args, kwargs = fresh_inputs(sample)
    outs = outputs(model(*args, **kwargs))
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    grads = torch.autograd.grad(loss, [*leaves(args), *model.parameters()])
    return outs, grads


@pytest.mark.parametrize("cls,i", cases(module_inputs))
@pytest.mark.parametrize("training", [True, False])
def test_module_inputs_equal_torch_nn(cls, i, training):
    sample = module_inputs(cls, training=training)[i]
    ref, ours = build_pair(cls, sample)
    ref.train(training), ours.train(training)
    outs_ref, grads_ref = run(ref, sample, seed=i)
    outs_ours, grads_ours = run(ours, sample, seed=i)
    assert len(outs_ours) == len(outs_ref)
    for a, b in zip(outs_ours, outs_ref):
        torch.testing.assert_close(a, b, **TOL)
    for a, b in zip(grads_ours, grads_ref):
        torch.testing.assert_close(a, b, **TOL)


def _gradient_cases():
    return [pytest.param(cls, i, id=f"{cls.__name__}-{i}") for cls in TWINS
            for i in range(min(3, len(module_inputs(cls))))]


@pytest.mark.parametrize("cls,i", _gradient_cases())
def test_gradcheck_and_gradgradcheck_with_batched_grads(cls, i):
    sample = module_inputs(cls)[i]
    _, ours = build_pair(cls, sample)
    args, kwargs = fresh_inputs(sample)
    flat, spec = tree_flatten(args)
    tensor_at = [k for k, t in enumerate(flat) if isinstance(t, torch.Tensor)]
    names = [n for n, _ in ours.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in ours.parameters()]

    def fn(*inputs):
        values = list(flat)
        for k, t in zip(tensor_at, inputs[:len(tensor_at)]):
            values[k] = t
        call_args = torch.utils._pytree.tree_unflatten(values, spec)
        state = dict(zip(names, inputs[len(tensor_at):]))
        return tuple(outputs(torch.func.functional_call(ours, state, call_args, kwargs)))

    inputs = (*(flat[k] for k in tensor_at), *params)
    assert torch.autograd.gradcheck(fn, inputs, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, inputs, check_batched_grad=True)


@pytest.mark.parametrize("cls,i", cases(error_inputs))
def test_error_inputs_raise_torch_nn_exception_class(cls, i):
    error = error_inputs(cls)[i]
    sample = error.module_error_input
    twin = TWINS[cls]
    c = sample.constructor_input
    is_cell = cls in (torch.nn.RNNCell, torch.nn.GRUCell, torch.nn.LSTMCell)
    if is_cell and len(c.args) > 2 and not isinstance(c.args[2], bool):
        # RNNCell(10, 20, 'relu') passes 'relu' as ``bias``: torch.nn's cells take any truthy
        # value (its layers refuse it, TypeError); rnnkit refuses it in both, at once.
        with pytest.raises(TypeError, match="bias: expected a bool"):
            twin(*c.args, **c.kwargs)
        return
    if error.error_on == common_modules.ModuleErrorEnum.CONSTRUCTION_ERROR:
        with pytest.raises(error.error_type):
            twin(*c.args, **c.kwargs)
        return
    model = twin(*c.args, **c.kwargs)
    if "dtype" not in c.kwargs:
        model = model.to(DT)
    with pytest.raises(error.error_type):
        model(*sample.forward_input.args, **sample.forward_input.kwargs)


@pytest.mark.parametrize("cls", list(TWINS), ids=lambda c: c.__name__)
def test_generic_module_checks(cls):
    for sample in module_inputs(cls, requires_grad=False)[:4]:
        _, ours = build_pair(cls, sample)
        ours.eval()
        args, kwargs = fresh_inputs(sample)
        expected = outputs(ours(*args, **kwargs))
        assert type(ours).__name__ in repr(ours)
        # pickling and a state_dict round trip give the same module
        for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
            for a, b in zip(outputs(clone(*args, **kwargs)), expected):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        buffer = io.BytesIO()
        torch.save(ours.state_dict(), buffer)
        buffer.seek(0)
        fresh = TWINS[cls](*sample.constructor_input.args, **sample.constructor_input.kwargs).to(DT)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        for a, b in zip(outputs(fresh.eval()(*args, **kwargs)), expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        # factory arguments
        made = TWINS[cls](*sample.constructor_input.args, **sample.constructor_input.kwargs,
                          dtype=torch.float64, device="cpu")
        assert all(p.dtype == torch.float64 for p in made.parameters())
        # non-contiguous inputs: the same numbers through strided views
        def strided(t):
            if isinstance(t, PackedSequence):
                return t._replace(data=strided(t.data))
            if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.is_floating_point():
                wide = torch.stack([t, torch.full_like(t, float("nan"))], dim=-1)
                view = wide[..., 0]
                assert not view.is_contiguous() or t.numel() <= 1
                return view
            return t
        nc_args = tuple(tree_map(strided, a, is_leaf=lambda x: isinstance(x, PackedSequence))
                        for a in args)
        for a, b in zip(outputs(ours(*nc_args, **kwargs)), expected):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
