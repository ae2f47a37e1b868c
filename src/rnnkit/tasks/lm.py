"""Language modelling and text generation: next-token prediction trained by truncated BPTT.

``rnnkit train lm`` reads a corpus (:mod:`rnnkit.data.text`: Shakespeare, or your own
text) at character or word level (:mod:`rnnkit.data.vocab`), cuts each split into B
parallel streams (:mod:`rnnkit.data.streams`) and trains a
:class:`~rnnkit.models.language_model.LanguageModel` on consecutive windows of
``--bptt`` tokens, carrying the recurrent state from one window to the next and
detaching it between them (stateful truncated BPTT). Validation and test read their
splits the same way, as 16 streams by default, so every prediction but the first few
of each stream sees a long context.

Metrics per split: ``loss`` (mean cross-entropy in nats per token, over every predicted
token), ``perplexity`` = exp(loss), and for character models ``bpc`` = loss / ln 2
(bits per character). ``rnnkit generate RUN_DIR`` samples from a trained run
(:class:`TextGenerator`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric

from rnnkit.data.streams import StreamWindows
from rnnkit.data.text import load_corpus, split_blocks
from rnnkit.data.vocab import EOS, LEVELS, Vocabulary, tokenize
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig, detach_state
from rnnkit.tasks import catalog
from rnnkit.training.checkpoint_io import load_checkpoint_file
from rnnkit.training.module import TrainingModule
from rnnkit.training.plots import plot_step_curves
from rnnkit.training.run_folder import checkpoint_path

VOCAB_FILE = "vocab.json"
SAMPLE_FILE = "sample.txt"
DEFAULT_MIN_FREQ = {"char": 1, "word": 3}


class TextData(L.LightningDataModule):
    """A corpus tokenised with one vocabulary and cut into contiguous 90/5/5 blocks.

    Args:
        source: ``shakespeare`` or ``text:PATH``.
        level: ``char`` or ``word``.
        min_freq: tokens rarer than this in the training block become ``<unk>``.
        batch_size: training streams; eval_streams: validation/test streams.
        bptt: window length in tokens.
        vocab: a saved vocabulary to use instead of building one (a resumed or
            reloaded run keeps its own).
    """

    def __init__(self, source: str, level: str, min_freq: int, batch_size: int, bptt: int,
                 eval_streams: int = 16, vocab: Vocabulary | None = None) -> None:
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"--level: expected one of {', '.join(LEVELS)}, got {level!r}")
        self.source, self.level, self.batch_size, self.bptt = source, level, batch_size, bptt
        self.eval_streams = eval_streams
        text = load_corpus(source)
        self.characters = len(text)
        if vocab is None:
            # The vocabulary comes from the training block only, so validation and test
            # may hold tokens the model never saw (they read as <unk>).
            pieces = tokenize(text, level)
            vocab = Vocabulary.from_tokens(pieces[split_blocks(len(pieces))[0]], level, min_freq)
        elif vocab.level != level:
            raise ValueError(f"the saved vocabulary is {vocab.level}-level, the run asks for "
                             f"--level {level}")
        self.vocab = vocab
        tokens = torch.from_numpy(vocab.encode(text))
        train, val, test = split_blocks(tokens.numel())
        self.splits = {"train": tokens[train], "validation": tokens[val], "test": tokens[test]}
        for name, split_tokens in self.splits.items():
            streams = batch_size if name == "train" else eval_streams
            if split_tokens.numel() < 2 * streams:
                raise ValueError(f"--data {source}: the {name} block holds {split_tokens.numel()} "
                                 f"tokens, too few for {streams} streams; give more text "
                                 "or a smaller --batch-size")
        self.unknown_rate = {name: float((t == 0).float().mean()) for name, t in self.splits.items()}

    def sizes(self) -> dict[str, int]:
        return {name: int(t.numel()) for name, t in self.splits.items()}

    def _loader(self, split: str, streams: int) -> DataLoader:
        # batch_size=None: each item already is a [B, T] window, in reading order.
        return DataLoader(StreamWindows(self.splits[split], streams, self.bptt), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.eval_streams)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_streams)


class LanguageModelModule(TrainingModule):
    """Cross-entropy over next tokens, with the recurrent state carried between windows."""

    monitor = "val_loss"
    mode = "min"
    schedule_interval = "step"

    def __init__(self, config: dict[str, Any], model_config: LanguageModelConfig,
                 char_level: bool) -> None:
        super().__init__(config)
        self.model = LanguageModel(model_config)
        self.char_level = char_level
        self.val_mean, self.test_mean = MeanMetric(), MeanMetric()
        self._carry: dict[str, Any] = {}

    def forward(self, tokens: torch.Tensor, state=None):
        return self.model(tokens, state)

    def _loss(self, batch, split: str) -> torch.Tensor:
        """Mean cross-entropy on a window, reading on from the split's carried state."""
        x, y = batch
        logits, state = self.model(x, self._carry.get(split))
        self._carry[split] = detach_state(state)  # gradients stop at the window's start
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def loss_on(self, batch) -> torch.Tensor:
        x, y = batch
        logits, _ = self.model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def on_train_epoch_start(self) -> None:
        self._carry.pop("train", None)  # each epoch reads the streams from their start

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch, "train")
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=batch[1].numel())
        return loss

    def on_validation_epoch_start(self) -> None:
        self._carry.pop("validation", None)
        self.val_mean.reset()

    def validation_step(self, batch, batch_idx):
        self.val_mean.update(self._loss(batch, "validation"), weight=batch[1].numel())

    def on_validation_epoch_end(self) -> None:
        self._log_split("val", self.val_mean)

    def on_test_epoch_start(self) -> None:
        self._carry.pop("test", None)
        self.test_mean.reset()

    def test_step(self, batch, batch_idx):
        self.test_mean.update(self._loss(batch, "test"), weight=batch[1].numel())

    def on_test_epoch_end(self) -> None:
        self._log_split("test", self.test_mean)

    def _log_split(self, prefix: str, mean: MeanMetric) -> None:
        """Loss per token over the whole split (token-weighted), perplexity, bits per char."""
        loss = mean.compute()
        self.log(f"{prefix}_loss", loss, prog_bar=prefix == "val")
        self.log(f"{prefix}_perplexity", loss.exp())
        if self.char_level:
            self.log(f"{prefix}_bpc", loss / math.log(2))


