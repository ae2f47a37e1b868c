"""Run folders written before the typed configuration (#22) still load, evaluate, predict
and resume, and give the same answers they gave then.

``tests/data/old_runs`` holds four tiny runs (seqclass on digits, forecast on
AirPassengers, a character LM and a text classifier on small generated files) trained
at commit 6bf05b6, with their checkpoints and ``config.json`` as that version wrote them.
``expected.json`` holds what that version's ``rnnkit evaluate/predict/generate/forecast``
printed for them. Only the data paths in ``config.json`` are moved to where the test
copies the inputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.tasks import TASKS
from rnnkit.training.options import COMMON_OPTIONS

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "old_runs"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
DATA_PATHS = {"lm": ("text:/tmp/corpus", "text:{inputs}/corpus"),
              "textclass": ("csv:/tmp/reviews.csv", "csv:{inputs}/reviews.csv")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("old_runs")
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
    for run, (old, new) in DATA_PATHS.items():
        path = root / run / "config.json"
        config = json.loads(path.read_text())
        assert config["data"] == old
        config["data"] = new.format(inputs=root / "inputs")
        path.write_text(json.dumps(config, indent=2))
    return root


def _run(capsys, root: Path, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) in (0, None)
    out = capsys.readouterr().out
    return out.replace(f"{root}/inputs/", "INPUTS/").replace(f"{root}/", "RUNS/")


@pytest.mark.parametrize("run", ["seqclass", "forecast", "lm", "textclass"])
def test_old_run_evaluates_as_before(runs, capsys, run):
    assert _run(capsys, runs, "evaluate", str(runs / run)) == EXPECTED["evaluate"][run]


def test_old_runs_predict_generate_and_forecast_as_before(runs, capsys):
    assert _run(capsys, runs, "predict", str(runs / "seqclass"),
                str(runs / "inputs" / "digit.npy")) == EXPECTED["predict"]["seqclass"]
    assert _run(capsys, runs, "predict", str(runs / "textclass"),
                "good cat sat great") == EXPECTED["predict"]["textclass"]
    assert _run(capsys, runs, "generate", str(runs / "lm"), "--length", "30", "--seed", "1",
                "--prompt", "the cat") == EXPECTED["generate"]
    assert _run(capsys, runs, "forecast", str(runs / "forecast"),
                "--horizon", "6") == EXPECTED["forecast"]


@pytest.mark.parametrize("run", ["seqclass", "lm"])
def test_old_run_resumes(runs, run, tmp_path):
    folder = tmp_path / run
    shutil.copytree(runs / run, folder)
    before = json.loads((folder / "config.json").read_text())
    assert main(["train", run, "--resume", str(folder), "--epochs", "2", "--quiet"]) in (0, None)
    after = json.loads((folder / "config.json").read_text())
    assert after["epochs"] == 2
    assert {k: v for k, v in after.items() if k in before and k not in ("epochs", "out")} == \
        {k: v for k, v in before.items() if k not in ("epochs", "out")}
    # an option added since the run was written is recorded at its default, which keeps
    # the old behaviour (None or off)
    task = TASKS[run]
    defaults = {o.key: task.defaults.get(o.key, o.default)
                for o in [*task.options, *COMMON_OPTIONS]}
    added = {k: v for k, v in after.items() if k not in before}
    assert added == {k: defaults[k] for k in added}
    # the options added since: extend when one is added
    assert set(added) <= {"chrono", "average_last", "pooling"}
    old = json.loads((runs / run / "metrics.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (old["epochs"], metrics["epochs"]) == (1, 2)
    assert metrics["global_step"] == 2 * old["global_step"]  # one more epoch, not a restart
