"""Text classification: sentiment of sentences, optionally after language-model pretraining.

``rnnkit train textclass`` reads labelled sentences (:mod:`rnnkit.data.labelled`: the
movie-review sentences, the three-class tweets, or your CSV), lowercases and splits them
into words (the word tokeniser of :mod:`rnnkit.data.vocab`), and trains a
:class:`~rnnkit.models.text_classifier.TextClassifier` on padded batches of similar
lengths with the true lengths passed to the encoder.

Pretraining (``--init-from LM_RUN_DIR``): the embedding and recurrent encoder of a
word-level ``rnnkit train lm`` run are loaded first (vocabulary mapped token by token;
the run's cell, hidden size, layers and embedding size are adopted). The pretrained
layers then learn at ``--pretrained-lr-factor`` times the learning rate, and with
``--freeze-epochs N`` they stay frozen for N epochs, after which they thaw one per epoch
from the top (gradual unfreezing, Howard & Ruder 2018): the top recurrent layer first,
the embedding last. ``--vectors FILE`` initialises the embedding from word vectors
instead.

Metrics per split: accuracy and macro-F1; the test confusion matrix is plotted. With
``--folds K`` the CLI runs K-fold cross-validation (:mod:`rnnkit.training.crossval`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from rnnkit.data.batching import SplitLoaders, bucketed_loader, pad_batch
from rnnkit.data.labelled import LabelledTexts, load_labelled, split_indices
from rnnkit.data.vocab import Vocabulary, tokenize
from rnnkit.models.text_classifier import (
    TextClassifier,
    TextClassifierConfig,
    transfer_classifier,
    transfer_language_model,
)
from rnnkit.tasks import catalog
from rnnkit.training.checkpoint_io import load_checkpoint_file
from rnnkit.training.module import TrainingModule
from rnnkit.training.plots import plot_confusion_matrix
from rnnkit.training.predictions import ranked_predictions
from rnnkit.training.run_folder import checkpoint_path, read_run_config, write_json

VOCAB_FILE = "vocab.json"
CLASSES_FILE = "classes.json"
PRETRAINED_FILE = "pretrained.json"
DEFAULT_EMBEDDING = 128  # --embedding without --vectors (with them: the vectors' size)
DEFAULT_VECTORS = "glove-6b-50d"  # the default recipe (docs/textclass.md: 81.05% on MR)
DEFAULT_POOLING = "attention"
ARCHITECTURE = ("cell", "hidden", "layers", "embedding")  # adopted from --init-from's run
# ... and from a classifier run, what else shapes its weights
CLASSIFIER_ARCHITECTURE = (*ARCHITECTURE, "bidirectional", "pooling", "embedding_mode")


def words(text: str, lowercase: bool) -> list[str]:
    """The word tokens of ``text`` as the classifier reads them."""
    return tokenize(text.lower() if lowercase else text, "word")


class TextClassData(SplitLoaders, L.LightningDataModule):
    """Labelled sentences, encoded with the run's vocabulary, in fixed seeded splits.

    With a saved ``vocab`` and ``classes`` (a trained run) nothing is read until
    :meth:`setup`, so predicting needs only the run folder.
    """

    def __init__(self, config: dict[str, Any], vocab: Vocabulary | None = None,
                 classes: list[str] | None = None) -> None:
        super().__init__()
        self.config = config
        self.lowercase, self.max_tokens = config["lowercase"], config["max_tokens"]
        self.batch_size = config["batch_size"]
        self.texts: LabelledTexts | None = None
        self.splits: dict[str, np.ndarray] = {}
        if vocab is None or classes is None:
            self._load()
            train_words = (w for i in self.splits["train"]
                           for w in words(self.texts.texts[i], self.lowercase))
            vocab = Vocabulary.from_tokens(train_words, "word", config["min_freq"])
            classes = self.texts.classes
        self.vocab, self.classes = vocab, list(classes)

    def _load(self) -> None:
        c = self.config
        given = [x.strip() for x in c["classes"].split(",")] if c.get("classes") else None
        self.texts = load_labelled(c["data"], c["text_col"], c["label_col"], given)
        fold = (c["fold"] or 1) - 1
        train, val, test = split_indices(len(self.texts.texts), c["split_seed"], c["folds"], fold)
        self.splits = {"train": train, "validation": val, "test": test}

    def setup(self, stage: str | None = None) -> None:
        if self.texts is None:
            self._load()
            unknown = sorted(set(self.texts.labels) - set(self.classes))
            if unknown:
                raise ValueError(f"--data {self.config['data']}: labels {unknown} are not among "
                                 f"the run's classes {self.classes}")
        if not hasattr(self, "encoded"):
            self.encoded = [self.encode(t) for t in self.texts.texts]
            self.targets = self._targets()

    def _targets(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[label] for label in self.texts.labels], dtype=np.int64)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of one text (at most ``--max-tokens``; an empty text is one ``<unk>``)."""
        pieces = words(text, self.lowercase)[: self.max_tokens]
        ids = np.fromiter((self.vocab.index.get(w, 0) for w in pieces), dtype=np.int64)
        return ids if len(ids) else np.zeros(1, dtype=np.int64)

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.splits.items()}

    def unknown_rate(self, split: str) -> float:
        ids = np.concatenate([self.encoded[i] for i in self.splits[split]])
        return float((ids == 0).mean())

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        idx = self.splits[split]
        items = [(self.encoded[i], int(self.targets[i])) for i in idx]
        lengths = np.array([len(ids) for ids, _ in items])
        size = self.batch_size if split == "train" else 256
        return bucketed_loader(items, lengths, size, split == "train", self.config["seed"],
                               pad_batch)


