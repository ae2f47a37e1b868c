"""Time rnnkit's engines against torch.nn on the same inputs, in the same run.

For each cell (LSTM, GRU), batch size and hidden size, at T time steps with
input size = hidden size, float32 on the CPU:

* ``forward``: the layer's forward under ``torch.no_grad()``;
* ``fwd+bwd``: forward, then backward of a fixed random upstream gradient into the
  input and every parameter.

The competitors are ``torch.nn.X`` (oneDNN for LSTM on the CPU), rnnkit's ``fused``
engine and rnnkit's ``reference`` engine, all with the same weights. Before timing a
case, each rnnkit engine's outputs and gradients are compared with torch.nn's; a
mismatch stops the run (nothing wrong is ever timed).

Usage::

    python benchmarks/engine.py                   # the full grid (several minutes)
    python benchmarks/engine.py --quick           # a small grid, for a smoke run
    python benchmarks/engine.py --cells lstm --batch 64 --hidden 256
    python benchmarks/engine.py --report benchmarks/results/engine-cpu.json   # markdown table
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, time_interleaved, write_json

import rnnkit

RTOL, ATOL = 1e-4, 1e-4  # float32; weight gradients are sums over T*B terms, so relative


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="lstm,gru", help="comma list of lstm,gru (default: %(default)s)")
    p.add_argument("--batch", type=_ints, default=[1, 16, 64], help="batch sizes (default: 1,16,64)")
    p.add_argument("--hidden", type=_ints, default=[128, 256, 512],
                   help="hidden sizes (default: 128,256,512)")
    p.add_argument("--steps", type=int, default=100, help="sequence length T (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per case (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default: %(default)s)")
    p.add_argument("--engines", default="fused,reference",
                   help="rnnkit engines to time beside torch.nn (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="batch 16, hidden 128, 3 repeats")
    p.add_argument("--report", type=Path, default=None, metavar="JSON",
                   help="print a saved result as a markdown table, and time nothing")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "engine-cpu.json",
                   help="where to write the results (default: benchmarks/results/engine-cpu.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.hidden, args.repeats, args.warmup = [16], [128], 3, 1
    return args


def _layers(cell: str, hidden: int, engines: list[str]) -> dict[str, torch.nn.Module]:
    torch_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    ours_cls = {"lstm": rnnkit.nn.LSTM, "gru": rnnkit.nn.GRU}[cell]
    layers: dict[str, torch.nn.Module] = {"torch.nn": torch_cls(hidden, hidden)}
    for engine in engines:
        layer = ours_cls(hidden, hidden, backend=engine)
        layer.load_state_dict(layers["torch.nn"].state_dict())
        layers[engine] = layer
    return layers


def _forward(layer: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        layer(x)


def _fwd_bwd(layer: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor) -> list[torch.Tensor]:
    x.grad = None
    layer.zero_grad(set_to_none=True)
    y, _ = layer(x)
    y.backward(dy)
    return [y.detach(), x.grad] + [p.grad for p in layer.parameters()]


def check_case(layers: dict[str, torch.nn.Module], x: torch.Tensor, dy: torch.Tensor) -> float:
    """Largest difference of outputs and gradients from torch.nn, relative to
    ``ATOL + RTOL * |torch.nn's value|`` (<= 1 passes); stops the run if too large."""
    expected = _fwd_bwd(layers["torch.nn"], x, dy)
    worst = 0.0
    for name, layer in layers.items():
        if name == "torch.nn":
            continue
        got = _fwd_bwd(layer, x, dy)
        score = max(float(((a - b).abs() / (ATOL + RTOL * b.abs())).max())
                    for a, b in zip(got, expected))
        if score > 1:
            raise SystemExit(f"refusing to time: {name} differs from torch.nn beyond "
                             f"rtol={RTOL}, atol={ATOL} (score {score:.2f})")
        worst = max(worst, score)
    return worst