class TextGenerator:
    """Sample text from a trained language model, token by token.

    Prompt handling (documented behaviour): tokens of the prompt that are not in the
    vocabulary are read as ``<unk>`` (:meth:`encode_prompt` lists them; the command
    prints a notice); an empty prompt starts after a line break (character level) or
    an ``<eos>`` (word level), i.e. at the start of a line.
    """

    def __init__(self, model: LanguageModel, vocab: Vocabulary) -> None:
        self.model, self.vocab = model.eval(), vocab

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best") -> TextGenerator:
        """The model and vocabulary of a run folder written by ``rnnkit train lm``."""
        from rnnkit.training.runner import run_config

        run_dir = Path(run_dir)
        config = run_config(TASK, run_dir)
        if config.get("task") != TASK.name:
            raise ValueError(f"{run_dir} is a {config.get('task')!r} run, not a language model")
        vocab_path = run_dir / VOCAB_FILE
        if not vocab_path.is_file():
            raise ValueError(f"{run_dir}: no {VOCAB_FILE}; the run folder is incomplete")
        vocab = Vocabulary.load(vocab_path)
        model = LanguageModel(model_config(config, len(vocab)))
        path = checkpoint_path(run_dir, checkpoint)
        state = load_checkpoint_file(path)["state_dict"]
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise ValueError(f"checkpoint {path} does not fit the run's model ({exc})") from exc
        return cls(model, vocab)

    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, list[str]]:
        """The prompt as token indices [P], and its tokens missing from the vocabulary."""
        if prompt == "":
            start = "\n" if self.vocab.level == "char" else EOS
            return torch.tensor([self.vocab.index.get(start, 0)]), []
        ids = torch.from_numpy(self.vocab.encode(prompt))
        if ids.numel() == 0:  # e.g. only spaces at word level
            return self.encode_prompt("")
        return ids, self.vocab.unknown(prompt)

    def stream(self, prompt: str | torch.Tensor, length: int, temperature: float = 1.0,
               top_k: int | None = None, seed: int | None = None) -> Iterator[str]:
        """Yield the text of each new token as soon as it is sampled.

        Args:
            prompt: text (or token indices [P]) to continue.
            length: tokens to produce.
            temperature: 0 is greedy; lower is safer, higher more varied.
            top_k: sample among the k most likely tokens only.
            seed: makes the sample reproducible (None: torch's global generator).
        """
        if length < 0:
            raise ValueError(f"length: expected a number >= 0, got {length}")
        ids = self.encode_prompt(prompt)[0] if isinstance(prompt, str) else prompt
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        previous = int(ids[-1])
        for token in self.model.generate(ids, length, temperature, top_k, generator):
            yield self.vocab.piece(token, previous)
            previous = token

    def generate(self, prompt: str, length: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None) -> str:
        """The continuation of ``prompt`` as one string (see :meth:`stream`)."""
        return "".join(self.stream(prompt, length, temperature, top_k, seed))


