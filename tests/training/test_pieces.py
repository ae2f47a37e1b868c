"""Pieces of the training stack on their own: checkpoints, IDX files, splits, init, options."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.data.images import load_idx_folder, load_image_source, read_idx, stratified_split
from rnnkit.models.recurrent import build_recurrent, initialise_recurrent
from rnnkit.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
from rnnkit.training.options import COMMON_OPTIONS, resolve


def test_atomic_checkpoint_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint_file(path)["epoch"] == 1  # the previous checkpoint is intact


def _write_idx(path, array: np.ndarray) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def test_idx_round_trip_and_folder_loader(tmp_path):
    rng = np.random.default_rng(1)
    train_x = rng.integers(0, 256, (50, 5, 4), dtype=np.uint8)
    train_y = (np.arange(50) % 3).astype(np.uint8)
    test_x = rng.integers(0, 256, (9, 5, 4), dtype=np.uint8)
    test_y = (np.arange(9) % 3).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_y)
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), train_x)
    splits = load_idx_folder(tmp_path, "idx:test")
    assert splits.sizes() == {"train": 45, "validation": 5, "test": 9}
    np.testing.assert_allclose(splits.test[0], test_x / 255.0, rtol=1e-6)
    assert splits.classes == ["0", "1", "2"]
    (tmp_path / "bad-idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad-idx")


def test_splits_are_fixed_disjoint_and_stratified():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    rest, held = stratified_split(labels, 20, seed=0)
    assert len(held) == 20 and len(set(rest) | set(held)) == 100 and not set(rest) & set(held)
    assert np.bincount(labels[held]).tolist() == [8, 6, 4, 2]
    again = stratified_split(labels, 20, seed=0)[1]
    assert np.array_equal(held, again)
    a, b = load_image_source("digits"), load_image_source("digits")
    assert np.array_equal(a.test[1], b.test[1])
    train = {x.tobytes() for x in a.train[0]}
    assert not any(x.tobytes() in train for x in a.test[0][:50])


def test_orthogonal_init_and_forget_bias():
    lstm = build_recurrent("lstm", 3, 6, layers=2, bidirectional=True)
    initialise_recurrent(lstm, "orthogonal", forget_bias=1.0)
    for name, p in lstm.named_parameters():
        if name.startswith("weight_hh"):
            for block in p.split(6):
                torch.testing.assert_close(block.T @ block, torch.eye(6), atol=1e-5, rtol=0)
    total = lstm.bias_ih_l0 + lstm.bias_hh_l0
    assert torch.all(total[6:12] == 1.0) and torch.all(total[:6] == 0)
    gru = build_recurrent("gru", 3, 6)
    before = gru.bias_ih_l0.clone()
    initialise_recurrent(gru, "torch", forget_bias=1.0)  # no forget gate: untouched
    assert torch.equal(gru.bias_ih_l0, before)
    assert isinstance(build_recurrent("rnn-relu", 3, 4), rnnkit.nn.RNN)


def test_option_precedence():
    defaults = {"hidden": 64}
    config = resolve(COMMON_OPTIONS, defaults, {"lr": 0.5}, {"hidden": 32, "lr": 0.1, "epochs": 3})
    assert (config["hidden"], config["lr"], config["epochs"], config["cell"]) == (32, 0.5, 3, "lstm")
    with pytest.raises(ValueError, match="--config: epochs: expected a positive integer, got 0"):
        resolve(COMMON_OPTIONS, {}, {}, {"epochs": 0})


def test_random_shift_moves_each_image_within_the_limit():
    from rnnkit.tasks.seqclass import random_shift

    # 2,000 images: that one of the 25 offsets never occurs has probability 25 * 0.96^2000,
    # about 1e-34 (with 200 it was 0.7%, and a CI run drew such a seed)
    images = torch.zeros(2000, 9, 9)
    images[:, 4, 4] = 1.0  # one bright pixel in the centre
    moved = random_shift(images, 2)
    assert torch.all(moved.sum(dim=(1, 2)) == 1)  # nothing lost (the pixel stays inside)
    pos = moved.flatten(1).argmax(1)
    dy, dx = pos // 9 - 4, pos % 9 - 4
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2
    assert len(set(zip(dy.tolist(), dx.tolist()))) == 25  # every offset occurs


def test_shift_applies_to_training_batches_only():
    from types import SimpleNamespace

    from rnnkit.tasks.seqclass import ImageSequenceData

    data = ImageSequenceData("digits", pixels=False, permute=False, batch_size=32, shift=2)
    images = torch.from_numpy(data.splits.test[0][:64])
    labels = torch.zeros(64, dtype=torch.long)
    data.trainer = SimpleNamespace(training=False)
    x, _ = data.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(x, images)  # evaluation sees the images as they are
    data.trainer = SimpleNamespace(training=True, global_step=7, global_rank=0)
    x, _ = data.on_after_batch_transfer((images, labels), 0)
    assert not torch.equal(x, images) and x.shape == images.shape
    torch.rand(5)  # the global generator's state does not matter: the step decides
    again, _ = data.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(again, x)
    data.trainer = SimpleNamespace(training=True, global_step=8, global_rank=0)
    assert not torch.equal(data.on_after_batch_transfer((images, labels), 0)[0], x)
    pixels = ImageSequenceData("digits", pixels=False, permute=True, batch_size=32)
    seq = pixels.as_sequences(images)
    assert seq.shape == (64, 64, 1)  # --permute implies one pixel per step
    assert torch.equal(seq[:, :, 0].sort(1).values, images.flatten(1).sort(1).values)


def test_identity_init_is_the_irnn_recipe():
    rnn = build_recurrent("rnn-relu", 3, 5)
    initialise_recurrent(rnn, "identity")
    assert torch.equal(rnn.weight_hh_l0, torch.eye(5))
    assert torch.all(rnn.bias_ih_l0 == 0) and float(rnn.weight_ih_l0.detach().abs().max()) < 0.01


def test_missing_glyphs_get_one_hint_and_no_warning_per_character(tmp_path, monkeypatch, caplog):
    import logging
    import warnings

    from rnnkit.training import plots

    monkeypatch.setattr(plots, "font_for", lambda text: None)  # as on a machine without CJK fonts
    # the CLI (run by earlier tests in this process) stops the rnnkit logger's propagation
    monkeypatch.setattr(logging.getLogger("rnnkit"), "propagate", True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.plot_matrix(np.eye(3), ["我", "爱", "你"], ["I", "love", "you"], tmp_path / "a.png",
                          "source", "target", "attention")
    assert (tmp_path / "a.png").stat().st_size > 1000
    assert not [w for w in caught if "Glyph" in str(w.message)]
    assert sum("no installed font has these characters" in r.message for r in caplog.records) == 1
