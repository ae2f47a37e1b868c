"""A run folder received from someone else never runs code from its checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.images import load_image_source
from rnnkit.training.checkpoint_io import TRUST_ENV, load_checkpoint_file

SMALL = ["--data", "digits", "--hidden", "8", "--batch-size", "256", "--no-progress",
         "--shift", "0"]


class Payload:
    """Unpickling this runs code: it would write ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def poisoned_run(tmp_path_factory) -> tuple[Path, Path]:
    """A trained seqclass run whose two checkpoints carry a pickled payload."""
    tmp = tmp_path_factory.mktemp("untrusted")
    run = tmp / "run"
    assert main(["train", "seqclass", *SMALL, "--epochs", "1", "--out", str(run)]) == 0
    marker = tmp / "payload-ran"
    for name in ("best.ckpt", "last.ckpt"):
        path = run / "checkpoints" / name
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["callbacks"]["innocent-looking"] = Payload(marker)
        torch.save(checkpoint, path)
    return run, marker


def _commands(run: Path, tmp: Path) -> dict[str, list[str]]:
    image = tmp / "digit.npy"
    np.save(image, load_image_source("digits").test[0][0])
    return {
        "evaluate": ["evaluate", str(run)],
        "predict": ["predict", str(run), str(image)],
        "export": ["export", str(run), "--format", "safetensors", "--output", str(tmp / "m.st")],
        "resume": ["train", "seqclass", "--resume", str(run), "--epochs", "2", "--no-progress"],
        "evaluate-last": ["evaluate", str(run), "--checkpoint", "last"],
    }


@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "resume", "evaluate-last"])
def test_every_command_refuses_a_pickled_payload(poisoned_run, tmp_path, capsys, command,
                                                  monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    run, marker = poisoned_run
    assert main(_commands(run, tmp_path)[command]) == 2
    err = capsys.readouterr().err
    assert "holds more than tensors and plain data" in err and "exec" in err
    assert TRUST_ENV in err and err.count("\n") == 1  # one line, naming the way out
    assert not marker.exists()


def test_serve_refuses_a_pickled_payload(poisoned_run, monkeypatch):
    pytest.importorskip("fastapi")
    from rnnkit.serving import build_app

    monkeypatch.delenv(TRUST_ENV, raising=False)
    run, marker = poisoned_run
    with pytest.raises(ValueError, match="holds more than tensors"):
        build_app(run)
    assert not marker.exists()


def test_trusting_the_source_reads_it_in_full(poisoned_run, tmp_path, monkeypatch, capsys):
    """The way out for a checkpoint from older code whose source is trusted: it loads,
    with a one-time note (and here the payload does run: that is what trust means)."""
    run, marker = poisoned_run
    copy = tmp_path / "best.ckpt"
    shutil.copy(run / "checkpoints" / "best.ckpt", copy)
    monkeypatch.setenv(TRUST_ENV, "1")
    state = load_checkpoint_file(copy)
    load_checkpoint_file(copy)
    assert "state_dict" in state
    assert capsys.readouterr().err.count(f"{TRUST_ENV}=1") == 1
    assert marker.exists()
    marker.unlink()


def test_a_checkpoint_of_the_right_form_but_not_tensors_is_refused(tmp_path):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {"weight": [1, 2, 3]}}, path)
    with pytest.raises(ValueError, match="state_dict must map names to tensors"):
        load_checkpoint_file(path)
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        load_checkpoint_file(path)


def test_nothing_else_in_rnnkit_unpickles_what_it_reads():
    """Every checkpoint goes through load_checkpoint_file; arrays are loaded without pickle;
    the only pickle is the one the baselines' child process gets from its own parent."""
    import ast
    from pathlib import Path

    import rnnkit

    root = Path(rnnkit.__file__).parent
    calls = []
    for path in root.rglob("*.py"):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("load", "loads", "unsafe_load")
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("torch", "pickle", "np", "numpy", "yaml",
                                               "joblib", "dill")):
                calls.append((path.relative_to(root).as_posix(),
                               ast.get_source_segment(source, node)))
    allowed = {
        ("training/checkpoint_io.py", 'torch.load(path, map_location="cpu", weights_only=True)'),
        ("training/checkpoint_io.py", 'torch.load(path, map_location="cpu", weights_only=False)'),
        ("forecasting/baselines.py", "pickle.loads(done.stdout)"),
        ("forecasting/baselines.py", "pickle.load(sys.stdin.buffer)"),
    }
    assert len(calls) >= 4
    for where, code in calls:
        if (where, code) not in allowed:
            assert code.startswith("np.load(") and "allow_pickle=False" in code, (where, code)
