"""Recurrent language model: embedding, stacked recurrent layers, softmax over the vocabulary.

    e_t = E[x_t]                       # [B, T, embedding]
    h_t = RNN(dropout(e_t), h_{t-1})   # any rnnkit cell, stacked, dropout between layers
    p(x_{t+1} | x_<=t) = softmax(W dropout(h_t) + b)

With ``tie_weights`` the output matrix W is the embedding matrix E (Press & Wolf 2017;
Inan et al. 2017), which needs ``embedding == hidden``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder

State = Tensor | tuple[Tensor, ...]


@dataclass(kw_only=True)
class LanguageModelConfig(EncoderConfig):
    """Everything needed to rebuild a :class:`LanguageModel`."""

    vocab_size: int
    embedding: int = 64
    tie_weights: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size: expected a positive integer, got {self.vocab_size}")
        if self.bidirectional:
            raise ValueError("--bidirectional: a language model predicts the next token from "
                             "the past only, so it cannot read both directions")
        if self.tie_weights and self.embedding != self.hidden:
            raise ValueError(f"--tie-weights: the output layer reuses the embedding matrix, so "
                             f"--embedding must equal --hidden; got {self.embedding} and "
                             f"{self.hidden}")


def detach_state(state: State | None) -> State | None:
    """The carried state cut from the graph (truncated BPTT between windows)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class LanguageModel(nn.Module):
    """Tokens [B, T] -> next-token logits [B, T, vocab_size], carrying the recurrent state."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding)
        self.encoder = build_initialised_encoder(config, config.embedding)
        self.dropout = nn.Dropout(config.dropout)
        self.decoder = nn.Linear(config.hidden, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    def export_signature(self) -> tuple[list[str], list[str], dict[str, int]]:
        """For ONNX and TorchScript: next-token logits from a zero initial state, and the
        final state (``c_n`` too for a cell with two states)."""
        states = ["h_n", "c_n"] if self.encoder._num_states == 2 else ["h_n"]
        return ["tokens"], ["logits", *states], {"vocab": self.config.vocab_size}

    def export_forward(self, tokens: Tensor) -> tuple[Tensor, ...]:
        logits, state = self(tokens)
        return (logits, *state) if isinstance(state, tuple) else (logits, state)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Args: tokens int64 [B, T]; state: the encoder's state from the previous window,
        or None for zeros. Returns logits [B, T, vocab_size] and the final state."""
        embedded = self.dropout(self.embedding(tokens))  # [B, T, E]
        output, state = self.encoder(embedded, state)  # [B, T, H]
        return self.decoder(self.dropout(output)), state

    @torch.no_grad()
    def generate(self, prompt: Tensor, length: int, temperature: float = 1.0,
                 top_k: int | None = None,
                 generator: torch.Generator | None = None) -> Iterator[int]:
        """Yield ``length`` sampled token indices, one at a time, after reading ``prompt``.

        Each new token costs one recurrent step: the state is carried, never recomputed.

        Args:
            prompt: int64 [P] (P >= 1) token indices to condition on.
            length: how many tokens to produce.
            temperature: divides the logits before the softmax; 0 picks the most likely
                token each step (greedy).
            top_k: sample among the k most likely tokens only (None: all).
            generator: the random generator to sample with (reproducible with a seed).
        """
        if prompt.dim() != 1 or prompt.numel() < 1:
            raise ValueError(f"prompt: expected a non-empty 1-D tensor of token indices, got "
                             f"shape {tuple(prompt.shape)}")
        if temperature < 0:
            raise ValueError(f"temperature: expected a number >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k: expected a positive integer or None, got {top_k}")
        was_training = self.training
        self.eval()
        try:
            device = self.decoder.weight.device
            logits, state = self(prompt.to(device).view(1, -1))
            last = logits[0, -1]  # [V]
            for _ in range(length):
                token = sample_token(last, temperature, top_k, generator)
                yield token
                embedded = self.embedding(torch.tensor([token], device=device))  # [1, E]
                output, state = self.encoder.step(embedded, state)  # one recurrent step
                last = self.decoder(output)[0]
        finally:
            self.train(was_training)


def sample_token(logits: Tensor, temperature: float, top_k: int | None,
                 generator: torch.Generator | None) -> int:
    """One index from ``logits`` [V]: argmax at temperature 0, else a draw from
    softmax(logits / temperature) restricted to the ``top_k`` largest."""
    if temperature == 0:
        return int(logits.argmax())
    scaled = logits.float() / temperature
    if top_k is not None and top_k < scaled.numel():
        kth = scaled.topk(top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
