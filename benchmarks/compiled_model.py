"""A small model compiled with torch.compile: rnnkit against torch.nn, training steps per second.

The model: an embedding (vocabulary 1,000, width 64), a 2-layer LSTM of 128 units and a
linear layer back to the vocabulary, trained as a next-token model on random tokens
(batch 32, 50 steps; cross-entropy, SGD). Four variants start from the same weights:

* ``rnnkit eager`` and ``rnnkit compiled`` (``torch.compile(fullgraph=True)``: the whole
  training step's forward and backward in one graph, the recurrent layers included, as
  ``torch.ops.rnnkit.*`` operators);
* ``torch.nn eager`` and ``torch.nn compiled`` (``torch.compile`` with graph breaks
  allowed: torch.nn's recurrent layers cannot be compiled whole).

Before timing, each variant's loss and gradients after one step are compared with rnnkit
eager's. Timing: warm-up steps (the compilation happens there and is reported
separately), then steps timed in turns; the median of the repeats.

    python benchmarks/compiled_model.py [--repeats 15] [--engine native]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, time_interleaved, write_json

import rnnkit

VOCAB, WIDTH, HIDDEN, BATCH, STEPS = 1000, 64, 128, 32, 50


class TokenModel(nn.Module):
    def __init__(self, recurrent: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.rnn = recurrent
        self.out = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.embed(tokens))
        return self.out(y)


def loss_fn(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(tokens)
    return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


def make_models(engine: str | None) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    ours = TokenModel(rnnkit.nn.LSTM(WIDTH, HIDDEN, num_layers=2, batch_first=True,
                                     backend=engine))
    theirs = TokenModel(nn.LSTM(WIDTH, HIDDEN, num_layers=2, batch_first=True))
    theirs.load_state_dict(ours.state_dict())
    return {"rnnkit eager": ours, "rnnkit compiled": copy.deepcopy(ours),
            "torch.nn eager": theirs, "torch.nn compiled": copy.deepcopy(theirs)}


def make_step(name: str, model: nn.Module, tokens, targets):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    compute = (lambda: loss_fn(model, tokens, targets))
    if "compiled" in name:
        fullgraph = name.startswith("rnnkit")
        compiled = torch.compile(lambda t, y: loss_fn(model, t, y), fullgraph=fullgraph)
        compute = (lambda: compiled(tokens, targets))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = compute()
        loss.backward()
        optimizer.step()
        return loss

    return step, compute


def run(args: argparse.Namespace) -> dict[str, object]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (BATCH, STEPS), generator=g)
    targets = torch.randint(0, VOCAB, (BATCH, STEPS), generator=g)
    models = make_models(args.engine)
    # Correctness first: one forward and backward of every variant against rnnkit eager.
    reference = None
    compile_s = {}
    steps = {}
    for name, model in models.items():
        step, compute = make_step(name, model, tokens, targets)
        start = time.perf_counter()
        loss = compute()
        loss.backward()
        compile_s[name] = time.perf_counter() - start
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        if reference is None:
            reference = (loss.detach(), grads)
        else:
            torch.testing.assert_close(loss.detach(), reference[0], rtol=1e-4, atol=1e-5)
            for a, b in zip(grads, reference[1]):
                torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
        steps[name] = step
    times = time_interleaved(steps, repeats=args.repeats, warmup=args.warmup)
    base = times["torch.nn eager"]
    rows = [[name, f"{ms:.2f}", f"{1000 / ms:.1f}", f"{base / ms:.2f}x",
             f"{compile_s[name]:.1f}"] for name, ms in times.items()]
    print(format_table(["variant", "ms/step", "steps/s", "vs torch.nn eager",
                        "first step s"], rows))
    return {"machine": machine_record(), "engine": args.engine or "automatic",
            "shape": {"vocab": VOCAB, "width": WIDTH, "hidden": HIDDEN, "layers": 2,
                      "batch": BATCH, "steps": STEPS},
            "ms_per_step": times, "first_step_s": compile_s}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--engine", default=None, help="rnnkit engine (default: automatic)")
    p.add_argument("--json", type=Path,
                   default=Path(__file__).parent / "results" / "compiled-model-cpu.json")
    args = p.parse_args(argv)
    payload = run(args)
    write_json(args.json, payload)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
