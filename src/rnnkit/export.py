"""Take a trained model out of the lab: ONNX, TorchScript, or safetensors weights.

``rnnkit export RUN_DIR --format onnx|torchscript|safetensors --output PATH``

- **safetensors**: the network's weights, with its class and config as JSON in the file's
  metadata; :func:`load_safetensors` rebuilds the network without unpickling anything.
- **onnx** and **torchscript**: the network in eval mode, with batch and sequence length
  left dynamic. The fused engine is a Python time loop and custom autograd, which neither
  format can hold, so the recurrent layers are swapped for ``torch.nn`` layers with the
  same weights (rnnkit's parameter names and gate order are torch.nn's): plain RNN,
  LSTM and GRU cells, without zoneout or recurrent dropout; an LSTM with ``proj_size``
  becomes one torch.nn.LSTM per layer over the unprojected state, followed by the
  projection (torch.nn.LSTM's own ONNX export refuses projections). ONNX uses the
  TorchScript-based exporter (``dynamo=False``) with dynamic axes, which keeps the
  sequence length free for LSTM and GRU. Each export is checked straight away against
  the PyTorch model on fresh inputs of other batch sizes and lengths (with onnxruntime
  for ONNX); the largest absolute difference is reported.

Networks: sequence classifiers and regressors (``seqclass``, ``adding``), forecasters
(``forecast``: the mean, and the standard deviation when probabilistic) and language
models (``lm``: next-token logits from a zero initial state, and the final state). Text
classifiers read per-sentence lengths (packed sequences) and video networks read frames,
which these exports do not carry yet; they export as safetensors only.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.atomic import atomic_path
from rnnkit.choices import install_hint

FORMATS = ("onnx", "torchscript", "safetensors")
_TORCH_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN", "rnn-relu": "RNN"}  # torch.nn has these
_MODELS = {  # class name -> (module, config class) for load_safetensors
    "SequenceClassifier": ("rnnkit.models.classifier", "SequenceClassifierConfig"),
    "SequenceForecaster": ("rnnkit.models.forecaster", "ForecasterConfig"),
    "ForecasterEnsemble": ("rnnkit.models.forecaster", "ForecasterConfig"),
    "LanguageModel": ("rnnkit.models.language_model", "LanguageModelConfig"),
    "SequenceTagger": ("rnnkit.models.tagger", "SequenceTaggerConfig"),
    "TextClassifier": ("rnnkit.models.text_classifier", "TextClassifierConfig"),
    "Translator": ("rnnkit.models.translator", "TranslatorConfig"),
    "FrameRNNClassifier": ("rnnkit.models.video", "VideoClassifierConfig"),
    "ConvRNNClassifier": ("rnnkit.models.video", "VideoClassifierConfig"),
    "FrameAverageClassifier": ("rnnkit.models.video", "VideoClassifierConfig"),
    "EncoderForecaster": ("rnnkit.models.video", "PredictorConfig"),
    "FCLSTMPredictor": ("rnnkit.models.video", "PredictorConfig"),
}


class _TorchRecurrent(nn.Module):
    """A ``torch.nn`` RNN/LSTM/GRU standing in for an rnnkit layer (same weights)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        cls = getattr(nn, _TORCH_MODES[layer.mode])
        kwargs = {}
        if cls is nn.RNN:
            kwargs["nonlinearity"] = "relu" if layer.mode == "rnn-relu" else "tanh"
        self.rnn = cls(layer.input_size, layer.hidden_size, layer.num_layers, bias=layer.bias,
                       batch_first=layer.batch_first, dropout=layer.dropout,
                       bidirectional=layer.bidirectional, **kwargs)
        self.rnn.load_state_dict(layer.state_dict())

    def forward(self, input: Tensor, hx=None, *, lengths=None):
        if lengths is not None:
            raise ValueError("export: per-sequence lengths are not supported")
        return self.rnn(input, hx)


