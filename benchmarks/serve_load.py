"""Load on ``rnnkit serve``: requests per second and latency percentiles, with and
without batching of concurrent requests, measured side by side in one run.

    python benchmarks/serve_load.py [--run RUN_DIR] [--requests 600] [--clients 16]

Without ``--run`` it first trains a small text classifier on a generated CSV (a BiGRU
with 64 units, 3 epochs). Each setting starts ``rnnkit serve`` as its own process on
localhost, sends a warm-up of 50 requests, then ``--requests`` single-sentence
``POST /predict`` requests from ``--clients`` concurrent clients (a bounded load: every
request waits for its answer, none is dropped), and checks every answer against the
model's own prediction. Writes ``benchmarks/results/serve-load.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, write_json

WORDS = {"pos": ["wonderful", "brilliant", "funny", "moving"],
         "neg": ["dull", "awful", "boring", "tedious"]}
FILLER = ["the", "film", "is", "a", "plot", "with", "its", "cast", "and", "story"]
SETTINGS = {"batched (max-batch 64, wait 5 ms)": ["--max-batch", "64", "--max-wait-ms", "5"],
            "one request per pass (max-batch 1)": ["--max-batch", "1", "--max-wait-ms", "0"]}


def sentence(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(["pos", "neg"])
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 20))]
    words.insert(rng.randint(0, len(words)), rng.choice(WORDS[label]))
    return " ".join(words), label


def train_run(folder: Path) -> Path:
    rng = random.Random(0)
    csv = folder / "sentences.csv"
    csv.write_text("text,label\n" + "\n".join(",".join(sentence(rng)) for _ in range(2000)) + "\n")
    run = folder / "run"
    subprocess.run([sys.executable, "-m", "rnnkit.cli", "train", "textclass", "--data",
                    f"csv:{csv}", "--text-col", "text", "--label-col", "label", "--hidden", "64",
                    "--epochs", "3", "--min-freq", "1", "--vectors", "none", "--pooling", "max",
                    "--no-progress", "--out", str(run)],
                   check=True, stdout=subprocess.DEVNULL)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, text: str) -> tuple[float, str]:
    body = json.dumps({"texts": [text]}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        label = json.loads(response.read())["predictions"][0]["label"]
    return time.perf_counter() - start, label


def load(run: Path, extra: list[str], texts: list[str], expected: list[str],
         clients: int) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "rnnkit.cli", "serve", str(run), "--port",
                               str(port), *extra], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda t: post(f"{url}/predict", t), texts[:50]))  # warm-up
            start = time.perf_counter()
            answers = list(pool.map(lambda t: post(f"{url}/predict", t), texts))
            wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    wrong = sum(label != e for (_, label), e in zip(answers, expected, strict=True))
    if wrong:
        raise SystemExit(f"{wrong} answers differ from the model's own predictions")
    latencies = sorted(1000 * t for t, _ in answers)
    return {"requests": len(texts), "clients": clients, "wall_s": round(wall, 3),
            "requests_per_s": round(len(texts) / wall, 1),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
            "max_ms": round(latencies[-1], 2), "server_exit_code": server.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a textclass run folder (default: train one)")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train_run(Path(tmp))
        from rnnkit.tasks import TASKS
        from rnnkit.training import runner

        task = TASKS["textclass"]
        module, data, _ = runner.load_trained(task, run)
        rng = random.Random(1)
        texts = [sentence(rng)[0] for _ in range(args.requests)]
        expected = [task.predict(module, data, t)[0]["label"] for t in texts]
        results = {name: load(run, extra, texts, expected, args.clients)
                   for name, extra in SETTINGS.items()}
    rows = [[name, r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["max_ms"]]
            for name, r in results.items()]
    print(format_table(["server", "requests/s", "p50 ms", "p99 ms", "max ms"], rows))
    out = Path(__file__).parent / "results" / "serve-load.json"
    write_json(out, {"machine": machine_record(), "run": "BiGRU 64 text classifier"
                     if args.run is None else str(args.run), "results": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
