"""The operators' inputs: every engine's boundary checks, empty and zero sizes, and the
argument errors, each against what torch.nn does or a stated message."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from tests.nn.test_operators import ENGINES, NATIVE, OURS, _quiet, pair  # noqa: F401 (_quiet: autouse)

# ---------------------------------------------------------------- boundary checks


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind,name,shape", [
    ("gru", "weight_hh_l0", (14, 5)), ("gru", "weight_ih_l0", (15, 3)),
    ("lstm", "bias_hh_l0", (19,)), ("lstm", "weight_hh_l0", (20, 4)),
    ("rnn", "bias_ih_l0", (4,))])
def test_mis_shaped_weights_raise_for_every_engine(kind, name, shape, engine):
    model = OURS[kind](4, 5, backend=engine)
    setattr(model, name, torch.nn.Parameter(torch.randn(shape)))
    with pytest.raises(RuntimeError, match=rf"{name}: expected shape"):
        model(torch.randn(3, 2, 4))
    if kind != "rnn":
        with torch.no_grad(), pytest.raises(RuntimeError, match="expected shape"):
            model.step(torch.randn(2, 4))


def test_operator_checks_its_inputs():
    from rnnkit.backends.ops import run_sequence

    x, h = torch.randn(3, 2, 4), torch.zeros(2, 5)
    w_ih, w_hh, b = torch.randn(15, 4), torch.randn(15, 5), torch.randn(15)
    with pytest.raises(RuntimeError, match=r"states0\[0\]: expected shape \(2, 5\)"):
        run_sequence("fused", "gru", x, (torch.zeros(3, 5),), w_ih, w_hh, b, b, None)
    with pytest.raises(RuntimeError, match="lengths: expected every length in 1..3"):
        run_sequence("fused", "gru", x, (h,), w_ih, w_hh, b, b, torch.tensor([4, 1]))
    with pytest.raises(RuntimeError, match="b_ih: expected dtype torch.float32"):
        run_sequence("fused", "gru", x, (h,), w_ih, w_hh, b.double(), b, None)


@NATIVE
def test_native_ops_check_every_shape():
    """The C++ ops check every size they index with, and say which."""
    ops = torch.ops.rnnkit
    T, B, H = 3, 2, 4
    xp, zeros = torch.randn(T, B, 4 * H), torch.zeros(T + 1, B, H)
    w_hh, cache = torch.randn(4 * H, H), [torch.zeros(T, B, H)]
    lstm = 2  # engine.cpp's CellKind
    with pytest.raises(RuntimeError, match=r"cell_forward: w_hh: expected shape \[16, 4\]"):
        ops.cell_forward(lstm, xp, torch.randn(3 * H, H), None, [], [zeros, zeros.clone()],
                         cache, None, None, [], [])
    with pytest.raises(RuntimeError, match="batch_sizes: expected non-increasing counts"):
        ops.cell_forward(lstm, xp, w_hh, None, [], [zeros, zeros.clone()], cache, None, None, [],
                         [1, 2, 1])
    with pytest.raises(RuntimeError, match="cell_forward: expected 2 state buffers, got 1"):
        ops.cell_forward(lstm, xp, w_hh, None, [], [zeros], cache, None, None, [], [])
    with pytest.raises(RuntimeError, match=r"cell_forward: cache: expected shape \[3, 2, 4\]"):
        ops.cell_forward(lstm, xp, w_hh, None, [], [zeros, zeros.clone()], [torch.zeros(T, B, 5)],
                         None, None, [], [])
    with pytest.raises(RuntimeError, match=r"cell_forward: zoneout: expected shape \[3, 2, 4\]"):
        ops.cell_forward(lstm, xp, w_hh, None, [], [zeros, zeros.clone()], cache, None, None,
                         [torch.zeros(T, B + 1, H)], [])
    with pytest.raises(RuntimeError, match="a recurrent mask and an h_in buffer together"):
        ops.cell_forward(lstm, xp, w_hh, None, [], [zeros, zeros.clone()], cache,
                         torch.ones(B, H), None, [], [])
    with pytest.raises(RuntimeError, match="cell kind: expected 0..6, got 9"):
        ops.cell_forward(9, xp, w_hh, None, [], [zeros], cache, None, None, [], [])
    with pytest.raises(RuntimeError, match=r"cell_backward: dgx: expected shape \[3, 2, 16\]"):
        ops.cell_backward(lstm, xp, w_hh, [], [zeros, zeros.clone()], cache, None, None, [], None,
                          [torch.zeros(B, H), torch.zeros(B, H)], torch.zeros(T, B, 12), None,
                          None, None, [], None)
    with pytest.raises(RuntimeError, match=r"cell_step: w_ih: expected shape \[12, 5\]"):
        ops.cell_step(4, torch.randn(B, 5), [], [torch.randn(3 * H, 6), torch.randn(3 * H, H)], 1,
                      False, [])
    with pytest.raises(RuntimeError, match=r"cell_step: expected 8 weights \(8 per layer\)"):
        ops.cell_step(5, torch.randn(B, 5), [], [torch.randn(4 * H, 5), torch.randn(4 * H, H)], 1,
                      True, [])
    with pytest.raises(RuntimeError, match=r"cell_step: zoneout: expected probabilities in"):
        ops.cell_step(4, torch.randn(B, 5), [], [torch.randn(3 * H, 5), torch.randn(3 * H, H)], 1,
                      False, [1.5])


# ---------------------------------------------------------------- empty and zero sizes


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_empty_batch_as_torch_nn(kind, engine):
    ref, ours = pair(kind, engine, torch.float32, num_layers=2, bidirectional=True)
    outs = []
    for model in (ref, ours):
        x = torch.zeros(5, 0, 4, requires_grad=True)
        out, state = model(x)
        out.sum().backward()
        outs.append((out.shape, (state[0] if isinstance(state, tuple) else state).shape,
                     x.grad.shape))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_zero_length_sequence_refused_as_torch_nn(kind):
    _, ours = pair(kind, None, torch.float32)
    for x in (torch.ones(0, 10, 4), torch.ones(0, 4)):
        with pytest.raises(RuntimeError, match="expected sequence length to be larger than 0"):
            ours(x)


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_hidden_cells_run_as_torch_nn(engine):
    for ours, ref in ((rnnkit.nn.GRUCell(10, 0, backend=engine), torch.nn.GRUCell(10, 0)),
                      (rnnkit.nn.LSTMCell(10, 0, backend=engine), torch.nn.LSTMCell(10, 0))):
        x = torch.randn(2, 10)
        a, b = ours(x), ref(x)
        a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
        assert a.shape == b.shape == (2, 0)


# ---------------------------------------------------------------- arguments and errors


@pytest.mark.parametrize("kwargs", [{"batch_first": "False"}, {"bias": 0}, {"bias": "True"},
                                    {"bidirectional": "False"}])
def test_flag_arguments_must_be_bool(kwargs):
    with pytest.raises(TypeError, match=f"{next(iter(kwargs))}: expected a bool"):
        rnnkit.nn.GRU(3, 5, **kwargs)
    if "bidirectional" not in kwargs:  # torch.nn does not check that one
        with pytest.raises(TypeError):
            torch.nn.GRU(3, 5, **kwargs)


@pytest.mark.parametrize("make", [lambda: rnnkit.nn.GRU(3, 5.0), lambda: rnnkit.nn.GRU(3.0, 5),
                                  lambda: rnnkit.nn.LSTM(3, 5, num_layers=1.0)])
def test_size_of_wrong_type_is_a_type_error(make):
    with pytest.raises(TypeError):
        make()


def test_errors_are_catchable_as_torch_nn_raises_them():
    gru = rnnkit.nn.GRU(3, 5)
    # torch.nn: RuntimeError for feature size, state shape; ValueError for rank and dtype.
    cases = [(lambda: gru(torch.ones(4, 2, 4)), RuntimeError),
             (lambda: gru(torch.ones(4, 2, 3), torch.zeros(1, 3, 5)), RuntimeError),
             (lambda: gru(torch.ones(4, 2, 3, 1)), ValueError),
             (lambda: gru(torch.ones(4, 2, 3, dtype=torch.float64)), ValueError),
             (lambda: rnnkit.nn.LSTMCell(3, 5)(torch.ones(2, 4)), RuntimeError)]
    for call, torch_class in cases:
        with pytest.raises(torch_class):
            call()
