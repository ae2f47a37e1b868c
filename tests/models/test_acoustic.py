"""The acoustic model: output lengths, padding that changes nothing, CTC training signal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models.acoustic import AcousticModel, AcousticModelConfig, subsampled_lengths


def _model(kind: str = "rnn", **extra) -> AcousticModel:
    torch.manual_seed(0)
    config = AcousticModelConfig(features=20, num_labels=7, channels=4, hidden=12, layers=2,
                                 bidirectional=True, cell="gru", encoder_kind=kind, **extra)
    return AcousticModel(config).eval()


@pytest.mark.parametrize("kind", ["rnn", "conv"])
def test_a_clip_reads_the_same_alone_and_padded_in_a_batch(kind):
    model = _model(kind)
    lengths = torch.tensor([37, 9, 23, 1])
    x = torch.randn(4, 37, 20)
    x[1, 9:] = 100.0  # whatever sits in the padding must not leak in
    with torch.no_grad():
        batch, out_lengths = model(x, lengths)
        for row, n in enumerate(lengths.tolist()):
            alone, alone_length = model(x[row:row + 1, :n], lengths[row:row + 1])
            assert out_lengths[row] == alone_length[0] == alone.shape[1]
            torch.testing.assert_close(batch[row, :alone.shape[1]], alone[0],
                                       rtol=1e-5, atol=1e-5)


def test_output_lengths_are_those_of_the_convolutions():
    model = _model()
    for steps in (1, 2, 3, 4, 5, 8, 9, 100, 101):
        log_probs, lengths = model(torch.randn(1, steps, 20), torch.tensor([steps]))
        assert log_probs.shape[1] == lengths[0] == subsampled_lengths(torch.tensor(steps))
        assert lengths[0] == -(-steps // 4)  # ceil(T / 4)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(1, 26))


def test_conv_encoder_refuses_an_unknown_kind_and_ctc_gradients_reach_every_weight():
    with pytest.raises(ValueError, match="--encoder: expected one of rnn, conv"):
        _model("transformer")
    model = _model().train()
    x, lengths = torch.randn(3, 40, 20), torch.tensor([40, 31, 20])
    log_probs, out_lengths = model(x, lengths)
    targets = torch.tensor([1, 2, 3, 4, 5, 6, 1, 2, 3])
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, torch.tensor([4, 3, 2]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
