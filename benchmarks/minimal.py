"""Time the minimal cells (minGRU, minLSTM) against torch.nn.GRU on the same inputs, in
one run: forward and backward at B = 16, H = 256 (input size 256), float32 on the CPU, for
long sequences.

Competitors, one column each:

* ``torch.nn.GRU``: the fully recurrent cell of the same hidden size (oneDNN), the
  speed reference of the goals;
* ``mingru native`` / ``minlstm native``: rnnkit's fused C++ loop;
* ``mingru scan``: rnnkit's chunked parallel scan in torch operations (any device);
* ``mingru paper-log``: the paper's log-space parallel scan (``logcumsumexp`` of
  ``log b - cumsum(log a)``) in torch operations, the way the public implementations run
  it, autograd for the backward;
* ``products only``: the three matrix products a minGRU layer cannot avoid (the input
  projection forward, its input and weight gradients backward) and nothing else, with
  the same shapes: the bound of any minGRU implementation here, and the reason a speed-up
  over torch.nn.GRU (which does the same products three times as wide, plus the
  recurrent ones) has a ceiling at this input size;
* ``mingru sequential`` (``--sequential``): the step loop with autograd, the "sequential
  implementation" of the paper's speed claim.

Before timing, every rnnkit engine and the paper's formula are compared with the step
loop in float64 (outputs and every gradient) on a short copy; a mismatch stops the run.
The goals of the issue (10x torch.nn.GRU at every T; time per token flat in T) are
printed met / missed.

Usage::

    python benchmarks/minimal.py                      # T = 1024, 4096, 16384
    python benchmarks/minimal.py --steps 512 --repeats 3 --json /tmp/m.json
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, time_interleaved, write_json

import rnnkit.nn as rnn
from rnnkit.functional.minimal import softplus


def paper_log_space(layer: rnn.MinGRU, x: torch.Tensor) -> torch.Tensor:
    """minGRU's parallel mode in log space as the paper's appendix writes it (zero initial
    state): log z, log(1 - z), log g(h~), then h = exp(A + logcumsumexp(log b - A))."""
    k, u = F.linear(x, layer.weight_ih_l0, layer.bias_ih_l0).chunk(2, dim=-1)
    log_z, log_coeffs = -softplus(-k), -softplus(k)
    log_tilde = torch.where(u >= 0, (F.relu(u) + 0.5).log(), -softplus(-u))
    log_values = log_z + log_tilde
    a_star = log_coeffs.cumsum(0)
    return torch.exp(a_star + torch.logcumsumexp(log_values - a_star, dim=0))


def _minimal(cell: str, size: int, backend: str) -> torch.nn.Module:
    cls = rnn.MinGRU if cell == "mingru" else rnn.MinLSTM
    return cls(size, size, backend=backend)


class PaperLog(torch.nn.Module):
    def __init__(self, layer: rnn.MinGRU) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return paper_log_space(self.layer, x), None


def competitors(size: int, sequential: bool) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    mingru = _minimal("mingru", size, "native")
    out = {"torch.nn.GRU": torch.nn.GRU(size, size), "mingru native": mingru}
    scan = copy.deepcopy(mingru)
    scan.backend = "scan"
    out["mingru scan"] = scan
    out["mingru paper-log"] = PaperLog(copy.deepcopy(mingru))
    if sequential:
        ref = copy.deepcopy(mingru)
        ref.backend = "reference"
        out["mingru sequential"] = ref
    out["minlstm native"] = _minimal("minlstm", size, "native")
    return out


def check(models: dict[str, torch.nn.Module]) -> None:
    """Outputs and gradients of every minGRU column against the step loop, float64."""
    x = torch.rand(64, 3, next(iter(models.values())).input_size, dtype=torch.float64)
    x.requires_grad_()
    ref = copy.deepcopy(models["mingru native"]).double()
    ref.backend = "reference"
    y_ref, _ = ref(x)
    dy = torch.randn_like(y_ref)
    g_ref = torch.autograd.grad(y_ref, [x, *ref.parameters()], dy)
    for name, model in models.items():
        if not name.startswith("mingru"):
            continue
        twin = copy.deepcopy(model).double()
        y, _ = twin(x)
        grads = torch.autograd.grad(y, [x, *twin.parameters()], dy)
        if not torch.allclose(y, y_ref, rtol=0, atol=1e-9) or not all(
                torch.allclose(a, b, rtol=0, atol=1e-8) for a, b in zip(grads, g_ref)):
            raise SystemExit(f"{name}: outputs or gradients differ from the step loop; "
                             "not timing it")
    lstm = copy.deepcopy(models["minlstm native"]).double()
    ref = copy.deepcopy(lstm)
    ref.backend = "reference"
    if not torch.allclose(lstm(x)[0], ref(x)[0], rtol=0, atol=1e-9):
        raise SystemExit("minlstm native: outputs differ from the step loop")


def products_only(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                  dy: torch.Tensor) -> None:
    """minGRU's unavoidable matrix products, with a gradient of its projection's shape."""
    flat = x.reshape(-1, x.shape[-1])
    proj = torch.addmm(b, flat, w.t())
    dproj = torch.cat([dy, dy], dim=-1).reshape(proj.shape)
    dproj.mm(w)
    dproj.t().mm(flat)


def run(args: argparse.Namespace) -> dict[str, object]:
    torch.manual_seed(0)
    models = competitors(args.hidden, args.sequential)
    check(models)
    results = []
    for T in args.steps:
        x = torch.randn(T, args.batch, args.hidden, requires_grad=True)
        dy = torch.randn(T, args.batch, args.hidden)

        def step(model, x=x, dy=dy):
            for p in model.parameters():
                p.grad = None
            x.grad = None
            y, _ = model(x)
            y.backward(dy)

        fns = {name: (lambda m=m: step(m)) for name, m in models.items()}
        layer = models["mingru native"]
        w, b = layer.weight_ih_l0.detach(), layer.bias_ih_l0.detach()
        fns["products only"] = lambda x=x, dy=dy, w=w, b=b: products_only(x.detach(), w, b, dy)
        times = time_interleaved(fns, args.repeats, args.warmup)
        tokens = T * args.batch
        for name, ms in times.items():
            results.append({"T": T, "implementation": name, "ms": ms,
                            "us per token": ms * 1e3 / tokens,
                            "vs torch.nn.GRU": times["torch.nn.GRU"] / ms})
        print(f"T={T}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in times.items()), flush=True)
    return {"benchmark": "minimal", "machine": machine_record(),
            "config": {"batch": args.batch, "hidden": args.hidden, "input": args.hidden,
                       "dtype": "float32", "repeats": args.repeats, "warmup": args.warmup,
                       "measure": "forward + backward into the input and every parameter"},
            "results": results, "goals": goals(results)}


def _at(results: list[dict], T: int, name: str) -> dict:
    return next(r for r in results if r["T"] == T and r["implementation"] == name)


def goals(results: list[dict]) -> list[dict]:
    rows = []
    lengths = sorted({r["T"] for r in results})
    for T in lengths:
        s = _at(results, T, "mingru native")["vs torch.nn.GRU"]
        bound = _at(results, T, "products only")["vs torch.nn.GRU"]
        rows.append({"goal": f"mingru native >= 10x torch.nn.GRU at T={T}",
                     "measured": round(s, 2), "met": s >= 10,
                     "bound": f"the matrix products alone: {bound:.2f}x"})
    first, last = lengths[0], lengths[-1]
    growth = (_at(results, last, "mingru native")["us per token"]
              / _at(results, first, "mingru native")["us per token"])
    rows.append({"goal": f"time per token flat from T={first} to T={last} (growth <= 1.25x)",
                 "measured": round(growth, 2), "met": growth <= 1.25})
    return rows


def table(payload: dict) -> str:
    rows = [[r["T"], r["implementation"], f"{r['ms']:.1f}", f"{r['us per token']:.3f}",
             f"{r['vs torch.nn.GRU']:.2f}x"] for r in payload["results"]]
    out = format_table(["T", "implementation", "ms", "us/token", "vs torch.nn.GRU"], rows)
    out += "\n\n" + "\n".join(f"{'met   ' if g['met'] else 'MISSED'}  {g['goal']}: "
                              f"{g['measured']}" + (f" ({g['bound']})" if "bound" in g else "")
                              for g in payload["goals"])
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")],
                   default=[1024, 4096, 16384], help="sequence lengths (default: 1024,4096,16384)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--sequential", action="store_true",
                   help="also time the step loop with autograd (slow)")
    p.add_argument("--json", type=Path,
                   default=Path(__file__).parent / "results" / "minimal-cpu.json")
    args = p.parse_args(argv)
    payload = run(args)
    print(table(payload))
    write_json(args.json, payload)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
