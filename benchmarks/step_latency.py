"""Latency of one streaming step (batch 1, carried state, no gradient) against torch.nn.

What generation, real-time filtering and decoding pay per token: ``layer.step(x_t, state)``
of ``rnnkit.nn.LSTM`` / ``rnnkit.nn.GRU`` (the native single-step call when it is built),
against ``torch.nn.LSTMCell`` / ``torch.nn.GRUCell`` (the usual way to step torch.nn) and
``torch.nn.LSTM`` / ``torch.nn.GRU`` called on a sequence of one step, all with the same
weights, input size = hidden size, float32, under ``torch.no_grad()``.

Before timing, 20 steps of each are compared with torch.nn's cell; a mismatch stops the run.
Each repeat times a block of steps with the state carried, and reports microseconds per
step; the median over repeats, the competitors in turns.

Usage::

    python benchmarks/step_latency.py                 # H = 128, 256, 512
    python benchmarks/step_latency.py --hidden 256 --json /tmp/step.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, time_interleaved, write_json

import rnnkit
from rnnkit.backends import native

TARGET_US = 60.0  # the goal set for H = 256


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=_ints, default=[128, 256, 512],
                   help="hidden sizes (default: 128,256,512)")
    p.add_argument("--cells", default="lstm,gru", help="lstm and/or gru (default: %(default)s)")
    p.add_argument("--steps", type=int, default=200, help="steps per timed block (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=15, help="timed blocks (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed blocks first (default: %(default)s)")
    p.add_argument("--json", type=Path,
                   default=Path(__file__).parent / "results" / "step-latency-cpu.json",
                   help="where to write the results (default: benchmarks/results/step-latency-cpu.json)")
    return p.parse_args(argv)


def _competitors(cell: str, hidden: int):
    """Three ways to take one step, as functions state -> (h_t, state), same weights."""
    torch_cell = (torch.nn.LSTMCell if cell == "lstm" else torch.nn.GRUCell)(hidden, hidden).eval()
    torch_layer = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(hidden, hidden).eval()
    ours = (rnnkit.nn.LSTM if cell == "lstm" else rnnkit.nn.GRU)(hidden, hidden).eval()
    state = {n.replace("_l0", ""): p for n, p in ours.state_dict().items()}
    torch_cell.load_state_dict(state)
    torch_layer.load_state_dict(ours.state_dict())

    def cell_step(x, s):
        s = torch_cell(x, s)
        return (s[0] if cell == "lstm" else s), s

    def layer_step(x, s):
        y, s = torch_layer(x.unsqueeze(0), s)
        return y[0], s

    def ours_step(x, s):
        return ours.step(x, s)

    return {"torch.nn cell": cell_step, "torch.nn layer": layer_step, "rnnkit step": ours_step}


def _run_block(fn, xs):
    state = None
    for x in xs:
        _, state = fn(x, state)


def check(fns, xs) -> float:
    """Largest difference of h_t from torch.nn's cell over the steps; stops the run if > 1e-5."""
    outs = {}
    for name, fn in fns.items():
        state, hs = None, []
        for x in xs:
            h, state = fn(x, state)
            hs.append(h)
        outs[name] = torch.cat(hs)
    worst = max(float((o - outs["torch.nn cell"]).abs().max()) for o in outs.values())
    if worst > 1e-5:
        raise SystemExit(f"refusing to time: the steps differ from torch.nn's cell by {worst:.2e}")
    return worst


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    reason = native.build.load()
    rows, results = [], []
    with torch.no_grad():
        for cell in [c for c in args.cells.split(",") if c]:
            for hidden in args.hidden:
                torch.manual_seed(0)
                fns = _competitors(cell, hidden)
                xs = [torch.randn(1, hidden) for _ in range(args.steps)]
                diff = check(fns, xs[:20])
                ms = time_interleaved({n: (lambda f=f, xs=xs: _run_block(f, xs)) for n, f in fns.items()},
                                      args.repeats, args.warmup)
                us = {n: v * 1e3 / args.steps for n, v in ms.items()}
                base = us["torch.nn cell"]
                results.append({"cell": cell, "hidden": hidden, "us_per_step": us,
                                "ratio_vs_torch_cell": {n: v / base for n, v in us.items()},
                                "max_abs_diff": diff})
                rows.append([cell, hidden, *(f"{us[n]:.1f}" for n in fns),
                             f"{us['rnnkit step'] / base:.2f}"])
                print(format_table(_headers(fns), [rows[-1]]).splitlines()[-1], flush=True)
    print()
    print(format_table(_headers(fns), rows))
    print(f"\nnative engine: {'built' if reason is None else 'unavailable (' + reason + ')'}")
    for r in results:
        if r["hidden"] == 256:
            got = r["us_per_step"]["rnnkit step"]
            print(f"{r['cell']} H=256: rnnkit step {got:.1f} us (target <= {TARGET_US:.0f} us: "
                  f"{'met' if got <= TARGET_US else 'missed'})")
    payload = {"benchmark": "step_latency", "machine": machine_record(), "dtype": "float32",
               "batch": 1, "native": reason is None, "results": results}
    write_json(args.json, payload)
    print(f"\nwrote {args.json}")


def _headers(fns) -> list[str]:
    return ["cell", "H", *(f"{n} us" for n in fns), "rnnkit/cell"]


if __name__ == "__main__":
    main()
