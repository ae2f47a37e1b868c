"""Build ``engine.cpp`` (and ``minimal.cpp``) once per machine and load it into ``torch.ops.rnnkit``.

The library is compiled on first use with the compiler torch's extension builder finds
(``$CXX``, else ``c++``) and ninja, into ``$RNNKIT_CACHE/native/<key>/`` (else
``~/.cache/rnnkit/native/<key>/``), where the key hashes the source, the flags, the torch
and Python versions: a later process loads the built library in milliseconds, and a new
torch or a changed source builds afresh. Concurrent first builds are serialised by torch's
lock file in that folder.

Where it cannot build (no compiler, no ninja, an unusual torch build), :func:`load` returns
the reason and warns once in one line; rnnkit then runs its ``fused`` engine, which gives
the same results, slower. ``RNNKIT_NATIVE=0`` switches the engine off without a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

ENV_VAR = "RNNKIT_NATIVE"
SOURCES = [Path(__file__).with_name(name) for name in ("engine.cpp", "minimal.cpp")]
HEADERS = [Path(__file__).with_name("denormals.h")]  # part of the build key, not compiled alone
NAME = "rnnkit_native"
# -ffast-math lets gcc call glibc's vector exp and tanh (libmvec) in the gate loops; the
# results stay within a few float32 ulps of torch's (the parity tests hold them to it).
# The code makes no finiteness tests: the sigmoid is written so that exp never overflows.
# -mrecip=!vec-div: under -ffast-math gcc turns vectorised float division into a reciprocal
# estimate and one Newton step, which makes 1 / (1 + tiny) read 0.99999994: a saturated
# gate's derivative s(1 - s) then came out 6e-8 instead of 0, and W_ih's gradient on
# inputs of size 1e4 was off by 1e-2 of its size (torch.nn: 1e-40). Real division keeps it
# at torch.nn's rounding. gcc picks 128-bit vectors for the AMD cores these machines report
# (znver1); 256-bit ones halve the calls.
# -fopenmp: at::parallel_for is inline OpenMP code, serial unless compiled with it; the
# library then shares the libgomp torch has loaded (same soname), so one thread pool.
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-mrecip=!vec-div", "-mprefer-vector-width=256", "-fopenmp"]
LDFLAGS = ["-lmvec", "-fopenmp"]
# Extra compiler and linker flags, e.g. "-fsanitize=address -fno-omit-frame-pointer" for a
# sanitizer run of the tests (docs/architecture.md says how); part of the build folder's key.
EXTRA_ENV = "RNNKIT_NATIVE_EXTRA_FLAGS"


def _flags() -> tuple[list[str], list[str]]:
    extra = os.environ.get(EXTRA_ENV, "").split()
    return CFLAGS + extra, LDFLAGS + extra

logger = logging.getLogger(__name__)
_STATE: dict[str, str | None] = {}


def build_dir() -> Path:
    """The folder this source, these flags and this torch build into."""
    if os.environ.get("RNNKIT_CACHE"):
        root = Path(os.environ["RNNKIT_CACHE"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnnkit"
    key = hashlib.sha256()
    cflags, ldflags = _flags()
    for part in (*(source.read_bytes() for source in SOURCES + HEADERS), " ".join(cflags + ldflags).encode(),
                 torch.__version__.encode(), sys.version.encode(), platform.machine().encode(),
                 _cpu_flags().encode()):
        key.update(part)
    return root / "native" / key.hexdigest()[:16]


def _cpu_flags() -> str:
    """The CPU's feature flags: the library is built with -march=native, so a cache folder
    shared with a machine of another CPU must not hand it a library its CPU cannot run."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def load() -> str | None:
    """Load the native ops, building them first if needed.

    Returns:
        None when ``torch.ops.rnnkit`` is ready, else why not (also warned once).
    """
    if "reason" not in _STATE:
        _STATE["reason"] = _load()
    return _STATE["reason"]


def _load() -> str | None:
    if os.environ.get(ENV_VAR, "1") == "0":
        return f"switched off by {ENV_VAR}=0"
    if platform.system() != "Linux":
        return _fail(f"built on Linux only, this is {platform.system()}")
    folder = build_dir()
    library = folder / f"{NAME}.so"
    try:
        if library.exists():
            torch.ops.load_library(str(library))
        else:
            _compile(folder)
    except Exception as err:  # noqa: BLE001 (any failure means: use the fused engine)
        lines = str(err).strip().splitlines()
        errors = [line.strip() for line in lines if "error" in line.lower()]
        return _fail((errors or lines or [type(err).__name__])[0][:200])
    return None


def _compile(folder: Path) -> None:
    from torch.utils.cpp_extension import load as load_extension

    folder.mkdir(parents=True, exist_ok=True)
    logger.warning("rnnkit: building the native CPU engine, once for this machine and torch "
                   "(about 30 s), in %s", folder)
    cflags, ldflags = _flags()
    load_extension(NAME, [str(source) for source in SOURCES], extra_cflags=cflags, extra_ldflags=ldflags,
                   build_directory=str(folder), is_python_module=False, verbose=False)


def _fail(reason: str) -> str:
    warnings.warn(f"rnnkit: the native CPU engine is unavailable ({reason}); using the slower "
                  f"'fused' engine. Install g++ and ninja to get it, or set {ENV_VAR}=0 to "
                  "silence this.", RuntimeWarning, stacklevel=4)
    return reason
