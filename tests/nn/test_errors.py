"""Bad input raises an error that names the argument, what was expected and what came."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.functional import LSTM as LSTM_SPEC
from rnnkit.functional import sequence_forward


@pytest.fixture
def lstm():
    return rnnkit.nn.LSTM(4, 6, num_layers=2)


def test_wrong_rank(lstm):
    with pytest.raises(ValueError, match=r"input: expected a 2-D or 3-D tensor, got 4-D"):
        lstm(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"input: expected a 2-D or 3-D tensor, got 1-D"):
        lstm(torch.randn(4))


def test_wrong_feature_size(lstm):
    with pytest.raises(ValueError, match=r"input: expected last dimension input_size=4, got 5"):
        lstm(torch.randn(3, 2, 5))


def test_not_a_tensor(lstm):
    with pytest.raises(TypeError, match=r"input: expected a torch.Tensor or PackedSequence, got list"):
        lstm([[1.0, 2.0, 3.0, 4.0]])


def test_initial_state_shape(lstm):
    h = torch.zeros(2, 3, 6)
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\): expected shape \(2, 3, 6\), got \(1, 3, 6\)"):
        lstm(torch.randn(5, 3, 4), (h, torch.zeros(1, 3, 6)))
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(h_0, c_0\) for LSTM, got Tensor"):
        lstm(torch.randn(5, 3, 4), h)
    gru = rnnkit.nn.GRU(4, 6, bidirectional=True)
    with pytest.raises(ValueError, match=r"hx: expected shape \(2, 3, 6\), got \(1, 3, 6\)"):
        gru(torch.randn(5, 3, 4), torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match=r"hx: expected shape \(2, 6\), got \(2, 3, 6\)"):
        gru(torch.randn(5, 4), torch.zeros(2, 3, 6))  # unbatched input, batched state


def test_dtype_mismatch(lstm):
    with pytest.raises(TypeError, match=r"input: expected dtype torch.float32 .* got torch.float64"):
        lstm(torch.randn(3, 2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"hx\[0\] \(h_0\): expected dtype torch.float32"):
        lstm(torch.randn(3, 2, 4), (torch.zeros(2, 2, 6, dtype=torch.float64), torch.zeros(2, 2, 6)))


def test_device_mismatch(lstm):
    with pytest.raises(ValueError, match=r"input: expected a tensor on cpu .* got one on meta"):
        lstm(torch.empty(3, 2, 4, device="meta"))


def test_lengths_errors(lstm):
    x = torch.randn(5, 3, 4)
    with pytest.raises(ValueError, match=r"lengths: expected every length <= the sequence length 5, got 6"):
        lstm(x, lengths=torch.tensor([6, 2, 1]))
    with pytest.raises(ValueError, match=r"lengths: expected every length >= 1, got 0"):
        lstm(x, lengths=[5, 0, 1])
    with pytest.raises(ValueError, match=r"lengths: expected shape \(3,\) .* got \(2,\)"):
        lstm(x, lengths=[5, 2])
    with pytest.raises(TypeError, match=r"lengths: expected integers, got dtype torch.float32"):
        lstm(x, lengths=torch.tensor([5.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"lengths: only for batched input"):
        lstm(torch.randn(5, 4), lengths=[5])


def test_unsorted_batch_sizes_rejected_where_sorting_is_required():
    # The packed layout of the fused engine needs sequences sorted longest first.
    T, B, H = 3, 2, 2
    x = torch.randn(T, B, 1)
    states = (torch.zeros(B, H), torch.zeros(B, H))
    w_ih, w_hh = torch.randn(4 * H, 1), torch.randn(4 * H, H)
    with pytest.raises(ValueError, match=r"batch_sizes: expected non-negative, non-increasing counts"):
        sequence_forward(LSTM_SPEC, x, states, w_ih, w_hh, None, None, batch_sizes=[2, 1, 2])
    with pytest.raises(ValueError, match=r"batch_sizes: expected one entry per time step \(3\), got 2"):
        sequence_forward(LSTM_SPEC, x, states, w_ih, w_hh, None, None, batch_sizes=[2, 1])
    with pytest.raises(ValueError, match=r"batch_sizes: expected the first entry to be the batch size 2"):
        sequence_forward(LSTM_SPEC, x, states, w_ih, w_hh, None, None, batch_sizes=[1, 1, 1])


def test_unsorted_packing_is_torchs_own_check():
    # pack_padded_sequence(enforce_sorted=True) is torch's; rnnkit also accepts
    # enforce_sorted=False packs and plain unsorted lengths, so it never needs sorting.
    x = torch.randn(5, 3, 4)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([2, 5, 3]), enforce_sorted=True)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"hidden_size: expected a positive integer, got 0"):
        rnnkit.nn.GRU(3, 0)
    with pytest.raises(ValueError, match=r"dropout: expected a number in \[0, 1\]"):
        rnnkit.nn.LSTM(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match=r"nonlinearity: expected 'tanh' or 'relu', got 'sigmoid'"):
        rnnkit.nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size: expected less than hidden_size=4"):
        rnnkit.nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(NotImplementedError, match="proj_size: projections are defined for the plain"):
        rnnkit.nn.LayerNormLSTM(3, 4, proj_size=2)
    with pytest.raises(NotImplementedError, match="proj_size: zoneout and recurrent_dropout"):
        rnnkit.nn.LSTM(3, 4, proj_size=2, zoneout=0.1)
    with pytest.raises(ValueError, match=r"backend: expected one of \[.*\] or None, got 'cudnn'"):
        rnnkit.nn.LSTM(3, 4, backend="cudnn")
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        rnnkit.nn.LSTM(3, 4, dropout=0.2)


def test_lengths_with_packed_input(lstm):
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 4), [5, 3])
    with pytest.raises(ValueError, match="lengths: a PackedSequence already carries its lengths"):
        lstm(packed, lengths=[5, 3])