def model_config(config: dict[str, Any], vocab_size: int) -> LanguageModelConfig:
    """The network a run's config describes."""
    return LanguageModelConfig(
        vocab_size=vocab_size, embedding=config["embedding"], tie_weights=config["tie_weights"],
        **LanguageModelConfig.from_options(config))


class LanguageModelTask(catalog.LanguageModelOptions):
    """``rnnkit train lm``."""

    # written from the data before training; a run stopped before its first checkpoint
    # is started again without them (rnnkit.training.run_folder.never_checkpointed)
    data_files = (VOCAB_FILE,)

    def add_routes(self, app, ctx) -> None:
        """The server's endpoint for these runs (:func:`rnnkit.tasks.routes.generate`)."""
        from rnnkit.tasks import routes

        routes.generate(app, ctx, self)

    monitor = "val_loss"
    mode = "min"
    curves = [("loss", "cross-entropy (nats per token)")]

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[LanguageModelModule, TextData]:
        vocab_path = run_dir / VOCAB_FILE if run_dir is not None else None
        saved = Vocabulary.load(vocab_path) if vocab_path and vocab_path.is_file() else None
        level = config["level"]
        min_freq = config["min_freq"] or DEFAULT_MIN_FREQ.get(level, 1)
        data = TextData(config["data"], level, min_freq, config["batch_size"], config["bptt"],
                        config["eval_streams"], vocab=saved)
        if vocab_path is not None and saved is None:
            data.vocab.save(vocab_path)
        module = LanguageModelModule(config, model_config(config, len(data.vocab)),
                                     char_level=level == "char")
        return module, data

    def after_test(self, run_dir: Path, module: LanguageModelModule,
                   data: TextData) -> dict[str, Any]:
        """Corpus facts, the step-by-step learning curve (``plots/loss_steps.png``), and a
        sample from the best checkpoint in ``sample.txt``."""
        plot_step_curves(run_dir, "loss", "cross-entropy (nats per token)")
        generator = TextGenerator(module.model, data.vocab)
        sample = generator.generate("", 600 if data.level == "char" else 150,
                                    temperature=0.8, seed=0)
        (run_dir / SAMPLE_FILE).write_text(sample + "\n", encoding="utf-8")
        return {"data": {"source": data.source, "level": data.level, "characters": data.characters,
                         "tokens": data.sizes(), "vocabulary": len(data.vocab),
                         "unknown_rate": data.unknown_rate,
                         "split": "contiguous blocks: first 90% train, next 5% validation, "
                                  "last 5% test"},
                "sample": {"prompt": "", "temperature": 0.8, "seed": 0, "file": SAMPLE_FILE}}


TASK = LanguageModelTask()
