"""The command line under bad input: every invalid value or file gets one line and a
non-zero exit, never a traceback.

The cases are drawn from a pool of invalid values per option kind (numbers that are not
finite, out of range or not numbers, unknown choices) and of bad files, with a fixed
seed; each runs in this process through ``rnnkit.cli.main``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main

POSITIVE_INTS = ["hidden", "layers", "epochs", "batch-size", "patience", "nan-patience",
                 "num-nodes"]
NON_NEGATIVE_FLOATS = ["lr", "momentum", "weight-decay", "clip"]
PROBABILITIES = ["dropout", "zoneout", "recurrent-dropout"]
CHOICES = {"cell": "lstmx", "optimizer": "rmsprop", "schedule": "linear", "init": "xavier",
           "backend": "cuda", "clip-mode": "both", "accelerator": "tpu"}


def _option_cases() -> list[list[str]]:
    cases = []
    for name in POSITIVE_INTS:
        cases += [[f"--{name}={v}"] for v in ("0", "-3", "1.5", "abc", "nan", "")]
    for name in NON_NEGATIVE_FLOATS:
        cases += [[f"--{name}={v}"] for v in ("nan", "inf", "-1", "-inf", "1e999", "x")]
    for name in PROBABILITIES:
        cases += [[f"--{name}={v}"] for v in ("1", "1.5", "-0.1", "nan")]
    cases += [[f"--{name}={value}"] for name, value in CHOICES.items()]
    cases += [["--forget-bias=nan"], ["--forget-bias=inf"], ["--seed=-1"], ["--seed=4294967296"],
              ["--devices=-1"], ["--devices=0,a"], ["--devices=x"], ["--max-time=10"],
              ["--max-time=00:00:xx:00"], ["--grad-diagnostics=-2"], ["--threads=0"]]
    return [["train", "seqclass", *c] for c in cases]


def _task_cases(tmp: Path) -> list[list[str]]:
    return [
        ["train", "seqclass", "--shift=-3"], ["train", "seqclass", "--proj-size=-1"],
        ["train", "seqclass", "--data", "nonesuch"],
        ["train", "seqclass", "--data", f"idx:{tmp / 'missing'}", "--out", str(tmp / "o1")],
        ["train", "lm", "--bptt=0"], ["train", "lm", "--level=byte"],
        ["train", "lm", "--data", f"text:{tmp / 'missing.txt'}", "--out", str(tmp / "o2")],
        ["train", "textclass", "--folds=-2"], ["train", "textclass", "--folds=1"],
        ["train", "textclass", "--fold=0"],
        ["train", "textclass", "--data", f"csv:{tmp / 'missing.csv'}", "--out", str(tmp / "o3")],
        ["train", "translate", "--beam=0"], ["train", "translate", "--sampling-ratio=1.5"],
        ["train", "translate", "--attention=cosine"],
        ["train", "forecast", "--horizon=0"], ["train", "forecast", "--baselines=foo"],
        ["train", "forecast", "--transform=sqrt"], ["train", "forecast", "--test-stride=0"],
        ["train", "forecast", "--data", f"csv:{tmp / 'missing.csv'}", "--out", str(tmp / "o4")],
        ["train", "adding", "--length=0"], ["train", "copy", "--delay=-1"],
        ["train", "nextitem", "--loss=hinge"], ["train", "nextitem", "--split=random"],
        ["train", "nextitem", "--session-gap=0"], ["train", "nextitem", "--holdout=0"],
        ["train", "nextitem", "--events="], ["train", "nextitem", "--sample-alpha=nan"],
        ["train", "nextitem", "--data", f"csv:{tmp / 'missing.csv'}", "--out", str(tmp / "o5")],
        ["train", "video", "--kernel=4"], ["train", "video", "--model=transformer"],
        ["train", "video", "--predict-frames=-1"], ["train", "video", "--speed=nan"],
        ["train", "video", "--target=colour"], ["train", "video", "--clips=0"],
        ["train", "video", "--data", f"frames:{tmp / 'missing'}", "--labels", "x.csv",
         "--out", str(tmp / "o6")],
        ["recommend", str(tmp), "--k=0"], ["recommend", str(tmp)],
        ["lab", "compare", "--length=0"], ["lab", "compare", "--cells=lstm,nope"],
        ["generate", str(tmp), "--temperature=nan"], ["generate", str(tmp), "--length=-1"],
        ["generate", str(tmp), "--top-k=0"],
        ["serve", str(tmp), "--port=0"], ["serve", str(tmp), "--max-wait-ms=nan"],
    ]


def _file_cases(tmp: Path, run: Path) -> list[list[str]]:
    def write(name: str, text: str) -> str:
        path = tmp / name
        path.write_text(text)
        return str(path)

    not_a_run = tmp / "empty"
    not_a_run.mkdir()
    listed = tmp / "listed"
    listed.mkdir()
    (listed / "config.json").write_text("[1, 2]")
    garbage = tmp / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_bytes(b"\xff\xfe{not json")
    np.save(tmp / "wrong.npy", np.zeros((3, 5, 5), dtype=np.float32))
    return [
        ["train", "seqclass", "--config", str(tmp / "missing.yaml")],
        ["train", "seqclass", "--config", write("list.json", "[1, 2]")],
        ["train", "seqclass", "--config", write("unknown.json", '{"hiden": 3}')],
        ["train", "seqclass", "--config", write("bad.yaml", "hidden: [1,\n")],
        ["train", "seqclass", "--config", write("nan.json", '{"lr": NaN}')],
        ["train", "seqclass", "--config", write("neg.yaml", "epochs: -4\n")],
        ["train", "seqclass", "--resume", str(not_a_run)],
        ["train", "seqclass", "--resume", str(listed)],
        ["train", "lm", "--resume", str(run)],
        ["evaluate", str(not_a_run)], ["evaluate", str(garbage)],
        ["evaluate", str(run), "--checkpoint", str(tmp / "missing.ckpt")],
        ["evaluate", str(run), "--checkpoint", write("fake.ckpt", "not a checkpoint")],
        ["predict", str(run), str(tmp / "missing.png")],
        ["predict", str(run), str(tmp / "wrong.npy")],
        ["predict", str(run), write("text.png", "not an image")],
        ["predict", str(run), str(tmp / "wrong.npy"), "--top=0"],
        ["generate", str(run)], ["translate", str(run), "hello"], ["forecast", str(run)],
        ["recommend", str(run), "--history", "1 2"],
        ["export", str(run), "--format", "onnx", "--output", str(tmp)],  # a folder
        ["export", str(run), "--format", "pickle", "--output", str(tmp / "m.pkl")],
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert main(["train", "seqclass", "--data", "digits", "--hidden", "8", "--epochs", "1",
                 "--shift", "0", "--no-progress", "--out", str(out)]) == 0
    return out


def _outcome(argv: list[str]) -> int | str:
    """The exit status, or the exception that escaped ``main`` (a traceback for a user)."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)
    except Exception as exc:  # noqa: BLE001 - reported as a failure of the case
        return f"{type(exc).__name__}: {exc}"


def test_invalid_options_and_files_get_one_line_and_a_non_zero_exit(run, tmp_path, capsys):
    rng = random.Random(20261202)
    options = _option_cases()
    cases = rng.sample(options, 40) + _task_cases(tmp_path) + _file_cases(tmp_path, run)
    failures = []
    for argv in cases:
        capsys.readouterr()
        code = _outcome(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        if code == 0 or isinstance(code, str) or len(lines) != 1 or not lines[0].startswith("rnnkit"):
            failures.append((argv, code, err[-400:]))
    assert not failures, json.dumps(failures, indent=1)


def test_threads_sets_torchs_cpu_threads_for_any_command(run):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["evaluate", str(run), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
