"""The training options every task shares, declared once for the command line and config files.

Precedence: built-in default < task default < ``--config FILE`` < the command line.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.choices import BACKEND_CHOICES, ENCODER_CELL_CHOICES, INIT_CHOICES


def _number(text: str) -> float:
    """A finite float: ``nan`` and ``inf`` are refused, since no option means them."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def finite(text: str) -> float:
    """Any finite float."""
    return _number(text)


def optional_float(text: str) -> float | None:
    """A finite float, or ``none``."""
    return None if str(text).lower() == "none" else _number(text)


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def average_count(text: str) -> int:
    """``--average-last``: 0 (off) or a count K >= 2 of epoch ends to average."""
    value = _integer(text)
    if value < 0 or value == 1:
        raise argparse.ArgumentTypeError(f"expected 0 (off) or a count of epochs >= 2 (the mean "
                                         f"of one epoch's weights is that epoch), got {text}")
    return value


def chrono_range(text: str) -> int | None:
    """``--chrono``: ``none``, or the longest dependency T_max, an integer >= 3."""
    if str(text).lower() == "none":
        return None
    value = _integer(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"expected T_max, an integer >= 3 (or none), got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def seed(text: str) -> int:
    """A random seed: what numpy and torch both accept, 0 to 2**32 - 1."""
    value = _integer(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {2**32 - 1}, got {text}")
    return value


def probability(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def at_most(parse: Callable[[str], int], limit: int, unit: str) -> Callable[[str], int]:
    """``parse``, and no more than ``limit`` (``unit`` follows the limit in the error)."""
    def check(text: str) -> int:
        value = parse(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"expected at most {limit:,} {unit}, got {text}")
        return value

    return check


def devices(text: str) -> str:
    """``auto``, a count >= 1, or a list of device indices such as ``0,1``."""
    text = str(text).strip()
    if text == "auto":
        return text
    parts = text.split(",") if "," in text else [text]
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        values = []
    if not values or ("," not in text and values[0] < 1) or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 1, 'auto' or a list of device "
                                         f"indices such as 0,1, got {text!r}")
    return text


def max_time(text: str) -> str | None:
    """Lightning's ``DD:HH:MM:SS`` wall-clock budget, or ``none``."""
    if str(text).lower() == "none":
        return None
    parts = str(text).split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected DD:HH:MM:SS (e.g. 00:00:10:00), got {text}")
    return str(text)


@dataclass(frozen=True)
class Option:
    """One option: ``--name-with-dashes`` on the command line, ``name_with_underscores`` in files."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    flag: bool = False
    metavar: str | None = None

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


COMMON_OPTIONS: list[Option] = [
    Option("cell", str, "lstm", "recurrent cell (ln-: layer-normalised; carry-lstm: with a "
           "carry gate; mingru, minlstm: gates of the input alone, trained by a parallel "
           "scan)", ENCODER_CELL_CHOICES),
    Option("hidden", positive_int, 128, "hidden units per layer and direction"),
    Option("layers", positive_int, 1, "stacked recurrent layers"),
    Option("bidirectional", bool, False, "read sequences in both directions", flag=True),
    Option("dropout", probability, 0.0, "dropout between layers and before the output head"),
    Option("zoneout", probability, 0.0, "zoneout: probability that a state unit keeps its "
           "previous value at a step (Krueger et al. 2017)", metavar="P"),
    Option("recurrent-dropout", probability, 0.0, "variational dropout on h_{t-1} in the "
           "recurrent product, one mask per sequence (Gal & Ghahramani 2016)", metavar="P"),
    Option("init", str, "torch", "weight initialisation: torch's uniform, orthogonal "
           "recurrent weights, or identity (IRNN, with --cell rnn-relu)", INIT_CHOICES),
    Option("forget-bias", optional_float, 1.0, "forget-gate bias of the LSTM cells ('none' "
           "keeps the init's; another value for a cell without a forget gate is refused)",
           metavar="B"),
    Option("chrono", chrono_range, None, "chrono initialisation (Tallec & Ollivier 2018) for "
           "dependencies up to T_MAX steps: keep-gate biases log U(1, T_MAX-1) (an LSTM's "
           "forget gate, its input gate the negative; a GRU's update gate); replaces "
           "--forget-bias (default: off)", metavar="T_MAX"),
    Option("backend", str, None, "rnnkit engine; one that cannot run the case falls back "
           "with a warning (default: automatic: triton on CUDA, native on the CPU)", BACKEND_CHOICES),
    Option("epochs", positive_int, 10, "maximum passes over the training set"),
    Option("batch-size", positive_int, 64, "sequences per batch"),
    Option("lr", non_negative, 1e-3, "learning rate"),
    Option("optimizer", str, "adam", "optimizer", ("sgd", "adam", "adamw")),
    Option("momentum", non_negative, 0.9, "SGD momentum (0 for plain SGD)"),
    Option("weight-decay", non_negative, 0.0, "weight decay (decoupled for adamw)"),
    Option("schedule", str, "none", "learning-rate schedule over the epochs",
           ("none", "cosine", "plateau")),
    Option("clip", non_negative, 0.0, "gradient clipping threshold (0: off)"),
    Option("clip-mode", str, "norm", "clip the global gradient norm, or each value",
           ("norm", "value")),
    Option("nan-patience", positive_int, 1, "steps in a row with a non-finite loss or "
           "gradient (each skipped) before the run stops as diverged", metavar="N"),
    Option("patience", positive_int, 5, "early stopping: epochs without validation "
           "improvement before stopping"),
    Option("seed", seed, 0, "random seed for initialisation, shuffling and dropout"),
    Option("devices", devices, "1", "devices to train on: a count, 'auto', or a list such as 0,1",
           metavar="N"),
    Option("accelerator", str, "cpu", "where to train", ("cpu", "gpu", "auto")),
    Option("strategy", str, "auto", "Lightning strategy, e.g. ddp", metavar="NAME"),
    Option("num-nodes", positive_int, 1, "machines taking part (for DDP across machines)"),
    Option("max-time", max_time, None, "wall-clock budget; training then stops cleanly, is "
           "evaluated and saved ('none': no limit)", metavar="DD:HH:MM:SS"),
    Option("average-last", average_count, 0, "checkpoint averaging: after training, the mean of "
           "the weights at the ends of the last K epochs is scored on validation beside the "
           "best epoch, and the better is tested and kept as best.ckpt; each checkpoint "
           "holds K more copies of the weights (0: off)", metavar="K"),
    Option("out", str, None, "run folder (default: runs/<task>/<timestamp>)", metavar="DIR"),
    Option("grad-diagnostics", non_negative_int, 0, "every N steps, record ||dLoss/dh_t|| per time step on "
           "a fixed batch, and the gradient norm before/after clipping; plots in plots/ (0: off)",
           metavar="N"),
    Option("progress", bool, None, "progress bar; without it, one line per epoch (default: on "
           "when run in a terminal)", flag=True),
    Option("quiet", bool, False, "print only the result: no progress bar, no line per epoch",
           flag=True),
]


_METAVARS = {positive_int: "N", non_negative_int: "N", int: "N", seed: "S", float: "X",
             finite: "X", probability: "P", non_negative: "X", str: "TEXT"}


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option],
                defaults: dict[str, Any], shown_defaults: dict[str, str] | None = None) -> None:
    """Add ``options`` to ``parser``; only options given on the command line land in the
    namespace (the rest are filled by :func:`resolve`), so a config file can sit between.
    ``shown_defaults`` replaces the default shown in the help (a task whose defaults
    depend on the data says so)."""
    shown_defaults = shown_defaults or {}
    for opt in options:
        default = defaults.get(opt.key, opt.default)
        shown = "off" if opt.flag and default is False else ("on" if opt.flag else default)
        if opt.key in shown_defaults:
            help_text = f"{opt.help} (default: {shown_defaults[opt.key]})"
        elif default is None:
            help_text = opt.help if "default" in opt.help else f"{opt.help} (default: none)"
        else:
            help_text = f"{opt.help} (default: {shown})"
        help_text = help_text.replace("%", "%%")
        if opt.flag:
            parser.add_argument(f"--{opt.name}", action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            metavar = opt.metavar or (None if opt.choices else _METAVARS.get(opt.type, "X"))
            parser.add_argument(f"--{opt.name}", type=opt.type, choices=opt.choices,
                                default=argparse.SUPPRESS, help=help_text, metavar=metavar)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict (keys with dashes or underscores)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config: no such file {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ValueError(f"--config: cannot parse {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config: {path} must hold a mapping of option names to values, "
                         f"got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def refuse_unused(task: Any, config: dict[str, Any]) -> None:
    """A new run's options that its task does not consume must be at their defaults:
    ``task.unused_options`` names them; a changed one is an error naming option and task,
    never a silent no-op."""
    defaults = {o.key: o.default for o in COMMON_OPTIONS}
    for key in getattr(task, "unused_options", ()):
        if config.get(key, defaults.get(key)) != defaults.get(key):
            raise ValueError(f"--{key.replace('_', '-')}: the {task.name} task does not use "
                             f"this option ({task.unused_options[key]}); leave it out")


def resolve(options: Iterable[Option], defaults: dict[str, Any], given: dict[str, Any],
            config_file: dict[str, Any]) -> dict[str, Any]:
    """Merge defaults, the config file and the command line into one checked config."""
    options = list(options)
    by_key = {o.key: o for o in options}
    unknown = sorted(set(config_file) - set(by_key))
    if unknown:
        allowed = ", ".join(sorted(by_key))
        raise ValueError(f"--config: unknown key(s) {', '.join(unknown)}; allowed keys: {allowed}")
    config = {o.key: defaults.get(o.key, o.default) for o in options}
    for key, value in config_file.items():
        config[key] = _coerce(by_key[key], value)
    config.update({k: v for k, v in given.items() if k in by_key})
    return config


def _coerce(opt: Option, value: Any) -> Any:
    """A config-file value checked as the command line would check it."""
    if opt.flag:
        if not isinstance(value, bool) and not (value is None and opt.default is None):
            raise ValueError(f"--config: {opt.key} expects true or false, got {value!r}")
        return value
    if value is None:
        return None
    try:
        result = opt.type(str(value)) if not isinstance(value, str) else opt.type(value)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise ValueError(f"--config: {opt.key}: {exc}") from exc
    if opt.choices is not None and result not in opt.choices:
        raise ValueError(f"--config: {opt.key} expects one of {', '.join(opt.choices)}, got {value!r}")
    return result