class TextClassificationModule(TrainingModule):
    """Cross-entropy training with accuracy and macro-F1 per split, pretrained layers at a
    lower learning rate and thawed gradually."""

    monitor = "val_accuracy"
    mode = "max"

    def __init__(self, config: dict[str, Any], model_config: TextClassifierConfig) -> None:
        super().__init__(config)
        self.model = TextClassifier(model_config)
        n = model_config.num_classes
        self.metrics = torch.nn.ModuleDict({
            f"{split}_{name}": metric
            for split in ("train", "val", "test")
            for name, metric in (("accuracy", MulticlassAccuracy(n, average="micro")),
                                 ("macro_f1", MulticlassF1Score(n, average="macro")))})
        # every DDP process tests the whole test set, and only rank 0 reads the
        # matrix (after_test): no sum across processes, which would wait forever
        self.test_confusion = MulticlassConfusionMatrix(n, sync_on_compute=False)
        self.pretrained = bool(config.get("init_from"))
        # a classifier run provides both directions; a language model, the forward one
        self.pretrained_both_ways = config.get("init_from_task") == "textclass"
        if model_config.adapter:  # only the adapter and what sits above it train
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.split(".")[0] in ("adapter", "layer_adapters", "head",
                                                        "attention"))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(tokens, lengths)

    def _pretrained_names(self) -> set[str]:
        return {f"model.{n}" for group in self.model.pretrained_groups(self.pretrained_both_ways) for n in group}

    def parameter_groups(self) -> list[dict[str, Any]]:
        if not self.pretrained or self.model.config.adapter:
            return super().parameter_groups()
        names = self._pretrained_names()
        pretrained = [p for n, p in self.named_parameters() if n in names]
        fresh = [p for n, p in self.named_parameters() if n not in names]
        return [{"params": fresh},
                {"params": pretrained, "lr": self.config["lr"] * self.config["pretrained_lr_factor"]}]

    def thawed_groups(self, epoch: int) -> int:
        """How many pretrained groups (top first) train in ``epoch`` (0-based)."""
        groups = len(self.model.pretrained_groups(self.pretrained_both_ways))
        frozen_for = self.config.get("freeze_epochs", 0) if self.pretrained else 0
        if not frozen_for:
            return groups
        return max(0, min(groups, epoch - frozen_for + 1))

    def on_train_epoch_start(self) -> None:
        if not self.pretrained or self.model.config.adapter:
            return
        thawed = self.thawed_groups(self.current_epoch)
        params = dict(self.model.named_parameters())
        for i, group in enumerate(self.model.pretrained_groups(self.pretrained_both_ways)):
            for name in group:
                params[name].requires_grad_(i < thawed)

    def loss_on(self, batch) -> torch.Tensor:
        tokens, lengths, labels = batch
        return F.cross_entropy(self.model(tokens, lengths), labels)

    def _step(self, batch, split: str) -> torch.Tensor:
        tokens, lengths, labels = batch
        logits = self.model(tokens, lengths)
        loss = F.cross_entropy(logits, labels)
        n = len(labels)
        self.log(f"{split}_loss", loss, on_step=split == "train", on_epoch=True,
                 prog_bar=split != "test", batch_size=n, sync_dist=split != "train")
        for name in ("accuracy", "macro_f1"):
            metric = self.metrics[f"{split}_{name}"]
            metric(logits, labels)
            self.log(f"{split}_{name}", metric, on_step=False, on_epoch=True,
                     prog_bar=split == "val" and name == "accuracy", batch_size=n)
        if split == "test":
            self.test_confusion.update(logits, labels)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")


