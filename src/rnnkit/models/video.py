"""Networks for sequences of frames [B, T, C, H, W]: classifiers and next-frame predictors.

Classifiers (logits [B, classes]):

* :class:`FrameRNNClassifier`: a small CNN reads each frame into a feature vector, an
  rnnkit recurrent encoder reads the vectors in order (the articles' CNN+RNN);
* :class:`ConvRNNClassifier`: a strided convolution, then a ConvLSTM or ConvGRU over the
  feature maps, its last state pooled to a grid and classified;
* :class:`FrameAverageClassifier`: the same CNN, its features averaged over the frames:
  no recurrence and no order, the baseline.

Predictors (logits of the next K frames, [B, K, C, H, W]; sigmoid gives pixel values):

* :class:`EncoderForecaster`: Shi et al. (2015)'s ConvLSTM encoder-forecaster. Frames are
  cut into ``patch`` x ``patch`` patches stacked as channels (their 64x64 frames became
  16x16x16), an encoder stack reads the input frames, a forecaster stack starts from the
  encoder's states and runs K steps without input, and a 1x1 convolution of all the
  forecaster's layers' states gives each predicted frame;
* :class:`FCLSTMPredictor`: the fully connected LSTM encoder-predictor (Srivastava et
  al. 2015) the paper compares with: each frame flattened to a vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.models.recurrent import EncoderConfig, build_initialised_encoder, build_recurrent
from rnnkit.nn.convlstm import ConvGRU, ConvLSTM

CONV_LAYERS = {"convlstm": ConvLSTM, "convgru": ConvGRU}
GRID = 4  # feature maps are pooled to GRID x GRID before a linear layer: position survives


def valid_mask(lengths: Tensor | None, batch: int, steps: int, device) -> Tensor:
    """[B, T] booleans, True while t < length."""
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    return torch.arange(steps, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


class FrameCNN(nn.Module):
    """Three strided 3x3 convolutions with ReLU, pooled to a 4x4 grid, then a linear layer:
    frames [N, C, H, W] -> features [N, features]. The grid keeps where things are in the
    frame, which motion is made of."""

    def __init__(self, channels: int, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(GRID), nn.Flatten(), nn.Linear(32 * GRID * GRID, features),
            nn.ReLU())

    def forward(self, frames: Tensor) -> Tensor:
        return self.body(frames)


def per_frame(cnn: nn.Module, x: Tensor) -> Tensor:
    """``cnn`` applied to every frame of x [B, T, C, H, W] -> [B, T, ...]."""
    return cnn(x.flatten(0, 1)).unflatten(0, x.shape[:2])


@dataclass(kw_only=True)
class VideoClassifierConfig(EncoderConfig):
    """Everything needed to rebuild a video classifier."""

    model: str  # cnn-rnn, convlstm, convgru or frame-average
    channels: int  # of the frames
    num_classes: int
    features: int = 128  # per frame (cnn-rnn, frame-average)
    conv_channels: int = 32  # of the ConvLSTM/ConvGRU state
    kernel: int = 3


class FrameRNNClassifier(nn.Module):
    """CNN per frame, then an rnnkit encoder over the frames, classified from its last
    state (both directions' with ``bidirectional``)."""

    def __init__(self, config: VideoClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.cnn = FrameCNN(config.channels, config.features)
        self.encoder = build_initialised_encoder(config, config.features)
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear((config.proj_size or config.hidden) * directions,
                              config.num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _, state = self.encoder(self.dropout(per_frame(self.cnn, x)), lengths=lengths)
        h_n = state[0] if isinstance(state, tuple) else state
        directions = 2 if self.config.bidirectional else 1
        return self.head(self.dropout(torch.cat(list(h_n[-directions:]), dim=-1)))


class ConvRNNClassifier(nn.Module):
    """A stride-4 convolution stem, a ConvLSTM/ConvGRU stack over the feature maps, the
    last layer's final state (both directions') pooled to a grid, then a linear layer."""

    def __init__(self, config: VideoClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(nn.Conv2d(config.channels, 16, 3, stride=2, padding=1),
                                  nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.recurrent = CONV_LAYERS[config.model](
            16, config.conv_channels, config.kernel, num_layers=config.layers,
            batch_first=True, dropout=config.dropout, bidirectional=config.bidirectional,
            backend=config.backend or "fused")
        directions = 2 if config.bidirectional else 1
        self.pool = nn.AdaptiveAvgPool2d(GRID)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.conv_channels * directions * GRID * GRID,
                              config.num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _, state = self.recurrent(per_frame(self.stem, x), lengths=lengths)
        h_n = state[0] if isinstance(state, tuple) else state  # [layers * dirs, B, F, h, w]
        directions = 2 if self.config.bidirectional else 1
        last = torch.cat(list(h_n[-directions:]), dim=1)
        return self.head(self.dropout(self.pool(last).flatten(1)))


class FrameAverageClassifier(nn.Module):
    """The CNN's features averaged over each clip's frames, then a linear layer: what a
    frame-by-frame model sees without the order of the frames."""

    def __init__(self, config: VideoClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.cnn = FrameCNN(config.channels, config.features)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.features, config.num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        features = per_frame(self.cnn, x)  # [B, T, F]
        mask = valid_mask(lengths, x.shape[0], x.shape[1], x.device).unsqueeze(-1)
        mean = (features * mask).sum(1) / mask.sum(1)
        return self.head(self.dropout(mean))


CLASSIFIERS = {"cnn-rnn": FrameRNNClassifier, "convlstm": ConvRNNClassifier,
               "convgru": ConvRNNClassifier, "frame-average": FrameAverageClassifier}


def build_classifier(config: VideoClassifierConfig) -> nn.Module:
    return CLASSIFIERS[config.model](config)


@dataclass(kw_only=True)
class PredictorConfig:
    """Everything needed to rebuild a next-frame predictor."""

    model: str  # convlstm, convgru (encoder-forecaster) or fc-lstm
    channels: int  # of the frames
    height: int
    width: int
    horizon: int  # frames predicted
    layers: int = 2
    conv_channels: int = 32
    kernel: int = 3
    patch: int = 4
    hidden: int = 512  # fc-lstm
    backend: str | None = None
    pixel_mean: float = 0.5  # the output bias starts at its logit: the mean frame's pixels


def _start_at_mean(layer: nn.Module, mean: float) -> None:
    """The output bias at logit(mean): the first prediction is the average pixel, not
    grey (Moving MNIST is mostly black; from grey the first epochs only learn that)."""
    with torch.no_grad():
        layer.bias.fill_(math.log(mean / (1 - mean)) if 0 < mean < 1 else 0.0)


class EncoderForecaster(nn.Module):
    """Shi et al.'s encoder-forecaster: input frames [B, T, C, H, W] -> logits of the next
    ``horizon`` frames [B, K, C, H, W]."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        p = config.patch
        if config.height % p or config.width % p:
            raise ValueError(f"--patch: {p} does not divide the frames' {config.height}x"
                             f"{config.width} pixels")
        depth = config.channels * p * p
        layer = CONV_LAYERS[config.model]
        backend = config.backend or "fused"
        self.encoder = nn.ModuleList()
        self.forecaster = nn.ModuleList()
        for k in range(config.layers):
            self.encoder.append(layer(depth if k == 0 else config.conv_channels,
                                      config.conv_channels, config.kernel, batch_first=True,
                                      backend=backend))
            # the forecaster's first layer has no input (a zero frame), as in the paper
            self.forecaster.append(layer(1 if k == 0 else config.conv_channels,
                                         config.conv_channels, config.kernel, batch_first=True,
                                         backend=backend))
        self.output = nn.Conv2d(config.conv_channels * config.layers, depth, 1)
        _start_at_mean(self.output, config.pixel_mean)

    def forward(self, x: Tensor) -> Tensor:
        p, horizon = self.config.patch, self.config.horizon
        h = F.pixel_unshuffle(x.flatten(0, 1), p).unflatten(0, x.shape[:2])
        states = []
        for layer in self.encoder:
            h, state = layer(h)
            states.append(state)
        batch, _, _, rows, cols = h.shape
        h = h.new_zeros(batch, horizon, 1, rows, cols)
        outputs = []
        for layer, state in zip(self.forecaster, states):
            h, _ = layer(h, state)
            outputs.append(h)
        maps = torch.cat(outputs, dim=2).flatten(0, 1)  # [B K, layers F, rows, cols]
        return F.pixel_shuffle(self.output(maps), p).unflatten(0, (batch, horizon))


class FCLSTMPredictor(nn.Module):
    """The fully connected LSTM encoder-predictor: flattened frames through an LSTM
    encoder; an LSTM predictor starts from its state and runs ``horizon`` steps without
    input; a linear layer gives each frame's pixels."""

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        pixels = config.channels * config.height * config.width
        self.encoder = build_recurrent("lstm", pixels, config.hidden, config.layers,
                                       backend=config.backend)
        self.predictor = build_recurrent("lstm", 1, config.hidden, config.layers,
                                         backend=config.backend)
        self.output = nn.Linear(config.hidden, pixels)
        _start_at_mean(self.output, config.pixel_mean)

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.encoder(x.flatten(2))
        zeros = x.new_zeros(x.shape[0], self.config.horizon, 1)
        out, _ = self.predictor(zeros, state)
        frames = self.output(out)  # [B, K, pixels]
        return frames.unflatten(2, x.shape[2:])


def build_predictor(config: PredictorConfig) -> nn.Module:
    return FCLSTMPredictor(config) if config.model == "fc-lstm" else EncoderForecaster(config)


def sequence_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Shi et al.'s measure per sequence: binary cross-entropy summed over every pixel of
    every predicted frame, [B] (nats)."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
