"""Gradient diagnostics any task can switch on (``--grad-diagnostics N``).

Every N training steps, on a fixed probe batch (the first validation batch, at most
32 sequences), the loss is backpropagated and the norm of the total gradient reaching
each time step's hidden state, ||dLoss/dh_t||, is recorded for the bottom recurrent
layer (averaged over the probe). The numbers come from the engines' own
hand-derived BPTT, fused or native (:func:`rnnkit.backends.record_state_gradients`), so a probe costs
one extra forward and backward on a small batch. Every step, the global gradient norm
is recorded before and after clipping.

Outputs in the run folder: ``diagnostics.json`` and the plots ``grad_heatmap.png``
(time step against training step), ``grad_over_time.png`` (curves at a few points of
training) and ``grad_norm.png`` (global norm before and after clipping).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from rnnkit.backends import record_state_gradients
from rnnkit.training.plots import finish_plot, plt
from rnnkit.training.run_folder import write_json

PROBE_SIZE = 32


def global_grad_norm(module: torch.nn.Module) -> float:
    """L2 norm of all parameter gradients taken together."""
    grads = [p.grad.detach().flatten() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.cat(grads))) if grads else 0.0


def state_gradient_norms(module: L.LightningModule, batch: Any) -> np.ndarray:
    """||dLoss/dh_t|| per time step of the bottom recurrent layer, averaged over the batch.

    Args:
        module: a TrainingModule whose ``loss_on(batch)`` gives the task's loss and whose
            recurrent layers run on the fused or native engine.
        batch: a batch as the module's steps receive it.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    was_training = module.training
    module.eval()  # no dropout in the probe
    try:
        with torch.enable_grad(), record_state_gradients() as recorded:
            loss = module.loss_on(batch)
            torch.autograd.grad(loss, params, allow_unused=True)
    finally:
        module.train(was_training)
    if not recorded:
        raise RuntimeError("no fused recurrent layer ran in the probe; gradient diagnostics need "
                           "rnnkit layers on the fused backend")
    return recorded[-1].mean(dim=1).cpu().numpy()  # the backward visits the bottom layer last


class GradientDiagnostics(Callback):
    """Record and plot ||dLoss/dh_t|| over training, and the gradient norm around clipping."""

    def __init__(self, every: int, run_dir: Path, clip: float | None = None) -> None:
        self.every, self.run_dir, self.clip = every, Path(run_dir), clip
        self.probe: Any = None
        self.path = self.run_dir / "diagnostics.json"
        previous = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.state_norms: list[dict[str, Any]] = previous.get("state_grad_norms", [])
        self.global_norms: list[dict[str, float]] = previous.get("global_grad_norm", [])
        self._before: float | None = None

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.probe is None and batch_idx == 0:
            self.probe = [t[:PROBE_SIZE].detach().clone() if torch.is_tensor(t) else t for t in batch]

    def on_train_start(self, trainer, pl_module) -> None:
        if self.probe is None:  # no sanity check ran: take the first validation batch now
            batch = next(iter(trainer.datamodule.val_dataloader()))
            batch = trainer.datamodule.on_after_batch_transfer(batch, 0)
            self.probe = [t[:PROBE_SIZE] for t in batch]
        if trainer.global_step == 0:
            self._probe(trainer, pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._before = global_grad_norm(pl_module)  # Lightning clips after this hook

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._before is not None:
            after = global_grad_norm(pl_module)
            self.global_norms.append({"step": trainer.global_step, "before_clip": self._before,
                                      "after_clip": after})
            pl_module.log_dict({"grad_norm_before_clip": self._before, "grad_norm_after_clip": after},
                               on_step=True, on_epoch=False)
            self._before = None
        if trainer.global_step % self.every == 0:
            self._probe(trainer, pl_module)

    def _probe(self, trainer, pl_module) -> None:
        probe = [t.to(pl_module.device) if torch.is_tensor(t) else t for t in self.probe]
        norms = state_gradient_norms(pl_module, probe)
        self.state_norms.append({"step": trainer.global_step, "norms": norms.tolist()})

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        write_json(self.path, {"probe_size": PROBE_SIZE, "every": self.every,
                               "layer": "bottom recurrent layer (first direction)",
                               "state_grad_norms": self.state_norms,
                               "global_grad_norm": self.global_norms})
        plot_diagnostics(self.run_dir, self.state_norms, self.global_norms, self.clip)


def plot_diagnostics(run_dir: Path, state_norms: list[dict[str, Any]],
                     global_norms: list[dict[str, float]], clip: float | None) -> list[Path]:
    """The three diagnostic plots (see the module docstring)."""
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if state_norms:
        steps = [r["step"] for r in state_norms]
        grid = np.log10(np.maximum(np.array([r["norms"] for r in state_norms]), 1e-30))
        fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
        im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis",
                       extent=(0.5, grid.shape[1] + 0.5, steps[0], steps[-1] if len(steps) > 1 else 1))
        ax.set_xlabel("time step t")
        ax.set_ylabel("training step")
        ax.set_title("log10 ||dLoss/dh_t|| over training")
        fig.colorbar(im, ax=ax, label="log10 ||dLoss/dh_t||")
        fig.tight_layout()
        paths.append(out_dir / "grad_heatmap.png")
        fig.savefig(paths[-1])
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        picks = sorted({0, len(state_norms) // 2, len(state_norms) - 1})
        for i in picks:
            norms = state_norms[i]["norms"]
            ax.semilogy(range(1, len(norms) + 1), norms, label=f"training step {state_norms[i]['step']}")
        paths.append(finish_plot(fig, ax, out_dir / "grad_over_time.png", "time step t",
                             "||dLoss/dh_t||", "gradient reaching each time step"))
    if global_norms:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        steps = [r["step"] for r in global_norms]
        ax.semilogy(steps, [r["before_clip"] for r in global_norms], lw=0.8, label="before clipping")
        ax.semilogy(steps, [r["after_clip"] for r in global_norms], lw=0.8, label="after clipping")
        if clip:
            ax.axhline(clip, color="grey", linestyle="--", linewidth=1, label=f"clip threshold {clip}")
        paths.append(finish_plot(fig, ax, out_dir / "grad_norm.png", "training step",
                             "global gradient norm", "gradient norm before and after clipping"))
    return paths
