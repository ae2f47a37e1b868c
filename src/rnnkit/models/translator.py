"""Encoder-decoder translator with attention (Bahdanau et al. 2015; Luong et al. 2015).

    s_1..s_S = BiRNN(E_src[x_1..x_S])              # any rnnkit cell; hidden/2 per direction
    d_0 = tanh(W_b [final forward; final backward])  # per layer (h and c for LSTMs)
    d_t = RNN([E_tgt[y_{t-1}]; h~_{t-1}], d_{t-1})  # input feeding: h~_{t-1} (zeros at t=1)
    a_t = softmax_j score(d_t, s_j), padding masked  # attention weights over the source
    c_t = sum_j a_tj s_j
    h~_t = tanh(W_c [c_t; d_t])                       # the attentional vector
    p(y_t | y_<t, x) = softmax(W_o dropout(h~_t) + b_o)

Scores: ``dot`` d.s and ``general`` d^T W_a s (Luong's multiplicative), ``additive``
v^T tanh(W_q d + W_k s) (Bahdanau's); ``scaled-dot`` and ``scaled-general`` divide the
multiplicative scores by sqrt(H), as Vaswani et al. 2017's scaled dot-product attention
does, so that their spread does not grow with the width and the softmax does not
saturate to weights of exactly 0 and 1. The decoder computes attention after its recurrent
step, as Luong et al. do, for every score: with ``additive`` this is the Luong pipeline
with Bahdanau's score (as OpenNMT's ``mlp`` attention), not Bahdanau's own decoder, which
scores with the previous state and feeds the context into the recurrence. ``none`` is the
encoder-decoder without attention (Cho et al. 2014): every step gets the same context,
the top layer's final encoder state, so the whole source must pass through one vector.

With ``tie_embeddings`` the output matrix W_o is the target embedding (Press & Wolf
2017), which needs ``embedding == hidden``.

Decoding: :meth:`Translator.greedy` and :meth:`Translator.beam_search` work on batches;
each sentence stops at its end token or at its own maximum length.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.choices import ATTENTIONS
from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder

State = Tensor | tuple[Tensor, ...]


@dataclass(kw_only=True)
class TranslatorConfig(EncoderConfig):
    """Everything needed to rebuild a :class:`Translator`."""

    source_vocab: int
    target_vocab: int
    embedding: int = 256
    source_embedding: int | None = None  # the source side's size (None: ``embedding``)
    attention: str = "general"
    input_feeding: bool = True
    tie_embeddings: bool = False
    pad: int = 2
    bos: int = 3
    eos: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source_embedding is None:
            self.source_embedding = self.embedding
        for name in ("source_vocab", "target_vocab", "embedding", "source_embedding", "hidden",
                     "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"--attention: expected one of {', '.join(ATTENTIONS)}, got "
                             f"{self.attention!r}")
        if self.bidirectional and self.hidden % 2:
            raise ValueError(f"--hidden: a bidirectional encoder gives each direction half of "
                             f"it, so it must be even; got {self.hidden}")
        if self.tie_embeddings and self.embedding != self.hidden:
            raise ValueError(f"--tie-embeddings: the output layer reuses the target embedding, "
                             f"so --embedding must equal --hidden; got {self.embedding} and "
                             f"{self.hidden}")


@dataclass
class Memory:
    """The encoded source: outputs [B, S, H], their attention keys, the padding mask
    [B, S] (True at real tokens) and the top layer's final state [B, H]."""

    outputs: Tensor
    keys: Tensor
    mask: Tensor
    summary: Tensor

    def select(self, index: Tensor) -> Memory:
        return Memory(self.outputs[index], self.keys[index], self.mask[index],
                      self.summary[index])


def select_state(state: State, index: Tensor) -> State:
    """Rows ``index`` of a recurrent state ([layers, B, H], or a tuple of them)."""
    if isinstance(state, tuple):
        return tuple(s[:, index] for s in state)
    return state[:, index]


