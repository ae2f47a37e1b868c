"""What registering the engines as PyTorch operators costs, measured side by side.

The engines run through ``torch.ops.rnnkit.sequence`` and its backward operator, called
from an autograd.Function (:mod:`rnnkit.backends.ops`): the dispatcher, the schema's
argument parsing and the fake-kernel machinery are on every call. The same kernels can
also be called from a bare autograd.Function, which is how the engines ran before they
were registered. For each engine, cell, batch and hidden size (T steps, input = hidden,
float32, one direction of one layer, forward then backward into every input), both are
timed in turns in one run, after checking that they give the same outputs and gradients.

Usage::

    python benchmarks/operator_overhead.py            # the engine benchmark's grid
    python benchmarks/operator_overhead.py --quick
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, time_interleaved, write_json

import rnnkit  # noqa: F401  (registers the engines)
from rnnkit.backends import ops
from rnnkit.backends.native import available as native_available
from rnnkit.functional import CELLS, Masks

GATES = {"lstm": 4, "gru": 3}


class Direct(torch.autograd.Function):
    """The kernels without the operators: ``apply(engine, cell, x, w_ih, w_hh, b_ih, b_hh,
    *states0) -> (y, *final)``, no lengths, no masks."""

    @staticmethod
    def forward(ctx, engine, cell, x, w_ih, w_hh, b_ih, b_hh, *states0):
        kernel = ops._KERNELS[engine]
        y, final, saved = kernel.forward(cell, x, w_ih, w_hh, b_ih, b_hh, (), tuple(states0),
                                         None, Masks())
        ctx.engine, ctx.cell, ctx.n = engine, cell, len(states0)
        ctx.save_for_backward(x, w_ih, w_hh, *saved)
        ctx.set_materialize_grads(False)
        return (y, *final)

    @staticmethod
    def backward(ctx, dy, *dfinal):
        x, w_ih, w_hh, *saved = ctx.saved_tensors
        need = [True] * (5 + ctx.n)
        grads = ops._KERNELS[ctx.engine].backward(ctx.cell, x, w_ih, w_hh, True, (), None,
                                                  Masks(), saved, dy, list(dfinal), need)
        return (None, None, *grads)


def make_case(cell: str, B: int, H: int, T: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = GATES[cell] * H
    scale = H ** -0.5
    leaves = [torch.randn(T, B, H)] + [(torch.rand(s) * 2 - 1) * scale
                                       for s in ((g, H), (g, H), (g,), (g,))]
    leaves += [torch.zeros(B, H) for _ in range(CELLS[cell].num_states)]
    return [t.requires_grad_() for t in leaves], torch.randn(T, B, H)


def via_operator(engine, cell, leaves, dy):
    x, w_ih, w_hh, b_ih, b_hh, *states0 = leaves
    y, _ = ops.run_sequence(engine, cell, x, tuple(states0), w_ih, w_hh, b_ih, b_hh, None)
    return torch.autograd.grad(y, leaves, dy)


def via_direct(engine, cell, leaves, dy):
    x, w_ih, w_hh, b_ih, b_hh, *states0 = leaves
    y, *_ = Direct.apply(engine, cell, x, w_ih, w_hh, b_ih, b_hh, *states0)
    return torch.autograd.grad(y, leaves, dy)


def run(args: argparse.Namespace) -> dict[str, object]:
    engines = ["native", "fused"] if native_available() else ["fused"]
    rows, records = [], []
    grid = [(b, h) for b in args.batch for h in args.hidden]
    for engine in engines:
        for cell in ("lstm", "gru"):
            for B, H in grid:
                leaves, dy = make_case(cell, B, H, args.steps)
                a = via_operator(engine, cell, leaves, dy)
                b = via_direct(engine, cell, leaves, dy)
                for u, v in zip(a, b):
                    torch.testing.assert_close(u, v, rtol=0, atol=0)
                # Each order once: whichever runs first in a turn finds the allocator's
                # cache as the other left it.
                op = partial(via_operator, engine, cell, leaves, dy)
                direct = partial(via_direct, engine, cell, leaves, dy)
                first = time_interleaved({"operator": op, "direct": direct},
                                         repeats=args.repeats, warmup=args.warmup)
                second = time_interleaved({"direct": direct, "operator": op},
                                          repeats=args.repeats, warmup=args.warmup)
                times = {k: (first[k] + second[k]) / 2 for k in first}
                ratio = times["operator"] / times["direct"]
                records.append({"engine": engine, "cell": cell, "batch": B, "hidden": H,
                                "steps": args.steps, "operator_ms": times["operator"],
                                "direct_ms": times["direct"], "ratio": ratio})
                rows.append([engine, cell, B, H, f"{times['direct']:.3f}",
                             f"{times['operator']:.3f}", f"{ratio:.3f}"])
    # The fixed cost of one call: a one-step, one-row, 8-unit case, where the work is nil.
    per_call = {}
    for engine in engines:
        leaves, dy = make_case("lstm", 1, 8, 1)
        times = time_interleaved({"operator": partial(via_operator, engine, "lstm", leaves, dy),
                                  "direct": partial(via_direct, engine, "lstm", leaves, dy)},
                                 repeats=max(args.repeats, 200), warmup=20)
        per_call[engine] = {"operator_us": times["operator"] * 1e3,
                            "direct_us": times["direct"] * 1e3,
                            "extra_us": (times["operator"] - times["direct"]) * 1e3}
    print(format_table(["engine", "cell", "batch", "hidden", "direct ms", "operator ms",
                        "ratio"], rows))
    for engine, p in per_call.items():
        print(f"{engine}: one call (forward + backward, T=1, B=1, H=8) {p['direct_us']:.1f} us "
              f"direct, {p['operator_us']:.1f} us through the operators: "
              f"{p['extra_us']:+.1f} us per forward+backward")
    worst = max(records, key=lambda r: r["ratio"])
    print(f"worst ratio {worst['ratio']:.3f} ({worst['engine']} {worst['cell']} batch "
          f"{worst['batch']} hidden {worst['hidden']})")
    return {"machine": machine_record(), "cases": records, "per_call": per_call}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=lambda s: [int(v) for v in s.split(",")], default=[1, 16, 64])
    p.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")],
                   default=[128, 256, 512])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="batch 16, hidden 128, 5 repeats")
    p.add_argument("--json", type=Path,
                   default=Path(__file__).parent / "results" / "operator-overhead-cpu.json")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.hidden, args.repeats = [16], [128], 5
    payload = run(args)
    write_json(args.json, payload)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
