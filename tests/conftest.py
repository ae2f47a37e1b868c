"""Shared test set-up.

Inputs are fresh random numbers on every run: the seed is drawn per session and
printed in pytest's header, so a failure can be reproduced with
``RNNKIT_TEST_SEED=<seed> pytest ...``. Helpers shared by test modules live in
``tests/helpers.py``.
"""

from __future__ import annotations

import os
import random
import zlib

import pytest
import torch

SEED = int(os.environ.get("RNNKIT_TEST_SEED", random.SystemRandom().randrange(2**31)))


def pytest_report_header(config):
    return f"rnnkit test seed: {SEED} (set RNNKIT_TEST_SEED to reproduce)"


@pytest.fixture(autouse=True)
def _offline(request, monkeypatch):
    # The default suite never fetches: a source missing from the cache is an error (the
    # slow tests, which run the README's commands on real data, may fetch).
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("RNNKIT_OFFLINE", "1")
    yield


@pytest.fixture(autouse=True)
def _seed(request):
    # Different but reproducible numbers for every test (crc32, not hash(): str hashes
    # change from one process to the next).
    torch.manual_seed(SEED + zlib.crc32(request.node.nodeid.encode()) % 100_003)
    yield
