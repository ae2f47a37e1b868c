"""``rnnkit lab compare``: train several cells under one budget and put them side by side.

For every sequence length and every cell, one run is trained into
``OUT/<cell>-T<length>/`` with the same options (a run folder that already holds
``metrics.json`` is reused, so an interrupted comparison picks up where it stopped).
Then ``OUT/comparison.json`` and ``OUT/comparison.md`` hold the table (final test
metric, the baseline, training steps until the validation metric first crossed the
"solved" line, wall time) and ``OUT/learning_curves.png`` draws every run's validation
curve against the baselines; ``OUT/dh_norms.png`` compares ||dLoss/dh_t|| across cells
when the runs recorded gradient diagnostics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rnnkit.training.plots import logged_epochs, plt
from rnnkit.training.run_folder import write_json
from rnnkit.training.runner import Task, train

log = logging.getLogger("rnnkit")

def compare(task: Task, config: dict[str, Any], lengths: list[int], cells: list[str],
            out: Path) -> list[dict[str, Any]]:
    """Train every (length, cell) pair and write the comparison; returns the table rows."""
    length_key = task.length_option
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for length in lengths:
        for cell in cells:
            run_dir = out / f"{cell}-T{length}"
            run_config = {**config, "cell": cell, length_key: length, "out": str(run_dir)}
            if not (run_dir / "metrics.json").is_file():
                if run_dir.exists() and any(run_dir.iterdir()):
                    raise ValueError(f"{run_dir} holds an unfinished run; finish it with "
                                     f"rnnkit train {task.name} --resume {run_dir}, or delete it")
                log.info(f"== {task.name} T={length}, {cell} ==")
                train(task, run_config)
            rows.append(_row(task, run_dir, cell, length, run_config))
    write_json(out / "comparison.json", {"task": task.name, "solved": task.solved[3],
                                         "rows": rows})
    table = _markdown(task, rows)
    (out / "comparison.md").write_text(table + "\n")
    _plot_curves(task, out, rows)
    _plot_state_gradients(out, rows)
    log.info("\n" + table)
    log.info(f"\nwrote {out / 'comparison.md'}, {out / 'learning_curves.png'}")
    return rows


def _row(task: Task, run_dir: Path, cell: str, length: int, config: dict[str, Any]) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    key, direction, threshold, _ = task.solved
    series = logged_epochs(run_dir).get(key, {})
    steps_per_epoch = metrics["global_step"] / max(1, metrics["epochs"])
    solved_at = None
    for epoch in sorted(series):
        value = series[epoch]
        if (value < threshold) if direction == "below" else (value > threshold):
            solved_at = round((epoch + 1) * steps_per_epoch)
            break
    baseline = task.baselines({**config})["loss"][0]
    return {"cell": cell, "T": length, "test": metrics["test"], "baseline_loss": baseline,
            "steps_to_solve": solved_at, "steps": metrics["global_step"],
            "wall_time_s": metrics["wall_time_s"], "run": run_dir.name,
            "curve": {str(k): v for k, v in sorted(logged_epochs(run_dir).get("val_loss", {}).items())},
            "steps_per_epoch": steps_per_epoch}


def _markdown(task: Task, rows: list[dict[str, Any]]) -> str:
    extra, column = task.compare_metric or (None, None)  # a metric the task reports beside
    head = ["T", "cell", "test loss", "baseline"] + ([column] if extra else []) + [
        f"steps to solve ({task.solved[3]})", "steps trained", "wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["T"]), r["cell"], f"{r['test']['loss']:.4f}", f"{r['baseline_loss']:.4f}"]
        if extra:
            cells.append(f"{r['test'][extra]:.1%}")
        cells += [str(r["steps_to_solve"]) if r["steps_to_solve"] else "not solved",
                  str(r["steps"]), f"{r['wall_time_s']:.0f} s"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_curves(task: Task, out: Path, rows: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=120)
    for r in rows:
        epochs = sorted(int(e) for e in r["curve"])
        steps = [(e + 1) * r["steps_per_epoch"] for e in epochs]
        ax.plot(steps, [r["curve"][str(e)] for e in epochs], "-o", markersize=3,
                label=f"{r['cell']}, T={r['T']}")
    for baseline in sorted({r["baseline_loss"] for r in rows}):
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"baseline {baseline:.3f}", (0.01, baseline), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(0, 3), fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation loss ({task.loss_name})")
    ax.set_title(f"{task.name}: cells under the same budget")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png")
    plt.close(fig)


def _plot_state_gradients(out: Path, rows: list[dict[str, Any]]) -> None:
    found = []
    for r in rows:
        path = out / r["run"] / "diagnostics.json"
        if path.is_file():
            found.append((r, json.loads(path.read_text())["state_grad_norms"]))
    if not found:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120, sharey=True)
    for r, probes in found:
        for ax, probe in zip(axes, (probes[0], probes[-1])):
            norms = probe["norms"]
            ax.semilogy(range(1, len(norms) + 1), norms, label=f"{r['cell']}, T={r['T']}")
    axes[0].set_title("at initialisation (training step 0)")
    axes[1].set_title("at the end of training")
    for ax in axes:
        ax.set_xlabel("time step t")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("||dLoss/dh_t|| (mean over a fixed batch)")
    axes[1].legend(fontsize=8)
    fig.suptitle("gradient reaching each time step")
    fig.tight_layout()
    fig.savefig(out / "dh_norms.png")
    plt.close(fig)
