"""``rnnkit train lm`` / ``evaluate`` / ``generate`` end to end on a generated corpus."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.data.vocab import Vocabulary, tokenize
from rnnkit.tasks.lm import TextGenerator

SMALL = ["--hidden", "24", "--embedding", "8", "--batch-size", "8", "--bptt", "20",
         "--eval-streams", "4", "--no-progress", "--lr", "0.01"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _play(path: Path, lines: int = 700) -> Path:
    """A small generated play: speakers' names, then a line of verse."""
    rng = random.Random(0)
    names = ["ROMEO", "JULIET", "NURSE", "FRIAR"]
    words = ["love", "night", "thee", "fair", "sweet", "death", "light", "hand", "heaven", "thou"]
    parts = []
    for _ in range(lines):
        verse = " ".join(rng.choice(words) for _ in range(rng.randint(4, 8)))
        parts.append(f"{rng.choice(names)}.\n{verse.capitalize()}{rng.choice('.,!?')}\n\n")
    path.write_text("".join(parts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _play(tmp_path_factory.mktemp("corpus") / "play.txt")


@pytest.fixture(scope="module")
def char_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm") / "run"
    assert main(["train", "lm", "--data", f"text:{corpus}", *SMALL, "--epochs", "3",
                 "--out", str(out)]) == 0
    return out


def test_run_folder_holds_vocabulary_metrics_curves_and_sample(char_run, corpus):
    text = corpus.read_text().rstrip("\n") + "\n\n\n"  # each file ends with two blank lines
    vocab = Vocabulary.load(char_run / "vocab.json")
    pieces = tokenize(text, "char")
    assert vocab == Vocabulary.from_tokens(pieces[: int(len(pieces) * 0.9)], "char")
    metrics = json.loads((char_run / "metrics.json").read_text())
    for split in ("validation", "test"):
        m = metrics[split]
        assert m["perplexity"] == pytest.approx(math.exp(m["loss"]), rel=1e-5)
        assert m["bpc"] == pytest.approx(m["loss"] / math.log(2), rel=1e-5)
        assert m["loss"] < math.log(len(vocab)) - 0.5  # it learned more than the alphabet
    sizes = metrics["data"]["tokens"]
    assert sum(sizes.values()) == len(text)
    assert sizes["test"] == pytest.approx(0.05 * len(text), abs=2)
    for plot in ("loss.png", "loss_steps.png"):
        assert (char_run / "plots" / plot).read_bytes()[:8] == PNG_MAGIC
    assert len((char_run / "sample.txt").read_text()) > 500


def test_evaluate_reproduces_the_test_loss(char_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(char_run)]) == 0
    expected = json.loads((char_run / "metrics.json").read_text())["test"]["loss"]
    assert f"loss {expected:.4f}" in capsys.readouterr().out


def test_generate_round_trips_from_the_run_folder(char_run, capsys):
    args = ["generate", str(char_run), "--prompt", "ROMEO.\n", "--length", "80", "--seed", "3"]
    outputs = []
    for _ in range(2):
        capsys.readouterr()
        assert main(args) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("ROMEO.\n")
    api = TextGenerator.from_run(char_run).generate("ROMEO.\n", 80, temperature=0.8, seed=3)
    assert outputs[0] == "ROMEO.\n" + api + "\n"
    assert len(api) == 80
    greedy = TextGenerator.from_run(char_run).generate("ROMEO.\n", 40, temperature=0)
    assert greedy == TextGenerator.from_run(char_run).generate("ROMEO.\n", 40, temperature=0,
                                                               seed=99)


def test_prompt_outside_the_vocabulary_is_read_as_unknown(char_run, capsys):
    generator = TextGenerator.from_run(char_run)
    ids, unknown = generator.encode_prompt("Zoë says")
    assert unknown == ["Z", "ë", "y"] and (ids == 0).sum() == 3
    capsys.readouterr()
    assert main(["generate", str(char_run), "--prompt", "Zoë says", "--length", "10",
                 "--seed", "0"]) == 0
    captured = capsys.readouterr()
    assert "not in the run's vocabulary, read as <unk>: 'Z', 'ë', 'y'" in captured.err
    assert captured.out.startswith("Zoë says") and len(captured.out) == len("Zoë says") + 11


def test_generate_refuses_other_tasks_and_bad_options(tmp_path, char_run, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"task": "seqclass"}))
    assert main(["generate", str(tmp_path)]) == 2
    assert "samples from language-model runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", str(char_run), "--temperature", "-1"])
    assert "--temperature" in capsys.readouterr().err


def test_word_level_run_and_resume(corpus, tmp_path, capsys):
    out = tmp_path / "words"
    assert main(["train", "lm", "--data", f"text:{corpus}", "--level", "word", *SMALL,
                 "--epochs", "1", "--out", str(out)]) == 0
    vocab = Vocabulary.load(out / "vocab.json")
    assert vocab.level == "word" and "ROMEO" in vocab.index and "<eos>" in vocab.index
    metrics = json.loads((out / "metrics.json").read_text())
    assert "bpc" not in metrics["test"]  # bits per character only for character models
    assert main(["train", "lm", "--resume", str(out), "--epochs", "2"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    assert Vocabulary.load(out / "vocab.json") == vocab
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt", "JULIET.", "--length", "12", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("JULIET.")


def test_training_option_errors(corpus, tmp_path, capsys):
    assert main(["train", "lm", "--data", f"text:{corpus}", "--embedding", "8", "--hidden", "16",
                 "--tie-weights", "--out", str(tmp_path / "a")]) == 2
    assert "--tie-weights" in capsys.readouterr().err
    assert main(["train", "lm", "--data", "text:/nonexistent/x.txt",
                 "--out", str(tmp_path / "b")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
