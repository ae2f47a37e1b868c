"""Text classifier: word embeddings, a (bidirectional) recurrent encoder, pooling, a head.

    e_t = dropout(E[x_t])                        # [B, T, embedding]
                                                  # ("both": [E[x_t]; E_static[x_t]])
    o_t = RNN(e_1..e_len)                         # true lengths: padding is never read
    z   = pool(o_1..o_len)                        # last | max | mean | attention
    p(y | x) = softmax(W dropout(z) + b)

Pooling over the valid steps only (:mod:`rnnkit.models.pooling`): ``last``, ``max``,
``mean`` or ``attention``.

The embedding (``embedding_mode``, Kim 2014's names): ``non-static``, trained with the rest
(from word vectors or random); ``static``, frozen (word vectors as they came); ``both``, the
two side by side, a trained copy and a frozen one (Kim's multichannel), so the encoder reads
2 x ``embedding`` numbers per word.

Adapters (``adapter`` = N > 0, Houlsby et al. 2019): a bottleneck after each recurrent
layer, ``o + W_up relu(W_down o)`` with ``W_up`` and its bias zero at the start, so the
pretrained encoder's features pass unchanged until it learns; the task then trains only
the adapters and the head. ``adapter`` sits on the top layer's outputs, ``layer_adapters[l]``
between layer l and layer l + 1 (through the encoder's ``between_layers``).

The embedding and encoder are named as in :class:`~rnnkit.models.language_model.LanguageModel`,
so a language model's weights load into them (:func:`transfer_language_model`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnkit.choices import EMBEDDING_MODES
from rnnkit.models.pooling import attention_scorer, check_pooling, last_state, pool_steps
from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder


@dataclass(kw_only=True)
class TextClassifierConfig(EncoderConfig):
    """Everything needed to rebuild a :class:`TextClassifier`."""

    vocab_size: int
    num_classes: int
    embedding: int = 128
    pooling: str = "max"
    embedding_mode: str = "non-static"
    adapter: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.adapter < 0:
            raise ValueError(f"--adapter: expected a bottleneck size >= 0, got {self.adapter}")
        if self.embedding_mode not in EMBEDDING_MODES:
            raise ValueError(f"--embedding-mode: expected one of {', '.join(EMBEDDING_MODES)}, "
                             f"got {self.embedding_mode!r}")
        check_pooling(self.pooling)
        if self.vocab_size < 1 or self.num_classes < 2:
            raise ValueError(f"expected a vocabulary and at least two classes, got "
                             f"vocab_size {self.vocab_size}, num_classes {self.num_classes}")


class TextClassifier(nn.Module):
    """Padded token ids [B, T] and true lengths [B] -> class logits [B, num_classes]."""

    def __init__(self, config: TextClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding)
        if config.embedding_mode == "static":
            self.embedding.weight.requires_grad_(False)
        if config.embedding_mode == "both":
            self.static_embedding = nn.Embedding(config.vocab_size, config.embedding)
            self.static_embedding.weight.requires_grad_(False)
        width_in = config.embedding * (2 if config.embedding_mode == "both" else 1)
        self.encoder = build_initialised_encoder(config, width_in)
        # each layer's output: h_t, or its projection (LSTMP), per direction
        width = (config.proj_size or config.hidden) * (2 if config.bidirectional else 1)
        if config.pooling == "attention":
            self.attention = attention_scorer(width)
        if config.adapter:
            self.adapter = Adapter(width, config.adapter)
            if config.layers > 1:
                self.layer_adapters = nn.ModuleList(
                    Adapter(width, config.adapter) for _ in range(config.layers - 1))
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(tokens, lengths)))

    def features(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """The pooled sentence representation [B, width]."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens: expected [batch, time] token ids, got shape "
                             f"{tuple(tokens.shape)}")
        if lengths.shape != tokens.shape[:1]:
            raise ValueError(f"lengths: expected one length per sentence ({tokens.shape[0]}), "
                             f"got shape {tuple(lengths.shape)}")
        if bool((lengths < 1).any()) or int(lengths.max()) > tokens.shape[1]:
            raise ValueError(f"lengths: expected values in 1..{tokens.shape[1]}, got "
                             f"{lengths.min().item()}..{lengths.max().item()}")
        embedded = self.embedding(tokens)
        if self.config.embedding_mode == "both":
            embedded = torch.cat([embedded, self.static_embedding(tokens)], dim=-1)
        embedded = self.dropout(embedded)
        extra = {}  # only when used: a torch.nn stand-in for the encoder (benchmarks) lacks it
        if self.config.adapter and self.config.layers > 1:
            extra["between_layers"] = lambda layer, y: self.layer_adapters[layer](y)
        output, state = self.encoder(embedded, lengths=lengths.cpu(), **extra)  # [B, T, width]
        adapt = self.adapter if self.config.adapter else (lambda t: t)
        if self.config.pooling == "last":
            return adapt(last_state(state, 2 if self.config.bidirectional else 1))
        return pool_steps(adapt(output), lengths, self.config.pooling,
                          getattr(self, "attention", None))

    def pretrained_groups(self, reverse: bool = False) -> list[list[str]]:
        """Names of the parameters a pretrained run provides, top first, then the
        embedding: the order gradual unfreezing thaws them in. A language model provides
        the forward direction only; a classifier (``reverse``) also the reverse direction
        and the attention pooling, which join the top group."""
        groups = []
        names = [name for name, _ in self.encoder.named_parameters()]
        for layer in reversed(range(self.config.layers)):
            ends = (f"_l{layer}", f"_l{layer}_reverse") if reverse else (f"_l{layer}",)
            groups.append([f"encoder.{n}" for n in names if n.endswith(ends)])
        if reverse and self.config.pooling == "attention":
            groups[0] += [f"attention.{n}" for n, _ in self.attention.named_parameters()]
        embeddings = ["embedding.weight"]
        if reverse and self.config.embedding_mode == "both":
            embeddings.append("static_embedding.weight")
        return [*groups, embeddings]


