"""Every option of every task reaches what it claims to change: never a silent no-op.

For each task and each of its options (its own and the common ones), two training steps are
taken with the option's default and with another value, through the same resolve, refuse
and prepare as ``rnnkit train`` (``tests.helpers.one_step``). The two must differ in the
batch, the loss or the parameters after the step. The options that act elsewhere are
listed below with where they act, and each of those lists is checked to name real
options, so a new option must be placed in one or the other.
"""

from __future__ import annotations

import pytest
import torch

from rnnkit.tasks.catalog import CATALOG
from rnnkit.training.options import COMMON_OPTIONS
from tests.helpers import one_step, tiny_options

# Options that by design change nothing in the first steps: the trainer's and the run's.
TRAINER = {
    "epochs": "how many passes (the Trainer's max_epochs)",
    "patience": "early stopping, after validation",
    "nan_patience": "how many non-finite steps in a row stop a run (test_divergence.py)",
    "schedule": "the learning rate from the next epoch (per step for lm: test_pieces.py)",
    "devices": "processes (test_distributed.py)",
    "accelerator": "where to train",
    "strategy": "the Lightning strategy (test_distributed.py)",
    "num_nodes": "machines taking part",
    "max_time": "the wall-clock budget",
    "out": "where the run folder goes",
    "grad_diagnostics": "gradient plots (test_pieces.py)",
    "average_last": "which weights are tested after training (test_averaging.py)",
    "progress": "what is printed",
    "quiet": "what is printed",
    "backend": "which engine computes the same numbers; test_backend_reaches_every_layer",
}
# Options that act on evaluation, prediction or data splits after training, per task.
ELSEWHERE = {
    "textclass": {"folds": "cross-validation folds (test_cli_textclass.py)",
                  "fold": "which fold is held out (test_cli_textclass.py)",
                  "split_seed": "the held-out split, drawn before the first batch",
                  "freeze_epochs": "freezes the pretrained layers for whole epochs",
                  "vectors": "a word-vector file the user points to (test_cli_textclass.py)",
                  "embedding_mode": "which embedding rows train; needs --vectors "
                                    "(test_word_vectors.py)",
                  "init_from": "a language-model run to start from (test_cli_textclass.py)",
                  "pretrained_lr_factor": "the rate of pretrained layers (with init_from)",
                  "adapter": "adapters on a pretrained encoder (with init_from; "
                             "test_cli_textclass.py)",
                  "classes": "a subset of labels of the user's data",
                  "text_col": "a column name of the user's file",
                  "label_col": "a column name of the user's file"},
    "lm": {"eval_streams": "streams the validation and test text is read in"},
    "forecast": {"baselines": "baselines scored on the test origins",
                 "baseline_timeout": "how long a fitted baseline may take",
                 "test_stride": "test origins", "horizon": "how far the test forecast reaches",
                 "test_size": "the held-out tail", "val_size": "the validation tail",
                 "target": "a column name of the user's file",
                 "covariates": "columns of the user's file",
                 "time_col": "a column name of the user's file",
                 "missing": "gaps in a user's series (test_series.py)",
                 "season": "the seasonal baselines' and MASE's period"},
    "translate": {"beam": "decoding after training", "length_penalty": "decoding",
                  "max_length_ratio": "decoding", "max_length_extra": "decoding",
                  "sampling_ratio": "scheduled sampling, from the second epoch",
                  "split_seed": "the held-out split", "source_tokenizer": "tokenisers of "
                  "the real corpora (test_data.py)", "target_tokenizer": "as source_tokenizer",
                  "subword_vocab": "the subword tokeniser's size (test_data.py)",
                  "source_vectors": "a word-vector file the user points to "
                                    "(test_translate_task.py)"},
    "nextitem": {"session_col": "a column name of the user's file",
                 "item_col": "a column name of the user's file",
                 "time_col": "a column name of the user's file",
                 "event_col": "a column of the user's file (test_cli_nextitem.py)",
                 "events": "which event kinds are kept (test_cli_nextitem.py)",
                 "session_gap": "where sequences are cut (test_events.py)",
                 "min_item_count": "which items are kept (test_events.py)",
                 "split": "the held-out parts (test_events.py)",
                 "holdout": "the held-out tail (test_events.py)",
                 "test_days": "the held-out days", "val_days": "the held-out days",
                 "exclude_seen": "what is ranked in evaluation (test_ranking.py)",
                 "baselines": "baselines scored after training"},
    "video": {"labels": "a user's labels file (test_video_task.py)",
              "clip_col": "a column name of the user's file",
              "label_col": "a column name of the user's file",
              "eval_clips": "how many validation and test clips are generated",
              "digit_source": "the digit images (test_video_task.py uses digits)",
              "baselines": "baselines trained and scored after training"},
    "asr": {"split": "the held-out clips (test_speech_data.py)",
            "test_speaker": "the held-out speaker (test_speech_data.py)",
            "split_seed": "the held-out split", "beam": "decoding after training",
            "max_seconds": "which training clips are kept (test_asr_task.py)"},
    "tsclass": {"split_seed": "the held-out validation tenth (test_tsclass.py)"},
    "seqclass": {}, "adding": {}, "copy": {},
}
ALWAYS_GIVEN = {"data"}  # every case names its data; other sources are tested per task

