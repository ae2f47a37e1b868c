"""Exported networks against the PyTorch model they came from, on inputs of other shapes."""

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.export import export_model, load_safetensors, torch_twin
from rnnkit.models.classifier import SequenceClassifier, SequenceClassifierConfig
from rnnkit.models.forecaster import ForecasterConfig, SequenceForecaster
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module", params=["lstm", "gru", "lstm-proj"])
def trained(request, tmp_path_factory):
    """A stacked bidirectional classifier trained for an epoch on the digits (lstm-proj:
    an LSTM with proj_size, which torch.nn.LSTM's own ONNX export refuses)."""
    run = tmp_path_factory.mktemp("runs") / request.param
    cell, _, proj = request.param.partition("-")
    extra = ["--proj-size", "6"] if proj else []
    assert main(["train", "seqclass", "--data", "digits", "--epochs", "1", "--layers", "2",
                 "--bidirectional", "--hidden", "16", "--cell", cell, "--no-progress",
                 *extra, "--out", str(run)]) == 0
    return run


def _onnx_outputs(path, name, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: x.numpy()})


def test_onnx_of_a_trained_network_matches_on_other_batches_and_lengths(trained, tmp_path,
                                                                        capsys):
    from rnnkit.tasks import TASKS
    from rnnkit.training import runner

    out = tmp_path / "digits.onnx"
    assert main(["export", str(trained), "--format", "onnx", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |difference|" in printed
    module, _, _ = runner.load_trained(TASKS["seqclass"], trained)
    for batch, steps in ((1, 3), (5, 8), (4, 31)):  # exported at 2 x 9
        x = torch.rand(batch, steps, 8)
        with torch.no_grad():
            expected = module.model(x)
        (got,) = _onnx_outputs(out, "x", x)
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)


def test_onnx_and_torchscript_of_a_gru_forecaster_and_language_model(tmp_path):
    torch.manual_seed(0)
    forecaster = SequenceForecaster(ForecasterConfig(input_size=3, output_length=4, cell="gru",
                                                     hidden=12, layers=2, probabilistic=True))
    lm = LanguageModel(LanguageModelConfig(vocab_size=30, embedding=8, cell="gru", hidden=8,
                                           tie_weights=True))
    for model, inputs in ((forecaster, torch.randn(6, 23, 3)),
                          (lm, torch.randint(0, 30, (3, 14)))):
        onnx_report = export_model(model, "onnx", tmp_path / "m.onnx")
        assert onnx_report["max_abs_diff"] < 1e-5
        with torch.no_grad():
            expected = model.eval()(inputs)
        expected = [expected[0], expected[1]]
        got = _onnx_outputs(tmp_path / "m.onnx", onnx_report["inputs"][0], inputs)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e.numpy(), atol=1e-5, rtol=0)
        export_model(model, "torchscript", tmp_path / "m.pt")
        scripted = torch.jit.load(str(tmp_path / "m.pt"))
        with torch.no_grad():
            for e, g in zip(expected, scripted(inputs), strict=True):
                torch.testing.assert_close(g, e, atol=1e-5, rtol=0)


def test_safetensors_round_trip_without_pickle(tmp_path):
    from safetensors import safe_open

    torch.manual_seed(1)
    model = LanguageModel(LanguageModelConfig(vocab_size=20, embedding=6, cell="ln-lstm",
                                              hidden=6, tie_weights=True))
    report = export_model(model, "safetensors", tmp_path / "lm.safetensors", {"task": "lm"})
    assert report["max_abs_diff"] == 0.0
    with safe_open(str(tmp_path / "lm.safetensors"), framework="pt") as f:
        assert f.metadata()["rnnkit_model"] == "LanguageModel"
    loaded = load_safetensors(tmp_path / "lm.safetensors")
    tokens = torch.randint(0, 20, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens)[0], model.eval()(tokens)[0], rtol=0, atol=0)
    assert loaded.decoder.weight is loaded.embedding.weight  # tying survives


def test_what_cannot_be_exported_says_so(tmp_path):
    ln = SequenceClassifier(SequenceClassifierConfig(input_size=2, num_classes=2, cell="ln-gru"))
    with pytest.raises(ValueError, match="ln-gru cell has no torch.nn counterpart"):
        export_model(ln, "onnx", tmp_path / "x.onnx")
    zoned = SequenceClassifier(SequenceClassifierConfig(input_size=2, num_classes=2, zoneout=0.1))
    with pytest.raises(ValueError, match="zoneout"):
        torch_twin(zoned)
    with pytest.raises(ValueError, match="--format"):
        export_model(zoned, "tflite", tmp_path / "x")
    with pytest.raises(ValueError, match="rnnkit export"):
        torch.save({"a": 1}, tmp_path / "plain.safetensors")
        load_safetensors(tmp_path / "plain.safetensors")


@pytest.mark.parametrize("pooling", ["max", "mean", "attention"])
def test_a_pooled_classifier_exports_and_reloads(pooling, tmp_path):
    torch.manual_seed(0)
    model = SequenceClassifier(SequenceClassifierConfig(
        input_size=3, num_classes=4, cell="gru", hidden=6, layers=2, bidirectional=True,
        pooling=pooling)).eval()
    export_model(model, "onnx", tmp_path / "pooled.onnx")
    for batch, steps in ((1, 2), (3, 17)):
        x = torch.randn(batch, steps, 3)
        with torch.no_grad():
            expected = model(x)
        (got,) = _onnx_outputs(tmp_path / "pooled.onnx", "x", x)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)
    export_model(model, "safetensors", tmp_path / "pooled.safetensors")
    loaded = load_safetensors(tmp_path / "pooled.safetensors")
    assert loaded.config.pooling == pooling
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
