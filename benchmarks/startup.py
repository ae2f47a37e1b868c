"""How long a newcomer waits: the command's help, the library's import, the first epoch.

Each case is a fresh process, timed from start to exit (or, for the training run, to
the first line that reports an epoch); the cases run in turns, and the median of the
repeats is reported beside ``python -c "import torch"``, the floor any torch program
pays, and ``python -c pass``, the interpreter's own start.

Usage::

    python benchmarks/startup.py              # 7 repeats (3 for the training run)
    python benchmarks/startup.py --quick
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, write_json

RNNKIT = [shutil.which("rnnkit")] if shutil.which("rnnkit") else [sys.executable, "-m",
                                                                   "rnnkit.cli"]
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'import rnnkit.nn'": [sys.executable, "-c", "import rnnkit.nn"],
    "rnnkit --help": [*RNNKIT, "--help"],
    "rnnkit train seqclass --help": [*RNNKIT, "train", "seqclass", "--help"],
}
FIRST_EPOCH = "rnnkit train seqclass --data digits: first epoch line"


def run_to_exit(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run_to_first_epoch(folder: Path) -> float:
    """Seconds from the command's start to its first ``epoch 1/...`` line."""
    out = folder / f"run-{time.monotonic_ns()}"
    argv = [*RNNKIT, "train", "seqclass", "--data", "digits", "--epochs", "1", "--no-progress",
            "--out", str(out)]
    start = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as process:
        for line in process.stdout:
            if line.startswith("epoch 1/"):
                elapsed = time.perf_counter() - start
                break
        else:
            raise RuntimeError("the training run printed no epoch line")
        process.wait()
    shutil.rmtree(out, ignore_errors=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 repeats, 1 training run")
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).parent / "results" / "startup-cpu.json")
    args = parser.parse_args()
    repeats, train_repeats = (3, 1) if args.quick else (args.repeats, args.train_repeats)
    samples: dict[str, list[float]] = {name: [] for name in [*CASES, FIRST_EPOCH]}
    with tempfile.TemporaryDirectory() as tmp:
        run_to_first_epoch(Path(tmp))  # warm-up: the native engine's build, the data cache
        for argv in CASES.values():
            run_to_exit(argv)
        for i in range(repeats):
            for name, argv in CASES.items():
                samples[name].append(run_to_exit(argv))
            if i < train_repeats:
                samples[FIRST_EPOCH].append(run_to_first_epoch(Path(tmp)))
    torch_s = statistics.median(samples["python -c 'import torch'"])
    rows, results = [], []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append([name, f"{median:.2f}", f"{min(values):.2f}", f"{median / torch_s:.2f}",
                     len(values)])
        results.append({"case": name, "median_s": round(median, 4), "min_s": round(min(values), 4),
                        "vs_import_torch": round(median / torch_s, 3), "repeats": len(values)})
    print(format_table(["case", "median s", "min s", "x import torch", "runs"], rows))
    write_json(args.output, {"benchmark": "startup", "machine": machine_record(),
                             "results": results})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
