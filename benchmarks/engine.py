"""Time rnnkit's engines against torch.nn on the same inputs, in the same run.

For each cell, batch size and hidden size, at T time steps with input size = hidden
size, float32 on the CPU:

* ``forward``: the layer's forward under ``torch.no_grad()``;
* ``fwd+bwd``: forward, then backward of a fixed random upstream gradient into the
  input and every parameter.

Cells torch.nn has (``lstm``, ``gru``, ``rnn``, ``rnn-relu``): the competitors are
``torch.nn.X`` (oneDNN for LSTM on the CPU), rnnkit's ``native`` engine (the C++ loops) and
its ``fused`` engine (and, asked for, its ``reference`` engine), all with the same weights;
before timing, each rnnkit engine's outputs and gradients are compared with torch.nn's.

Variants torch.nn lacks (``ln-lstm``, ``ln-gru``, ``carry-lstm``, and ``lstm-zoneout`` /
``gru-zoneout``: the cell with zoneout 0.1 and recurrent dropout 0.25, timed in training
mode): the competitors are rnnkit's ``native`` and ``fused`` engines and the ``loop`` a
user writes today (torch.nn modules in a Python loop, ``loops.py``), with the same weights;
the speed reference is the plain ``torch.nn.LSTM`` (``torch.nn.GRU`` for the GRUs) of the
same size, and for the regularised cells also rnnkit's same layer without masks
(``unregularised``, native). Before timing, both engines' outputs and gradients are compared with the loop's
(in evaluation mode, where zoneout is deterministic). Checks run in float64, on copies of
the layers; the timing in float32, with the layers in training mode.

A mismatch stops the run: nothing wrong is ever timed. The goals of the CPU-speed issue
(``GOALS``) are judged on the ``native`` engine and printed met / missed.

Usage::

    python benchmarks/engine.py                   # lstm, gru, rnn, rnn-relu: the full grid
    python benchmarks/engine.py --cells ln-lstm,ln-gru,carry-lstm \
        --json benchmarks/results/engine-variants-cpu.json
    python benchmarks/engine.py --cells lstm-zoneout,gru-zoneout \
        --json benchmarks/results/engine-regularised-cpu.json
    python benchmarks/engine.py --quick           # a small grid, for a smoke run
    python benchmarks/engine.py --report benchmarks/results/engine-cpu.json   # markdown table
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, time_interleaved, write_json
from loops import (
    CarryLSTMLoop,
    LayerNormGRULoop,
    LayerNormLSTMLoop,
    RegularisedGRULoop,
    RegularisedLSTMLoop,
)

import rnnkit

ZONEOUT, RECURRENT_DROPOUT = 0.1, 0.25
# cell: (torch.nn layer, rnnkit layer), both called as make(hidden, **kwargs)
PLAIN = {
    "lstm": (torch.nn.LSTM, rnnkit.nn.LSTM),
    "gru": (torch.nn.GRU, rnnkit.nn.GRU),
    "rnn": (torch.nn.RNN, rnnkit.nn.RNN),
    "rnn-relu": (partial(torch.nn.RNN, nonlinearity="relu"),
                 partial(rnnkit.nn.RNN, nonlinearity="relu")),
}
# variant: (the torch.nn layer that is the speed reference, rnnkit layer, user's loop)
VARIANTS = {
    "ln-lstm": (torch.nn.LSTM, lambda h: rnnkit.nn.LayerNormLSTM(h, h),
                lambda h: LayerNormLSTMLoop(h, h)),
    "ln-gru": (torch.nn.GRU, lambda h: rnnkit.nn.LayerNormGRU(h, h),
               lambda h: LayerNormGRULoop(h, h)),
    "carry-lstm": (torch.nn.LSTM, lambda h: rnnkit.nn.CarryLSTM(h, h),
                   lambda h: CarryLSTMLoop(h, h)),
    "lstm-zoneout": (torch.nn.LSTM,
                     lambda h: rnnkit.nn.LSTM(h, h, zoneout=ZONEOUT,
                                              recurrent_dropout=RECURRENT_DROPOUT),
                     lambda h: RegularisedLSTMLoop(h, h, ZONEOUT, RECURRENT_DROPOUT)),
    "gru-zoneout": (torch.nn.GRU,
                    lambda h: rnnkit.nn.GRU(h, h, zoneout=ZONEOUT,
                                            recurrent_dropout=RECURRENT_DROPOUT),
                    lambda h: RegularisedGRULoop(h, h, ZONEOUT, RECURRENT_DROPOUT)),
}
# The plain cell a regularised variant is compared with (the 1.1x goal).
UNREGULARISED = {"lstm-zoneout": "lstm", "gru-zoneout": "gru"}

# The check runs in float64 on copies of the layers: float32 rounding over 100 steps can
# reach 1e-4 relative in both rnnkit and its competitors (layer norm amplifies it), which
# would hide a real mistake of that size; in float64 a correct engine agrees to ~1e-12.
RTOL, ATOL = 1e-7, 1e-7


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="lstm,gru,rnn,rnn-relu",
                   help=f"comma list of {','.join([*PLAIN, *VARIANTS])} (default: %(default)s)")
    p.add_argument("--batch", type=_ints, default=[1, 16, 64], help="batch sizes (default: 1,16,64)")
    p.add_argument("--hidden", type=_ints, default=[128, 256, 512],
                   help="hidden sizes (default: 128,256,512)")
    p.add_argument("--steps", type=int, default=100, help="sequence length T (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per case (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default: %(default)s)")
    p.add_argument("--engines", default="native,fused",
                   help="rnnkit engines to time beside torch.nn (default: %(default)s; the "
                        "variants also run the loop)")
    p.add_argument("--quick", action="store_true", help="batch 16, hidden 128, 3 repeats")
    p.add_argument("--report", type=Path, default=None, metavar="JSON",
                   help="print a saved result as a markdown table, and time nothing")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "engine-cpu.json",
                   help="where to write the results (default: benchmarks/results/engine-cpu.json)")
    args = p.parse_args(argv)
    unknown = [c for c in args.cells.split(",") if c and c not in PLAIN and c not in VARIANTS]
    if unknown:
        p.error(f"--cells: unknown {', '.join(unknown)}; expected from "
                f"{', '.join([*PLAIN, *VARIANTS])}")
    if args.quick:
        args.batch, args.hidden, args.repeats, args.warmup = [16], [128], 3, 1
    return args


def _layers(cell: str, hidden: int, engines: list[str]) -> tuple[dict[str, torch.nn.Module], str]:
    """The competitors of one case, and the name of the one the others are checked against."""
    if cell in PLAIN:
        torch_cls, ours_cls = PLAIN[cell]
        layers: dict[str, torch.nn.Module] = {"torch.nn": torch_cls(hidden, hidden)}
        for engine in engines:
            layer = ours_cls(hidden, hidden, backend=engine)
            layer.load_state_dict(layers["torch.nn"].state_dict())
            layers[engine] = layer
        return layers, "torch.nn"
    torch_cls, make_ours, make_loop = VARIANTS[cell]
    ours = make_ours(hidden)
    with torch.no_grad():  # off the initial values (layer-norm gains of 1 hide mistakes)
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    layers = {"torch.nn": torch_cls(hidden, hidden)}
    for engine in engines:
        layers[engine] = copy.deepcopy(ours)
        layers[engine].backend = engine
    loop = make_loop(hidden)
    loop.load_from(ours)
    layers["loop"] = loop
    if cell in UNREGULARISED:  # the same layer without masks, timed in the same run
        plain = PLAIN[UNREGULARISED[cell]][1](hidden, hidden, backend=ENGINE)
        plain.load_state_dict(ours.state_dict())
        layers["unregularised"] = plain
    return layers, "loop"


def _parameters(layer: torch.nn.Module) -> list[torch.Tensor]:
    ordered = getattr(layer, "ordered_parameters", None)
    return ordered() if ordered is not None else list(layer.parameters())


def _forward(layer: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        layer(x)


def _fwd_bwd(layer: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor) -> list[torch.Tensor]:
    x.grad = None
    layer.zero_grad(set_to_none=True)
    y, _ = layer(x)
    y.backward(dy)
    return [y.detach(), x.grad] + [p.grad for p in _parameters(layer)]


def check_case(layers: dict[str, torch.nn.Module], x: torch.Tensor, dy: torch.Tensor,
               reference: str = "torch.nn") -> float:
    """Largest difference of outputs and gradients from the ``reference`` competitor's,
    relative to ``ATOL + RTOL * |its value|`` (<= 1 passes), computed in float64 on copies
    of the layers and in evaluation mode (zoneout is then deterministic); stops the run if
    too large."""
    checked = {name: copy.deepcopy(layer).double().eval() for name, layer in layers.items()}
    x64 = x.detach().double().requires_grad_()
    dy64 = dy.double()
    expected = _fwd_bwd(checked[reference], x64, dy64)
    worst = 0.0
    for name, layer in checked.items():
        if name in (reference, "torch.nn", "unregularised"):  # speed references only
            continue
        got = _fwd_bwd(layer, x64, dy64)
        score = max(float(((a - b).abs() / (ATOL + RTOL * b.abs())).max())
                    for a, b in zip(got, expected))
        if score > 1:
            raise SystemExit(f"refusing to time: {name} differs from {reference} beyond "
                             f"rtol={RTOL}, atol={ATOL} (score {score:.2f})")
        worst = max(worst, score)
    return worst


def run(args: argparse.Namespace) -> dict[str, object]:
    plain_engines = [e for e in args.engines.split(",") if e]
    rows, results = [], []
    for cell in [c for c in args.cells.split(",") if c]:
        engines = plain_engines if cell in PLAIN else [*plain_engines, "loop"]
        if cell in UNREGULARISED:
            engines = [*engines, "unregularised"]
        for batch in args.batch:
            for hidden in args.hidden:
                torch.manual_seed(0)
                layers, reference = _layers(cell, hidden, engines)
                x = torch.randn(args.steps, batch, hidden, requires_grad=True)
                dy = torch.randn(args.steps, batch, hidden)
                max_diff = check_case(layers, x, dy, reference)

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
            "device": "cpu", "steps": args.steps, "results": results,
            "goals": goal_rows(results)}


# The goals of the CPU-speed issue, on the native engine's fwd+bwd time: (cell, batches,
# what is compared, limit). "torch.nn": time / torch.nn's (the plain layer of the same size
# for a variant) at most `limit`; "loop": the loop's time / native's at least `limit`;
# "unregularised": time / the same cell's without masks at most `limit`.
GOALS = [
    ("lstm", (1,), "torch.nn", 0.7), ("lstm", (16, 64), "torch.nn", 0.95),
    ("gru", (1, 16), "torch.nn", 0.5), ("gru", (64,), "torch.nn", 0.8),
    ("rnn", (1, 16, 64), "torch.nn", 1.0),
    ("ln-lstm", (16, 64), "torch.nn", 1.15), ("ln-lstm", (1, 16), "loop", 3.0),
    ("ln-gru", (1, 16, 64), "torch.nn", 1.0),
    ("carry-lstm", (1, 16, 64), "torch.nn", 1.3),
    ("lstm-zoneout", (1, 16, 64), "unregularised", 1.1),
    ("gru-zoneout", (1, 16, 64), "unregularised", 1.1),
]
ENGINE = "native"  # the engine the goals are about


def goal_rows(results: list[dict], more: list[dict] = ()) -> list[dict]:
    """One row per (goal, case) found in ``results`` (and, for the regularised cells' plain
    counterparts, in ``more``): the goal, the measured value and met / missed."""
    fwd_bwd = {(r["cell"], r["batch"], r["hidden"]): r
               for r in [*more, *results] if r["mode"] == "fwd+bwd" and ENGINE in r["ms"]}
    judged = {(r["cell"], r["batch"], r["hidden"]) for r in results}  # not those of `more`
    rows = []
    for cell, batches, versus, limit in GOALS:
        for (c, batch, hidden), r in fwd_bwd.items():
            if c != cell or batch not in batches or (c, batch, hidden) not in judged:
                continue
            if versus == "torch.nn":
                value, text = r["ms"][ENGINE] / r["ms"]["torch.nn"], f"native/torch.nn <= {limit:g}"
                met = value <= limit
            elif versus == "loop":
                value, text = r["ms"]["loop"] / r["ms"][ENGINE], f"loop/native >= {limit:g}"
                met = value >= limit
            else:  # the same cell without masks: timed in the same run, else in `more`
                plain = fwd_bwd.get((UNREGULARISED[cell], batch, hidden))
                if "unregularised" in r["ms"]:
                    value = r["ms"][ENGINE] / r["ms"]["unregularised"]
                elif plain is not None:
                    value = r["ms"][ENGINE] / plain["ms"][ENGINE]
                else:
                    continue
                text = f"native/{UNREGULARISED[cell]} native <= {limit:g}"
                met = value <= limit
            rows.append({"cell": cell, "batch": batch, "hidden": hidden, "goal": text,
                         "measured": round(value, 3), "verdict": "met" if met else "missed"})
    return rows


def summary(results: list[dict], more: list[dict] = ()) -> str:
    """The goals met and missed in this run, and the fused engine's standing."""
    lines = []
    rows = goal_rows(results, more)
    if rows:
        missed = [g for g in rows if g["verdict"] == "missed"]
        lines.append(f"speed goals (native, fwd+bwd): {len(rows) - len(missed)} met, "
                     f"{len(missed)} missed"
                     + (": " + ", ".join(f"{g['cell']} B={g['batch']} H={g['hidden']} "
                                         f"{g['measured']:.2f} ({g['goal']})" for g in missed)
                        if missed else ""))
    if all({"fused", "reference"} <= set(r["ms"]) for r in results):
        worst = max(results, key=lambda r: r["ms"]["fused"] / r["ms"]["reference"])
        ratio = worst["ms"]["fused"] / worst["ms"]["reference"]
        lines.append(f"fused vs reference: slowest case fused/reference = {ratio:.2f} "
                     f"({worst['cell']} B={worst['batch']} H={worst['hidden']} {worst['mode']})")
    return "\n".join(lines)


