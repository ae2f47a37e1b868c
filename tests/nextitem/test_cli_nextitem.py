"""``rnnkit train nextitem`` end to end on a generated click log: it learns a rule no
first-order method can, recommends, evaluates and serves; bad input is one line."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.events import EvalSequence
from rnnkit.data.sessions import padded_batches
from rnnkit.tasks.nextitem.baselines import build_baseline, score_batch
from rnnkit.tasks.nextitem.ranking import RankingMetrics
from rnnkit.tasks.nextitem.task import TASK, ModelScorer
from rnnkit.training import runner

from .logs import rule_log, rule_table

ARGS = ["--event-col", "kind", "--events", "view", "--min-item-count", "1", "--split", "days",
        "--test-days", "1", "--val-days", "1", "--hidden", "48", "--embedding", "16",
        "--batch-size", "32", "--lr", "0.01", "--epochs", "12", "--patience", "12",
        "--dropout", "0", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    return rule_log(tmp_path_factory.mktemp("log") / "clicks.csv")


@pytest.fixture(scope="module")
def run(log_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("nextitem") / "run"
    assert main(["train", "nextitem", "--data", f"csv:{log_file}", *ARGS, "--out", str(out)]) == 0
    return out


def _recall_at_1(scorer, splits) -> float:
    """Recall@1 over the targets the rule decides: the third event of each session on
    (the second follows one random item, so nothing can predict it)."""
    ruled = [EvalSequence(s.items, 2) for s in splits.test]
    metric = RankingMetrics(torch.from_numpy(splits.popularity()), (1,))
    with torch.no_grad():
        for batch in padded_batches(ruled, 64):
            if isinstance(scorer, ModelScorer):
                scorer.queries = scorer.model(batch[0], lengths=batch[1])[0]
            score_batch(scorer, *batch, metric, exclude_seen=False)
    return float(metric.compute()["recall1"])


def test_learns_a_second_order_rule_that_popularity_and_markov_cannot(run):
    module, data, _ = runner.load_trained(TASK, run)
    splits = data.splits
    model = _recall_at_1(ModelScorer(module.model, None), splits)
    pop = _recall_at_1(build_baseline("pop", splits.train, splits.popularity()), splits)
    markov = _recall_at_1(build_baseline("markov", splits.train, splits.popularity()), splits)
    assert model > 0.93, model
    assert pop < 0.2 and markov < 0.5, (pop, markov)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"pop", "session-pop", "item-knn", "markov"}
    assert metrics["test"]["recall5"] > metrics["baselines"]["item-knn"]["recall5"]
    assert metrics["data"]["filtering"]["events_of_other_kinds"] == 400  # the purchases
    assert (run / "plots" / "recall20.png").is_file()


def test_recommend_prints_ranked_items_and_notes_unknown_ids(run, capsys):
    capsys.readouterr()
    assert main(["recommend", str(run), "--history", "item3 item7 ghost", "--k", "4"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 4 and lines[0].split()[0] == "1"
    assert lines[0].split()[2] == f"item{rule_table()[3, 7]}"  # the rule's next item
    assert "not items of the run, skipped: ghost" in captured.err
    assert main(["recommend", str(run), "--history", "ghost"]) == 2
    assert "expected at least one item the run knows" in capsys.readouterr().err


def test_evaluate_repeats_the_test_metrics_beside_the_baselines(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    recall = json.loads((run / "metrics.json").read_text())["test"]["recall20"]
    assert f"recall20 {recall:.4f}" in out and "item-knn" in out


def test_serve_recommends_like_the_command(run):
    pytest.importorskip("fastapi")
    from rnnkit.serving import build_app
    from rnnkit.tasks.nextitem.recommend import Recommender
    from tests.test_serving import _Client

    expected = Recommender.from_run(run).recommend([["item3", "item7"]], 3)[0]
    with _Client(build_app(run)) as client:
        status, _, text = client.post("/recommend", {"history": ["item3", "item7", "x"], "k": 3})
        assert status == 200, text
        body = json.loads(text)
        assert [r["item"] for r in body["recommendations"]] == [r["item"] for r in expected]
        assert body["unknown"] == ["x"]
        assert client.post("/recommend", {"history": ["x"]})[0] == 422
        assert client.post("/recommend", {"history": []})[0] == 422
        assert client.post("/recommend", {"history": ["item3"], "k": 0})[0] == 422


@pytest.mark.parametrize("extra, message", [
    (["--events", "view"], "--events: needs --event-col"),
    (["--item-col", "product"], "--item-col 'product' is not a column"),
    (["--bidirectional"], "--bidirectional: the nextitem task does not use this option"),
    (["--split", "days", "--test-days", "100"], "the training part is empty"),
    (["--devices", "2"], "--devices: nextitem trains in one process"),
])
def test_bad_options_are_one_line(log_file, tmp_path, capsys, extra, message):
    code = main(["train", "nextitem", "--data", f"csv:{log_file}", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_recommend_refuses_other_runs(tmp_path, capsys):
    out = tmp_path / "digits"
    assert main(["train", "seqclass", "--data", "digits", "--hidden", "4", "--epochs", "1",
                 "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(out), "--history", "1"]) == 2
    assert "rnnkit recommend recommends with nextitem runs" in capsys.readouterr().err
