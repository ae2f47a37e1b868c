"""Translation: an attention encoder-decoder trained on sentence pairs, scored with BLEU.

``rnnkit train translate`` reads sentence pairs (:mod:`rnnkit.data.parallel`: English to
Chinese, German to English, or your TSV file), tokenises each side (words, SentencePiece
subwords, or characters for Chinese), builds one vocabulary per side from the training
split (saved in the run folder as ``source_vocab.json`` and ``target_vocab.json``, the
tokenisers in ``translation.json``, SentencePiece models as ``*_subwords.model``), and
trains a :class:`~rnnkit.models.translator.Translator` with
teacher forcing (optionally scheduled sampling) on batches of similar source lengths.

Validation greedily translates the validation split after every epoch; its BLEU picks
the best checkpoint and drives early stopping. The test split is scored greedily (BLEU,
chrF, loss) and with beam search (``--beam``, default 5); every test
translation is written to ``translations.tsv`` and five of them, drawn with a fixed
seed, go into ``metrics.json``. BLEU and chrF are sacrebleu's corpus scores against the
untokenised references, with sacrebleu's ``zh`` tokenizer when the target is Chinese
and ``13a`` otherwise.

Input handling (documented behaviour, also for ``rnnkit translate``): an empty or blank
sentence translates to an empty string without running the model; a sentence longer
than ``--max-tokens`` source tokens is cut to its first ``--max-tokens`` tokens (the
result says so); words missing from the source vocabulary are read as ``<unk>``.
Each translation stops at the end token or at ``--max-length-ratio`` x source tokens +
``--max-length-extra`` tokens.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnkit.choices import install_hint
from rnnkit.data.parallel import detokenize
from rnnkit.data.vocab import Vocabulary
from rnnkit.models.translator import Translator, TranslatorConfig, cross_entropy
from rnnkit.tasks import catalog
from rnnkit.tasks.translate.data import (
    BOS,
    EOS,
    PAD,
    SOURCE_VOCAB,
    SPEC_FILE,
    SPECIALS,
    SUBWORD_FILES,
    TARGET_VOCAB,
    Spec,
    TranslationData,
)
from rnnkit.training.module import TrainingModule
from rnnkit.training.run_folder import write_json

TRANSLATIONS_FILE = "translations.tsv"
PRETRAINED_FILE = "pretrained.json"  # --source-vectors: what was found
# Chosen on en-zh validation BLEU with --attention scaled-general (docs/translate.md,
# experiments/translation_recipes.py); 0.1 as in Vaswani et al. 2017.
DEFAULT_LABEL_SMOOTHING = 0.1


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise ValueError(f"the translate task scores with sacrebleu: "
                         f"{install_hint('translate')}") from None
    return sacrebleu


def corpus_scores(hypotheses: list[str], references: list[str], tokenize_as: str) -> dict:
    """sacrebleu's corpus BLEU (with ``tokenize_as``) and chrF of ``hypotheses``."""
    sacrebleu = _sacrebleu()
    if not hypotheses:
        return {"bleu": 0.0, "chrf": 0.0}
    bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize_as)
    chrf = sacrebleu.corpus_chrf(hypotheses, [references])
    return {"bleu": float(bleu.score), "chrf": float(chrf.score)}