def model_config(config: dict[str, Any], vocab_size: int, num_classes: int) -> TextClassifierConfig:
    return TextClassifierConfig(
        vocab_size=vocab_size, num_classes=num_classes, embedding=config["embedding"],
        # runs made before --embedding-mode existed: the option's default (now None) fills it
        pooling=config["pooling"], embedding_mode=config.get("embedding_mode") or "non-static",
        adapter=config.get("adapter", 0),
        **TextClassifierConfig.from_options(config))


@torch.no_grad()
def load_vector_rows(model: TextClassifier, rows: torch.Tensor, found: torch.Tensor) -> None:
    """Word vectors into the embedding (and its frozen copy with ``both``), unknown words
    on the vectors' scale (:func:`rnnkit.embeddings.vector_rows`)."""
    from rnnkit.embeddings import vector_rows

    fresh = vector_rows(rows, found, model.embedding.padding_idx)
    model.embedding.weight.copy_(fresh)
    if model.config.embedding_mode == "both":
        model.static_embedding.weight.copy_(fresh)


def _default_recipe(config: dict[str, Any]) -> dict[str, Any]:
    """``--vectors``, ``--embedding-mode`` and ``--pooling`` left out: the measured best
    recipe (GloVe in both channels, attention pooling), except that ``--init-from`` brings
    its own embedding. ``--vectors none``: an embedding learned from scratch."""
    vectors = config["vectors"]
    if vectors is None and not config["init_from"]:
        vectors = DEFAULT_VECTORS
        _say(f"--vectors {vectors} (the default: English GloVe vectors, fetched once); "
             "--vectors none learns the embedding from scratch")
    elif vectors is not None and vectors.strip().lower() == "none":
        vectors = None
    mode = config["embedding_mode"]
    if mode is None and not config["init_from"]:
        mode = "both" if vectors else "non-static"
    pooling = config["pooling"]
    if pooling is None and not config["init_from"]:
        pooling = DEFAULT_POOLING
    return {"vectors": vectors, "embedding_mode": mode, "pooling": pooling}


def _say(message: str) -> None:
    import logging

    logging.getLogger("rnnkit").info(message)


