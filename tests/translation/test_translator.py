"""The encoder-decoder: masking, attention, teacher forcing, greedy and beam search."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from rnnkit.models.translator import Translator, TranslatorConfig, cross_entropy

PAD, BOS, EOS = 2, 3, 1


def _model(attention="general", cell="gru", input_feeding=True, vocab=12, hidden=16,
           **kwargs) -> Translator:
    torch.manual_seed(0)
    kwargs.setdefault("bidirectional", True)  # the task's default encoder
    config = TranslatorConfig(source_vocab=vocab, target_vocab=vocab, embedding=8, hidden=hidden,
                              cell=cell, attention=attention, input_feeding=input_feeding,
                              dropout=0.0, **kwargs)
    return Translator(config).eval()


def _padded(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in sequences])
    source = torch.full((len(sequences), int(lengths.max())), PAD)
    for row, seq in enumerate(sequences):
        source[row, :len(seq)] = torch.tensor(seq)
    return source, lengths


SENTENCES = [[4, 5, 6, 7, 8, 9, 10], [5, 6], [11, 4, 4, 7]]


@pytest.mark.parametrize("attention", ["dot", "general", "additive", "scaled-dot",
                                       "scaled-general"])
def test_attention_is_zero_on_padding_and_rows_sum_to_one(attention):
    model = _model(attention)
    source, lengths = _padded(SENTENCES)
    memory, _ = model.encode(source, lengths)
    queries = torch.randn(3, 4, 16)
    _, weights = model.attention(queries, memory)  # [B, T, S]
    for row, n in enumerate(lengths.tolist()):
        assert torch.all(weights[row, :, n:] == 0)
        assert torch.all(weights[row, :, :n] > 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_scaled_scores_are_luongs_over_the_square_root_of_the_width(kind):
    """scaled-X: softmax(score_X / sqrt(H)), the scores written out here from Luong's
    formulas; the parameters are X's, so X's weights load unchanged."""
    plain, scaled = _model(kind, hidden=16), _model(f"scaled-{kind}", hidden=16)
    scaled.load_state_dict(plain.state_dict())
    source, lengths = _padded(SENTENCES)
    memory, _ = scaled.encode(source, lengths)
    queries = torch.randn(3, 4, 16)
    context, weights = scaled.attention(queries, memory)
    keys = memory.outputs if kind == "dot" else memory.outputs @ plain.attention.key_proj.weight.T
    scores = torch.einsum("bth,bsh->bts", queries, keys) / 4.0  # sqrt(16)
    valid = torch.arange(source.shape[1])[None, :] < lengths[:, None]
    expected = torch.softmax(scores.masked_fill(~valid[:, None, :], float("-inf")), dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(context, expected @ memory.outputs)
    _, unscaled = plain.attention(queries, memory)
    assert not torch.allclose(unscaled, weights)


@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive", "scaled-general"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "ln-gru"])
def test_a_sentence_translates_the_same_alone_and_padded_in_a_batch(attention, cell):
    model = _model(attention, cell)
    source, lengths = _padded(SENTENCES)
    target_in = torch.tensor([[BOS, 4, 5, 6, 7]] * 3)
    batched = model(source, lengths, target_in)
    for row, seq in enumerate(SENTENCES):
        alone = model(*_padded([seq]), target_in[:1])
        torch.testing.assert_close(batched[row:row + 1], alone, atol=1e-5, rtol=1e-5)
    # changing what sits in the padding changes nothing
    noisy = source.clone()
    noisy[source == PAD] = 9
    torch.testing.assert_close(model(noisy, lengths, target_in), batched)


@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("attention", ["none", "additive"])
def test_teacher_forcing_equals_stepping_the_decoder(input_feeding, attention):
    """forward's logits (one pass without input feeding, a loop with it) equal the
    logits of calling step() token by token."""
    model = _model(attention, "lstm", input_feeding)
    source, lengths = _padded(SENTENCES)
    target_in = torch.tensor([[BOS, 4, 5, 6], [BOS, 7, 7, 8], [BOS, 11, 10, 9]])
    logits = model(source, lengths, target_in)
    memory, state = model.encode(source, lengths)
    feed = torch.zeros(3, 16)
    for t in range(target_in.shape[1]):
        step_logits, state, feed, _ = model.step(target_in[:, t], state, feed, memory)
        torch.testing.assert_close(logits[:, t], step_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_stacked_layers_bridge_every_layer(bidirectional):
    model = _model("dot", "lstm", layers=2, bidirectional=bidirectional)
    source, lengths = _padded(SENTENCES)
    memory, (h, c) = model.encode(source, lengths)
    assert h.shape == c.shape == (2, 3, 16) and memory.outputs.shape == (3, 7, 16)
    _, finals = model.encoder(model.source_embedding(source), lengths=lengths)
    top = finals[0][-2:] if bidirectional else finals[0][-1:]  # the top layer's directions
    joined = torch.cat(list(top), dim=-1)  # [B, H]
    torch.testing.assert_close(h[1], torch.tanh(model.bridge[0](joined)))
    target_in = torch.tensor([[BOS, 4, 5]] * 3)
    assert model(source, lengths, target_in).shape == (3, 3, 12)


def test_scheduled_sampling_feeds_the_models_own_predictions():
    model = _model()
    source, lengths = _padded(SENTENCES)
    target_in = torch.tensor([[BOS, 4, 5, 6, 7]] * 3)
    forced = model(source, lengths, target_in)
    own = model(source, lengths, target_in, sampling=1.0)
    assert not torch.equal(own, forced)
    # with p = 1 every input after the first was the previous step's argmax: teacher
    # forcing on those inputs gives the same logits
    inputs = torch.cat([target_in[:, :1], own.argmax(-1)[:, :-1]], dim=1)
    torch.testing.assert_close(model(source, lengths, inputs), own)


@pytest.mark.parametrize("attention", ["none", "general", "additive"])
def test_beam_one_equals_greedy(attention):
    """On a briefly trained model (an untrained one emits the same token or stops at once),
    for outputs that end with the end token and outputs cut at their length limit."""
    model = _reverse_model(attention, steps=60)
    source, lengths, _, _, _ = _reverse_batch(40, torch.Generator().manual_seed(5))
    limits = torch.where(torch.arange(40) % 2 == 0, lengths + 3, lengths - 2)
    greedy, greedy_attention = model.greedy(source, lengths, limits)
    beam, beam_attention = model.beam_search(source, lengths, limits, beam=1)
    assert beam == greedy
    for a, b in zip(greedy_attention, beam_attention):
        if attention == "none":
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)
    assert any(0 < len(g) < n for g, n in zip(greedy, limits.tolist()))  # ended
    assert any(len(g) == n for g, n in zip(greedy, limits.tolist()))  # cut at the limit


@torch.no_grad()
def _sequence_logp(model, source, lengths, tokens: list[int], ended: bool) -> float:
    target_in = torch.tensor([[BOS, *tokens]])
    logp = torch.log_softmax(model(source, lengths, target_in), -1)[0]
    wanted = [*tokens, EOS] if ended else tokens
    return float(sum(logp[t, w] for t, w in enumerate(wanted)))


def test_a_wide_beam_finds_the_exhaustive_best():
    """With a beam as wide as the number of possible outputs, beam search is exact: it
    returns the highest-scoring sequence found by enumerating all of them."""
    vocab, limit = 6, 3
    model = _model("general", "gru", vocab=vocab)
    source, lengths = _padded([[4, 5, 4]])
    words = [t for t in range(vocab) if t != EOS]
    scored = []
    for n in range(limit + 1):
        for seq in itertools.product(words, repeat=n):
            ended = n < limit  # shorter outputs end with the end token; full ones are cut
            scored.append((_sequence_logp(model, source, lengths, list(seq), ended), list(seq)))
    for penalty in (0.0, 1.0):
        def norm(item, penalty=penalty):
            score, seq = item
            length = len(seq) + (len(seq) < limit)
            return score / (length ** penalty if penalty else 1.0)
        best = max(scored, key=norm)
        found, _ = model.beam_search(source, lengths, torch.tensor([limit]), beam=len(scored),
                                     length_penalty=penalty)
        assert found[0] == best[1]


def test_bad_configuration_and_input_are_refused():
    with pytest.raises(ValueError, match="--attention"):
        TranslatorConfig(source_vocab=5, target_vocab=5, attention="luong")
    with pytest.raises(ValueError, match="--tie-embeddings"):
        TranslatorConfig(source_vocab=5, target_vocab=5, embedding=8, hidden=16,
                         tie_embeddings=True)
    with pytest.raises(ValueError, match="--hidden"):
        TranslatorConfig(source_vocab=5, target_vocab=5, hidden=15, bidirectional=True)
    model = _model()
    with pytest.raises(ValueError, match="lengths"):
        model.encode(torch.tensor([[4, 5]]), torch.tensor([3]))
    with pytest.raises(ValueError, match="beam"):
        model.beam_search(torch.tensor([[4, 5]]), torch.tensor([2]), torch.tensor([3]), beam=0)


def test_label_smoothing_is_the_mixture_of_the_true_token_and_the_uniform_target():
    """(1 - e) * NLL(true token) + e * mean over the V tokens of -log p, averaged over the
    tokens that are not padding, written out here."""
    logits = torch.randn(3, 5, 7, dtype=torch.float64)
    target = torch.randint(0, 7, (3, 5))
    target[0, 3:] = PAD
    log_p = torch.log_softmax(logits, dim=-1)
    keep = target != PAD
    nll = -log_p.gather(-1, target[..., None])[..., 0]
    uniform = -log_p.mean(-1)
    for e in (0.0, 0.1, 0.4):
        expected = ((1 - e) * nll + e * uniform)[keep].mean()
        torch.testing.assert_close(cross_entropy(logits, target, PAD, e), expected)


def test_tied_embeddings_share_one_matrix():
    model = _model(tie_embeddings=True, hidden=8)
    assert model.generator.weight is model.target_embedding.weight


def _reverse_batch(n: int, generator: torch.Generator, symbols: int = 8):
    lengths = torch.randint(3, 7, (n,), generator=generator)
    sequences = [(torch.randint(4, 4 + symbols, (int(k),), generator=generator)).tolist()
                 for k in lengths]
    source, lengths = _padded(sequences)
    steps = int(lengths.max()) + 1
    target_in = torch.full((n, steps), PAD)
    target_out = torch.full((n, steps), PAD)
    for row, seq in enumerate(sequences):
        reverse = seq[::-1]
        target_in[row, :len(seq) + 1] = torch.tensor([BOS, *reverse])
        target_out[row, :len(seq) + 1] = torch.tensor([*reverse, EOS])
    return source, lengths, target_in, target_out, [s[::-1] for s in sequences]


@functools.cache
def _reverse_model(attention: str, steps: int) -> Translator:
    torch.manual_seed(0)
    model = Translator(TranslatorConfig(source_vocab=12, target_vocab=12, embedding=16, hidden=32,
                                        bidirectional=True, dropout=0.0, attention=attention))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        source, lengths, target_in, target_out, _ = _reverse_batch(64, generator)
        loss = cross_entropy(model(source, lengths, target_in), target_out, PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_a_tiny_model_learns_to_reverse_a_toy_language():
    """Reversal needs the decoder to find the source token for each output position:
    near-perfect exact-match accuracy shows the encoder, attention, input feeding and
    decoding are wired together correctly."""
    model = _reverse_model("general", steps=500)
    model.eval()
    source, lengths, _, _, wanted = _reverse_batch(300, torch.Generator().manual_seed(99))
    greedy, attention = model.greedy(source, lengths, lengths + 3)
    assert sum(g == w for g, w in zip(greedy, wanted)) / 300 >= 0.95
    beam, _ = model.beam_search(source, lengths, lengths + 3, beam=4)
    assert sum(b == w for b, w in zip(beam, wanted)) / 300 >= 0.95
    # the learnt attention looks at the mirrored source position
    hits = [int(a.argmax(-1).tolist() == list(range(len(w) - 1, -1, -1)))
            for a, w, g in zip(attention, wanted, greedy) if g == w]
    assert sum(hits) / len(hits) >= 0.8
