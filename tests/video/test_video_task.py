"""rnnkit train video: both modes end to end on small generated clips (the 8x8 digits that
ship with scikit-learn, in 16-pixel frames), the baselines in the same run, rnnkit
predict's PNG strip and GIF, a user's frame folder, the scores against closed forms, and
every option a mode would not use refused in one line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.video import DIRECTIONS, direction_sector
from rnnkit.models.video import (
    EncoderForecaster,
    FCLSTMPredictor,
    PredictorConfig,
    VideoClassifierConfig,
    build_classifier,
)
from rnnkit.tasks.video.scores import PredictionScores, copy_last

SMALL = ["--digit-source", "digits", "--frame", "16", "--length", "6", "--clips", "48",
         "--eval-clips", "12", "--epochs", "2", "--batch-size", "8", "--no-progress",
         "--threads", "1"]


def _train(tmp_path, name, *args):
    out = tmp_path / name
    assert main(["train", "video", *SMALL, *args, "--out", str(out)]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_classification_run_with_its_baseline_and_predict(tmp_path, capsys):
    out, metrics = _train(tmp_path, "cls", "--hidden", "8", "--features", "8")
    assert set(metrics["test"]) >= {"loss", "accuracy"}
    baseline = metrics["baselines"]["frame-average"]
    assert set(baseline) == {"loss", "accuracy", "validation_curve"}
    assert len(baseline["validation_curve"]) == 2
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (8, 8) and matrix.sum() == 12
    assert {p.name for p in (out / "plots").iterdir()} == {"confusion_matrix.png", "loss.png",
                                                           "accuracy.png"}
    capsys.readouterr()
    assert main(["predict", str(out), "test:0", "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("test:0: ") and line.split()[1] in DIRECTIONS


def test_prediction_run_writes_strip_and_gif_and_scores_baselines(tmp_path, capsys):
    from PIL import Image

    out, metrics = _train(tmp_path, "pred", "--predict-frames", "2", "--channels", "4",
                          "--hidden", "16")
    assert set(metrics["test"]) == {"loss", "mse", "ssim"}
    assert set(metrics["baselines"]) == {"copy-last-frame", "fc-lstm"}
    for row in metrics["baselines"].values():
        assert row["ce"] > 0 and row["mse"] > 0 and -1 <= row["ssim"] <= 1
    assert {p.name for p in (out / "plots").iterdir()} == {"prediction.png", "prediction.gif",
                                                           "loss.png", "mse.png"}
    with Image.open(out / "plots" / "prediction.gif") as gif:
        assert gif.n_frames == 6  # 4 frames read, 2 predicted
    capsys.readouterr()
    clip = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
    np.save(tmp_path / "mine.npy", clip)
    assert main(["predict", str(out), str(tmp_path / "mine.npy"), "--out",
                 str(tmp_path / "pictures")]) == 0
    said = capsys.readouterr().out
    assert "2 frames predicted from 4" in said and "cross-entropy" in said
    assert (tmp_path / "pictures" / "mine.png").is_file()
    with Image.open(tmp_path / "pictures" / "mine.gif") as gif:
        assert gif.n_frames == 6 and gif.width > 2 * 16  # truth beside the prediction
    # the network leaves as safetensors and comes back without pickle, predicting alike
    from rnnkit.export import load_safetensors
    from rnnkit.training.checkpoint_io import load_checkpoint_file

    assert main(["export", str(out), "--format", "safetensors", "--output",
                 str(tmp_path / "net.safetensors")]) == 0
    net = load_safetensors(tmp_path / "net.safetensors")
    state = load_checkpoint_file(out / "checkpoints" / "best.ckpt")["state_dict"]
    for name, value in net.state_dict().items():
        assert torch.equal(value, state[f"model.{name}"]), name
    assert net(torch.from_numpy(clip[None, :4, None])).shape == (1, 2, 1, 16, 16)


def _frame_folder(root, labels=True):
    rng = np.random.default_rng(1)
    root.mkdir()
    rows = ["clip,label"]
    for i in range(12):
        moving = i % 2
        clip = np.zeros((5, 12, 12), dtype=np.float32)
        for t in range(5):  # a bright square that moves right, or stands still
            x = 2 + (t if moving else 0)
            clip[t, 4:8, x:x + 3] = 1.0
        clip += rng.random(clip.shape).astype(np.float32) * 0.05
        np.save(root / f"c{i:02d}.npy", clip[: 3 + i % 3])  # lengths 3 to 5
        rows.append(f"c{i:02d},{'moving' if moving else 'still'}")
    if labels:
        (root.parent / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_a_frame_folder_is_classified_with_its_labels(tmp_path, capsys):
    folder = _frame_folder(tmp_path / "clips")
    out = tmp_path / "run"
    assert main(["train", "video", "--data", f"frames:{folder}", "--labels",
                 str(tmp_path / "labels.csv"), "--hidden", "8", "--features", "8",
                 "--epochs", "1", "--no-progress", "--threads", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["train_clips"] + metrics["data"]["test_clips"] + metrics["data"][
        "validation_clips"] == 12
    assert json.loads((out / "video.json").read_text())["classes"] == ["moving", "still"]
    # the labels change under the run: evaluating it is refused, not scored against them
    labels = tmp_path / "labels.csv"
    labels.write_text(labels.read_text().replace(",still", ",static"))
    assert main(["evaluate", str(out)]) == 2
    assert "the clips no longer match the run's" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--predict-frames", "2", "--model", "cnn-rnn"], "--model: cnn-rnn classifies"),
    (["--channels", "8"], "--channels: the cnn-rnn model has no convolutional recurrence"),
    (["--model", "convlstm", "--cell", "lstm"], "--cell: the convlstm model's recurrence"),
    (["--model", "convgru", "--hidden", "9"], "--hidden: the convgru classifier's width"),
    (["--digits", "2"], "--digits: classifying by --target direction needs one digit"),
    (["--patch", "2"], "--patch: it cuts frames for the frame predictor"),
    (["--predict-frames", "2", "--patch", "3"], "--patch: 3 does not divide"),
    (["--predict-frames", "6"], "--predict-frames: 6 leaves no input frame"),
    (["--predict-frames", "2", "--target", "digit"], "--target: predicting frames needs no"),
    (["--predict-frames", "2", "--bidirectional"], "--bidirectional: a forecaster"),
    (["--labels", "x.csv"], "--labels: Moving MNIST's labels come from --target"),
    (["--model", "convlstm", "--backend", "native"], "--backend: the convlstm layers run on"),
    (["--data", "clips"], "--data: expected moving-mnist or frames:DIR"),
    (["--speed", "0"], "--speed: the direction target needs digits that move"),
])
def test_an_option_the_mode_would_not_use_is_refused(tmp_path, capsys, args, message):
    assert main(["train", "video", *SMALL, *args, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_frame_folder_needs_labels_to_classify_and_equal_lengths_to_predict(tmp_path, capsys):
    folder = _frame_folder(tmp_path / "clips", labels=False)
    assert main(["train", "video", "--data", f"frames:{folder}", "--out",
                 str(tmp_path / "a")]) == 2
    assert "--labels: classifying frames:" in capsys.readouterr().err
    assert main(["train", "video", "--data", f"frames:{folder}", "--predict-frames", "1",
                 "--patch", "2", "--out", str(tmp_path / "b")]) == 2
    assert "--predict-frames: every clip needs the same number of frames" in (
        capsys.readouterr().err)
    assert main(["train", "video", "--data", f"frames:{folder}", "--frame", "32", "--labels",
                 "x.csv", "--out", str(tmp_path / "c")]) == 2
    assert "--frame: it shapes generated Moving MNIST clips" in capsys.readouterr().err


@pytest.mark.parametrize("args", [[], ["--model", "convgru"], ["--no-baselines"],
                                  ["--predict-frames", "2"],
                                  ["--predict-frames", "2", "--no-baselines"]])
def test_completing_a_config_twice_changes_nothing(args):
    """The runner completes a new run's config, then every build (resume, evaluate,
    predict) completes the saved one again: that must neither refuse nor change it."""
    from rnnkit.tasks.catalog import VideoOptions
    from rnnkit.tasks.video.task import completed
    from rnnkit.training.options import COMMON_OPTIONS, resolve

    given = {"predict_frames": 2} if "--predict-frames" in args else {}
    given |= {"model": "convgru"} if "convgru" in args else {}
    given |= {"baselines": False} if "--no-baselines" in args else {}
    config = resolve([*VideoOptions.options, *COMMON_OPTIONS], VideoOptions.defaults, given, {})
    once = completed(config)
    assert completed(once) == once


def test_direction_sectors_match_the_compass():
    angles = np.arange(8) * math.pi / 4 + 0.3  # inside each sector
    vectors = np.stack([np.sin(angles), np.cos(angles)], axis=-1)  # (dy, dx)
    assert direction_sector(vectors).tolist() == list(range(8))
    assert DIRECTIONS[direction_sector(np.array([0.0, 1.0]))] == "right"
    assert DIRECTIONS[direction_sector(np.array([-1.0, 0.0]))] == "up"  # dy < 0: up the image


def test_scores_against_closed_forms():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 1, 12, 12, generator=g)
    still = frames[:, -1:].expand(-1, 2, -1, -1, -1)  # the future equals the last frame
    logits, pixels = copy_last(frames, 2, 0.01)
    scores = PredictionScores()
    scores.add(logits, still, pixels)
    s = scores.compute()
    assert float(s["mse"]) == 0 and abs(float(s["ssim"]) - 1) < 1e-5
    p = still.clamp(0.01, 0.99)
    want = -(still * p.log() + (1 - still) * (1 - p).log()).sum() / 2  # per sequence
    assert abs(float(s["ce"]) - float(want)) < 1e-2
    scores = PredictionScores(ssim=False)
    scores.add(torch.zeros(1, 2, 1, 3, 3), torch.ones(1, 2, 1, 3, 3))  # p = 0.5 everywhere
    s = scores.compute()
    assert abs(float(s["ce"]) - 18 * math.log(2)) < 1e-5 and abs(float(s["mse"]) - 9 * 0.25) < 1e-6
    with pytest.raises(ValueError, match="NaN"):
        PredictionScores().add(torch.full((1, 1, 1, 3, 3), float("nan")), torch.zeros(1, 1, 1, 3, 3))


def test_the_frame_average_baseline_ignores_order_and_the_rnn_does_not():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 1, 16, 16)
    backwards = x.flip(1)
    for model, invariant in (("frame-average", True), ("cnn-rnn", False), ("convlstm", False)):
        net = build_classifier(VideoClassifierConfig(model=model, channels=1, num_classes=3,
                                                     hidden=8, features=8, conv_channels=4))
        same = torch.allclose(net(x), net(backwards), atol=1e-6)
        assert same == invariant, model


@pytest.mark.parametrize("kind", ["convlstm", "convgru", "fc-lstm"])
def test_predictors_give_the_next_frames_and_start_at_the_mean_pixel(kind):
    config = PredictorConfig(model=kind, channels=2, height=8, width=12, horizon=3, layers=2,
                             conv_channels=4, patch=2, hidden=8, pixel_mean=0.1)
    net = FCLSTMPredictor(config) if kind == "fc-lstm" else EncoderForecaster(config)
    out = net(torch.rand(4, 5, 2, 8, 12))
    assert out.shape == (4, 3, 2, 8, 12)
    assert torch.allclose(net.output.bias, torch.full_like(net.output.bias, math.log(0.1 / 0.9)))