class TextClassificationTask(catalog.TextclassOptions):
    """``rnnkit train textclass``."""

    # written from the data before training; a run stopped before its first checkpoint
    # is started again without them (rnnkit.training.run_folder.never_checkpointed)
    data_files = (VOCAB_FILE, CLASSES_FILE, PRETRAINED_FILE)

    def add_routes(self, app, ctx) -> None:
        """The server's endpoint for these runs (:func:`rnnkit.tasks.routes.classify_texts`)."""
        from rnnkit.tasks import routes

        routes.classify_texts(app, ctx, self)

    monitor = "val_accuracy"
    mode = "max"
    curves = [("loss", "cross-entropy loss"), ("accuracy", "accuracy")]

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        """Check the pretraining options and adopt the language model's sizes (before the
        run's config is written, so the run folder alone rebuilds the model)."""
        config = dict(config)
        if config["folds"] < 0 or config["folds"] == 1:
            raise ValueError(f"--folds: expected 0 (one fixed split) or at least 2, got "
                             f"{config['folds']}")
        if config["freeze_epochs"] < 0:
            raise ValueError(f"--freeze-epochs: expected a number >= 0, got "
                             f"{config['freeze_epochs']}")
        if config["folds"] and config["fold"] is not None and config["fold"] > config["folds"]:
            raise ValueError(f"--fold: expected a fold from 1 to {config['folds']}, got "
                             f"{config['fold']}")
        if config["fold"] is not None and not config["folds"]:
            raise ValueError("--fold: only with --folds K (cross-validation)")
        pretrained = _pretrained_config(config["init_from"]) if config["init_from"] else None
        by_default = config["vectors"] is None
        config.update(_default_recipe(config))
        if config["vectors"] and config["init_from"]:
            raise ValueError("--vectors and --init-from both initialise the embedding; give one")
        if config["adapter"]:
            if not config["init_from"]:
                raise ValueError("--adapter: adapts a pretrained encoder; give --init-from")
            if config["freeze_epochs"]:
                raise ValueError("--adapter: the pretrained layers stay frozen for the whole "
                                 "run; leave out --freeze-epochs")
            if config["bidirectional"] and pretrained[0] == "lm":
                raise ValueError("--adapter: a language model provides the forward direction "
                                 "only, and the backward one could not train; add "
                                 "--no-bidirectional")
        if config["embedding_mode"] not in (None, "non-static") and not config["vectors"]:
            raise ValueError(f"--embedding-mode {config['embedding_mode']}: freezes word "
                             f"vectors, and --vectors is none; give vectors, or leave out "
                             f"--embedding-mode")
        if config["vectors"]:
            from rnnkit.data.vectors import vector_size

            size = vector_size(config["vectors"])
            if config["embedding"] is not None and config["embedding"] != size and by_default:
                raise ValueError(f"--embedding {config['embedding']}: the default word vectors "
                                 f"({config['vectors']}) have {size} dimensions; give "
                                 f"--vectors none to learn an embedding of "
                                 f"{config['embedding']} from scratch, or leave out --embedding")
            if config["embedding"] is not None and config["embedding"] != size:
                raise ValueError(f"--embedding {config['embedding']}: the vectors of --vectors "
                                 f"{config['vectors']} have {size} dimensions; leave out "
                                 f"--embedding (it follows the vectors) or give {size}")
            if config["embedding"] is None:
                _say(f"--vectors: the vectors have {size} dimensions, so has the embedding")
            config["embedding"] = size
        if config["init_from"]:
            kind, saved = pretrained
            keys = ARCHITECTURE if kind == "lm" else CLASSIFIER_ARCHITECTURE
            changed = [f"--{k.replace('_', '-')} {saved[k]}" for k in keys
                       if config[k] not in (None, saved[k])]
            if changed:
                noun = "language model" if kind == "lm" else "classifier run"
                _say(f"--init-from: adopting the {noun}'s {', '.join(changed)}")
            config.update({k: saved[k] for k in keys})
            config["init_from_task"] = kind  # what the pretrained weights cover
            if kind == "lm" and config["bidirectional"] and config["layers"] > 1:
                raise ValueError("--init-from with --bidirectional needs a one-layer language "
                                 "model: above the first layer a bidirectional encoder reads "
                                 "both directions, which a language model's layers do not")
        if config["embedding"] is None:
            config["embedding"] = DEFAULT_EMBEDDING
        if config["embedding_mode"] is None:  # --init-from a language model
            config["embedding_mode"] = "non-static"
        if config["pooling"] is None:
            config["pooling"] = DEFAULT_POOLING
        return config

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[TextClassificationModule, TextClassData]:
        vocab_path = run_dir / VOCAB_FILE if run_dir is not None else None
        classes_path = run_dir / CLASSES_FILE if run_dir is not None else None
        vocab = classes = None
        if vocab_path is not None and vocab_path.is_file() and classes_path.is_file():
            vocab = Vocabulary.load(vocab_path)
            classes = json.loads(classes_path.read_text())["classes"]
        data = TextClassData(config, vocab, classes)
        if run_dir is not None and vocab is None:
            data.vocab.save(vocab_path)
            write_json(classes_path, {"classes": data.classes})
        module = TextClassificationModule(config, model_config(config, len(data.vocab),
                                                               len(data.classes)))
        return module, data

    def initialise(self, module: TextClassificationModule, data: TextClassData,
                   config: dict[str, Any], run_dir: Path) -> None:
        """Pretrained weights for a fresh run (``--vectors`` or ``--init-from``)."""
        info: dict[str, Any] = {}
        if config["vectors"]:
            from rnnkit.data.vectors import read_vectors

            rows, found = read_vectors(config["vectors"], data.vocab.index)
            load_vector_rows(module.model, rows, found)
            info = {"vectors": config["vectors"], "tokens": len(data.vocab),
                    "found": int(found.sum())}
        elif config["init_from"]:
            source = Path(config["init_from"])
            kind, _ = _pretrained_config(source)
            source_vocab = Vocabulary.load(source / VOCAB_FILE)
            state = load_checkpoint_file(checkpoint_path(source, "best"))["state_dict"]
            weights = {k.removeprefix("model."): v for k, v in state.items()
                       if k.startswith("model.")}
            transfer = transfer_language_model if kind == "lm" else transfer_classifier
            counts = transfer(module.model, weights, source_vocab.tokens, data.vocab.tokens)
            info = {"init_from": str(source), "init_from_task": kind, **counts}
            if config["adapter"]:
                total = sum(p.numel() for p in module.model.parameters())
                trainable = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
                info |= {"adapter": config["adapter"], "parameters": total,
                         "trainable": trainable}
                _say(f"--adapter {config['adapter']}: {trainable:,} of {total:,} parameters "
                     f"train ({trainable / total:.1%})")
        if info:
            found = info["found"]
            _say(f"pretrained embedding: {found:,} of {info['tokens']:,} words found "
                 f"({found / info['tokens']:.1%})")
            if config["vectors"] and found < info["tokens"] / 2:
                _say(f"--vectors {config['vectors']}: most words of this text have no vector "
                     f"(another language, or another kind of text?); --vectors none learns "
                     f"the embedding from scratch")
            write_json(run_dir / PRETRAINED_FILE, info)

    def after_test(self, run_dir: Path, module: TextClassificationModule,
                   data: TextClassData) -> dict[str, Any]:
        matrix = module.test_confusion.compute().cpu().numpy()
        plot_confusion_matrix(matrix, data.classes, run_dir / "plots" / "confusion_matrix.png")
        extras: dict[str, Any] = {
            "data": {"source": data.config["data"], "classes": data.classes, **data.sizes(),
                     **data.texts.notes, "vocabulary": len(data.vocab),
                     "unknown_rate_test": data.unknown_rate("test")},
            "confusion_matrix": matrix.astype(int).tolist()}
        pretrained = run_dir / PRETRAINED_FILE
        if pretrained.is_file():
            extras["pretrained"] = json.loads(pretrained.read_text())
        return extras

    def predict(self, module: TextClassificationModule, data: TextClassData, text: str,
                top: int = 3) -> list[dict[str, Any]]:
        """Label and class probabilities of ``text`` (``-``: one text per line of stdin)."""
        texts = [line.rstrip("\n") for line in sys.stdin] if text == "-" else [text]
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise ValueError("INPUT: expected a sentence to classify, got empty text")
        encoded = [data.encode(t) for t in texts]
        tokens, lengths, _ = pad_batch([(ids, 0) for ids in encoded])
        with torch.no_grad():
            probs = torch.softmax(module(tokens, lengths), dim=-1)
        results = ranked_predictions(probs, data.classes, top)
        for result, sentence in zip(results, texts):
            result["text"] = sentence
        return results