class Adapter(nn.Module):
    """``x + up(relu(down(x)))``, ``up`` zero at the start (the identity until it learns)."""

    def __init__(self, width: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(torch.relu(self.down(x)))


def _map_rows(source: Tensor, target: Tensor, source_tokens: list[str],
              tokens: list[str]) -> int:
    """Each of ``tokens`` takes the row of the same token in ``source``; a token missing
    there, the mean of its rows (as ULMFiT does). Returns how many were found."""
    index = {t: i for i, t in enumerate(source_tokens)}
    rows = torch.tensor([index.get(t, -1) for t in tokens])
    found = rows >= 0
    target.copy_(source.mean(dim=0).expand_as(target))
    target[found] = source[rows[found]].to(target)
    return int(found.sum())


@torch.no_grad()
def transfer_classifier(classifier: TextClassifier, state: dict[str, Tensor],
                        source_tokens: list[str], tokens: list[str]) -> dict[str, int]:
    """Load an earlier text classifier's embedding(s), encoder and attention pooling into
    ``classifier`` (built with the same architecture); its head stays fresh, since the
    classes may differ. Words map by token as in :func:`transfer_language_model`.

    Returns:
        counts: ``tokens``, ``found`` (embedding rows copied), ``encoder`` (tensors copied).
    """
    params = dict(classifier.named_parameters())
    found = 0
    for name in ("embedding.weight", "static_embedding.weight"):
        if name in params:
            if name not in state or state[name].shape[1] != params[name].shape[1]:
                raise ValueError(f"--init-from: the classifier run's {name} does not fit")
            found = _map_rows(state[name], params[name], source_tokens, tokens)
    copied = 0
    for name, value in state.items():
        if name.startswith(("encoder.", "attention.")):
            if name not in params or params[name].shape != value.shape:
                raise ValueError(f"--init-from: the classifier run's {name} "
                                 f"{tuple(value.shape)} does not fit this classifier")
            params[name].copy_(value)
            copied += name.startswith("encoder.")
    return {"tokens": len(tokens), "found": found, "encoder": copied}


@torch.no_grad()
def transfer_language_model(classifier: TextClassifier, lm_state: dict[str, Tensor],
                            lm_tokens: list[str], tokens: list[str]) -> dict[str, int]:
    """Load a language model's embedding and encoder into ``classifier``.

    Args:
        classifier: the classifier to initialise (same cell, hidden size, layers and
            embedding size as the language model).
        lm_state: the language model's state dict (``embedding.weight``, ``encoder.*``).
        lm_tokens: the language model's vocabulary, index order.
        tokens: the classifier's vocabulary, index order.

    Each classifier token takes the row of the same token in the language model; a token
    the language model lacks takes the mean of its rows (as ULMFiT does). The encoder's
    forward-direction weights are copied by name; the backward direction of a
    bidirectional classifier keeps its fresh initialisation.

    Returns:
        counts: ``tokens`` (classifier vocabulary), ``found`` (rows copied), ``encoder``
        (tensors copied).
    """
    source = lm_state["embedding.weight"]
    target = classifier.embedding.weight
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"--init-from: the language model's embedding has {source.shape[1]} "
                         f"dimensions, the classifier's {target.shape[1]}")
    found = _map_rows(source, target, lm_tokens, tokens)
    copied = 0
    params = dict(classifier.encoder.named_parameters())
    for name, value in lm_state.items():
        if not name.startswith("encoder."):
            continue
        key = name.removeprefix("encoder.")
        if key not in params or params[key].shape != value.shape:
            raise ValueError(f"--init-from: the language model's {name} {tuple(value.shape)} does "
                             f"not fit the classifier's encoder")
        params[key].copy_(value)
        copied += 1
    return {"tokens": len(tokens), "found": found, "encoder": copied}
