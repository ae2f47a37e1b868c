"""``rnnkit train textclass`` / ``predict`` / cross-validation / ``--init-from`` end to end,
on generated sentences whose label follows from their words."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.vocab import Vocabulary
from rnnkit.training.checkpoint_io import load_checkpoint_file

# --vectors none: the default GloVe vectors would be fetched (the suite runs offline)
SMALL = ["--hidden", "12", "--embedding", "8", "--batch-size", "16", "--no-progress",
         "--lr", "0.02", "--min-freq", "1", "--vectors", "none"]
SMALL_WITH_VECTORS = SMALL[:2] + SMALL[4:-2]  # --embedding follows the vectors given
POSITIVE = ["wonderful", "moving", "brilliant", "funny", "gorgeous"]
NEGATIVE = ["dull", "tedious", "awful", "clumsy", "boring"]
FILLER = ["the", "film", "is", "a", "plot", "with", "its", "cast", "and", "story", "quite"]


def _sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 12))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos"
                                                            else NEGATIVE))
        rows.append((" ".join(words).capitalize() + ".", label))
    return rows


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    lines = ["sentence,sentiment"] + [f'"{t}",{label}' for t, label in _sentences(500)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _data(reviews: Path) -> list[str]:
    return ["--data", f"csv:{reviews}", "--text-col", "sentence", "--label-col", "sentiment"]


@pytest.fixture(scope="module")
def run(reviews, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tc") / "run"
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--epochs", "6",
                 "--pooling", "attention", "--out", str(out)]) == 0
    return out


def test_it_learns_the_rule_and_writes_the_run_folder(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9
    assert 0.0 < metrics["test"]["macro_f1"] <= 1.0
    assert metrics["data"]["classes"] == ["neg", "pos"]
    assert (metrics["data"]["train"], metrics["data"]["validation"],
            metrics["data"]["test"]) == (400, 50, 50)
    assert sum(map(sum, metrics["confusion_matrix"])) == 50
    assert (run / "plots" / "confusion_matrix.png").is_file()
    assert json.loads((run / "classes.json").read_text())["classes"] == ["neg", "pos"]


def test_predict_prints_the_label_and_probabilities_from_the_run_folder(run, reviews, capsys):
    reviews.rename(reviews.with_suffix(".moved"))  # predicting needs only the run folder
    try:
        capsys.readouterr()
        assert main(["predict", str(run), "The film is wonderful and moving."]) == 0
        out = capsys.readouterr().out.strip()
    finally:
        reviews.with_suffix(".moved").rename(reviews)
    assert out.startswith('"The film is wonderful and moving.": pos  (pos ')
    probabilities = [float(p.rstrip("%),")) for p in out.split() if p.rstrip("%),")
                     .replace(".", "").isdigit()]
    assert len(probabilities) == 2 and sum(probabilities) == pytest.approx(100, abs=0.15)


def test_predict_reads_stdin_lines_and_refuses_empty_text(run, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a tedious plot\n\nthe cast is brilliant\n"))
    capsys.readouterr()
    assert main(["predict", str(run), "-"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith('"a tedious plot": neg')
    assert lines[1].startswith('"the cast is brilliant": pos')
    assert main(["predict", str(run), "   "]) == 2
    assert "expected a sentence to classify" in capsys.readouterr().err


def test_evaluate_reproduces_the_test_accuracy(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    accuracy = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    assert f"accuracy {accuracy:.2%}" in capsys.readouterr().out


def test_cross_validation_tests_each_fold_and_summarises(reviews, tmp_path):
    out = tmp_path / "cv"
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--epochs", "1", "--folds", "3",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "crossval.json").read_text())
    per_fold = [summary["per_fold"][str(k)]["accuracy"] for k in (1, 2, 3)]
    assert summary["summary"]["accuracy"]["mean"] == pytest.approx(sum(per_fold) / 3)
    tested = sum(json.loads((out / f"fold-0{k}" / "metrics.json").read_text())["data"]["test"]
                 for k in (1, 2, 3))
    assert tested == 500


def test_option_and_data_errors_are_one_line(reviews, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,sentiment\nfine,pos\nlovely,maybe\n", encoding="utf-8")
    cases = [
        ([*_data(reviews)[:2], "--text-col", "review"], "no column 'review'"),
        (["--data", f"csv:{bad}", "--text-col", "sentence", "--label-col", "sentiment",
          "--classes", "pos,neg"], "line 3 has the label 'maybe'"),
        ([*_data(reviews), "--fold", "2"], "--fold: only with --folds"),
        ([*_data(reviews), "--init-from", str(tmp_path)], "--init-from:"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["train", "textclass", *args, *SMALL, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


@pytest.fixture(scope="module")
def language_model(reviews, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    text = folder / "unlabelled.txt"
    text.write_text("\n".join(t.lower() for t, _ in _sentences(300, seed=1)) + "\n")
    out = folder / "run"
    assert main(["train", "lm", "--data", f"text:{text}", "--level", "word", "--min-freq", "1",
                 "--cell", "lstm", "--hidden", "10", "--embedding", "6", "--batch-size", "4",
                 "--bptt", "10", "--eval-streams", "2", "--epochs", "1", "--no-progress",
                 "--out", str(out)]) == 0
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint_file(path)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def test_init_from_a_language_model_maps_words_and_freezes_then_thaws_from_the_top(
        reviews, language_model, tmp_path, capsys):
    out = tmp_path / "ft"
    capsys.readouterr()
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--epochs", "2",
                 "--init-from", str(language_model), "--freeze-epochs", "1", "--out",
                 str(out)]) == 0
    said = capsys.readouterr().out
    assert "adopting the language model's --cell lstm, --hidden 10, --embedding 6" in said
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden"], config["embedding"], config["cell"]) == (10, 6, "lstm")
    lm = _weights(language_model / "checkpoints" / "best.ckpt")
    lm_vocab = Vocabulary.load(language_model / "vocab.json")
    vocab = Vocabulary.load(out / "vocab.json")
    after = _weights(out / "checkpoints" / "last.ckpt")
    # Epoch 1 trained with everything pretrained frozen; epoch 2 thawed the (only) recurrent
    # layer; the embedding, thawed last, still holds the language model's rows.
    shared = [t for t in vocab.tokens if t in lm_vocab.index]
    assert len(shared) > 10
    for token in shared:
        torch.testing.assert_close(after["embedding.weight"][vocab.index[token]],
                                   lm["embedding.weight"][lm_vocab.index[token]])
    assert not torch.equal(after["encoder.weight_hh_l0"], lm["encoder.weight_hh_l0"])
    pretrained = json.loads((out / "pretrained.json").read_text())
    assert pretrained["found"] == len(shared)


def test_frozen_for_the_whole_run_the_encoder_is_the_language_models(
        reviews, language_model, tmp_path):
    out = tmp_path / "frozen"
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--epochs", "1",
                 "--init-from", str(language_model), "--freeze-epochs", "1", "--out",
                 str(out)]) == 0
    lm = _weights(language_model / "checkpoints" / "best.ckpt")
    after = _weights(out / "checkpoints" / "last.ckpt")
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        torch.testing.assert_close(after[f"encoder.{name}"], lm[f"encoder.{name}"])
    assert not torch.equal(after["head.weight"], torch.zeros_like(after["head.weight"]))


def test_an_adapter_trains_alone_on_the_frozen_language_model(reviews, language_model, tmp_path,
                                                             capsys):
    """--adapter: the embedding and encoder stay the language model's, bit for bit; the
    adapter and the head train; the run reports the trainable share."""
    out = tmp_path / "adapter"
    capsys.readouterr()
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--epochs", "2",
                 "--init-from", str(language_model), "--adapter", "4", "--no-bidirectional",
                 "--pooling", "max", "--out", str(out)]) == 0
    lm = _weights(language_model / "checkpoints" / "best.ckpt")
    after = _weights(out / "checkpoints" / "last.ckpt")
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        assert torch.equal(after[f"encoder.{name}"], lm[f"encoder.{name}"])
    lm_vocab = Vocabulary.load(language_model / "vocab.json")
    vocab = Vocabulary.load(out / "vocab.json")
    for token in [t for t in vocab.tokens if t in lm_vocab.index]:
        assert torch.equal(after["embedding.weight"][vocab.index[token]],
                           lm["embedding.weight"][lm_vocab.index[token]])
    assert after["adapter.up.weight"].abs().sum() > 0  # it started at zero and learned
    pretrained = json.loads((out / "pretrained.json").read_text())
    trainable = 4 * 10 + 4 + 10 * 4 + 10 + 10 * 2 + 2  # down, up, head
    assert (pretrained["adapter"], pretrained["trainable"]) == (4, trainable)
    assert f"--adapter 4: {trainable:,} of {pretrained['parameters']:,} parameters train" in \
        capsys.readouterr().out


def test_an_adapter_on_an_earlier_classifier_run_keeps_both_directions(run, reviews, tmp_path,
                                                                         capsys):
    """--init-from a textclass run: its embedding, both encoder directions and attention
    pooling are loaded, its head is not; with --adapter the embedding and the encoder stay
    bit-identical through training."""
    from rnnkit.tasks.textclass import TextClassificationModule, model_config

    out = tmp_path / "adapted"
    capsys.readouterr()
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--epochs", "1",
                 "--pooling", "max", "--init-from", str(run), "--adapter", "4",
                 "--out", str(out)]) == 0
    assert "adopting the classifier run's --pooling attention" in capsys.readouterr().out
    source = _weights(run / "checkpoints" / "best.ckpt")
    fresh = TextClassificationModule(  # what the run started from, before training
        json.loads((out / "config.json").read_text()), model_config(
            json.loads((out / "config.json").read_text()),
            len(Vocabulary.load(out / "vocab.json")), 2))
    after = _weights(out / "checkpoints" / "last.ckpt")
    encoder = [k for k in source if k.startswith("encoder.")]
    assert any(k.endswith("_reverse") for k in encoder)
    for name in encoder:
        assert torch.equal(after[name], source[name]), name
    source_vocab = Vocabulary.load(run / "vocab.json")
    vocab = Vocabulary.load(out / "vocab.json")
    for token in vocab.tokens:
        assert torch.equal(after["embedding.weight"][vocab.index[token]],
                           source["embedding.weight"][source_vocab.index[token]])
    assert not torch.equal(after["head.weight"], source["head.weight"])
    assert after["head.weight"].shape == fresh.model.head.weight.shape
    pretrained = json.loads((out / "pretrained.json").read_text())
    assert pretrained["init_from_task"] == "textclass"
    assert pretrained["encoder"] == len(encoder)
    trained = {n for n, p in fresh.model.named_parameters() if p.requires_grad}
    assert trained == {"adapter.down.weight", "adapter.down.bias", "adapter.up.weight",
                       "adapter.up.bias", "head.weight", "head.bias",
                       *(n for n in source if n.startswith("attention."))}


def test_a_classifier_runs_reverse_weights_are_pretrained_too():
    from rnnkit.models.text_classifier import TextClassifier, TextClassifierConfig

    model = TextClassifier(TextClassifierConfig(vocab_size=9, num_classes=2, embedding=3,
                                                hidden=4, layers=2, bidirectional=True,
                                                pooling="attention"))
    top, bottom, embedding = model.pretrained_groups(reverse=True)
    assert sorted(top) == sorted([f"encoder.{w}_l1{r}" for w in ("weight_ih", "weight_hh",
                                                                 "bias_ih", "bias_hh")
                                  for r in ("", "_reverse")]
                                 + ["attention.0.weight", "attention.0.bias",
                                    "attention.2.weight"])
    assert len(bottom) == 8 and embedding == ["embedding.weight"]
    lm_top, _, _ = model.pretrained_groups()  # a language model: the forward weights only
    assert sorted(lm_top) == sorted(f"encoder.{w}_l1" for w in ("weight_ih", "weight_hh",
                                                                 "bias_ih", "bias_hh"))


ADAPTER_TENSORS = ["down.bias", "down.weight", "up.bias", "up.weight"]


@pytest.mark.parametrize("layers", [1, 3])
def test_a_fresh_adapter_leaves_the_pretrained_features_unchanged(layers):
    """One adapter after each recurrent layer; zero-initialised, they pass the pretrained
    features through unchanged."""
    from rnnkit.models.text_classifier import TextClassifier, TextClassifierConfig

    torch.manual_seed(0)
    sizes = {"vocab_size": 30, "num_classes": 2, "embedding": 5, "hidden": 7, "cell": "lstm",
             "pooling": "mean", "layers": layers, "bidirectional": True}
    plain = TextClassifier(TextClassifierConfig(**sizes))
    adapted = TextClassifier(TextClassifierConfig(**sizes, adapter=3))
    missing = adapted.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(
        [f"adapter.{t}" for t in ADAPTER_TENSORS]
        + [f"layer_adapters.{k}.{t}" for k in range(layers - 1) for t in ADAPTER_TENSORS])
    plain.eval(), adapted.eval()
    tokens, lengths = torch.randint(1, 30, (4, 9)), torch.tensor([9, 3, 5, 1])
    assert torch.equal(adapted(tokens, lengths), plain(tokens, lengths))
    with torch.no_grad():  # a trained adapter between layers does change them
        adapted.layer_adapters[0].up.weight.fill_(0.5) if layers > 1 else \
            adapted.adapter.up.weight.fill_(0.5)
    assert not torch.allclose(adapted(tokens, lengths), plain(tokens, lengths))


def test_with_stacked_layers_the_adapters_between_them_train_too():
    """The trainable set of an adapter run on a two-layer encoder: both adapters and the
    head; every recurrent and embedding weight stays frozen."""
    from rnnkit.tasks.textclass import TextClassificationModule, model_config

    config = {"cell": "gru", "hidden": 6, "layers": 2, "bidirectional": True, "embedding": 4,
              "pooling": "max", "adapter": 2, "embedding_mode": "non-static", "dropout": 0.0,
              "init_from": "somewhere", "init_from_task": "textclass", "lr": 1e-3,
              "pretrained_lr_factor": 1.0, "freeze_epochs": 0}
    module = TextClassificationModule(config, model_config(config, 20, 3))
    trained = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trained == {*(f"adapter.{t}" for t in ADAPTER_TENSORS),
                       *(f"layer_adapters.0.{t}" for t in ADAPTER_TENSORS),
                       "head.weight", "head.bias"}
    assert all(not p.requires_grad for p in module.model.encoder.parameters())


@pytest.mark.parametrize(("extra", "message"), [
    ([], "--adapter: adapts a pretrained encoder; give --init-from"),
    (["--init-from", "LM"], "backward one could not train; add --no-bidirectional"),
    (["--init-from", "LM", "--no-bidirectional", "--freeze-epochs", "1"],
     "the pretrained layers stay frozen for the whole run; leave out --freeze-epochs")])
def test_adapter_refusals(reviews, language_model, tmp_path, capsys, extra, message):
    extra = [str(language_model) if a == "LM" else a for a in extra]
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--adapter", "4", *extra,
                 "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_init_from_refuses_a_character_model(tmp_path, reviews, capsys):
    text = tmp_path / "t.txt"
    text.write_text("some text to read\n" * 200)
    lm = tmp_path / "charlm"
    assert main(["train", "lm", "--data", f"text:{text}", "--hidden", "8", "--embedding", "4",
                 "--batch-size", "4", "--bptt", "10", "--eval-streams", "2", "--epochs", "1",
                 "--no-progress", "--out", str(lm)]) == 0
    capsys.readouterr()
    assert main(["train", "textclass", *_data(reviews), "--init-from", str(lm), "--out",
                 str(tmp_path / "x")]) == 2
    assert "char-level language model; a text classifier reads words" in capsys.readouterr().err


def test_vectors_file_sets_the_embedding_rows_and_size(reviews, tmp_path, capsys):
    vectors = tmp_path / "vectors.txt"
    table = {"wonderful": [1, 2, 3, 4, 5], "dull": [-1, -2, -3, -4, -5], "film": [0, 0, 1, 0, 0]}
    vectors.write_text("3 5\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in table.items()))
    out = tmp_path / "vec"
    capsys.readouterr()
    assert main(["train", "textclass", *_data(reviews), *SMALL_WITH_VECTORS, "--epochs", "1", "--lr", "0",
                 "--vectors", str(vectors), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "the vectors have 5 dimensions, so has the embedding" in said
    # 3 words of about 30 have a vector: said, since the vectors may not suit the text
    assert f"--vectors {vectors}: most words of this text have no vector" in said
    vocab = Vocabulary.load(out / "vocab.json")
    rows = _weights(out / "checkpoints" / "last.ckpt")["embedding.weight"]
    assert rows.shape[1] == 5
    for word, vector in table.items():  # learning rate 0: the rows are as loaded
        assert rows[vocab.index[word]].tolist() == vector
    assert json.loads((out / "pretrained.json").read_text())["found"] == 3
    # An --embedding that disagrees with the vectors is refused, not overridden.
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--vectors", str(vectors),
                 "--out", str(tmp_path / "clash")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"rnnkit: error: --embedding 8: the vectors of --vectors {vectors} have 5 dimensions; "
        "leave out --embedding (it follows the vectors) or give 5")


def test_pretrained_layers_get_their_own_learning_rate_and_thaw_top_first():
    from rnnkit.tasks.textclass import TASK, TextClassificationModule, model_config
    from rnnkit.training.options import COMMON_OPTIONS, resolve

    config = resolve([*TASK.options, *COMMON_OPTIONS], TASK.defaults,
                     {"init_from": "lm-run", "pretrained_lr_factor": 0.25, "freeze_epochs": 2,
                      "layers": 2, "bidirectional": False, "hidden": 6, "embedding": 4,
                      "schedule": "none", "lr": 0.01, "pooling": "max",
                      "embedding_mode": "non-static"}, {})  # what prepare() would settle
    module = TextClassificationModule(config, model_config(config, vocab_size=20, num_classes=2))
    fresh, pretrained = module.configure_optimizers().param_groups
    assert fresh["lr"] == 0.01 and pretrained["lr"] == pytest.approx(0.0025)
    names = {id(p): n for n, p in module.named_parameters()}
    assert sorted(names[id(p)] for p in fresh["params"]) == ["model.head.bias",
                                                              "model.head.weight"]
    assert len(pretrained["params"]) == 9  # 2 layers x 4 tensors + the embedding
    # Epochs 0-1 frozen; epoch 2 thaws the top layer, epoch 3 the bottom, epoch 4 the embedding.
    assert [module.thawed_groups(e) for e in range(6)] == [0, 0, 1, 2, 3, 3]


def test_last_checkpoint_is_rewritten_every_epoch_even_without_improvement(reviews, tmp_path):
    out = tmp_path / "flat"
    # Learning rate 0: validation accuracy never improves after the first epoch, so only
    # the first epoch writes best.ckpt; last.ckpt must still follow every epoch.
    assert main(["train", "textclass", *_data(reviews), *SMALL, "--lr", "0", "--epochs", "3",
                 "--patience", "5", "--out", str(out)]) == 0
    last = load_checkpoint_file(out / "checkpoints" / "last.ckpt")
    best = load_checkpoint_file(out / "checkpoints" / "best.ckpt")
    assert (best["epoch"], last["epoch"]) == (0, 2)
    assert last["global_step"] == 3 * best["global_step"]
