"""Time rnnkit's ``triton`` engine against cuDNN (torch.nn) and its ``fused`` engine on a GPU.

For each cell and shape (T steps, batch B, hidden H = input size), float32:

* ``forward``: the layer's forward under ``torch.no_grad()``;
* ``fwd+bwd``: forward, then backward of a fixed upstream gradient into the input and every
  parameter.

Competitors, all with the same weights, timed in turns in one run (CUDA synchronised
around each call): ``torch.nn`` (cuDNN, TF32 off: the same float32 maths as the kernels),
``torch.nn-tf32`` (cuDNN as PyTorch runs it by default, TF32 tensor cores where the GPU has
them), rnnkit's ``triton`` engine (its automatic choice of loop, and for the plain cells
also ``triton-step``, a launch per step, and ``triton-persistent``, one launch for the
sequence) and its ``fused`` engine. For the variants torch.nn lacks
(``ln-lstm``, ``ln-gru``, ``carry-lstm``, ``lstm-zoneout``: zoneout 0.1 and recurrent
dropout 0.25): the user's Python ``loop`` of torch.nn modules (``loops.py``), with
``--compiled`` also that loop under ``torch.compile``, and the plain cuDNN layer of the same
size as the speed reference; ``lstm-zoneout`` also runs the same LSTM without masks
(``unregularised``, triton).

Before timing, every engine's outputs and gradients are compared in float64 with torch.nn's
(the plain cells) or the loop's (the variants), at the case's size; a mismatch stops the
run. The minimal cells (``--min-cells``): the scan kernel against the ``scan`` engine and
against the time a kernel moving each byte once would take at the measured copy bandwidth.
haste and FlashRNN are timed when importable (``haste_pytorch``, ``flashrnn``);
otherwise the JSON says they were not installed. bf16 is not timed: the triton engine runs
float32 and float64 only.

Usage (on a machine with a CUDA GPU and ``pip install -e '.[gpu]'``)::

    python benchmarks/gpu.py                  # the grid of the GPU issue (long)
    python benchmarks/gpu.py --quick          # the fastrnns shape and T=1024, B=16, H=512
    python benchmarks/gpu.py --interpret      # a smoke run on the CPU, in Triton's
                                              # interpreter: checks the script, times nothing real
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from functools import partial
from pathlib import Path

if "--interpret" in sys.argv:  # before Triton is imported anywhere
    os.environ["TRITON_INTERPRET"] = "1"

import torch

sys.path.insert(0, str(Path(__file__).parent))
import engine as cpu_bench
from common import format_table, machine_record, time_interleaved, write_json

LOOP_VAR = "RNNKIT_TRITON_LOOP"  # rnnkit.backends.triton_engine.loops (imports Triton)
PLAIN = ("lstm", "gru", "rnn", "rnn-relu")
VARIANTS = ("ln-lstm", "ln-gru", "carry-lstm", "lstm-zoneout", "gru-zoneout")
# (T, B, H): PyTorch's fastrnns shape, then the grid at T = 1024.
FASTRNNS = (100, 64, 512)
GRID = [FASTRNNS] + [(1024, b, h) for b in (1, 16, 64, 256) for h in (256, 512, 1024)]
QUICK = [FASTRNNS, (1024, 16, 512)]
# The GPU issue's goals, on fwd+bwd: (cell, cases, what, limit). "torch.nn": triton / cuDNN
# (the plain layer of the same size for a variant) at most `limit`; "loop": the loop's
# (or the compiled loop's) time / triton's at least `limit`; "unregularised": triton with
# masks / without at most `limit`.
GOALS = [
    ("lstm", "fastrnns and B <= 16", "torch.nn", 1.0),
    ("gru", "fastrnns and B <= 16", "torch.nn", 1.0),
    ("ln-lstm", "all", "torch.nn", 1.2),
    ("ln-lstm", "all", "loop", 3.0),
    ("lstm-zoneout", "all", "unregularised", 1.1),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="lstm,gru,ln-lstm,lstm-zoneout",
                   help=f"comma list of {','.join([*PLAIN, *VARIANTS])} (default: %(default)s)")
    p.add_argument("--shapes", default=None,
                   help="semicolon list of T,B,H (default: the issue's grid, 13 shapes)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: %(default)s)")
    p.add_argument("--min-cells", default="mingru,minlstm",
                   help="minimal cells whose scan is timed against the memory-bandwidth bound "
                        "('' for none; default: %(default)s)")
    p.add_argument("--compiled", action="store_true",
                   help="also time the variants' loop under torch.compile")
    p.add_argument("--quick", action="store_true", help="two shapes: " + "; ".join(map(str, QUICK)))
    p.add_argument("--interpret", action="store_true",
                   help="CPU smoke run in Triton's interpreter (tiny shapes, one repeat)")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "gpu.json",
                   help="where to write the results (default: %(default)s)")
    args = p.parse_args(argv)
    unknown = [c for c in args.cells.split(",") if c and c not in (*PLAIN, *VARIANTS)]
    if unknown:
        p.error(f"--cells: unknown {', '.join(unknown)}; expected from "
                f"{', '.join([*PLAIN, *VARIANTS])}")
    if args.shapes:
        try:
            args.shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
        except ValueError:
            p.error(f"--shapes: expected T,B,H;T,B,H..., got {args.shapes!r}")
        if any(len(s) != 3 or min(s) < 1 for s in args.shapes):
            p.error(f"--shapes: expected positive T,B,H triples, got {args.shapes}")
    else:
        args.shapes = QUICK if args.quick else GRID
    if args.interpret:
        args.shapes, args.repeats, args.warmup = [(4, 2, 16)], 1, 0
    elif not torch.cuda.is_available():
        p.error("no CUDA device: this benchmark times GPU kernels (--interpret runs a CPU "
                "smoke check of the script in Triton's interpreter)")
    if importlib.util.find_spec("triton") is None:
        p.error("Triton is not installed: pip install 'rnnkit[gpu]'")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device, tf32: bool = False, loop: str | None = None):
    """``fn`` with cuDNN's TF32 switched as asked, the triton engine's loop forced when
    ``loop`` is given (``RNNKIT_TRITON_LOOP``), and the device synchronised after it."""
    def call():
        before = torch.backends.cudnn.allow_tf32, os.environ.get(LOOP_VAR)
        torch.backends.cudnn.allow_tf32 = tf32
        if loop is not None:
            os.environ[LOOP_VAR] = loop
        try:
            fn()
            _sync(device)
        finally:
            torch.backends.cudnn.allow_tf32 = before[0]
            if before[1] is None:
                os.environ.pop(LOOP_VAR, None)
            else:
                os.environ[LOOP_VAR] = before[1]
    return call


def _others() -> dict[str, str]:
    """The other GPU RNN libraries: importable or not."""
    return {name: ("installed" if importlib.util.find_spec(module) else "not installed")
            for name, module in (("haste", "haste_pytorch"), ("flashrnn", "flashrnn"))}


def _competitors(cell: str, hidden: int, device: torch.device, compiled: bool):
    engines = ["triton", "fused"]
    cpu_bench.ENGINE = "triton"  # the unregularised twin of lstm-zoneout runs on triton
    layers, reference = cpu_bench._layers(cell, hidden, engines if cell in PLAIN
                                          else [*engines, "loop"])
    layers = {name: layer.to(device) for name, layer in layers.items()}
    if compiled and "loop" in layers:
        layers["compiled"] = torch.compile(layers["loop"])
    return layers, reference


def run(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device("cpu" if args.interpret else "cuda")
    rows, results = [], []
    headers = ["cell", "T", "B", "H", "mode", "torch.nn ms", "tf32 ms", "triton ms", "step ms",
               "persistent ms", "fused ms", "loop ms", "triton/torch"]
    for cell in [c for c in args.cells.split(",") if c]:
        for steps, batch, hidden in args.shapes:
            torch.manual_seed(0)
            layers, reference = _competitors(cell, hidden, device, args.compiled)
            x = torch.randn(steps, batch, hidden, device=device, requires_grad=True)
            dy = torch.randn(steps, batch, hidden, device=device)
            before = torch.backends.cudnn.allow_tf32
            torch.backends.cudnn.allow_tf32 = False
            try:
                score = cpu_bench.check_case({k: v for k, v in layers.items() if k != "compiled"},
                                             x, dy, reference)
            finally:
                torch.backends.cudnn.allow_tf32 = before
            for mode in ("forward", "fwd+bwd"):
                fns = {}
                for name, layer in layers.items():
                    fn = (partial(cpu_bench._forward, layer, x) if mode == "forward"
                          else partial(cpu_bench._fwd_bwd, layer, x, dy))
                    fns[name] = _timed(fn, device)
                    if name == "torch.nn" and device.type == "cuda":
                        fns["torch.nn-tf32"] = _timed(fn, device, tf32=True)
                    if name == "triton" and not cell.startswith("ln-"):
                        for loop in ("step", "persistent"):  # beside the automatic choice
                            fns[f"triton-{loop}"] = _timed(fn, device, loop=loop)
                times = time_interleaved(fns, args.repeats, args.warmup)
                base = times["torch.nn"]
                record = {"cell": cell, "steps": steps, "batch": batch, "hidden": hidden,
                          "mode": mode, "ms": times, "tolerance_score": score,
                          "ratio_vs_torch": {k: v / base for k, v in times.items()}}
                results.append(record)
                row = [cell, steps, batch, hidden, mode, f"{base:.2f}",
                       f"{times.get('torch.nn-tf32', float('nan')):.2f}",
                       f"{times['triton']:.2f}",
                       f"{times.get('triton-step', float('nan')):.2f}",
                       f"{times.get('triton-persistent', float('nan')):.2f}", f"{times['fused']:.2f}",
                       f"{times.get('loop', float('nan')):.2f}", f"{times['triton'] / base:.2f}"]
                rows.append(row)
                print(format_table(headers, [row]).splitlines()[-1], flush=True)
    print()
    print(format_table(headers, rows))
    minimal = run_minimal(args, device)
    goals = [] if args.interpret else goal_rows(results, minimal)  # interpreted times mean nothing
    print()
    for g in goals:
        print(f"{g['cell']} T={g['steps']} B={g['batch']} H={g['hidden']}: {g['goal']}: "
              f"{g['measured']:.2f} {g['verdict']}")
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "none (interpreter)"
    import triton

    return {"benchmark": "gpu", "machine": {**machine_record(), "gpu": gpu,
                                            "triton": triton.__version__,
                                            "cudnn": torch.backends.cudnn.version()},
            "dtype": "float32", "device": device.type, "interpreted": args.interpret,
            "others": _others(), "results": results, "minimal": minimal, "goals": goals}


def copy_bandwidth(device: torch.device, repeats: int, warmup: int) -> float:
    """Bytes per second of a device-to-device copy of 1 GiB (16 MiB in the interpreter):
    the bandwidth a kernel that moves each byte once can reach."""
    n = 2 ** 22 if device.type == "cpu" else 2 ** 28
    src = torch.empty(n, device=device)
    dst = torch.empty_like(src)
    ms = time_interleaved({"copy": _timed(lambda: dst.copy_(src), device)}, repeats, warmup)["copy"]
    return 2 * n * src.element_size() / (ms / 1e3)


def _min_forward(engine: str, cell: str, proj: torch.Tensor, h0: torch.Tensor) -> None:
    from rnnkit.backends.minimal import run_min

    with torch.no_grad():
        run_min(engine, cell, "g", proj, h0, None)


def _min_fwd_bwd(engine: str, cell: str, proj: torch.Tensor, h0: torch.Tensor,
                 dh: torch.Tensor) -> None:
    from rnnkit.backends.minimal import run_min

    torch.autograd.grad(run_min(engine, cell, "g", proj, h0, None), proj, dh)


def run_minimal(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The minimal cells' scan (``torch.ops.rnnkit.min_scan``, the projections given) on
    the triton and scan engines, and the time a kernel moving each byte once at the copy
    bandwidth would take: forward reads proj and writes h; the backward reads proj, h and
    dh and writes dproj."""
    from rnnkit.backends.minimal import run_min

    cells = [c for c in args.min_cells.split(",") if c]
    if not cells:
        return []
    bandwidth = copy_bandwidth(device, args.repeats, args.warmup)
    print(f"\ncopy bandwidth: {bandwidth / 1e9:.0f} GB/s")
    headers = ["cell", "T", "B", "H", "mode", "triton ms", "scan ms", "bound ms", "triton/bound"]
    rows, results = [], []
    for cell in cells:
        for steps, batch, hidden in args.shapes:
            G = hidden * (2 if cell == "mingru" else 3)
            torch.manual_seed(0)
            proj = torch.randn(steps, batch, G, device=device, requires_grad=True)
            h0 = torch.zeros(batch, hidden, device=device)
            dh = torch.randn(steps, batch, hidden, device=device)
            ref = run_min("scan", cell, "g", proj, h0, None)
            got = run_min("triton", cell, "g", proj, h0, None)
            if not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
                raise SystemExit(f"refusing to time: the triton {cell} scan differs from scan")
            item = proj.element_size()
            moved = {"forward": (G + hidden) * steps * batch * item,
                     "fwd+bwd": (G + hidden + 2 * G + 2 * hidden) * steps * batch * item}
            for mode in ("forward", "fwd+bwd"):
                fns = {engine: _timed(partial(_min_forward, engine, cell, proj, h0)
                                      if mode == "forward"
                                      else partial(_min_fwd_bwd, engine, cell, proj, h0, dh),
                                      device)
                       for engine in ("triton", "scan")}
                times = time_interleaved(fns, args.repeats, args.warmup)
                bound = moved[mode] / bandwidth * 1e3
                record = {"cell": cell, "steps": steps, "batch": batch, "hidden": hidden,
                          "mode": mode, "ms": times, "bound_ms": bound,
                          "bytes": moved[mode], "ratio_vs_bound": times["triton"] / bound}
                results.append(record)
                row = [cell, steps, batch, hidden, mode, f"{times['triton']:.3f}",
                       f"{times['scan']:.3f}", f"{bound:.3f}", f"{times['triton'] / bound:.2f}"]
                rows.append(row)
                print(format_table(headers, [row]).splitlines()[-1], flush=True)
    print()
    print(format_table(headers, rows))
    return results


