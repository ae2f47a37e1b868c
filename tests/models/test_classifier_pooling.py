"""The feature-sequence classifier's pooling (seqclass, tsclass): padding never leaks into
the result, and each pooling is the formula it names over the encoder's own outputs."""

from __future__ import annotations

import pytest
import torch

from rnnkit.choices import POOLINGS
from rnnkit.models.classifier import SequenceClassifier, SequenceClassifierConfig


def _classifier(pooling: str, cell: str = "lstm", bidirectional: bool = True,
                layers: int = 1) -> SequenceClassifier:
    torch.manual_seed(0)
    config = SequenceClassifierConfig(input_size=3, num_classes=4, cell=cell, hidden=5,
                                      layers=layers, bidirectional=bidirectional,
                                      dropout=0.0, pooling=pooling)
    return SequenceClassifier(config).double().eval()


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell,bidirectional,layers",
                         [("lstm", True, 2), ("gru", False, 1), ("ln-gru", True, 1)])
def test_a_sequence_alone_and_padded_with_garbage_gives_the_same_logits(
        pooling, cell, bidirectional, layers):
    model = _classifier(pooling, cell, bidirectional, layers)
    generator = torch.Generator().manual_seed(1)
    sequence = torch.randn(4, 3, generator=generator, dtype=torch.double)
    alone = model(sequence[None], torch.tensor([4]))
    torch.testing.assert_close(model(sequence[None]), alone, rtol=0, atol=1e-12)
    batch = 100 * torch.randn(3, 9, 3, generator=generator, dtype=torch.double)  # padding
    batch[1, :4] = sequence
    padded = model(batch, torch.tensor([9, 4, 7]))
    torch.testing.assert_close(padded[1], alone[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("pooling", ["max", "mean", "attention"])
def test_each_pooling_is_its_formula_over_the_valid_outputs(pooling):
    model = _classifier(pooling)
    x = torch.randn(2, 6, 3, dtype=torch.double)
    lengths = torch.tensor([6, 3])
    logits = model(x, lengths)
    for row, n in enumerate(lengths.tolist()):
        outputs, _ = model.encoder(x[row:row + 1, :n])  # [1, n, 10]: no padding at all
        outputs = outputs[0]
        if pooling == "max":
            pooled = outputs.max(dim=0).values
        elif pooling == "mean":
            pooled = outputs.sum(dim=0) / n
        else:
            first, _, v = model.attention
            weights = torch.softmax(v(torch.tanh(first(outputs))).squeeze(-1), dim=0)
            pooled = (weights[:, None] * outputs).sum(dim=0)
        torch.testing.assert_close(logits[row], model.head(pooled), rtol=0, atol=1e-12)


def test_a_bad_pooling_is_named_and_old_runs_read_last():
    with pytest.raises(ValueError, match="--pooling: expected one of last, max"):
        SequenceClassifierConfig(input_size=3, num_classes=2, pooling="sum")
    assert SequenceClassifierConfig(input_size=3, num_classes=2).pooling == "last"