def max_lengths(lengths: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """Each sentence's output limit: ratio x source tokens + extra."""
    return (lengths.float() * config["max_length_ratio"]).ceil().long() + config["max_length_extra"]


def decode(model: Translator, source: torch.Tensor, lengths: torch.Tensor,
           config: dict[str, Any], beam: int) -> tuple[list[list[int]], list]:
    """Greedy (``beam`` 1) or beam-search output ids and attention for one padded batch."""
    limits = max_lengths(lengths, config)
    if beam == 1:
        return model.greedy(source, lengths, limits)
    return model.beam_search(source, lengths, limits, beam, config["length_penalty"])


class TranslationModule(TrainingModule):
    """Cross-entropy with teacher forcing; validation and test translate and score BLEU."""

    monitor = "val_bleu"
    mode = "max"

    def __init__(self, config: dict[str, Any], model_config: TranslatorConfig,
                 target_vocab: Vocabulary, spec: Spec) -> None:
        super().__init__(config)
        self.model = Translator(model_config)
        self.target_vocab, self.spec = target_vocab, spec
        self.outputs: dict[str, dict[int, str]] = {}

    def text(self, ids: list[int]) -> str:
        return detokenize([self.target_vocab.tokens[i] for i in ids], self.spec.target_tokenizer)

    def sampling_ratio(self) -> float:
        """Scheduled sampling: from 0 at the first epoch up to ``--sampling-ratio`` at the
        last, linearly."""
        ratio, epochs = self.config["sampling_ratio"], self.config["epochs"]
        if not ratio:
            return 0.0
        return ratio * min(1.0, self.current_epoch / max(1, epochs - 1))

    def loss_on(self, batch) -> torch.Tensor:
        source, lengths, target_in, target_out, _ = batch
        return cross_entropy(self.model(source, lengths, target_in), target_out,
                             self.model.config.pad)

    def training_step(self, batch, batch_idx):
        source, lengths, target_in, target_out, _ = batch
        logits = self.model(source, lengths, target_in, self.sampling_ratio())
        loss = cross_entropy(logits, target_out, self.model.config.pad,
                             self.config.get("label_smoothing") or 0.0)
        tokens = int((target_out != self.model.config.pad).sum())
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=tokens)
        return loss

    def _evaluate(self, batch, split: str) -> None:
        source, lengths, _, target_out, index = batch
        loss = self.loss_on(batch)
        tokens = int((target_out != self.model.config.pad).sum())
        self.log(f"{split}_loss", loss, on_epoch=True, prog_bar=split == "val", batch_size=tokens)
        ids, _ = decode(self.model, source, lengths, self.config, 1)
        store = self.outputs.setdefault(split, {})
        for i, out in zip(index.tolist(), ids):
            store[i] = self.text(out)

    def _score(self, split: str, data_split: str) -> None:
        store = self.outputs.get(split, {})
        references = self.trainer.datamodule.references(data_split)
        order = sorted(store)
        scores = corpus_scores([store[i] for i in order], [references[i] for i in order],
                               self.spec.bleu_tokenize)
        self.log(f"{split}_bleu", scores["bleu"], prog_bar=split == "val")
        self.log(f"{split}_chrf", scores["chrf"])

    def on_validation_epoch_start(self) -> None:
        self.outputs["val"] = {}

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._score("val", "validation")

    def on_test_epoch_start(self) -> None:
        self.outputs["test"] = {}

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._score("test", "test")


def model_config(config: dict[str, Any], source_vocab: int, target_vocab: int) -> TranslatorConfig:
    return TranslatorConfig(
        source_vocab=source_vocab, target_vocab=target_vocab, embedding=config["embedding"],
        source_embedding=config.get("source_embedding"), attention=config["attention"], input_feeding=config["input_feeding"],
        tie_embeddings=config["tie_embeddings"], **TranslatorConfig.from_options(config),
        pad=SPECIALS.index(PAD), bos=SPECIALS.index(BOS), eos=SPECIALS.index(EOS))


def _say(message: str) -> None:
    import logging

    logging.getLogger("rnnkit").info(message)


@dataclass
class Translation:
    """One translated sentence: the text, its tokens, the source tokens read, attention
    weights [target tokens, source tokens] (None without attention) and how many source
    tokens were cut off (over ``--max-tokens``)."""

    source: str
    text: str
    tokens: list[str]
    source_tokens: list[str]
    attention: torch.Tensor | None
    truncated: int = 0


class SentenceTranslator:
    """Translate sentences with a trained run (used by ``rnnkit translate`` and the server)."""

    def __init__(self, module: TranslationModule, data: TranslationData,
                 config: dict[str, Any]) -> None:
        self.module, self.data, self.config = module.eval(), data, config

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best") -> SentenceTranslator:
        from rnnkit.training.runner import load_trained

        module, data, config = load_trained(TASK, run_dir, checkpoint)
        return cls(module, data, config)

    def translate(self, sentences: list[str], beam: int | None = None,
                  batch_size: int = 64) -> list[Translation]:
        """Translations of ``sentences`` in order (see the module docstring for empty and
        over-long input)."""
        beam = self.config["beam"] if beam is None else beam
        if beam < 1:
            raise ValueError(f"--beam: expected a positive integer, got {beam}")
        results: list[Translation | None] = [None] * len(sentences)
        work = []
        for i, sentence in enumerate(sentences):
            if not isinstance(sentence, str):
                raise ValueError(f"sentences[{i}]: expected text, got {type(sentence).__name__}")
            ids, tokens, cut = self.data.encode_source(sentence)
            if not tokens:
                results[i] = Translation(sentence, "", [], [], None)
            else:
                work.append((i, ids, tokens, cut))
        work.sort(key=lambda w: len(w[1]))
        model = self.module.model
        for start in range(0, len(work), batch_size):
            chunk = work[start:start + batch_size]
            lengths = torch.tensor([len(ids) for _, ids, _, _ in chunk])
            source = torch.full((len(chunk), int(lengths.max())), model.config.pad,
                                dtype=torch.long)
            for row, (_, ids, _, _) in enumerate(chunk):
                source[row, :len(ids)] = torch.from_numpy(ids)
            outputs, attention = decode(model, source, lengths, self.config, beam)
            for (i, _, tokens, cut), out, weights in zip(chunk, outputs, attention):
                words = [self.data.target_vocab.tokens[t] for t in out]
                results[i] = Translation(sentences[i], self.module.text(out), words, tokens,
                                         weights, cut)
        return results


