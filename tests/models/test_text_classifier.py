"""The text classifier: padding never leaks into the result; language-model weights land
on the right rows."""

from __future__ import annotations

import pytest
import torch

from rnnkit.choices import POOLINGS
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig
from rnnkit.models.text_classifier import (
    TextClassifier,
    TextClassifierConfig,
    transfer_language_model,
)


def _classifier(pooling: str, cell: str = "lstm", bidirectional: bool = True,
                layers: int = 1, vocab: int = 30) -> TextClassifier:
    torch.manual_seed(0)
    config = TextClassifierConfig(vocab_size=vocab, num_classes=3, embedding=6, cell=cell,
                                  hidden=5, layers=layers, bidirectional=bidirectional,
                                  dropout=0.0, pooling=pooling)
    return TextClassifier(config).double().eval()


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell,bidirectional,layers",
                         [("lstm", True, 1), ("gru", True, 2), ("lstm", False, 2),
                          ("ln-lstm", True, 1)])
def test_a_sentence_alone_and_padded_among_longer_ones_gives_the_same_logits(
        pooling, cell, bidirectional, layers):
    model = _classifier(pooling, cell, bidirectional, layers)
    generator = torch.Generator().manual_seed(1)
    sentence = torch.randint(1, 30, (4,), generator=generator)
    alone = model(sentence[None], torch.tensor([4]))
    # The same sentence in a batch of longer ones, padded with arbitrary ids (not zeros),
    # in two positions of the batch.
    batch = torch.randint(1, 30, (3, 9), generator=generator)
    batch[1, :4] = sentence
    lengths = torch.tensor([9, 4, 7])
    padded = model(batch, lengths)
    torch.testing.assert_close(padded[1], alone[0], rtol=0, atol=1e-12)
    batch2 = batch.clone()
    batch2[1, 4:] = torch.randint(1, 30, (5,), generator=generator)
    torch.testing.assert_close(model(batch2, lengths), padded, rtol=0, atol=1e-12)


def test_padding_gets_no_gradient():
    model = _classifier("attention")
    tokens = torch.tensor([[3, 4, 5, 7, 7], [6, 8, 0, 0, 0]])
    lengths = torch.tensor([5, 2])
    embedded = []
    model.embedding.register_forward_hook(
        lambda module, args, out: embedded.append(out.retain_grad() or out))
    model(tokens, lengths).sum().backward()
    embedded = embedded[0]
    assert embedded.grad[1, 2:].abs().max() == 0
    assert embedded.grad[1, :2].abs().max() > 0


def test_last_pooling_reads_each_direction_at_its_own_end():
    model = _classifier("last")
    tokens = torch.tensor([[3, 4, 5, 0, 0]])
    output, _ = model.encoder(model.embedding(tokens), lengths=torch.tensor([3]))
    features = model.features(tokens, torch.tensor([3]))
    hidden = model.config.hidden
    torch.testing.assert_close(features[0, :hidden], output[0, 2, :hidden])  # forward at word 3
    torch.testing.assert_close(features[0, hidden:], output[0, 0, hidden:])  # backward at word 1


def test_bad_lengths_and_pooling_are_named():
    model = _classifier("max")
    with pytest.raises(ValueError, match="lengths: expected values in 1..3"):
        model(torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="lengths: expected one length per sentence"):
        model(torch.ones(2, 3, dtype=torch.long), torch.tensor([3]))
    with pytest.raises(ValueError, match="--pooling: expected one of"):
        TextClassifierConfig(vocab_size=5, num_classes=2, pooling="sum")


def test_language_model_rows_arrive_at_the_classifiers_indices_for_the_same_tokens():
    torch.manual_seed(0)
    lm_tokens = ["<unk>", "<eos>", "good", "bad", "film", "plot"]
    lm = LanguageModel(LanguageModelConfig(vocab_size=len(lm_tokens), embedding=6, cell="lstm",
                                           hidden=5))
    tokens = ["<unk>", "<eos>", "film", "bad", "new", "good"]
    classifier = _classifier("max", vocab=len(tokens)).float()
    reverse_before = classifier.encoder.weight_hh_l0_reverse.clone()
    counts = transfer_language_model(classifier, lm.state_dict(), lm_tokens, tokens)
    assert counts == {"tokens": 6, "found": 5, "encoder": 4}
    rows, source = classifier.embedding.weight, lm.embedding.weight
    for index, token in enumerate(tokens):
        if token in lm_tokens:
            torch.testing.assert_close(rows[index], source[lm_tokens.index(token)])
    torch.testing.assert_close(rows[4], source.mean(dim=0))  # "new": the mean row
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        torch.testing.assert_close(getattr(classifier.encoder, name),
                                   getattr(lm.encoder, name))
    torch.testing.assert_close(classifier.encoder.weight_hh_l0_reverse, reverse_before)


def test_transfer_refuses_mismatched_sizes():
    lm = LanguageModel(LanguageModelConfig(vocab_size=4, embedding=7, cell="lstm", hidden=5))
    with pytest.raises(ValueError, match="embedding has 7 dimensions, the classifier's 6"):
        transfer_language_model(_classifier("max").float(), lm.state_dict(),
                                ["<unk>", "a", "b", "c"], ["<unk>"] * 1 + ["a"] * 0)


def test_pretrained_groups_thaw_from_the_top():
    model = _classifier("max", layers=2, bidirectional=False)
    groups = model.pretrained_groups()
    assert groups[0] == [f"encoder.{n}_l1" for n in ("weight_ih", "weight_hh", "bias_ih",
                                                     "bias_hh")]
    assert groups[1][0] == "encoder.weight_ih_l0" and groups[-1] == ["embedding.weight"]


def test_heads_read_the_projected_width_when_the_lstm_projects():
    """proj_size: each layer outputs proj_size numbers per direction, which is what the
    classifier's (and its adapters'), forecaster's and tagger's heads read (they read
    hidden numbers, and failed on a shape mismatch)."""
    from rnnkit.models.forecaster import ForecasterConfig, SequenceForecaster
    from rnnkit.models.tagger import SequenceTagger, SequenceTaggerConfig

    sizes = {"cell": "lstm", "hidden": 6, "proj_size": 2, "layers": 2, "bidirectional": True}
    classifier = TextClassifier(TextClassifierConfig(vocab_size=9, num_classes=3, embedding=4,
                                                     pooling="last", adapter=2, **sizes))
    assert classifier.head.in_features == 4
    assert classifier(torch.randint(1, 9, (2, 5)), torch.tensor([5, 2])).shape == (2, 3)
    tagger = SequenceTagger(SequenceTaggerConfig(vocab=5, num_classes=3, **sizes))
    symbols = torch.randint(0, 5, (2, 7))
    assert tagger(symbols).shape == (2, 7, 3)
    forecaster = SequenceForecaster(ForecasterConfig(input_size=2, output_length=3, **sizes))
    mean, _ = forecaster(torch.randn(2, 8, 2))
    assert mean.shape == (2, 3)
