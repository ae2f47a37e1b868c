"""rnnkit train tsclass: the .ts reader, sequences of varying length through lengths=,
prediction from .ts and .npy files, and mistakes answered in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.feature_sequences import load_sequence_source, parse_ts
from tests.helpers import write_ts

TS = """# a comment
@problemName tiny
@timeStamps false
@classLabel true a b
@data
1,2,3:4,5,6:a
7,8:9,10:b
"""


def test_ts_files_are_read_with_their_lengths_and_classes():
    got = parse_ts(TS, "tiny.ts")
    assert got.classes == ["a", "b"] and got.labels == ["a", "b"]
    assert [s.tolist() for s in got.sequences] == [[[1, 4], [2, 5], [3, 6]], [[7, 9], [8, 10]]]
    for text, message in [
            (TS.replace("7,8:9,10:b", "7,8:9:b"), "line 7: its dimensions have different"),
            (TS.replace("7,8:9,10:b", "7,?:9,10:b"), "line 7: values must be numbers"),
            (TS.replace("7,8:9,10:b", "7,8:b"), ("line 7: 1 dimensions, the lines before "
                                                "have 2")),
            (TS.replace("@timeStamps false", "@timeStamps true"), "time-stamped series"),
            (TS.split("@data")[0], "holds no sequences")]:
        with pytest.raises(ValueError, match=message):
            parse_ts(text, "tiny.ts")


def test_a_ts_folder_needs_one_file_per_split(tmp_path):
    folder = write_ts(tmp_path / "waves", train=9, test=6)
    train, test = load_sequence_source(f"ts:{folder}")
    assert len(train.sequences) == 9 and len(test.sequences) == 6
    assert {len(s) for s in train.sequences} > {5} and train.classes == ["up", "mid", "down"]
    (folder / "Waves_TEST.ts").unlink()
    with pytest.raises(ValueError, match=r"expected one \*_TEST.ts file .* found 0"):
        load_sequence_source(f"ts:{folder}")
    with pytest.raises(ValueError, match="--data: expected one of japanese-vowels, ts:DIR"):
        load_sequence_source("vowels")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tsclass")
    data = write_ts(root / "waves", train=90, test=45)
    run = root / "run"
    assert main(["train", "tsclass", "--data", f"ts:{data}", "--epochs", "30", "--lr", "1e-2", "--hidden", "16",
                 "--layers", "1", "--quiet", "--out", str(run)]) == 0
    return data, run


def test_the_classifier_learns_sequences_of_varying_length(trained):
    _, run = trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9
    assert metrics["data"]["steps"] == [5, 15]
    assert metrics["data"]["train"] + metrics["data"]["validation"] == 90
    assert (run / "plots" / "confusion_matrix.png").is_file()


def test_padding_does_not_change_a_prediction(trained):
    from rnnkit.tasks import TASKS
    from rnnkit.training.runner import load_trained

    _, run = trained
    module, data, _ = load_trained(TASKS["tsclass"], run)
    data.setup()
    sequences = data.splits["test"][0][:6]
    from rnnkit.tasks.tsclass.task import pad_sequences

    x, lengths, _ = pad_sequences([(data.standardised(s), 0) for s in sequences])
    with torch.no_grad():
        batch = module(x, lengths)
        alone = torch.cat([module(x[i:i + 1, :n], lengths[i:i + 1])
                           for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)


def test_predict_reads_ts_and_npy_files(trained, tmp_path, capsys):
    data, run = trained
    capsys.readouterr()
    assert main(["predict", str(run), str(data / "Waves_TEST.ts")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 45
    truth = ["up", "mid", "down"] * 15
    right = sum(line.split(": ")[1].startswith(label) for line, label in zip(lines, truth))
    assert right >= 40
    one = parse_ts((data / "Waves_TEST.ts").read_text(), "x").sequences[1]
    np.save(tmp_path / "one.npy", one)
    assert main(["predict", str(run), str(tmp_path / "one.npy")]) == 0
    assert capsys.readouterr().out.split(": ")[1].startswith("mid")
    np.save(tmp_path / "wide.npy", np.zeros((4, 5), dtype=np.float32))
    assert main(["predict", str(run), str(tmp_path / "wide.npy")]) == 2
    assert "has 5 features per step; the run was trained on 3" in capsys.readouterr().err


def test_noise_lands_on_valid_training_frames_only_and_is_the_steps_own():
    from types import SimpleNamespace

    from rnnkit.tasks.tsclass.task import FeatureSequenceData, add_noise

    x = torch.zeros(3, 400, 2)
    lengths = torch.tensor([400, 250, 1])
    noisy = add_noise(x, lengths, 0.5, torch.Generator().manual_seed(0))
    assert noisy[1, 250:].abs().max() == 0 and noisy[2, 1:].abs().max() == 0
    valid = torch.cat([noisy[0].flatten(), noisy[1, :250].flatten(), noisy[2, :1].flatten()])
    assert abs(float(valid.std()) - 0.5) < 0.03 and abs(float(valid.mean())) < 0.03

    data = FeatureSequenceData.__new__(FeatureSequenceData)  # the hook reads config, trainer
    data.config = {"noise": 0.5, "seed": 3}
    batch = (torch.ones(2, 5, 2), torch.tensor([5, 3]), torch.tensor([0, 1]))
    for training in (False, True):
        trainer = SimpleNamespace(training=training, global_step=7, global_rank=0)
        object.__setattr__(data, "trainer", trainer)
        first = data.on_after_batch_transfer(batch, 0)
        again = data.on_after_batch_transfer(batch, 0)
        torch.testing.assert_close(first[0], again[0], rtol=0, atol=0)  # same step, same draw
        assert torch.equal(first[0], batch[0]) is (not training)
    trainer.global_step = 8
    assert not torch.equal(data.on_after_batch_transfer(batch, 0)[0], first[0])
    data.config["noise"] = 0.0
    assert data.on_after_batch_transfer(batch, 0) is batch
