"""The options of ``rnnkit train video`` completed for a run: each mode's defaults filled
in, and every option the mode would not use refused in one line (never ignored).
Completing a completed config changes nothing: every build (resume, evaluate, predict)
completes the saved config again."""

from __future__ import annotations

from typing import Any

from rnnkit.tasks import catalog

CONV_MODELS = ("convlstm", "convgru")
MOVING_ONLY = ("target", "clips", "eval_clips", "frame", "digits", "length", "speed",
               "digit_source")


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _default(key: str) -> Any:
    from rnnkit.training.options import COMMON_OPTIONS

    spec = catalog.VideoOptions
    found = {o.key: o.default for o in [*spec.options, *COMMON_OPTIONS]}
    return spec.defaults.get(key, found.get(key))


def completed(config: dict[str, Any]) -> dict[str, Any]:
    """The mode's defaults filled in; an option the mode would not use is refused (one
    line naming it), never ignored."""
    config = dict(config)
    predict = config["predict_frames"] > 0
    moving = config["data"] == "moving-mnist"
    if not moving and not str(config["data"]).startswith("frames:"):
        raise ValueError(f"--data: expected moving-mnist or frames:DIR, got {config['data']!r}")

    def refuse(key: str, why: str) -> None:
        if config.get(key) != _default(key):
            raise ValueError(f"{_option(key)}: {why}; leave it out")

    if not moving:
        for key in MOVING_ONLY:
            refuse(key, "it shapes generated Moving MNIST clips, not a folder of frames")
    if moving:
        refuse("labels", "Moving MNIST's labels come from --target")
    if config["model"] is None:
        config["model"] = "convlstm" if predict else "cnn-rnn"
    model = config["model"]
    conv = model in CONV_MODELS
    if predict:
        if not conv:
            raise ValueError("--model: cnn-rnn classifies; predicting frames takes convlstm "
                             "or convgru (the encoder-forecaster)")
        for key in ("target", "labels"):
            refuse(key, "predicting frames needs no classes")
        refuse("bidirectional", "a forecaster predicts the future from the past only")
        refuse("dropout", "the encoder-forecaster has no dropout")
    else:
        refuse("patch", "it cuts frames for the frame predictor (--predict-frames)")
        if not moving and not config.get("labels"):
            raise ValueError(f"--labels: classifying {config['data']} needs a CSV naming each "
                             "clip's class (or --predict-frames K to predict frames)")
    if conv:
        why = f"the {model} model's recurrence is its {model}; --cell is cnn-rnn's"
        refuse("cell", why)
        for key in ("zoneout", "recurrent_dropout", "proj_size", "init", "forget_bias", "chrono"):
            refuse(key, f"the {model} model does not use it (cnn-rnn does)")
        if predict:
            refuse("features", "it sizes the CNN of a classifier, and predicting frames has none")
            if not config["baselines"]:
                refuse("hidden", "with --predict-frames it sizes the FC-LSTM baseline, and "
                                 "--no-baselines trains none")
        else:
            refuse("hidden", f"the {model} classifier's width is --channels")
            if not config["baselines"]:
                refuse("features", f"with --model {model} it sizes the frame-average "
                                   "baseline's CNN, and --no-baselines trains none")
        if config.get("backend") not in (None, "fused", "reference"):
            raise ValueError(f"--backend: the {model} layers run on fused (the hand-derived "
                             f"BPTT) or reference, got {config['backend']!r}")
    else:
        for key in ("channels", "kernel"):
            refuse(key, "the cnn-rnn model has no convolutional recurrence (--model convlstm "
                        "has)")
    if moving:
        if config["target"] is None and not predict:
            config["target"] = "direction"
        if config["digits"] is None:
            config["digits"] = 2 if predict else 1
        if not predict and config["digits"] != 1:
            raise ValueError(f"--digits: classifying by --target {config['target']} needs one "
                             f"digit per clip, got {config['digits']}")
        if config["target"] == "direction" and config["speed"] == 0:
            raise ValueError("--speed: the direction target needs digits that move, got 0")
        if predict and config["predict_frames"] >= config["length"]:
            raise ValueError(f"--predict-frames: {config['predict_frames']} leaves no input "
                             f"frame of --length {config['length']}")
    if conv:
        config["channels"] = config["channels"] or 32
        config["kernel"] = config["kernel"] or 3
    if predict:
        config["patch"] = config["patch"] or 4
    if config["layers"] is None:
        config["layers"] = 2 if predict else 1
    if config["hidden"] is None and (not conv or (predict and config["baselines"])):
        config["hidden"] = 512 if predict else 128
    return config