class _ProjectedTwin(nn.Module):
    """An rnnkit LSTM with ``proj_size`` as torch.nn layers ONNX can hold (torch.nn.LSTM's
    own exporter refuses projections): per layer, a one-layer torch.nn.LSTM over the
    unprojected state with the recurrent weight ``W_hh W_hr`` (the identity
    ``W_hh h_{t-1} = (W_hh W_hr) m_{t-1}``, exact from a zero initial state; see
    :mod:`rnnkit.nn.projection`), then each direction's output times ``W_hr^T``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.batch_first = layer.batch_first
        self.directions = 2 if layer.bidirectional else 1
        self.layers = nn.ModuleList()
        self.projections = nn.ParameterList()
        real = layer.proj_size
        for k in range(layer.num_layers):
            width = layer.input_size if k == 0 else real * self.directions
            lstm = nn.LSTM(width, layer.hidden_size, bias=layer.bias,
                           bidirectional=layer.bidirectional)
            with torch.no_grad():
                for d in range(self.directions):
                    suffix = f"_l{k}" + ("_reverse" if d else "")
                    w_hr = getattr(layer, "weight_hr" + suffix)
                    mine = "_l0" + ("_reverse" if d else "")
                    getattr(lstm, "weight_ih" + mine).copy_(getattr(layer, "weight_ih" + suffix))
                    getattr(lstm, "weight_hh" + mine).copy_(getattr(layer, "weight_hh" + suffix)
                                                            @ w_hr)
                    if layer.bias:
                        for b in ("bias_ih", "bias_hh"):
                            getattr(lstm, b + mine).copy_(getattr(layer, b + suffix))
                    self.projections.append(nn.Parameter(w_hr.detach().clone()))
            self.layers.append(lstm)

    def forward(self, input: Tensor, hx=None, *, lengths=None):
        if lengths is not None or hx is not None:
            raise ValueError("export: a projected LSTM exports from zero initial states "
                             "without per-sequence lengths")
        x = input.transpose(0, 1) if self.batch_first else input
        hs, cs = [], []
        for k, lstm in enumerate(self.layers):
            y, (m_n, c_n) = lstm(x)
            H = y.shape[-1] // self.directions
            parts = []
            for d in range(self.directions):
                w_hr = self.projections[k * self.directions + d]
                parts.append(y[..., d * H:(d + 1) * H] @ w_hr.t())
                hs.append(m_n[d] @ w_hr.t())
                cs.append(c_n[d])
            x = torch.cat(parts, dim=-1) if self.directions == 2 else parts[0]
        output = x.transpose(0, 1) if self.batch_first else x
        return output, (torch.stack(hs), torch.stack(cs))


def torch_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose rnnkit recurrent layers are ``torch.nn``
    layers with the same weights.

    Raises:
        ValueError: a layer torch.nn cannot express (layer norm, carry gate, zoneout,
            recurrent dropout).
    """
    from rnnkit.nn import RNNBase

    twin = copy.deepcopy(model).eval()
    for name, child in list(twin.named_modules()):
        if not isinstance(child, RNNBase):
            continue
        if child.mode not in _TORCH_MODES:
            raise ValueError(f"export: the {child.mode} cell has no torch.nn counterpart; ONNX "
                             "and TorchScript export plain rnn, lstm and gru cells (use "
                             "--format safetensors)")
        if any(child.zoneout) or child.recurrent_dropout:
            raise ValueError("export: zoneout and recurrent dropout act inside the recurrence, "
                             "which torch.nn layers cannot do; use --format safetensors")
        parent = twin.get_submodule(name.rpartition(".")[0]) if "." in name else twin
        stand_in = _ProjectedTwin(child) if child.proj_size else _TorchRecurrent(child)
        setattr(parent, name.rpartition(".")[2], stand_in)
    return twin


class _Exported(nn.Module):
    """The network with plain tensor inputs and outputs, as the formats need them (the
    network's own ``export_forward``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor):
        return self.model.export_forward(x)


def _signature(model: nn.Module) -> tuple[list[str], list[str], dict[str, Any]]:
    """(input names, output names, how to draw an input of batch B and length T), from the
    network's ``export_signature``; a network without one reads per-sentence lengths."""
    if not hasattr(model, "export_signature"):
        raise ValueError(f"export: {type(model).__name__} reads per-sentence lengths or "
                         "frames, which the ONNX and TorchScript exports do not carry yet; "
                         "use --format safetensors")
    return model.export_signature()