# Values that differ from the tiny runs' and are valid for them.
CHANGED = {
    "cell": "gru", "hidden": 6, "layers": 2, "bidirectional": True, "dropout": 0.4,
    "zoneout": 0.3, "recurrent_dropout": 0.3, "init": "orthogonal", "forget_bias": 3.0,
    "chrono": 5,
    "batch_size": 5, "lr": 0.5, "optimizer": "sgd", "momentum": 0.5, "weight_decay": 0.5,
    "seed": 7, "clip": 1e-3, "clip_mode": "value",
    # seqclass
    "pixels": True, "permute": True, "shift": 1, "proj_size": 4,
    # textclass
    "lowercase": False, "min_freq": 150, "max_tokens": 3, "embedding": 6, "pooling": "mean",
    # lm
    "level": "word", "bptt": 5, "tie_weights": True,
    # forecast
    "input_length": 7, "output_length": 2, "transform": "log",
    "difference": 1, "window_norm": "none", "probabilistic": True, "ensemble": 2,
    "calendar": True,
    # translate
    "lowercase_source": False, "attention": "dot", "input_feeding": False,
    "tie_embeddings": True, "label_smoothing": 0.3,
    # nextitem
    "loss": "sampled", "negatives": 7, "sample_alpha": 0.0, "bpreg": 0.3,
    # video
    "predict_frames": 2, "model": "convlstm", "target": "digit", "clips": 40, "frame": 24,
    "digits": 2, "speed": 1.5, "features": 6, "channels": 6, "kernel": 5, "patch": 2,
    # asr
    "mels": 12, "encoder": "conv", "spec_augment": True,
    # tsclass
    "noise": 0.3,
    # adding, copy
    "length": 9, "delay": 4, "train_size": 48,
}
# Changes that need a companion change to be valid (the base run takes it too).
COMPANIONS = {"momentum": {"optimizer": "sgd"}, "forget_bias": {"cell": "lstm"},
              "chrono": {"cell": "lstm"},
              # Adam's first steps hardly see how gradients were scaled: clip under SGD
              "clip": {"optimizer": "sgd"}, "clip_mode": {"optimizer": "sgd", "clip": 1e-3},
              "proj_size": {"cell": "lstm"}, "tie_weights": {"embedding": 8},
              "tie_embeddings": {"embedding": 8}, "negatives": {"loss": "sampled"},
              "sample_alpha": {"loss": "sampled"}, "bpreg": {"loss": "bpr-max"}}
