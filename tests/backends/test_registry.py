"""Backend selection: explicit name, RNNKIT_BACKEND, automatic, and falling back."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.backends import base as registry
from rnnkit.backends import native, select_backend

CPU, F32 = torch.device("cpu"), torch.float32


def test_builtin_backends_and_automatic_choice():
    assert rnnkit.available_backends()[:4] == ["triton", "native", "fused", "reference"]
    expected = "native" if native.available() else "fused"
    assert select_backend(None, "lstm", CPU, F32).name == expected
    assert select_backend(None, "gru", CPU, torch.float64).name == expected
    # Every built-in cell has a native loop, masks included.
    for cell in ("rnn", "rnn-relu", "carry-lstm", "ln-lstm", "ln-gru"):
        assert select_backend(None, cell, CPU, F32).name == expected
        assert select_backend(None, cell, CPU, F32, masked=True).name == expected
    # What the native loops do not cover goes to the fused engine, without a warning.
    assert select_backend(None, "lstm", CPU, torch.bfloat16).name == "fused"


def test_explicit_name_wins_over_environment(monkeypatch):
    monkeypatch.setenv("RNNKIT_BACKEND", "fused")
    assert select_backend("reference", "gru", CPU, F32).name == "reference"


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("RNNKIT_BACKEND", "reference")
    assert select_backend(None, "gru", CPU, F32).name == "reference"
    monkeypatch.setenv("RNNKIT_BACKEND", "nope")
    with pytest.raises(ValueError, match=r"RNNKIT_BACKEND: expected one of \[.*'fused'.*\], got 'nope'"):
        select_backend(None, "gru", CPU, F32)


def test_environment_variable_reaches_layers(monkeypatch):
    calls = []
    real = registry._REGISTRY["reference"]

    class Spy:
        name = "reference"

        def unsupported_reason(self, *args):
            return real.unsupported_reason(*args)

        def run(self, *args):
            calls.append(args[0])
            return real.run(*args)

    monkeypatch.setitem(registry._REGISTRY, "reference", Spy())
    monkeypatch.setenv("RNNKIT_BACKEND", "reference")
    rnnkit.nn.GRU(2, 3)(torch.randn(4, 1, 2))
    assert calls == ["gru"]


def test_unsupported_case_falls_back_with_a_warning(monkeypatch):
    class Picky:
        name = "picky"

        def unsupported_reason(self, cell, device, dtype):
            return "float16 only" if dtype != torch.float16 else None

        def run(self, *args):  # pragma: no cover - never chosen in this test
            raise AssertionError("must not run")

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PREFERENCE", list(registry._PREFERENCE))
    monkeypatch.setattr(registry, "_PRIORITY", dict(registry._PRIORITY))
    registry.register_backend(Picky(), priority=100)
    # Automatic selection skips it; naming it warns and falls back to the next in line.
    following = "native" if native.available() else "fused"
    assert select_backend(None, "ln-gru", CPU, F32).name == following
    with pytest.warns(RuntimeWarning, match=rf"backend 'picky' cannot run this case \(float16 only\); using '{following}'"):
        assert select_backend("picky", "ln-gru", CPU, F32).name == following


def test_unknown_explicit_name():
    with pytest.raises(ValueError, match=r"backend=: expected one of"):
        select_backend("cudnn", "lstm", CPU, F32)


def test_one_rule_with_explicit_priorities_and_the_masks_case(monkeypatch):
    """Priorities order the automatic choice, whatever the order of registration; a run
    with recurrent-dropout or zoneout masks goes past an engine that does not run them
    (``runs_masks = False``), and naming that engine says so once."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PREFERENCE", list(registry._PREFERENCE))
    monkeypatch.setattr(registry, "_PRIORITY", dict(registry._PRIORITY))
    monkeypatch.setattr(registry, "_WARNED", set())
    assert registry.available_backends() == ["triton", "native", "fused", "reference"]

    class Middle:
        name = "middle"

        def unsupported_reason(self, cell, device, dtype):
            return None

    registry.register_backend(Middle(), priority=25)
    assert registry.available_backends() == ["triton", "native", "middle", "fused", "reference"]
    registry.register_backend(Middle(), priority=5)  # re-registering moves it
    assert registry.available_backends() == ["triton", "native", "fused", "reference", "middle"]
    native_ok = registry.get_backend("native").unsupported_reason("lstm", CPU, F32) is None
    following = "native" if native_ok else "fused"
    assert select_backend(None, "lstm", CPU, F32).name == following
    assert select_backend(None, "lstm", CPU, F32, masked=True).name == following

    class Maskless:  # an engine that declares it cannot run masks
        name = "maskless"
        runs_masks = False

        def unsupported_reason(self, cell, device, dtype):
            return None

    registry.register_backend(Maskless(), priority=50)
    assert select_backend(None, "lstm", CPU, F32).name == "maskless"
    assert select_backend(None, "lstm", CPU, F32, masked=True).name == following
    with pytest.warns(RuntimeWarning, match=f"recurrent dropout and zoneout.*using '{following}'"):
        assert select_backend("maskless", "lstm", CPU, F32, masked=True).name == following


def test_the_command_line_offers_the_registered_engines():
    """--backend offers the registry's engines, then the minimal cells' own."""
    from rnnkit.backends import available_backends
    from rnnkit.backends.minimal import MIN_ENGINES
    from rnnkit.choices import BACKEND_CHOICES

    engines = available_backends()
    assert list(BACKEND_CHOICES) == engines + [e for e in MIN_ENGINES if e not in engines]