def _pretrained_config(run_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """``("lm" or "textclass", saved config)`` of the run ``--init-from`` names: a
    word-level language model, or an earlier text classifier (without an adapter)."""
    path = Path(run_dir)
    try:
        saved = read_run_config(path)
    except ValueError as exc:
        raise ValueError(f"--init-from: {exc}") from exc
    kind = saved.get("task")
    if kind not in ("lm", "textclass"):
        raise ValueError(f"--init-from: {path} is a {kind!r} run; expected a language-model "
                         "run (rnnkit train lm) or a text-classifier run (rnnkit train "
                         "textclass)")
    if kind == "lm" and saved.get("level") != "word":
        raise ValueError(f"--init-from: {path} is a {saved.get('level')}-level language model; "
                         "a text classifier reads words (train it with --level word)")
    if kind == "textclass" and saved.get("adapter"):
        raise ValueError(f"--init-from: {path} trained an adapter on another run; start from "
                         f"that run ({saved.get('init_from')}) instead")
    for needed in (VOCAB_FILE, "checkpoints/best.ckpt"):
        if not (path / needed).is_file():
            raise ValueError(f"--init-from: {path} has no {needed}; the run is incomplete")
    from rnnkit.tasks import TASKS
    from rnnkit.training.runner import run_config

    return kind, run_config(TASKS[kind], path)


TASK = TextClassificationTask()