def plot_attention(path: str | Path, item: Translation,
                   known: dict[str, int] | None = None) -> Path:
    """The attention matrix of one translation: target tokens down, source tokens across
    (those missing from ``known``, the source vocabulary, marked as read as <unk>)."""
    from rnnkit.training.plots import plot_matrix

    if not item.tokens:
        raise ValueError("--show-attention: the translation is empty; there is nothing to draw")
    if item.attention is None:
        raise ValueError("--show-attention: this run was trained with --attention none, so "
                         "it has no attention weights to draw")
    columns = [t if known is None or t in known else f"{t} (<unk>)" for t in item.source_tokens]
    return plot_matrix(item.attention.numpy(), columns, item.tokens, Path(path),
                       "source", "translation", f"attention: {item.source[:60]}")


# The small HSK set needs smaller batches (more steps per epoch); the dictionary sentences
# larger ones. Both get up to 30 epochs with early stopping: over 15 the best de-en epoch
# was the last; allowed 30 it peaked at 16 with a higher validation BLEU (5.76 against
# 5.29; docs/translate.md). Subwords for the dictionary sentences, whose long tail of
# words (German compounds above all) leaves a word vocabulary with many <unk>s.
_DICT = {"epochs": 30, "batch_size": 64, "source_tokenizer": "subword",
         "target_tokenizer": "subword"}
PRESETS = {"en-zh": {"epochs": 30, "batch_size": 32}, "zh-en": {"epochs": 30, "batch_size": 32},
           "de-en": _DICT, "en-de": _DICT, "tsv": {"epochs": 20, "batch_size": 64}}