def run(args: argparse.Namespace) -> dict[str, object]:
    engines = [e for e in args.engines.split(",") if e]
    rows, results = [], []
    for cell in [c for c in args.cells.split(",") if c]:
        for batch in args.batch:
            for hidden in args.hidden:
                torch.manual_seed(0)
                layers = _layers(cell, hidden, engines)
                x = torch.randn(args.steps, batch, hidden, requires_grad=True)
                dy = torch.randn(args.steps, batch, hidden)
                max_diff = check_case(layers, x, dy)

                fwd = time_interleaved({n: partial(_forward, m, x) for n, m in layers.items()},
                                       args.repeats, args.warmup)
                both = time_interleaved({n: partial(_fwd_bwd, m, x, dy) for n, m in layers.items()},
                                        args.repeats, args.warmup)
                for mode, times in (("forward", fwd), ("fwd+bwd", both)):
                    base = times["torch.nn"]
                    record = {"cell": cell, "batch": batch, "hidden": hidden, "steps": args.steps,
                              "mode": mode, "ms": times, "tolerance_score": max_diff,
                              "ratio_vs_torch": {e: times[e] / base for e in engines}}
                    results.append(record)
                    row = [cell, batch, hidden, mode, f"{base:.1f}"]
                    row += [f"{times[e]:.1f}" for e in engines]
                    row += [f"{times[e] / base:.2f}" for e in engines]
                    rows.append(row)
                    print(format_table(_headers(engines), [row]).splitlines()[-1], flush=True)
    print()
    print(format_table(_headers(engines), rows))
    print()
    print(summary(results))
    return {"benchmark": "engine", "machine": machine_record(), "dtype": "float32",
            "device": "cpu", "results": results}


def summary(results: list[dict]) -> str:
    """The two floors the engine is held to, read off this run."""
    lines = []
    if all({"fused", "reference"} <= set(r["ms"]) for r in results):
        worst = max(results, key=lambda r: r["ms"]["fused"] / r["ms"]["reference"])
        ratio = worst["ms"]["fused"] / worst["ms"]["reference"]
        lines.append(f"fused vs reference: slowest case fused/reference = {ratio:.2f} "
                     f"({worst['cell']} B={worst['batch']} H={worst['hidden']} {worst['mode']})")
    big = [r for r in results if r["batch"] == 64 and r["mode"] == "fwd+bwd" and "fused" in r["ms"]]
    if big:
        worst = max(big, key=lambda r: r["ratio_vs_torch"]["fused"])
        lines.append(f"batch 64 fwd+bwd: worst fused/torch.nn = "
                     f"{worst['ratio_vs_torch']['fused']:.2f} ({worst['cell']} H={worst['hidden']})")
    return "\n".join(lines)


def _headers(engines: list[str]) -> list[str]:
    return (["cell", "B", "H", "mode", "torch.nn ms"] + [f"{e} ms" for e in engines]
            + [f"{e}/torch" for e in engines])


def markdown_table(payload: dict) -> str:
    """The saved results as a markdown table (fwd+bwd and forward side by side)."""
    engines = list(payload["results"][0]["ratio_vs_torch"])
    cases: dict[tuple, dict] = {}
    for r in payload["results"]:
        cases.setdefault((r["cell"], r["batch"], r["hidden"]), {})[r["mode"]] = r
    head = ["cell", "B", "H"]
    for mode in ("fwd+bwd", "forward"):
        head += [f"{mode}: torch.nn ms"] + [f"{e} ms (x)" for e in engines]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (cell, batch, hidden), modes in cases.items():
        row = [cell.upper(), str(batch), str(hidden)]
        for mode in ("fwd+bwd", "forward"):
            r = modes[mode]
            row.append(f"{r['ms']['torch.nn']:.1f}")
            row += [f"{r['ms'][e]:.1f} ({r['ratio_vs_torch'][e]:.2f})" for e in engines]
        lines.append("| " + " | ".join(row) + " |")
    m = payload["machine"]
    lines.append("")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
                 f"torch {m['torch']}, Python {m['python']}, rnnkit {m['rnnkit']} at {m['commit']}, "
                 f"{m['date']}. (x) = time / torch.nn's time in the same run.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report is not None:
        print(markdown_table(json.loads(args.report.read_text())))
        return
    payload = run(args)
    write_json(args.json, payload)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
