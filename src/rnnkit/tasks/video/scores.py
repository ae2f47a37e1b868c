"""How predicted frames are scored, the same way for the model and every baseline.

* ``ce``: Shi et al. (2015)'s cross-entropy per sequence: binary cross-entropy summed over
  every pixel of every predicted frame, averaged over sequences (nats). With grey-level
  targets it cannot reach 0: its floor is the targets' own entropy.
* ``mse``: squared error summed over a frame's pixels, averaged over frames (the "MSE
  per frame" of the Moving MNIST literature).
* ``ssim``: structural similarity per frame (torchmetrics; Gaussian window of 11 pixels,
  or the largest odd size a smaller frame holds), averaged over frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# copy-the-last-frame's pixel probabilities are clipped to [eps, 1 - eps] (a copied 0 or 1
# that is wrong would cost infinite cross-entropy); eps is chosen on validation
COPY_EPS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2)


def copy_last(inputs: Tensor, horizon: int, eps: float) -> tuple[Tensor, Tensor]:
    """The last frame read, ``horizon`` times: (logits of its pixels clipped to [eps,
    1 - eps], for the cross-entropy; the pixels themselves, for MSE and SSIM)."""
    last = inputs[:, -1:].expand(-1, horizon, *inputs.shape[2:])
    return torch.logit(last.clamp(eps, 1 - eps)), last


def frame_ssim(predicted: Tensor, target: Tensor) -> Tensor:
    """SSIM of each frame, [N], for frames [N, C, H, W] in [0, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    side = min(predicted.shape[-2:])
    window = min(11, side if side % 2 else side - 1)
    return structural_similarity_index_measure(predicted, target, data_range=1.0,
                                               kernel_size=window, reduction="none")


class PredictionScores:
    """Sums over batches of predicted frames; :meth:`compute` gives the means."""

    def __init__(self, ssim: bool = True) -> None:
        self.with_ssim = ssim
        self.sums = torch.zeros(3, dtype=torch.float64)  # ce, squared error, ssim
        self.sequences = 0
        self.frames = 0

    def add(self, logits: Tensor, target: Tensor, pixels: Tensor | None = None) -> None:
        """logits, target [B, K, C, H, W] (target in [0, 1]); ``pixels``: the predicted
        frames for MSE and SSIM where they are not sigmoid(logits)."""
        if not torch.isfinite(logits).all():
            raise ValueError("the predicted frames hold NaN or infinite values")
        predicted = torch.sigmoid(logits) if pixels is None else pixels
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
        squared = (predicted - target).pow(2).sum()
        ssim = (frame_ssim(predicted.flatten(0, 1), target.flatten(0, 1)).sum()
                if self.with_ssim else torch.zeros(()))
        self.sums += torch.stack([ce, squared, ssim]).detach().double().cpu()
        self.sequences += target.shape[0]
        self.frames += target.shape[0] * target.shape[1]

    def compute(self) -> dict[str, Tensor]:
        out = {"ce": self.sums[0] / max(self.sequences, 1),
               "mse": self.sums[1] / max(self.frames, 1)}
        if self.with_ssim:
            out["ssim"] = self.sums[2] / max(self.frames, 1)
        return {k: v.float() for k, v in out.items()}


def split_clip(clips: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the frames read, the frames to predict)."""
    return clips[:, :-horizon], clips[:, -horizon:]
