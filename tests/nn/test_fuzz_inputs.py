"""The layers under random bad (and odd) inputs, against torch.nn as the reference.

A fixed-seed generator builds a layer (kind, sizes, layers, directions, batch_first,
bias, projection), copies its weights into torch.nn's twin, and calls both on an input
mutated from a valid one: wrong rank or width, other dtypes, NaN and infinities, empty
batches or sequences, non-contiguous views, initial states of the wrong shape, kind or
dtype. Wherever torch.nn raises, rnnkit must raise a Python exception (never crash);
wherever torch.nn answers, rnnkit must give the same numbers, NaNs in the same places.
"""

from __future__ import annotations

import random

import pytest
import torch

import rnnkit

CASES = 300
KINDS = ("RNN", "LSTM", "GRU")


def _layer(rng: random.Random):
    kind = rng.choice(KINDS)
    kwargs = {"input_size": rng.randint(1, 4), "hidden_size": rng.randint(1, 4),
              "num_layers": rng.randint(1, 2), "bidirectional": rng.random() < 0.4,
              "batch_first": rng.random() < 0.5, "bias": rng.random() < 0.8}
    if kind == "RNN" and rng.random() < 0.3:
        kwargs["nonlinearity"] = "relu"
    if kind == "LSTM" and rng.random() < 0.25:
        kwargs["proj_size"] = rng.randint(1, kwargs["hidden_size"] - 1) if kwargs["hidden_size"] > 1 else 0
    ref = getattr(torch.nn, kind)(**kwargs).double()
    ours = getattr(rnnkit.nn, kind)(**kwargs).double()
    ours.load_state_dict(ref.state_dict())
    return kind, kwargs, ref, ours


def _valid(rng: random.Random, kind: str, kw: dict, batched: bool):
    B, T = rng.randint(1, 3), rng.randint(1, 4)
    shape = ((B, T) if kw["batch_first"] else (T, B)) if batched else (T,)
    x = torch.randn(*shape, kw["input_size"], dtype=torch.float64)
    d = 2 if kw["bidirectional"] else 1
    out = kw.get("proj_size") or kw["hidden_size"]
    hshape = (kw["num_layers"] * d, B, out) if batched else (kw["num_layers"] * d, out)
    h = torch.randn(hshape, dtype=torch.float64)
    hx = None
    if rng.random() < 0.5:
        cshape = (*hshape[:-1], kw["hidden_size"])
        hx = (h, torch.randn(cshape, dtype=torch.float64)) if kind == "LSTM" else h
    return x, hx


def _mutate(rng: random.Random, kind: str, x: torch.Tensor, hx):
    """One random change (or none) to a valid input."""
    what = rng.choice(["none", "width", "rank1", "rank4", "float32", "int64", "bool", "half",
                       "complex", "nan", "inf", "huge", "empty_batch", "empty_steps",
                       "noncontig", "h_shape", "h_dtype", "h_kind", "h_nan", "grad"])
    if what == "width":
        x = torch.randn(*x.shape[:-1], x.shape[-1] + rng.choice([-1, 1, 3]), dtype=x.dtype) \
            if x.shape[-1] > 1 else torch.randn(*x.shape[:-1], 2, dtype=x.dtype)
    elif what == "rank1":
        x = x.reshape(-1)
    elif what == "rank4":
        x = x.unsqueeze(0)
    elif what in ("float32", "int64", "bool", "half", "complex"):
        dtype = {"float32": torch.float32, "int64": torch.int64, "bool": torch.bool,
                 "half": torch.float16, "complex": torch.complex64}[what]
        x = x.to(dtype)
    elif what == "nan":
        x = x.clone()
        x.view(-1)[rng.randrange(x.numel())] = float("nan")
    elif what == "inf":
        x = x.clone()
        x.view(-1)[rng.randrange(x.numel())] = rng.choice([float("inf"), -float("inf")])
    elif what == "huge":
        x = x * 1e300
    elif what == "empty_batch" and x.dim() == 3:
        x = x[:, :0] if x.shape[1] and rng.random() < 0.5 else x[:0]
        hx = None
    elif what == "empty_steps" and x.dim() == 3:
        x = x[:0] if rng.random() < 0.5 else x[:, :0]
        hx = None
    elif what == "noncontig":
        x = torch.randn(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)[..., ::2]
    elif what.startswith("h_"):
        h = hx[0] if isinstance(hx, tuple) else hx
        if h is None:
            h = torch.randn(1, 1, 1, dtype=torch.float64)
        if what == "h_shape":
            h = torch.randn(*h.shape[:-1], h.shape[-1] + 1, dtype=h.dtype)
        elif what == "h_dtype":
            h = h.float()
        elif what == "h_nan":
            h = h.clone()
            h.view(-1)[0] = float("nan")
        hx = (h, hx[1]) if isinstance(hx, tuple) and what != "h_kind" else (
            (h,) if kind == "LSTM" and what == "h_kind" else (h, h) if what == "h_kind" else h)
    elif what == "grad":
        x = x.clone().requires_grad_(True)
    return what, x, hx


def _call(layer, x, hx):
    try:
        out, state = layer(x, hx)
    except Exception as exc:  # noqa: BLE001 - the outcome being compared
        return exc
    return [out, *(state if isinstance(state, tuple) else (state,))]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.allclose(
        a.detach(), b.detach(), rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("block", range(3))
def test_random_inputs_raise_where_torch_raises_and_match_where_it_answers(block):
    rng = random.Random(f"layer-fuzz-{block}")
    failures = []
    for case in range(CASES // 3):
        kind, kw, ref, ours = _layer(rng)
        x, hx = _valid(rng, kind, kw, batched=rng.random() < 0.8)
        what, x, hx = _mutate(rng, kind, x, hx)
        expected, got = _call(ref, x, hx), _call(ours, x, hx)
        where = f"case {block}/{case}: {kind} {kw} {what} x{tuple(x.shape)} {x.dtype}"
        if isinstance(expected, Exception):
            if not isinstance(got, Exception):
                failures.append(f"{where}: torch.nn raised {type(expected).__name__}: "
                                f"{expected}; rnnkit answered")
        elif isinstance(got, Exception):
            failures.append(f"{where}: torch.nn answered; rnnkit raised "
                            f"{type(got).__name__}: {got}")
        elif not all(_same(a, b) for a, b in zip(expected, got, strict=True)):
            failures.append(f"{where}: outputs differ")
    assert not failures, "\n".join(failures[:20])
