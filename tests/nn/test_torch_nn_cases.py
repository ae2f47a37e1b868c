"""PyTorch's own recurrent-layer and packed-sequence test cases, rewritten for rnnkit.

From ``test/test_nn.py`` (the RNN tests) and ``test/nn/test_packed_sequence.py`` of the
PyTorch repository, each case rewritten here with rnnkit's layers in place of torch.nn's
and, where the original checks a fixed property, checked against torch.nn as well. Left
out, with the reason: the CUDA/cuDNN cases (``test_rnn_check_device``,
``test_RNN_cpu_vs_cudnn_*``, ``test_rnn_fused``, ``test_cudnn_weight_format``,
``test_pack_sequence_batch_sizes_throw``: no GPU in CI; ``tests/backends/test_cuda.py``
holds rnnkit's own), ``test_RNN_cudnn_weight_norm`` (cuDNN's flat weight buffer, a torch
internal), the half-precision and MPS variants, and the packed-sequence utility tests that
exercise torch's own ``pad_sequence`` / ``pack_sequence`` without a layer (rnnkit uses
torch's); rnnkit's own packing operators are checked against those utilities instead.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.utils.rnn as rnn_utils

import rnnkit
from rnnkit.nn.packing import repack, unpack

MODES = {"RNN": (torch.nn.RNN, rnnkit.nn.RNN), "GRU": (torch.nn.GRU, rnnkit.nn.GRU),
         "LSTM": (torch.nn.LSTM, rnnkit.nn.LSTM)}


def twin(mode, *args, **kwargs):
    ref = MODES[mode][0](*args, **kwargs).double()
    ours = MODES[mode][1](*args, **kwargs).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


# ---------------------------------------------------------------- test_nn.py


@pytest.mark.parametrize("mode", MODES)
def test_rnn_args_check(mode):
    # Wrong input size, batch of the state, state width, number of layers: RuntimeError.
    input_size, hidden_size, num_layers, seq_len, batch = 3, 5, 2, 4, 3
    cls = MODES[mode][1]

    def check(input_shape, hidden_shape):
        model = cls(input_size, hidden_size, num_layers)
        x = torch.randn(input_shape)
        hx = torch.randn(hidden_shape)
        if mode == "LSTM":
            hx = (hx, hx)
        with pytest.raises(RuntimeError):
            model(x, hx)

    good_x = (seq_len, batch, input_size)
    good_h = (num_layers, batch, hidden_size)
    check((seq_len, batch, input_size + 1), good_h)
    check(good_x, (num_layers, batch + 1, hidden_size))
    check(good_x, (num_layers, batch, hidden_size + 1))
    check(good_x, (num_layers + 1, batch, hidden_size))


def test_projections_lstm_args_check():
    input_size, hidden_size, proj_size, num_layers, seq_len, batch = 3, 5, 2, 2, 4, 3
    for bidirectional in (False, True):
        D = 2 if bidirectional else 1
        model = rnnkit.nn.LSTM(input_size, hidden_size, num_layers, proj_size=proj_size,
                               bidirectional=bidirectional)
        x = torch.randn(seq_len, batch, input_size)
        good_h = torch.randn(num_layers * D, batch, proj_size)
        good_c = torch.randn(num_layers * D, batch, hidden_size)
        model(x, (good_h, good_c))  # the right shapes run
        for h, c in [(torch.randn(num_layers * D, batch, hidden_size), good_c),  # h not projected
                     (good_h, torch.randn(num_layers * D, batch, proj_size)),  # c projected
                     (torch.randn(num_layers * D, batch + 1, proj_size), good_c),
                     (good_h, torch.randn(num_layers * D + 1, batch, hidden_size))]:
            with pytest.raises(RuntimeError):
                model(x, (h, c))


@pytest.mark.parametrize("mode,proj_size", [(m, 0) for m in MODES] + [("LSTM", 3)])
def test_rnn_initial_hidden_state(mode, proj_size):
    kwargs = {"proj_size": proj_size} if proj_size else {}
    model = MODES[mode][1](30, 20, 2, **kwargs)
    x = torch.randn(10, 32, 30)
    hx = torch.zeros(2, 32, proj_size or 20)
    if mode == "LSTM":
        hx = (hx, torch.zeros(2, 32, 20))
    out_default, h_default = model(x)
    out_given, h_given = model(x, hx)
    torch.testing.assert_close(out_default, out_given, rtol=0, atol=0)
    for a, b in zip(h_default if mode == "LSTM" else [h_default],
                    h_given if mode == "LSTM" else [h_given]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_cell_loop_equals_torch(cell, bias):
    # test_RNN_cell / test_LSTM_cell: six steps of a cell, then backward of the sum.
    ref = getattr(torch.nn, cell)(10, 20, bias=bias).double()
    ours = getattr(rnnkit.nn, cell)(10, 20, bias=bias).double()
    ours.load_state_dict(ref.state_dict())
    xs = torch.randn(6, 3, 10, dtype=torch.float64)
    hx0 = torch.randn(3, 20, dtype=torch.float64)
    results = []
    for model in (ref, ours):
        hx = hx0.clone().requires_grad_()
        state = (hx, hx * 0.5) if cell == "LSTMCell" else hx
        total = 0
        for x in xs:
            state = model(x, state)
            total = total + (state[0] if cell == "LSTMCell" else state).sum()
        total.backward()
        results.append((total.detach(), hx.grad, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])
    for a, b in zip(results[1][2], results[0][2]):
        torch.testing.assert_close(a, b)


def test_rnn_nonlinearity():
    assert rnnkit.nn.RNN(1, 10).nonlinearity == "tanh"
    assert rnnkit.nn.RNN(1, 10, nonlinearity="relu").nonlinearity == "relu"
    assert rnnkit.nn.RNN(1, 10, 1, "relu").nonlinearity == "relu"  # passed positionally
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnkit.nn.RNN(1, 10, nonlinearity="garbage")
    ref, ours = twin("RNN", 1, 10, 1, "relu")
    x = torch.randn(5, 2, 1, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0])


@pytest.mark.parametrize("p", [0.0, 0.276, 0.731, 1.0])
def test_rnn_dropout(p):
    # Two relu layers of 1000 units, every weight 1: the first layer's outputs are all 10;
    # dropout between the layers zeroes some and scales the rest by 1/(1-p), and every unit
    # of the second layer sums the same dropped vector.
    model = rnnkit.nn.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu")
    for w in model.parameters():
        w.data.fill_(1)
    model.train()
    x = torch.ones(1, 1, 10)
    hx = torch.zeros(2, 1, 1000)
    output, h_n = model(x, hx)
    assert output.min() == output.max()  # every unit saw the same mask
    value = float(output[0, 0, 0])
    if p == 0:
        assert value == 10 * 1000
    elif p == 1:
        assert value == 0
    else:
        kept = value / (10 / (1 - p))
        assert 0 <= kept <= 1000 and abs(kept - round(kept)) < 1e-3  # whole kept units
        assert abs(kept - 1000 * (1 - p)) < 100  # ~binomial(1000, 1-p): 6+ sigma away
    torch.testing.assert_close(h_n[0], torch.full((1, 1000), 10.0))
    torch.testing.assert_close(h_n[1], output[0])


def test_rnn_dropout_state_and_change():
    # test_RNN_dropout_state, test_RNN_change_dropout: evaluation ignores dropout; in
    # training two runs differ; changing the attribute takes effect.
    model = rnnkit.nn.GRU(10, 100, 2, dropout=0.5)
    x = torch.randn(5, 4, 10)
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])
    model.dropout = 0.0
    torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)
    model.dropout = 1.0
    ref = rnnkit.nn.GRU(100, 100)
    ref.load_state_dict({k.replace("_l1", "_l0"): v for k, v in model.state_dict().items()
                         if "_l1" in k})
    # everything between the layers dropped: the top layer sees zeros
    torch.testing.assert_close(model(x)[0], ref(torch.zeros(5, 4, 100))[0])


@pytest.mark.parametrize("mode", MODES)
def test_variable_sequence(mode):
    # Packed unsorted sequences equal each sequence run alone, with their gradients.
    ref, ours = twin(mode, 3, 5, 2, bidirectional=True)
    lengths = [3, 5, 1, 4, 5]
    seqs = [torch.randn(n, 3, dtype=torch.float64, requires_grad=True) for n in lengths]
    packed = rnn_utils.pack_sequence(seqs, enforce_sorted=False)
    out, _ = ours(packed)
    padded, out_lengths = rnn_utils.pad_packed_sequence(out)
    assert out_lengths.tolist() == lengths
    loss = sum((padded[:n, b] ** 2).sum() for b, n in enumerate(lengths))
    grads = torch.autograd.grad(loss, seqs)
    for b, seq in enumerate(seqs):
        alone, _ = ref(seq.unsqueeze(1))
        torch.testing.assert_close(padded[:lengths[b], b], alone[:, 0])
        g, = torch.autograd.grad((alone ** 2).sum(), seq)
        torch.testing.assert_close(grads[b], g)


@pytest.mark.parametrize("parametrize", [False, True])
def test_rnn_weight_norm(parametrize):
    # torch.nn.utils.weight_norm (a forward pre-hook) and its parametrization form (a
    # computed attribute) both replace weight_hh_l0 by a tensor that is not a parameter.
    for mode in MODES:
        ref, ours = twin(mode, 10, 20, 2)
        names = "weight_hh_l0"
        if parametrize:
            from torch.nn.utils.parametrizations import weight_norm
        else:
            from torch.nn.utils import weight_norm
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the old form is deprecated
            ref, ours = weight_norm(ref, name=names), weight_norm(ours, name=names)
        x = torch.randn(4, 3, 10, dtype=torch.float64)
        torch.testing.assert_close(ours(x)[0], ref(x)[0])
        assert len(list(ours.parameters())) == len(list(ref.parameters()))


def test_partial_flat_weights():
    # Deleting a weight and putting it back (what some pruning code does).
    ref, ours = twin("LSTM", 3, 4, 2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    expected = ours(x)[0]
    saved = ours.weight_ih_l0
    del ours.weight_ih_l0
    with pytest.raises(AttributeError):
        ours(x)
    ours.weight_ih_l0 = saved
    torch.testing.assert_close(ours(x)[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(expected, ref(x)[0])


@pytest.mark.parametrize("mode", MODES)
def test_rnn_dropout_warning(mode):
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        MODES[mode][1](3, 4, dropout=0.3)


# ---------------------------------------------------------------- test_packed_sequence.py


def _sequences(num_dim: int, shuffle: bool, dtype=torch.float64):
    maxlen = 9
    trailing = [4] * num_dim
    seqs = [torch.rand(i * i, 5, *trailing, dtype=torch.float64).to(dtype)
            for i in range(maxlen, 0, -1)]
    if shuffle:
        random.shuffle(seqs)
    return seqs


@pytest.mark.parametrize("num_dim", [0, 1, 2])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int64, torch.uint8])
def test_packing_operators_equal_torch_utilities(num_dim, enforce_sorted, dtype):
    seqs = _sequences(num_dim, shuffle=not enforce_sorted, dtype=dtype)
    packed = rnn_utils.pack_sequence(seqs, enforce_sorted=enforce_sorted)
    expected, expected_lengths = rnn_utils.pad_packed_sequence(packed)
    padded, lengths = unpack(packed)
    torch.testing.assert_close(padded, expected, rtol=0, atol=0)
    assert lengths.tolist() == expected_lengths.tolist()
    again = repack(padded, packed)
    torch.testing.assert_close(again.data, packed.data, rtol=0, atol=0)
    assert again.batch_sizes is packed.batch_sizes
    if packed.sorted_indices is not None:
        assert torch.equal(again.sorted_indices, packed.sorted_indices)


def test_packing_operators_gradients():
    seqs = [torch.randn(n, 2, dtype=torch.float64) for n in (4, 1, 3)]
    packed = rnn_utils.pack_sequence(seqs, enforce_sorted=False)
    data = packed.data.clone().requires_grad_()

    def roundtrip(d):
        padded, _ = unpack(packed._replace(data=d))
        return repack(padded * padded, packed).data

    assert torch.autograd.gradcheck(roundtrip, (data,))
    assert torch.autograd.gradgradcheck(roundtrip, (data,))


def test_total_length_and_wrong_order_as_torch():
    # test_wrong_order: an unsorted batch with enforce_sorted=True is torch's error, raised
    # before rnnkit sees anything; test_total_length: rnnkit's outputs pad back with
    # pad_packed_sequence(total_length=...) as torch.nn's do.
    a, b = torch.ones(25, 3), torch.ones(22, 3)
    with pytest.raises(RuntimeError):
        rnn_utils.pack_padded_sequence(rnn_utils.pad_sequence([b, a]), [22, 25],
                                       enforce_sorted=True)
    ref, ours = twin("GRU", 3, 4)
    packed = rnn_utils.pack_sequence([a.double(), b.double()])
    for total in (25, 30):
        mine, _ = rnn_utils.pad_packed_sequence(ours(packed)[0], total_length=total)
        theirs, _ = rnn_utils.pad_packed_sequence(ref(packed)[0], total_length=total)
        assert mine.shape[0] == total
        torch.testing.assert_close(mine, theirs)