class Attention(nn.Module):
    """Scores of queries [B, T, H] against the encoder outputs, masked, and the contexts."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        self.scale = hidden ** -0.5 if kind.startswith("scaled-") else 1.0
        self.kind = kind = kind.removeprefix("scaled-")
        if kind == "general":
            self.key_proj = nn.Linear(hidden, hidden, bias=False)
        elif kind == "additive":
            self.key_proj = nn.Linear(hidden, hidden)
            self.query_proj = nn.Linear(hidden, hidden, bias=False)
            self.v = nn.Linear(hidden, 1, bias=False)

    def keys(self, outputs: Tensor) -> Tensor:
        """What the scores compare queries with, computed once per source."""
        return outputs if self.kind == "dot" else self.key_proj(outputs)

    def forward(self, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """Returns contexts [B, T, H] and weights [B, T, S] (exactly 0 at padding)."""
        if self.kind == "additive":
            hidden = torch.tanh(self.query_proj(query)[:, :, None, :] + memory.keys[:, None])
            scores = self.v(hidden).squeeze(-1)  # [B, T, S]
        else:
            scores = query @ memory.keys.transpose(1, 2)  # [B, T, S]
            if self.scale != 1.0:
                scores = scores * self.scale
        scores = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ memory.outputs, weights


class Translator(nn.Module):
    """Source tokens [B, S] with lengths [B] -> target-token logits, greedy or beam output."""

    def __init__(self, config: TranslatorConfig) -> None:
        super().__init__()
        self.config = c = config
        directions = 2 if c.bidirectional else 1
        self.source_embedding = nn.Embedding(c.source_vocab, c.source_embedding,
                                             padding_idx=c.pad)
        self.target_embedding = nn.Embedding(c.target_vocab, c.embedding, padding_idx=c.pad)
        self.encoder = build_initialised_encoder(
            replace(c.encoder, hidden=c.hidden // directions), c.source_embedding)
        feed = c.hidden if c.input_feeding else 0
        self.decoder = build_initialised_encoder(
            replace(c.encoder, bidirectional=False), c.embedding + feed)
        self.lstm = self.decoder._num_states == 2  # the decoder carries (h, c)
        self.bridge = nn.ModuleList(nn.Linear(c.hidden, c.hidden)
                                    for _ in range(2 if self.lstm else 1))
        self.attention = Attention(c.attention, c.hidden) if c.attention != "none" else None
        self.combine = nn.Linear(2 * c.hidden, c.hidden, bias=False)
        self.dropout = nn.Dropout(c.dropout)
        self.generator = nn.Linear(c.hidden, c.target_vocab)
        if c.tie_embeddings:
            self.generator.weight = self.target_embedding.weight

    # -- encoder -----------------------------------------------------------------------
    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Memory, State]:
        """The source's memory and the decoder's initial state."""
        c = self.config
        if source.dim() != 2 or lengths.shape != source.shape[:1]:
            raise ValueError(f"source, lengths: expected [B, S] token ids and [B] lengths, got "
                             f"{tuple(source.shape)} and {tuple(lengths.shape)}")
        if bool((lengths < 1).any()) or int(lengths.max()) > source.shape[1]:
            raise ValueError(f"lengths: expected values in 1..{source.shape[1]}, got "
                             f"{int(lengths.min())}..{int(lengths.max())}")
        embedded = self.dropout(self.source_embedding(source))
        outputs, state = self.encoder(embedded, lengths=lengths.cpu())  # [B, S, H]
        finals = state if isinstance(state, tuple) else (state,)
        batch = source.shape[0]
        initial = []
        for bridge, final in zip(self.bridge, finals):
            # [layers * directions, B, H / directions] -> [layers, B, H]
            joined = final.view(c.layers, -1, batch, final.shape[-1]).transpose(1, 2)
            initial.append(torch.tanh(bridge(joined.reshape(c.layers, batch, c.hidden))))
        mask = (torch.arange(source.shape[1], device=source.device)[None, :]
                < lengths.to(source.device)[:, None])
        keys = self.attention.keys(outputs) if self.attention is not None else outputs
        memory = Memory(outputs, keys, mask, initial[0][-1])
        return memory, tuple(initial) if self.lstm else initial[0]

    # -- decoder -----------------------------------------------------------------------
    def _attend(self, output: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Decoder outputs [B, T, H] -> attentional vectors [B, T, H] and weights."""
        if self.attention is None:
            context, weights = memory.summary[:, None, :].expand_as(output), None
        else:
            context, weights = self.attention(output, memory)
        return torch.tanh(self.combine(torch.cat([context, output], dim=-1))), weights

    def _advance(self, tokens: Tensor, state: State, feed: Tensor,
                 memory: Memory) -> tuple[Tensor, State, Tensor | None]:
        """The recurrent step and attention: attentional vector [B, H], state, weights."""
        x = self.dropout(self.target_embedding(tokens))
        if self.config.input_feeding:
            x = torch.cat([x, feed], dim=-1)
        output, state = self.decoder.step(x, state)  # [B, H]
        attentional, weights = self._attend(output[:, None, :], memory)
        return attentional[:, 0], state, None if weights is None else weights[:, 0]

    def step(self, tokens: Tensor, state: State, feed: Tensor,
             memory: Memory) -> tuple[Tensor, State, Tensor, Tensor | None]:
        """One decoder step: previous tokens [B] -> logits [B, V], the new state, the
        attentional vector [B, H] (fed to the next step) and attention weights [B, S]."""
        attentional, state, weights = self._advance(tokens, state, feed, memory)
        return self.generator(self.dropout(attentional)), state, attentional, weights

    def forward(self, source: Tensor, lengths: Tensor, target_in: Tensor,
                sampling: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Teacher-forced logits [B, T, V] for decoder inputs ``target_in`` [B, T] (the
        start token, then the target). With ``sampling`` p > 0 (scheduled sampling), each
        input after the first is, with probability p, the model's own previous argmax."""
        memory, state = self.encode(source, lengths)
        if not self.config.input_feeding and sampling == 0:  # one pass over all steps
            output, _ = self.decoder(self.dropout(self.target_embedding(target_in)), state)
            attentional, _ = self._attend(output, memory)
        else:
            batch, steps = target_in.shape
            feed = memory.outputs.new_zeros(batch, self.config.hidden)
            tokens, vectors = target_in[:, 0], []
            for t in range(steps):
                if t and sampling > 0:
                    with torch.no_grad():
                        own = self.generator(feed).argmax(-1)
                    draw = torch.rand(batch, generator=generator, device=own.device) < sampling
                    tokens = torch.where(draw, own, target_in[:, t])
                elif t:
                    tokens = target_in[:, t]
                feed, state, _ = self._advance(tokens, state, feed, memory)
                vectors.append(feed)
            attentional = torch.stack(vectors, dim=1)
        # the output layer once over all steps: one large product instead of T small ones
        return self.generator(self.dropout(attentional))

    # -- decoding ----------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, source: Tensor, lengths: Tensor,
               max_lengths: Tensor) -> tuple[list[list[int]], list[Tensor | None]]:
        """The most likely token at each step, per sentence until its end token or its
        ``max_lengths`` tokens. Returns token ids (without the end token) and attention
        weights [len, S_i] per sentence (None without attention)."""
        c = self.config
        memory, state = self.encode(source, lengths)
        batch = source.shape[0]
        feed = memory.outputs.new_zeros(batch, c.hidden)
        tokens = torch.full((batch,), c.bos, dtype=torch.long, device=source.device)
        done = [False] * batch
        out: list[list[int]] = [[] for _ in range(batch)]
        attention: list[list[Tensor]] = [[] for _ in range(batch)]
        limits = max_lengths.tolist()
        for t in range(max(limits, default=0)):
            logits, state, feed, weights = self.step(tokens, state, feed, memory)
            tokens = logits.argmax(-1)
            for b, token in enumerate(tokens.tolist()):
                if done[b]:
                    continue
                if token == c.eos:
                    done[b] = True
                    continue
                out[b].append(token)
                if weights is not None:
                    attention[b].append(weights[b])
                done[b] = t + 1 >= limits[b]
            if all(done):
                break
        return out, self._stacked(attention, lengths)

    @torch.no_grad()
    def beam_search(self, source: Tensor, lengths: Tensor, max_lengths: Tensor, beam: int,
                    length_penalty: float = 1.0) -> tuple[list[list[int]], list[Tensor | None]]:
        """Beam search with ``beam`` hypotheses per sentence, batched.

        Each step extends every live hypothesis by every token and keeps the ``2 * beam``
        best by total log-probability. Of those, an end token among the first ``beam``
        finishes its hypothesis; the best ``beam`` others live on. A sentence is done
        when ``beam`` hypotheses have finished, or at its maximum length, where the
        ``beam`` best candidates finish as they are. The answer is the finished
        hypothesis with the best score / length ** ``length_penalty`` (length counts the
        end token; 0: no normalisation). With ``beam == 1`` this is exactly greedy search.
        """
        c = self.config
        if beam < 1:
            raise ValueError(f"beam: expected a positive integer, got {beam}")
        batch, width = source.shape[0], beam
        memory, state = self.encode(source, lengths)
        flat = torch.arange(batch, device=source.device).repeat_interleave(width)
        memory, state = memory.select(flat), select_state(state, flat)
        feed = memory.outputs.new_zeros(batch * width, c.hidden)
        tokens = torch.full((batch * width,), c.bos, dtype=torch.long, device=source.device)
        scores = torch.full((batch, width), float("-inf"), device=source.device)
        scores[:, 0] = 0.0
        history = torch.zeros(batch * width, 0, dtype=torch.long, device=source.device)
        attn_history = memory.outputs.new_zeros(batch * width, 0, source.shape[1])
        finished: list[list[tuple[float, list[int], Tensor | None]]] = [[] for _ in range(batch)]
        done = [False] * batch
        limits = max_lengths.tolist()
        for t in range(max(limits, default=0)):
            logits, state, feed, weights = self.step(tokens, state, feed, memory)
            vocab = logits.shape[-1]
            logp = torch.log_softmax(logits.float(), dim=-1).view(batch, width, vocab)
            candidates = (scores[:, :, None] + logp).view(batch, -1)
            top_scores, top_index = candidates.topk(min(2 * width, candidates.shape[1]), dim=1)
            origin_rows, next_rows, next_scores = [], [], []
            for b in range(batch):
                kept: list[tuple[int, int, float]] = []
                if not done[b]:
                    last = t + 1 >= limits[b]
                    for rank, (score, index) in enumerate(zip(top_scores[b].tolist(),
                                                              top_index[b].tolist())):
                        if score == float("-inf") or len(kept) == width:
                            break
                        row, token = b * width + index // vocab, index % vocab
                        if token == c.eos or last:
                            if rank < width:
                                words = history[row].tolist() + ([] if token == c.eos else [token])
                                attn = None
                                if weights is not None:
                                    attn = attn_history[row]
                                    if token != c.eos:
                                        attn = torch.cat([attn, weights[row][None]])
                                length = len(words) + (token == c.eos)
                                norm = length ** length_penalty if length_penalty else 1.0
                                finished[b].append((score / norm, words, attn))
                            continue
                        kept.append((row, token, score))
                    if len(finished[b]) >= width or last or not kept:
                        done[b] = True
                if done[b]:
                    kept = []
                kept += [(b * width, c.eos, float("-inf"))] * (width - len(kept))
                for row, token, score in kept:
                    origin_rows.append(row)
                    next_rows.append(token)
                    next_scores.append(score)
            if all(done):
                break
            origin = torch.tensor(origin_rows, device=source.device)
            tokens = torch.tensor(next_rows, device=source.device)
            scores = torch.tensor(next_scores, device=source.device).view(batch, width)
            state, feed = select_state(state, origin), feed[origin]
            history = torch.cat([history[origin], tokens[:, None]], dim=1)
            if weights is not None:
                attn_history = torch.cat([attn_history[origin], weights[origin][:, None]], dim=1)
        best = [max(f, key=lambda item: item[0]) for f in finished]
        attention = [a for _, _, a in best]
        return [w for _, w, _ in best], self._stacked(attention, lengths, stacked=True)

    def _stacked(self, attention: list, lengths: Tensor, stacked: bool = False) -> list:
        """Per-sentence attention [len, S_i] cut to the sentence's own source length."""
        if self.attention is None:
            return [None] * len(attention)
        out = []
        for rows, n in zip(attention, lengths.tolist()):
            if stacked:
                matrix = rows
            else:
                matrix = torch.stack(rows) if rows else torch.zeros(0, int(n))
            out.append(matrix[:, :n].cpu())
        return out


def cross_entropy(logits: Tensor, target: Tensor, pad: int,
                  label_smoothing: float = 0.0) -> Tensor:
    """Mean token cross-entropy of logits [B, T, V] against target ids [B, T], padding
    ignored. With ``label_smoothing`` e, against the target distribution 1 - e on the true
    token plus e / V on every token (Szegedy et al. 2016)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                           ignore_index=pad, label_smoothing=label_smoothing)
