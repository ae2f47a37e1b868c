"""The language model: stateful windows, truncated BPTT, generation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models.language_model import LanguageModel, LanguageModelConfig, sample_token
from rnnkit.tasks.lm import LanguageModelModule

TRAINING = {"optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0,
            "schedule": "none", "epochs": 1, "patience": 1}


@pytest.fixture(params=["lstm", "gru"])
def model(request) -> LanguageModel:
    return LanguageModel(LanguageModelConfig(vocab_size=11, embedding=6, cell=request.param,
                                             hidden=8, layers=2)).eval()


def test_carried_state_continues_the_sequence_exactly(model):
    tokens = torch.randint(0, 11, (3, 20))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :12])
    second, _ = model(tokens[:, 12:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-5, atol=1e-6)


def test_windows_are_detached_so_gradients_stay_in_their_window(model):
    module = LanguageModelModule(TRAINING, model.config, char_level=True)
    module.model = model.train()
    captured = []
    model.embedding.register_forward_hook(lambda m, i, out: captured.append(out))
    tokens = torch.randint(0, 11, (2, 10))
    module._loss((tokens[:, :5], tokens[:, 1:6]), "train")
    carried = module._carry["train"]
    for s in carried if isinstance(carried, tuple) else (carried,):
        assert s.grad_fn is None and not s.requires_grad
    loss2 = module._loss((tokens[:, 5:9], tokens[:, 6:10]), "train")
    assert torch.autograd.grad(loss2, captured[0], allow_unused=True)[0] is None
    # The control: without the detach, the second window's loss does reach the first.
    _, state = model(tokens[:, :5])
    logits, _ = model(tokens[:, 5:9], state)
    loss = F.cross_entropy(logits.reshape(-1, 11), tokens[:, 6:10].reshape(-1))
    assert torch.autograd.grad(loss, captured[-2])[0].abs().sum() > 0


def test_greedy_generation_matches_rereading_the_whole_text(model):
    prompt = torch.tensor([3, 1, 4, 1, 5])
    produced = list(model.generate(prompt, 12, temperature=0))
    text = prompt.tolist()
    for _ in range(12):  # the reference: read everything again, take the argmax
        logits, _ = model(torch.tensor([text]))
        text.append(int(logits[0, -1].argmax()))
    assert produced == text[len(prompt):]


def test_sampling_is_reproducible_with_a_seed(model):
    prompt = torch.tensor([2, 7])
    draw = [list(model.generate(prompt, 30, 1.0, None, torch.Generator().manual_seed(s)))
            for s in (5, 5, 6)]
    assert draw[0] == draw[1] and draw[0] != draw[2]


def test_sample_token_top_k_and_temperature():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.0])
    g = torch.Generator().manual_seed(0)
    picks = {sample_token(logits, 1.0, 2, g) for _ in range(200)}
    assert picks == {1, 3}  # only the two most likely
    assert sample_token(logits, 0, None, g) == 1
    counts = torch.bincount(torch.tensor([sample_token(logits, 0.05, None, g) for _ in range(100)]),
                            minlength=4)
    assert counts[1] >= 99  # a low temperature is nearly greedy


def test_errors_name_the_argument(model):
    with pytest.raises(ValueError, match="--tie-weights.*--embedding"):
        LanguageModelConfig(vocab_size=5, embedding=4, hidden=8, tie_weights=True)
    with pytest.raises(ValueError, match="--bidirectional"):
        LanguageModelConfig(vocab_size=5, bidirectional=True)
    with pytest.raises(ValueError, match="prompt"):
        list(model.generate(torch.tensor([], dtype=torch.long), 3))
    with pytest.raises(ValueError, match="temperature"):
        list(model.generate(torch.tensor([1]), 3, temperature=-1))


def test_tied_weights_share_one_matrix():
    tied = LanguageModel(LanguageModelConfig(vocab_size=9, embedding=8, hidden=8, tie_weights=True))
    assert tied.decoder.weight is tied.embedding.weight
    untied = LanguageModel(LanguageModelConfig(vocab_size=9, embedding=8, hidden=8))
    n = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert n == 9 * 8


def test_perplexity_is_exp_of_the_token_weighted_mean_loss(model):
    module = LanguageModelModule(TRAINING, model.config, char_level=True)
    module.model = model
    tokens = torch.randint(0, 11, (4, 23))
    module.on_test_epoch_start()
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    for start in range(0, 22, 6):  # windows of 6, the last one shorter (4)
        end = min(start + 6, 22)
        module.test_step((tokens[:, start:end], tokens[:, start + 1:end + 1]), 0)
    module.on_test_epoch_end()
    with torch.no_grad():
        logits, _ = model(tokens[:, :-1])  # the reference: the whole streams in one pass
    loss = F.cross_entropy(logits.reshape(-1, 11), tokens[:, 1:].reshape(-1))
    assert logged["test_loss"] == pytest.approx(float(loss), rel=1e-5)
    assert logged["test_perplexity"] == pytest.approx(math.exp(logged["test_loss"]), rel=1e-6)
    assert logged["test_bpc"] == pytest.approx(logged["test_loss"] / math.log(2), rel=1e-6)
