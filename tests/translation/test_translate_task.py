"""rnnkit train translate and rnnkit translate, end to end on a toy language made here."""

from __future__ import annotations

import json
import random

import pytest

from rnnkit.cli import main
from rnnkit.tasks.translate import SentenceTranslator, corpus_scores

WORDS = ["ka", "lo", "mi", "nu", "pe", "ru", "sa", "ti"]


def _toy_pairs(path, n=500, seed=0):
    """Sentences of 3-6 words; the translation is the reverse, in capitals, with a full stop."""
    rng = random.Random(seed)
    seen, lines = set(), []
    while len(lines) < n:
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
        if tuple(words) in seen:
            continue
        seen.add(tuple(words))
        lines.append(f"{' '.join(words)}\t{' '.join(w.upper() for w in reversed(words))} .")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("translate")
    data = folder / "toy.tsv"
    _toy_pairs(data)
    run = folder / "run"
    code = main(["train", "translate", "--data", f"tsv:{data}", "--hidden", "32",
                 "--embedding", "16", "--epochs", "3", "--batch-size", "32", "--lr", "1e-2",
                 "--max-tokens", "8", "--beam", "3", "--out", str(run)])
    assert code == 0
    return run


def test_a_run_holds_its_vocabularies_scores_and_translations(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    data = metrics["data"]
    assert (data["train"], data["validation"], data["test"]) == (400, 50, 50)
    assert data["source_tokenizer"] == data["target_tokenizer"] == "word"
    assert data["bleu_tokenize"] == "13a"
    assert data["source_vocabulary"] == 4 + len(WORDS) and data["target_vocabulary"] == 5 + 8
    for scores in (metrics["test"], metrics["beam"]):
        assert 0 <= scores["bleu"] <= 100 and 0 <= scores["chrf"] <= 100
    assert metrics["beam"]["beam"] == 3
    assert len(metrics["examples"]) == 5 and set(metrics["examples"][0]) == {
        "source", "reference", "greedy", "beam3"}
    rows = (trained / "translations.tsv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 51 and rows[0] == "source\treference\tgreedy\tbeam3"
    # the greedy column is what the test metrics scored
    columns = list(zip(*(r.split("\t") for r in rows[1:])))
    # (the logged score went through a float32 tensor: equal to float32 precision)
    assert corpus_scores(list(columns[2]), list(columns[1]), "13a")["bleu"] == pytest.approx(
        metrics["test"]["bleu"], rel=1e-6)
    for name in ("source_vocab.json", "target_vocab.json", "translation.json",
                 "plots/attention.png", "plots/bleu.png", "checkpoints/best.ckpt"):
        assert (trained / name).is_file(), name


def test_translate_command_prints_one_line_per_sentence(trained, tmp_path, capsys, monkeypatch):
    long = " ".join(WORDS * 3)
    code = main(["translate", str(trained), "ka lo mi", "", long, "ka zz mi", "--beam", "1",
                 "--show-attention", str(tmp_path / "att.png")])
    assert code == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 4 and lines[1] == ""
    assert "sentence 3: 16 tokens past the run's --max-tokens 8 were cut off" in captured.err
    assert "sentence 4: not in the run's vocabulary, read as <unk>: 'zz'" in captured.err
    assert (tmp_path / "att-1.png").is_file() and not (tmp_path / "att-2.png").exists()
    # the same through stdin and a file, with greedy = beam 1
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("ka lo mi\n\n"))
    assert main(["translate", str(trained), "-", "--beam", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [lines[0], ""]
    source = tmp_path / "in.txt"
    source.write_text("ka lo mi\n", encoding="utf-8")
    assert main(["translate", str(trained), "--file", str(source), "--beam", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [lines[0]]


def test_empty_and_over_long_input_as_documented(trained):
    translator = SentenceTranslator.from_run(trained)
    limit = translator.config["max_tokens"]
    empty, blank, long = translator.translate(["", "   ", " ".join(WORDS * 5)])
    assert empty.text == blank.text == "" and empty.tokens == [] and empty.attention is None
    assert long.truncated == 5 * len(WORDS) - limit and len(long.source_tokens) == limit
    ratio, extra = translator.config["max_length_ratio"], translator.config["max_length_extra"]
    assert len(long.tokens) <= ratio * limit + extra
    assert long.attention.shape == (len(long.tokens), limit)
    with pytest.raises(ValueError, match="sentences\\[0\\]: expected text"):
        translator.translate([3])


def test_translate_errors_are_one_line(trained, tmp_path, capsys):
    assert main(["translate", str(trained)]) == 2
    assert "SENTENCE: expected a sentence" in capsys.readouterr().err
    assert main(["translate", str(trained), "", "--show-attention", str(tmp_path / "a.png")]) == 2
    assert "the translation is empty" in capsys.readouterr().err
    assert main(["train", "translate", "--data", "tsv:/no/such.tsv"]) == 2
    assert "no such file /no/such.tsv" in capsys.readouterr().err
    assert main(["train", "translate", "--tie-embeddings", "--embedding", "64"]) == 2
    assert "--embedding must equal --hidden" in capsys.readouterr().err


def test_bleu_and_chrf_come_from_sacrebleu():
    same = corpus_scores(["the cat sat on the mat ."], ["the cat sat on the mat ."], "13a")
    assert same == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    chinese = corpus_scores(["我们班级很团结。"], ["我们班级很团结。"], "zh")
    assert chinese["bleu"] == pytest.approx(100.0)
    assert corpus_scores(["ka"], ["lo mi nu pe"], "13a")["bleu"] == 0.0


def test_translate_endpoint_answers_like_the_command(trained):
    pytest.importorskip("fastapi")
    from concurrent.futures import ThreadPoolExecutor

    from rnnkit.serving import build_app
    from tests.test_serving import _post, _start

    translator = SentenceTranslator.from_run(trained)
    sentences = ["ka lo mi", "", "pe ru sa ti", " ".join(WORDS * 3)]
    direct = translator.translate(sentences, 2)
    url, instance, thread = _start(build_app(trained, max_batch=16, max_wait_ms=20))
    try:
        status, body = _post(f"{url}/translate", {"sentences": sentences, "beam": 2})
        assert status == 200 and body["beam"] == 2
        assert [t["text"] for t in body["translations"]] == [d.text for d in direct]
        assert body["translations"][3]["truncated"] == 16
        # concurrent requests with different beam sizes each get their own answer
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: _post(f"{url}/translate", {
                "sentences": [sentences[i % 4]], "beam": 1 + i % 3}), range(24)))
        for i, (status, body) in enumerate(answers):
            expected = translator.translate([sentences[i % 4]], 1 + i % 3)[0].text
            assert status == 200 and body["translations"][0]["text"] == expected
        assert _post(f"{url}/translate", {"sentences": []})[0] == 422
        assert _post(f"{url}/translate", {"sentences": ["ka"], "beam": 0})[0] == 422
        assert _post(f"{url}/translate", {"sentences": ["ka"] * 300})[0] == 413
    finally:
        instance.should_exit = True
        thread.join(timeout=15)


def test_export_writes_safetensors_and_refuses_onnx(trained, tmp_path, capsys):
    from rnnkit.export import load_safetensors

    path = tmp_path / "t.safetensors"
    assert main(["export", str(trained), "--format", "safetensors", "--output", str(path)]) == 0
    model = load_safetensors(path)
    translator = SentenceTranslator.from_run(trained)
    ids, _, _ = translator.data.encode_source("ka lo mi")
    import torch

    source, lengths = torch.from_numpy(ids)[None], torch.tensor([len(ids)])
    limits = torch.tensor([8])
    assert model.beam_search(source, lengths, limits, 3)[0] == \
        translator.module.model.beam_search(source, lengths, limits, 3)[0]
    assert main(["export", str(trained), "--format", "onnx", "--output",
                 str(tmp_path / "t.onnx")]) == 2
    assert "use --format safetensors" in capsys.readouterr().err


def test_evaluate_and_predict_work_on_translate_runs(trained, capsys):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert main(["evaluate", str(trained)]) == 0
    out = capsys.readouterr().out
    assert f"bleu {metrics['test']['bleu']:.4f}" in out
    assert main(["predict", str(trained), "ka lo mi"]) == 0
    expected = SentenceTranslator.from_run(trained).translate(["ka lo mi"])[0].text
    assert capsys.readouterr().out.strip() == f'"ka lo mi": {expected}'


def test_source_vectors_set_the_source_embedding(tmp_path, capsys):
    import torch

    from rnnkit.data.vocab import Vocabulary
    from rnnkit.training.checkpoint_io import load_checkpoint_file

    data = tmp_path / "toy.tsv"
    _toy_pairs(data, n=120)
    table = {w: [float(i), -float(i), 0.5, 1.0 + i] for i, w in enumerate(WORDS[:5])}
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in table.items()))
    out = tmp_path / "run"
    assert main(["train", "translate", "--data", f"tsv:{data}", "--hidden", "16",
                 "--embedding", "8", "--epochs", "1", "--lr", "0", "--max-tokens", "8",
                 "--beam", "1", "--source-vectors", str(vectors), "--no-progress",
                 "--out", str(out)]) == 0
    assert "--source-vectors: 5 of 12 source tokens found (41.7%)" in capsys.readouterr().out
    state = load_checkpoint_file(out / "checkpoints" / "last.ckpt")["state_dict"]
    source = state["model.source_embedding.weight"]
    assert source.shape == (12, 4)  # the vectors' size; the target side keeps --embedding
    assert state["model.target_embedding.weight"].shape[1] == 8
    vocab = Vocabulary.load(out / "source_vocab.json")
    for word, vector in table.items():  # learning rate 0: the rows as loaded
        assert source[vocab.index[word]].tolist() == vector
    assert torch.equal(source[2], torch.zeros(4))  # the padding row
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pretrained"] == {"source_vectors": str(vectors), "tokens": 12, "found": 5}
    # A size that disagrees with the vectors, and subword tokens, are refused by name.
    assert main(["train", "translate", "--data", f"tsv:{data}", "--source-vectors",
                 str(vectors), "--source-embedding", "6", "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"rnnkit: error: --source-embedding 6: the vectors of --source-vectors {vectors} have "
        "4 dimensions; leave out --source-embedding or give 4")
    assert main(["train", "translate", "--data", f"tsv:{data}", "--source-vectors",
                 str(vectors), "--source-tokenizer", "subword", "--out",
                 str(tmp_path / "b")]) == 2
    assert "--source-vectors: word vectors need word tokens; the source is split into " \
           "subword tokens" in capsys.readouterr().err


def test_the_default_recipe_scales_the_scores_and_smooths_the_labels():
    """The en-zh recipe chosen on validation BLEU: scaled-general scores, label smoothing
    0.1; an explicit 0 stays 0, and a run made before the option (None in its config)
    trains without smoothing, as it did."""
    import torch

    from rnnkit.tasks.translate import TASK, TranslationModule, model_config
    from rnnkit.training.options import COMMON_OPTIONS, resolve

    def prepared(**given):
        return TASK.prepare(resolve([*TASK.options, *COMMON_OPTIONS], TASK.defaults,
                                    {"data": "en-zh", **given}, {}))

    config = prepared()
    assert (config["attention"], config["label_smoothing"]) == ("scaled-general", 0.1)
    assert prepared(label_smoothing=0.0)["label_smoothing"] == 0.0
    old = {**config, "label_smoothing": None}
    module = TranslationModule(old, model_config(old, 9, 9), None, None).eval()  # no dropout
    torch.manual_seed(0)
    source, target = torch.randint(3, 9, (2, 4)), torch.randint(3, 9, (2, 5))
    batch = (source, torch.tensor([4, 3]), target, target, torch.tensor([0, 1]))
    module.log = lambda *a, **k: None
    plain = module.loss_on(batch)  # unsmoothed, as validation
    assert torch.equal(module.training_step(batch, 0), plain)
    module.config = {**old, "label_smoothing": 0.1}
    assert not torch.equal(module.training_step(batch, 0), plain)
