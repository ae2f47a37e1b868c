"""The LightningModule base every task builds on: optimizer and learning-rate schedule."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class TrainingModule(L.LightningModule):
    """Holds the optimisation settings; tasks add their steps and metrics.

    Args:
        config: the resolved run config (keys ``optimizer``, ``lr``, ``momentum``,
            ``weight_decay``, ``schedule``, ``epochs``, and the task's ``monitor``/``mode``).
    """

    monitor = "val_loss"
    mode = "min"
    # "epoch": the cosine schedule spans the epochs; "step": it spans every optimizer step
    # (for tasks that train for few, long epochs, such as language models).
    schedule_interval = "epoch"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)

    def loss_on(self, batch: Any) -> torch.Tensor:
        """The task's loss on a batch, without logging (used by gradient diagnostics)."""
        raise NotImplementedError(f"{type(self).__name__} does not define loss_on(batch)")

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups; a group may set its own ``lr`` (tasks
        override this, e.g. for a lower learning rate on pretrained layers)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self):
        c = self.config
        params = self.parameter_groups()
        if c["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(params, lr=c["lr"], momentum=c["momentum"],
                                        weight_decay=c["weight_decay"])
        elif c["optimizer"] == "adamw":
            optimizer = torch.optim.AdamW(params, lr=c["lr"], weight_decay=c["weight_decay"])
        else:
            optimizer = torch.optim.Adam(params, lr=c["lr"], weight_decay=c["weight_decay"])
        if c["schedule"] == "cosine":
            span = c["epochs"]
            if self.schedule_interval == "step":
                span = max(1, int(self.trainer.estimated_stepping_batches))
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=span)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": self.schedule_interval}}
        if c["schedule"] == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=self.mode, factor=0.5, patience=max(1, c["patience"] // 2))
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"}}
        return optimizer
