"""Where the native engine's time goes: the parts of one layer's forward and backward.

For each case (cell, batch, hidden; T = 100, float32) this times, median of repeats:

* ``forward``: the whole layer forward under ``torch.no_grad()``;
* ``projection``: the input projection of all steps (one product before the loop, and the
  input layer norm for the layer-norm cells);
* ``loop``: the C++ time loop alone (``torch.ops.rnnkit.cell_forward``);
* ``fwd+bwd``: forward and backward into the input and all parameters;
* ``bwd products``: the whole-sequence products after the backward loop (dW_ih, dW_hh, dx);
* ``GFLOP/s``: the six products of a forward and backward (projection, the loop's, the
  backward loop's, and the three after it) over the fwd+bwd time: what the layer runs at
  if it did nothing but its products;
* ``masks``: for a zoneout case, drawing the layer's masks (``torch.bernoulli_``);

and, for the matrix products themselves, GFLOP/s of MKL's sgemm (``torch.mm``) and of the
packed AVX2 product (``torch.ops.rnnkit.matmul``) at the shapes of a sequence's projection.

Usage::

    python benchmarks/engine_split.py    # writes benchmarks/results/engine-split-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, write_json

import rnnkit
from rnnkit.backends import native
from rnnkit.functional import CELLS
from rnnkit.functional.sequence import _project_input

CASES = [("lstm", 1, 128), ("lstm", 1, 512), ("lstm", 16, 512), ("gru", 16, 256),
         ("gru", 16, 512), ("gru", 64, 512), ("ln-lstm", 16, 256), ("ln-lstm", 64, 512),
         ("carry-lstm", 16, 512), ("lstm-zoneout", 64, 128), ("lstm-zoneout", 64, 512)]
LAYERS = {"lstm": rnnkit.nn.LSTM, "gru": rnnkit.nn.GRU, "ln-lstm": rnnkit.nn.LayerNormLSTM,
          "carry-lstm": rnnkit.nn.CarryLSTM,
          "lstm-zoneout": lambda i, h: rnnkit.nn.LSTM(i, h, zoneout=0.1, recurrent_dropout=0.25)}
PRODUCTS = [(100, 512, 2048), (1600, 512, 2048), (6400, 512, 2048)]


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def split(case: str, batch: int, hidden: int, steps: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    layer = LAYERS[case](hidden, hidden)
    cell = layer.mode
    spec = CELLS[cell]
    x = torch.randn(steps, batch, hidden)
    dy = torch.randn(steps, batch, hidden)
    gates = spec.gates * hidden
    w_ih, w_hh = layer.weight_ih_l0.detach(), layer.weight_hh_l0.detach()
    b_ih, b_hh = layer.bias_ih_l0.detach(), layer.bias_hh_l0.detach()
    extra = tuple(e.detach() for e in layer._extra_weights(0, 0))
    flat = x.reshape(steps * batch, hidden)
    xi = x.clone().requires_grad_()

    def fwd_bwd():
        y, _ = layer(xi)
        y.backward(dy)

    out = {}
    with torch.no_grad():
        layer.eval()  # the forward alone, without drawing masks
        out["forward"] = median_ms(lambda: layer(x), repeats)
        layer.train()
        out["projection"] = median_ms(lambda: _project_input(spec, x, w_ih, b_ih, b_hh, extra),
                                      repeats)
        xp = _project_input(spec, x, w_ih, b_ih, b_hh, extra)[0]
        states = [torch.zeros(steps + 1, batch, hidden) for _ in range(spec.num_states)]
        widths, norms = native.CACHE[cell]
        cache = [torch.empty(steps, batch, w * hidden) for w in widths]
        cache += [torch.empty(steps, batch, norms)] if norms else []
        b_step = None if spec.fold_hidden_bias else b_hh
        step_extra = list(extra[1:])
        loop = lambda: torch.ops.rnnkit.cell_forward(native.KINDS[cell], xp.clone(), w_hh, b_step,
                                                     step_extra, states, cache, None, None, [], [])
        out["loop"] = median_ms(loop, repeats)
        copy_ms = median_ms(lambda: xp.clone(), repeats)
        out["loop"] -= copy_ms  # the loop overwrites its input; the copy is not its cost
        if any(layer.zoneout):
            out["masks"] = median_ms(lambda: layer._masks(x), repeats)
    out["fwd+bwd"] = median_ms(fwd_bwd, repeats)
    dg = torch.randn(steps * batch, gates)
    out["bwd products"] = median_ms(
        lambda: (torch.mm(dg.t(), flat), torch.mm(dg.t(), flat), torch.mm(dg, w_ih)), repeats)
    out["loop per step us"] = out["loop"] * 1e3 / steps
    out["GFLOP/s"] = 6 * 2 * steps * batch * gates * hidden / out["fwd+bwd"] / 1e6
    return out


def products(repeats: int) -> list[dict[str, float]]:
    rows = []
    for m, k, n in PRODUCTS:
        a, w = torch.randn(m, k), torch.randn(k, n)
        flops = 2 * m * k * n
        mkl = median_ms(lambda a=a, w=w: torch.mm(a, w), repeats)
        packed = median_ms(lambda a=a, w=w: torch.ops.rnnkit.matmul(a, w, None, False), repeats)
        rows.append({"m": m, "k": k, "n": n, "mkl_gflops": flops / mkl / 1e6,
                     "packed_gflops": flops / packed / 1e6})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--json", type=Path,
                   default=Path(__file__).parent / "results" / "engine-split-cpu.json")
    args = p.parse_args(argv)
    if not native.available():
        raise SystemExit("the native engine is not built here; nothing to split")
    cases = []
    keys = ["forward", "projection", "loop", "loop per step us", "fwd+bwd", "bwd products",
            "GFLOP/s", "masks"]
    for cell, batch, hidden in CASES:
        record = {"cell": cell, "batch": batch, "hidden": hidden,
                  **split(cell, batch, hidden, args.steps, args.repeats)}
        cases.append(record)
        print(cell, batch, hidden, {k: round(v, 2) for k, v in record.items()
                                    if isinstance(v, float)}, flush=True)
    heads = [k + (" ms" if "us" not in k and "/" not in k else "") for k in keys]
    print(format_table(["cell", "B", "H", *heads],
                       [[r["cell"], r["batch"], r["hidden"],
                         *(f"{r[k]:.2f}" if k in r else "-" for k in keys)] for r in cases]))
    prods = products(args.repeats)
    print()
    print(format_table(["m", "k", "n", "MKL sgemm GFLOP/s", "packed AVX2 GFLOP/s"],
                       [[r["m"], r["k"], r["n"], f"{r['mkl_gflops']:.1f}",
                         f"{r['packed_gflops']:.1f}"] for r in prods]))
    write_json(args.json, {"benchmark": "engine_split", "machine": machine_record(),
                           "steps": args.steps, "cases": cases, "products": prods})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