TASK_COMPANIONS = {("lm", "min_freq"): {"level": "word"},
                   ("video", "digits"): {"predict_frames": 2},
                   # a ConvLSTM classifier's width is --channels: --hidden at its default
                   ("video", "model"): {"hidden": None},
                   ("video", "channels"): {"model": "convlstm", "hidden": None},
                   ("video", "kernel"): {"model": "convlstm", "hidden": None},
                   ("video", "patch"): {"predict_frames": 2}}
# Values the tiny data needs instead of CHANGED's.
TASK_VALUES = {("lm", "min_freq"): 150, ("translate", "min_freq"): 1000,
               ("translate", "source_embedding"): 5,
               ("translate", "max_tokens"): 5, ("video", "length"): 8,
               ("video", "digits"): 1, ("asr", "layers"): 1,
               ("tsclass", "layers"): 1}
# Changes a task refuses, with the message's start: refused in one line, not ignored.
REFUSED = {("lm", "bidirectional"): "--bidirectional: a language model predicts"}


def _cases():
    for name, spec in CATALOG.items():
        unused = set(getattr(spec, "unused_options", {}))
        skip = set(TRAINER) | set(ELSEWHERE[name]) | ALWAYS_GIVEN | unused
        for opt in [*spec.options, *COMMON_OPTIONS]:
            if opt.key not in skip:
                yield name, opt.key


def _changed_value(task: str, key: str, base: dict):
    if (task, key) in TASK_VALUES:
        return TASK_VALUES[task, key]
    value = CHANGED[key]
    if value == base.get(key):  # the tiny run already uses it: take another
        value = {"cell": "lstm", "hidden": 10, "bidirectional": False, "transform": "none",
                 "difference": 0, "window_norm": "last"}.get(key, value)
    return value


def _differ(a: dict, b: dict) -> bool:
    if float(a["loss"]) != float(b["loss"]):
        return True
    pa, pb = a["parameters"], b["parameters"]
    if pa.keys() != pb.keys():
        return True
    return any(pa[k].shape != pb[k].shape or not torch.equal(pa[k], pb[k]) for k in pa)


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    root = tmp_path_factory.mktemp("reach")
    return root, {}


def _baseline(baselines, task: str, extra: dict):
    root, cache = baselines
    key = (task, tuple(sorted(extra.items())))
    if key not in cache:
        options = tiny_options(task, root) | extra
        cache[key] = one_step(task, options, root / "runs" / f"{task}-{len(cache)}")
    return cache[key]


@pytest.mark.parametrize(("task", "key"), list(_cases()))
def test_option_changes_the_first_step(baselines, task, key):
    root = baselines[0]
    companions = COMPANIONS.get(key, {}) | TASK_COMPANIONS.get((task, key), {})
    base = _baseline(baselines, task, companions)
    value = _changed_value(task, key, base["config"])
    options = tiny_options(task, root) | companions | {key: value}
    if (task, key) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[task, key]):
            one_step(task, options, root / "runs" / f"{task}-{key}")
        return
    changed = one_step(task, options, root / "runs" / f"{task}-{key}")
    assert changed["config"][key] == value
    assert _differ(base, changed), f"--{key.replace('_', '-')} {value!r} changed nothing in {task}"


def test_every_option_is_placed():
    """Each list above names real options, so none hides a typo."""
    for name, spec in CATALOG.items():
        keys = {o.key for o in [*spec.options, *COMMON_OPTIONS]}
        assert set(ELSEWHERE[name]) <= keys, name
    common = {o.key for o in COMMON_OPTIONS}
    assert set(TRAINER) <= common
    assert set(ELSEWHERE) == set(CATALOG)


@pytest.mark.parametrize("task", list(CATALOG))
@pytest.mark.parametrize("backend", ["native", "fused", "reference"])
def test_backend_reaches_every_layer(tmp_path, task, backend):
    """``--backend`` names the engine of every recurrent layer the task builds."""
    import rnnkit.nn as rnn

    result = one_step(task, tiny_options(task, tmp_path) | {"backend": backend},
                      tmp_path / "run")
    layers = [m for m in result["module"].modules() if isinstance(m, rnn.RNNBase)]
    assert layers and {m.backend for m in layers} == {backend}