def target_verdict(record: dict) -> str:
    """The goals one fwd+bwd record meets or misses, for the markdown table."""
    rows = goal_rows([record]) if record["mode"] == "fwd+bwd" else []
    return "; ".join(f"{g['goal']}: {g['verdict']}" for g in rows)


def _headers(engines: list[str]) -> list[str]:
    return (["cell", "B", "H", "mode", "torch.nn ms"] + [f"{e} ms" for e in engines]
            + [f"{e}/torch" for e in engines])


def markdown_table(payload: dict) -> str:
    """The saved results as a markdown table (fwd+bwd and forward side by side)."""
    engines = list(dict.fromkeys(e for r in payload["results"] for e in r["ratio_vs_torch"]))
    cases: dict[tuple, dict] = {}
    for r in payload["results"]:
        cases.setdefault((r["cell"], r["batch"], r["hidden"]), {})[r["mode"]] = r
    head = ["cell", "B", "H"]
    for mode in ("fwd+bwd", "forward"):
        head += [f"{mode}: torch.nn ms"] + [f"{e} ms (x)" for e in engines]
        if mode == "fwd+bwd":
            head.append("goal")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (cell, batch, hidden), modes in cases.items():
        row = [cell.upper(), str(batch), str(hidden)]
        for mode in ("fwd+bwd", "forward"):
            r = modes[mode]
            row.append(f"{r['ms']['torch.nn']:.1f}")
            row += [f"{r['ms'][e]:.1f} ({r['ratio_vs_torch'][e]:.2f})" if e in r["ms"] else "-"
                    for e in engines]
            if mode == "fwd+bwd":
                row.append(target_verdict(r) or "-")
        lines.append("| " + " | ".join(row) + " |")
    m = payload["machine"]
    lines.append("")
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
                 f"torch {m['torch']}, Python {m['python']}, rnnkit {m['rnnkit']} at {m['commit']}, "
                 f"{m['date']}. (x) = time / torch.nn's time in the same run (for the variants, "
                 f"torch.nn's plain layer of the same size).")
    summary_text = summary(payload["results"])
    if summary_text:
        lines += ["", summary_text]
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