class TranslationTask(catalog.TranslateOptions):
    """``rnnkit train translate``."""

    # written from the data before training; a run stopped before its first checkpoint
    # is started again without them (rnnkit.training.run_folder.never_checkpointed)
    data_files = (SOURCE_VOCAB, TARGET_VOCAB, SPEC_FILE, PRETRAINED_FILE,
                  *SUBWORD_FILES.values())

    def add_routes(self, app, ctx) -> None:
        """The server's endpoint for these runs (:func:`rnnkit.tasks.routes.translate`)."""
        from rnnkit.tasks import routes

        routes.translate(app, ctx, self)

    monitor = "val_bleu"
    mode = "max"
    curves = [("loss", "cross-entropy loss per token"), ("bleu", "BLEU (greedy)")]

    def prepare(self, config: dict[str, Any]) -> dict[str, Any]:
        """Fill epochs and batch size from the source's preset; check the sizes early."""
        _sacrebleu()
        config = dict(config)
        preset = PRESETS.get(config["data"], PRESETS["tsv"])
        for key in ("epochs", "batch_size", "source_tokenizer", "target_tokenizer"):
            if config.get(key) is None:
                config[key] = preset.get(key, "auto")
        if config.get("label_smoothing") is None:  # None in runs made before the option
            config["label_smoothing"] = DEFAULT_LABEL_SMOOTHING
        if config.get("source_vectors"):
            from rnnkit.data.vectors import vector_size

            if config["source_tokenizer"] in ("subword", "char"):
                raise ValueError(f"--source-vectors: word vectors need word tokens; the source "
                                 f"is split into {config['source_tokenizer']} tokens (give "
                                 "--source-tokenizer word)")
            size = vector_size(config["source_vectors"])
            if config["source_embedding"] not in (None, size):
                raise ValueError(f"--source-embedding {config['source_embedding']}: the vectors "
                                 f"of --source-vectors {config['source_vectors']} have {size} "
                                 f"dimensions; leave out --source-embedding or give {size}")
            config["source_embedding"] = size
        model_config(config, 1, 1)  # checks the sizes and the cell's options early
        return config

    def initialise(self, module: TranslationModule, data: TranslationData,
                   config: dict[str, Any], run_dir: Path) -> None:
        """``--source-vectors``: the source embedding from word vectors (a fresh run)."""
        if not config.get("source_vectors"):
            return
        from rnnkit.data.vectors import read_vectors
        from rnnkit.embeddings import vector_rows

        if data.spec.source_tokenizer not in ("word", "jieba"):
            raise ValueError(f"--source-vectors: word vectors need word tokens; this source "
                             f"is split into {data.spec.source_tokenizer} tokens (give "
                             "--source-tokenizer word)")
        rows, found = read_vectors(config["source_vectors"], data.source_vocab.index)
        embedding = module.model.source_embedding
        with torch.no_grad():
            embedding.weight.copy_(vector_rows(rows, found, embedding.padding_idx))
        info = {"source_vectors": config["source_vectors"], "tokens": len(data.source_vocab),
                "found": int(found.sum())}
        _say(f"--source-vectors: {info['found']:,} of {info['tokens']:,} source tokens found "
             f"({info['found'] / info['tokens']:.1%})")
        write_json(run_dir / PRETRAINED_FILE, info)

    def build(self, config: dict[str, Any],
              run_dir: Path | None = None) -> tuple[TranslationModule, TranslationData]:
        spec = vocabs = None
        if run_dir is not None and (run_dir / SPEC_FILE).is_file():
            spec = Spec.load(run_dir)
            vocabs = (Vocabulary.load(run_dir / SOURCE_VOCAB),
                      Vocabulary.load(run_dir / TARGET_VOCAB))
        data = TranslationData(config, spec, vocabs)
        if run_dir is not None and spec is None:
            data.source_vocab.save(run_dir / SOURCE_VOCAB)
            data.target_vocab.save(run_dir / TARGET_VOCAB)
            data.spec.save(run_dir)
            _say(f"{config['data']}: {len(data.pairs):,} pairs "
                 f"({', '.join(f'{k} {v:,}' for k, v in data.sizes().items())}); tokens: "
                 f"source {data.spec.source_tokenizer}, target {data.spec.target_tokenizer}; "
                 f"vocabularies {len(data.source_vocab):,} and {len(data.target_vocab):,}")
        module = TranslationModule(config, model_config(config, len(data.source_vocab),
                                                        len(data.target_vocab)),
                                   data.target_vocab, data.spec)
        return module, data

    def after_test(self, run_dir: Path, module: TranslationModule,
                   data: TranslationData) -> dict[str, Any]:
        """Beam-search the test split, write every translation, keep five examples."""
        config = module.config
        test = data.splits["test"]
        translator = SentenceTranslator(module, data, config)
        sources = [data.pairs.source[i] for i in test]
        references = data.references("test")
        beam = translator.translate(sources, config["beam"])
        beam_text = [b.text for b in beam]
        greedy = module.outputs.get("test", {})
        greedy_text = [greedy.get(i, "") for i in range(len(test))]
        scores = corpus_scores(beam_text, references, data.spec.bleu_tokenize)
        path = run_dir / TRANSLATIONS_FILE
        with path.open("w", encoding="utf-8") as f:
            f.write(f"source\treference\tgreedy\tbeam{config['beam']}\n")
            for row in zip(sources, references, greedy_text, beam_text):
                f.write("\t".join(" ".join(x.split()) for x in row) + "\n")
        picks = sorted(random.Random(config["split_seed"]).sample(range(len(test)),
                                                                    min(5, len(test))))
        examples = [{"source": sources[i], "reference": references[i], "greedy": greedy_text[i],
                     f"beam{config['beam']}": beam_text[i]} for i in picks]
        if module.model.attention is not None and beam[picks[0]].tokens:
            plot_attention(run_dir / "plots" / "attention.png", beam[picks[0]],
                           data.source_vocab.index)
        _say(f"test, beam {config['beam']}: bleu {scores['bleu']:.2f}, chrf "
             f"{scores['chrf']:.2f} (greedy above); every test translation is in {path}")
        return {"data": {"source": config["data"], **data.pairs.notes, **data.sizes(),
                         "dropped_long_train": data.dropped_long(),
                         "source_vocabulary": len(data.source_vocab),
                         "target_vocabulary": len(data.target_vocab),
                         **data.unknown_rates("test"), **data.spec.settings(),
                         "bleu_tokenize": data.spec.bleu_tokenize},
                "beam": {"beam": config["beam"], "length_penalty": config["length_penalty"],
                         **scores},
                "examples": examples,
                **({"pretrained": json.loads((run_dir / PRETRAINED_FILE).read_text())}
                   if (run_dir / PRETRAINED_FILE).is_file() else {})}

    def predict(self, module: TranslationModule, data: TranslationData, text: str,
                top: int = 3) -> list[dict[str, Any]]:
        """``rnnkit predict`` on a translate run: the beam translation of ``text``."""
        item = SentenceTranslator(module, data, module.config).translate([text])[0]
        return [{"text": text, "summary": item.text}]


TASK = TranslationTask()
