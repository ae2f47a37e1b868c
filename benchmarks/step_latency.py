"""Latency of one streaming step (batch 1, carried state, no gradient) against torch.nn.

What generation, real-time filtering and decoding pay per token: ``layer.step(x_t, state)``
and ``layer.stream()`` of rnnkit's layers (one native call per step when it is built),
against ``torch.nn.LSTMCell`` / ``torch.nn.GRUCell`` (the usual way to step torch.nn) and
``torch.nn.LSTM`` / ``torch.nn.GRU`` called on a sequence of one step, all with the same
weights, input size = hidden size, float32, under ``torch.no_grad()``. For the layer-norm
cells (``ln-lstm``, ``ln-gru``), which torch.nn lacks, the torch.nn cell and layer are the
plain LSTM's / GRU's of the same size: a speed reference only.

Before timing, 20 steps of each rnnkit way are compared with rnnkit's layer run on the
whole sequence (and, for the plain cells, torch.nn's with torch.nn's cell); a mismatch stops
the run.
Each repeat times a block of steps with the state carried, and reports microseconds per
step; the median over repeats, the competitors in turns.

Usage::

    python benchmarks/step_latency.py                 # lstm, gru, ln-lstm, ln-gru; H = 128, 256, 512
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
    p.add_argument("--cells", default="lstm,gru,ln-lstm,ln-gru",
                   help="comma list of lstm, gru, ln-lstm, ln-gru (default: %(default)s)")
    p.add_argument("--steps", type=int, default=200, help="steps per timed block (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=15, help="timed blocks (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed blocks first (default: %(default)s)")
    p.add_argument("--json", type=Path,
                   default=Path(__file__).parent / "results" / "step-latency-cpu.json",
                   help="where to write the results (default: benchmarks/results/step-latency-cpu.json)")
    return p.parse_args(argv)


OURS = {"lstm": rnnkit.nn.LSTM, "gru": rnnkit.nn.GRU, "ln-lstm": rnnkit.nn.LayerNormLSTM,
        "ln-gru": rnnkit.nn.LayerNormGRU}


def _competitors(cell: str, hidden: int):
    """The ways to take one step, as functions state -> (h_t, state), and rnnkit's layer."""
    lstm = cell.endswith("lstm")
    torch_cell = (torch.nn.LSTMCell if lstm else torch.nn.GRUCell)(hidden, hidden).eval()
    torch_layer = (torch.nn.LSTM if lstm else torch.nn.GRU)(hidden, hidden).eval()
    ours = OURS[cell](hidden, hidden).eval()
    for p in ours.parameters():  # off the initial values (layer-norm gains of 1 hide mistakes)
        p.add_(0.1 * torch.randn_like(p))
    if cell in ("lstm", "gru"):
        state = {n.replace("_l0", ""): p for n, p in ours.state_dict().items()}
        torch_cell.load_state_dict(state)
        torch_layer.load_state_dict(ours.state_dict())

    def cell_step(x, s):
        s = torch_cell(x, s)
        return (s[0] if lstm else s), s

    def layer_step(x, s):
        y, s = torch_layer(x.unsqueeze(0), s)
        return y[0], s

    def ours_step(x, s):
        return ours.step(x, s)

    def stream_step(x, s):
        stream = s if s is not None else ours.stream(batch_size=1)
        return stream(x), stream

    fns = {"torch.nn cell": cell_step, "torch.nn layer": layer_step, "rnnkit step": ours_step,
           "rnnkit stream": stream_step}
    return fns, ours


def _run_block(fn, xs):
    state = None
    for x in xs:
        _, state = fn(x, state)


def check(cell, fns, ours, xs) -> float:
    """Largest difference of h_t from rnnkit's layer run on the whole sequence (and of the
    torch.nn ways from each other, for the plain cells); stops the run if > 1e-5."""
    outs = {}
    for name, fn in fns.items():
        state, hs = None, []
        for x in xs:
            h, state = fn(x, state)
            hs.append(h)
        outs[name] = torch.cat(hs)
    expected = ours(torch.stack(xs))[0][:, 0]
    names = [n for n in fns if n.startswith("rnnkit") or cell in ("lstm", "gru")]
    worst = max(float((outs[n] - expected).abs().max()) for n in names)
    if worst > 1e-5:
        raise SystemExit(f"refusing to time: the steps differ from the sequence by {worst:.2e}")
    return worst


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    reason = native.build.load()
    rows, results = [], []
    with torch.no_grad():
        for cell in [c for c in args.cells.split(",") if c]:
            for hidden in args.hidden:
                torch.manual_seed(0)
                fns, ours = _competitors(cell, hidden)
                xs = [torch.randn(1, hidden) for _ in range(args.steps)]
                diff = check(cell, fns, ours, xs[:20])
                ms = time_interleaved({n: (lambda f=f, xs=xs: _run_block(f, xs)) for n, f in fns.items()},
                                      args.repeats, args.warmup)
                us = {n: v * 1e3 / args.steps for n, v in ms.items()}
                base = us["torch.nn cell"]
                results.append({"cell": cell, "hidden": hidden, "us_per_step": us,
                                "ratio_vs_torch_cell": {n: v / base for n, v in us.items()},
                                "max_abs_diff": diff})
                rows.append([cell, hidden, *(f"{us[n]:.1f}" for n in fns),
                             f"{us['rnnkit stream'] / base:.2f}"])
                print(format_table(_headers(fns), [rows[-1]]).splitlines()[-1], flush=True)
    print()
    print(format_table(_headers(fns), rows))
    print(f"\nnative engine: {'built' if reason is None else 'unavailable (' + reason + ')'}")
    goals = []
    for r in results:
        if r["hidden"] == 256:
            got = r["us_per_step"]["rnnkit stream"]
            goals.append({"cell": r["cell"], "batch": 1, "hidden": 256,
                          "goal": f"stream step <= {TARGET_US:.0f} us", "measured": round(got, 1),
                          "verdict": "met" if got <= TARGET_US else "missed"})
            print(f"{r['cell']} H=256: rnnkit stream {got:.1f} us, step "
                  f"{r['us_per_step']['rnnkit step']:.1f} us (target <= {TARGET_US:.0f} us: "
                  f"{goals[-1]['verdict']})")
    payload = {"benchmark": "step_latency", "machine": machine_record(), "dtype": "float32",
               "batch": 1, "native": reason is None, "results": results, "goals": goals}
    write_json(args.json, payload)
    print(f"\nwrote {args.json}")


def _headers(fns) -> list[str]:
    return ["cell", "H", *(f"{n} us" for n in fns), "stream/cell"]


if __name__ == "__main__":
    main()
