"""End-to-end training speed: each task's default recipe with rnnkit's recurrent layers
against the same model, data and Lightning loop with torch.nn's layers.

For each task the model is built once by the task itself (``task.build`` from its default
options); the torch.nn variant is a copy whose rnnkit layers are torch.nn layers holding
the same weights (padded batches with ``lengths=`` go through ``pack_padded_sequence``, as
a torch.nn user writes them). Both then train for the same steps under a Lightning Trainer
set up as rnnkit's (clipping as the recipe says), taking turns, after checking that their
first losses agree. Reported per variant: the median time of a training step (forward,
backward, optimiser) and the median interval between step starts (adding the data loader
and Lightning's own work), after warm-up steps.

    python benchmarks/training_throughput.py [--tasks seqclass,lm,textclass,forecast]
        [--steps 30] [--warmup 5] [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, write_json

import rnnkit.nn as rnn
from rnnkit.tasks import TASKS
from rnnkit.training.options import COMMON_OPTIONS, resolve
from rnnkit.training.trainer import StepSeeds, quiet_lightning

TORCH_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class TorchLayer(nn.Module):
    """torch.nn's layer with an rnnkit layer's weights, taking rnnkit's ``lengths=``."""

    def __init__(self, layer: rnn.RNNBase) -> None:
        super().__init__()
        cls = TORCH_LAYERS[layer.mode]
        self.batch_first = layer.batch_first
        self.rnn = cls(layer.input_size, layer.hidden_size, layer.num_layers, bias=layer.bias,
                       batch_first=layer.batch_first, dropout=layer.dropout,
                       bidirectional=layer.bidirectional)
        self.rnn.load_state_dict(layer.state_dict())

    def forward(self, x: Tensor | PackedSequence, hx=None, *, lengths: Tensor | None = None):
        if lengths is None:
            return self.rnn(x, hx)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=self.batch_first,
                                      enforce_sorted=False)
        out, state = self.rnn(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=self.batch_first,
                                     total_length=x.shape[1 if self.batch_first else 0])
        return out, state


def torch_variant(module: nn.Module) -> nn.Module:
    twin = copy.deepcopy(module)
    for name, child in list(twin.named_modules()):
        if isinstance(child, rnn.RNNBase):
            if child.mode not in TORCH_LAYERS or any(child.zoneout) or child.recurrent_dropout:
                raise ValueError(f"{name}: torch.nn has no {child.mode} layer like it")
            parent = twin.get_submodule(name.rpartition(".")[0]) if "." in name else twin
            setattr(parent, name.rpartition(".")[2], TorchLayer(child))
    return twin


class StepTimes(L.Callback):
    def __init__(self) -> None:
        self.steps: list[float] = []
        self.intervals: list[float] = []
        self.losses: list[float] = []
        self._start = self._previous = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._previous is not None:
            self.intervals.append(now - self._previous)
        self._start = self._previous = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(time.perf_counter() - self._start)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def run(module: nn.Module, data, config: dict, steps: int, folder: Path) -> StepTimes:
    timer = StepTimes()
    clip = config["clip"] or None
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1,
                        gradient_clip_val=clip,
                        gradient_clip_algorithm=config["clip_mode"] if clip else None,
                        callbacks=[timer, StepSeeds(config["seed"])], default_root_dir=folder)
    trainer.fit(module, datamodule=data)
    return timer


def measure(name: str, steps: int, warmup: int, rounds: int) -> dict:
    task = TASKS[name]
    config = resolve([*task.options, *COMMON_OPTIONS], task.defaults, {"quiet": True}, {})
    if hasattr(task, "prepare"):
        config = task.prepare(config)
    folder = Path(tempfile.mkdtemp(prefix=f"throughput-{name}-"))
    L.seed_everything(0, verbose=False)
    module, data = task.build(config, folder)
    initial = copy.deepcopy(module.state_dict())
    variants = {"rnnkit": module, "torch.nn": torch_variant(module)}
    times = {v: {"step": [], "interval": []} for v in variants}
    first = {}
    for _ in range(rounds):
        for label, model in variants.items():  # in turns, from the same weights each round
            if label == "rnnkit":
                model.load_state_dict(initial)
            else:
                reference = copy.deepcopy(module)
                reference.load_state_dict(initial)
                model.load_state_dict(torch_variant(reference).state_dict())
            timer = run(model, data, config, warmup + steps, folder)
            first.setdefault(label, timer.losses[0])
            times[label]["step"] += timer.steps[warmup:]
            times[label]["interval"] += timer.intervals[warmup:]
    if abs(first["rnnkit"] - first["torch.nn"]) > 1e-4 * max(1.0, abs(first["torch.nn"])):
        raise SystemExit(f"{name}: first losses differ ({first}); not timing different models")
    recipe = ("cell", "hidden", "layers", "bidirectional", "batch_size")
    result = {"task": name, "recipe": {k: config[k] for k in recipe if k in config},
              "first_loss": first}
    for label, t in times.items():
        result[f"{label} step ms"] = 1000 * statistics.median(t["step"])
        result[f"{label} interval ms"] = 1000 * statistics.median(t["interval"])
    result["step ratio"] = result["rnnkit step ms"] / result["torch.nn step ms"]
    result["interval ratio"] = result["rnnkit interval ms"] / result["torch.nn interval ms"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="seqclass,lm,textclass,forecast")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" /
                                              "training-throughput-cpu.json"))
    args = parser.parse_args()
    quiet_lightning()
    results = [measure(name, args.steps, args.warmup, args.rounds)
               for name in args.tasks.split(",")]
    headers = ["task", "recipe", "rnnkit step ms", "torch.nn step ms", "ratio",
               "rnnkit interval ms", "torch.nn interval ms", "ratio"]
    rows = [[r["task"], " ".join(f"{k}={v}" for k, v in r["recipe"].items()),
             f"{r['rnnkit step ms']:.1f}", f"{r['torch.nn step ms']:.1f}",
             f"{r['step ratio']:.2f}", f"{r['rnnkit interval ms']:.1f}",
             f"{r['torch.nn interval ms']:.1f}", f"{r['interval ratio']:.2f}"] for r in results]
    print(format_table(headers, rows))
    write_json(Path(args.json), {"benchmark": "training_throughput", "machine": machine_record(),
                                 "steps": args.steps, "warmup": args.warmup,
                                 "rounds": args.rounds, "results": results})


if __name__ == "__main__":
    main()