def _in_case(scope: str, steps: int, batch: int, hidden: int) -> bool:
    if scope == "all":
        return True
    return (steps, batch, hidden) == FASTRNNS or batch <= 16


def goal_rows(results: list[dict], minimal: list[dict] = ()) -> list[dict]:
    """One row per goal and measured fwd+bwd case: the value and met / missed (the minimal
    cells: triton's time at most twice the bandwidth bound)."""
    rows = [{"cell": r["cell"], "steps": r["steps"], "batch": r["batch"], "hidden": r["hidden"],
             "goal": "triton/bandwidth bound <= 2", "measured": round(r["ratio_vs_bound"], 3),
             "verdict": "met" if r["ratio_vs_bound"] <= 2 else "missed"}
            for r in minimal if r["mode"] == "fwd+bwd"]
    for cell, scope, versus, limit in GOALS:
        for r in results:
            if r["cell"] != cell or r["mode"] != "fwd+bwd" or \
                    not _in_case(scope, r["steps"], r["batch"], r["hidden"]):
                continue
            ms = r["ms"]
            if versus == "torch.nn":
                value, text = ms["triton"] / ms["torch.nn"], f"triton/cuDNN <= {limit:g}"
                met = value <= limit
            elif versus == "loop":
                fastest_loop = min(ms[k] for k in ("loop", "compiled") if k in ms)
                value, text = fastest_loop / ms["triton"], f"loop/triton >= {limit:g}"
                met = value >= limit
            else:
                if "unregularised" not in ms:
                    continue
                value, text = ms["triton"] / ms["unregularised"], f"masked/plain <= {limit:g}"
                met = value <= limit
            rows.append({"cell": cell, "steps": r["steps"], "batch": r["batch"],
                         "hidden": r["hidden"], "goal": text, "measured": round(value, 3),
                         "verdict": "met" if met else "missed"})
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    payload = run(args)
    write_json(args.json, payload)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
