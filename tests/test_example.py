"""The README's first command trains a real model: run it briefly and check it learned."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "train_digits.py"


def test_digits_example_learns():
    result = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "6", "--seed", "1"],
                            capture_output=True, text=True, timeout=300, check=True)
    match = re.search(r"test accuracy ([\d.]+)%", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) > 70.0  # chance is 10%; 6 epochs reach ~90%