def _draw(spec: dict[str, Any], batch: int, steps: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    if "vocab" in spec:
        return torch.randint(0, spec["vocab"], (batch, steps), generator=g)
    return torch.randn(batch, steps, spec["features"], generator=g)


CHECK_SHAPES = ((1, 5), (3, 17), (8, 40))  # (batch, steps) unlike the export example's (2, 9)


def _check(run, model: nn.Module, spec: dict[str, Any]) -> dict[str, Any]:
    """Largest |exported - PyTorch| over every output, on inputs of CHECK_SHAPES."""
    reference = _Exported(model).eval()
    worst, shapes = 0.0, []
    with torch.no_grad():
        for i, (batch, steps) in enumerate(CHECK_SHAPES):
            x = _draw(spec, batch, steps, seed=100 + i)
            expected = reference(x)
            got = run(x)
            for e, g in zip(expected, got, strict=True):
                worst = max(worst, float((e - torch.as_tensor(g)).abs().max()))
            shapes.append([batch, steps])
    return {"max_abs_diff": worst, "checked_shapes": shapes}


def export_model(model: nn.Module, fmt: str, output: str | Path,
                 metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model`` (an rnnkit network from :mod:`rnnkit.models`) in ``fmt`` to
    ``output``; returns what was written and the check against PyTorch."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if fmt == "safetensors":
        return _save_safetensors(model, output, metadata or {})
    inputs, outputs, spec = _signature(model)
    wrapped = _Exported(torch_twin(model)).eval()
    example = _draw(spec, 2, 9, seed=0)
    with warnings.catch_warnings():
        # the tracer's warnings about shapes read as constants (the number of directions)
        # and the GRU batch-size note: each export is checked on other shapes below
        warnings.simplefilter("ignore")
        return _trace(wrapped, example, fmt, output, model, spec, inputs, outputs)


def _trace(wrapped: nn.Module, example: Tensor, fmt: str, output: Path,
           model: nn.Module, spec: dict[str, Any], inputs: list[str],
           outputs: list[str]) -> dict[str, Any]:
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(wrapped, (example,), check_trace=False)
        with atomic_path(output) as tmp:
            traced.save(str(tmp))
        loaded = torch.jit.load(str(output))
        report = _check(lambda x: loaded(x), model, spec)
    else:
        dynamic = {name: {0: "batch", 1: "steps"} for name in inputs}
        for name in outputs:
            # states are [layers * directions, batch, hidden]; the rest [batch, steps, ...]
            dynamic[name] = {1: "batch"} if name in ("h_n", "c_n") else (
                {0: "batch", 1: "steps"} if name == "logits" and "vocab" in spec
                else {0: "batch", 1: "frames"} if spec.get("per_step_output")
                else {0: "batch"})
        try:
            import onnx  # noqa: F401  (the exporter writes through it)
        except ImportError:
            raise ValueError(f"--format onnx needs the onnx package: "
                             f"{install_hint('export')}") from None
        with torch.no_grad(), atomic_path(output) as tmp:
            torch.onnx.export(wrapped, (example,), str(tmp), input_names=inputs,
                              output_names=outputs, dynamic_axes=dynamic, opset_version=17,
                              dynamo=False)
        report = _check_onnx(output, model, spec, inputs)
    return {"format": fmt, "output": str(output), "inputs": inputs, "outputs": outputs,
            **report}


def _check_onnx(path: Path, model: nn.Module, spec: dict[str, Any],
                inputs: list[str]) -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError:
        return {"max_abs_diff": None, "note": "onnxruntime is not installed; the export was "
                f"not checked ({install_hint('export')})"}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _check(lambda x: [torch.from_numpy(o) for o in
                             session.run(None, {inputs[0]: x.numpy()})], model, spec)


def _save_safetensors(model: nn.Module, output: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save_model

    kind = type(model).__name__
    if kind not in _MODELS:
        raise ValueError(f"export: {kind} is not an rnnkit network")
    header = {"rnnkit_model": kind,
              "rnnkit_config": json.dumps(dataclasses.asdict(model.config)),
              "rnnkit_run": json.dumps(metadata)}
    with atomic_path(output) as tmp:
        save_model(model, str(tmp), metadata=header)
    loaded = load_safetensors(output)
    worst = max(float((a - b).abs().max()) for a, b in
                zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))
    return {"format": "safetensors", "output": str(output), "model": kind,
            "max_abs_diff": worst}


def load_safetensors(path: str | Path) -> nn.Module:
    """Rebuild a network written by ``rnnkit export --format safetensors`` (no pickle)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a safetensors file written by rnnkit export "
                         f"({exc})") from None
    kind = header.get("rnnkit_model")
    if kind not in _MODELS:
        raise ValueError(f"{path}: not written by rnnkit export (no rnnkit_model in its "
                         "metadata)")
    module_name, config_name = _MODELS[kind]
    module = importlib.import_module(module_name)
    config = getattr(module, config_name)(**json.loads(header["rnnkit_config"]))
    model = getattr(module, kind)(config)
    load_model(model, str(path))
    return model.eval()


def export_run(run_dir: str | Path, fmt: str, output: str | Path,
               checkpoint: str = "best") -> dict[str, Any]:
    """Export a trained run's network (``rnnkit export``)."""
    from rnnkit.tasks import TASKS
    from rnnkit.training import runner
    from rnnkit.training.run_folder import read_run_config

    if Path(output).is_dir():
        raise ValueError(f"--output: {output} is a folder; name the file to write")
    saved = read_run_config(run_dir)
    task = TASKS.get(saved.get("task"))
    if task is None:
        raise ValueError(f"{run_dir}: unknown task {saved.get('task')!r} in config.json")
    module, _, config = runner.load_trained(task, run_dir, checkpoint)
    return export_model(module.model, fmt, output, {"task": task.name, "config": config})
