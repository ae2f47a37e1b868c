"""The ``rnnkit`` command line's parser, built from the task catalog and the option
declarations without importing torch, Lightning or a task (``rnnkit --help`` answers in
about 0.3 s)."""

from __future__ import annotations

import argparse

from rnnkit.training.options import at_most, non_negative_int, positive_int

EPILOG = """examples:
  rnnkit train seqclass                          LSTM on row-by-row MNIST, default recipe
  rnnkit train seqclass --data digits --epochs 5  quick run on scikit-learn's 8x8 digits
  rnnkit train seqclass --resume runs/seqclass/20261123-101500
  rnnkit evaluate runs/seqclass/20261123-101500
  rnnkit predict runs/seqclass/20261123-101500 digit.png
  rnnkit train textclass                         BiGRU on movie-review polarity, GloVe vectors
  rnnkit predict runs/textclass/20261123-130000 "a gorgeous, witty film"
  rnnkit train embeddings --method cbow          word vectors (gensim) for textclass --vectors
  rnnkit train lm                                character-level GRU on Shakespeare
  rnnkit generate runs/lm/20261123-120000 --prompt "ROMEO." --length 400 --seed 1
  rnnkit train forecast                          GRU on AirPassengers, beside ETS and ARIMA
  rnnkit train forecast --data msft --horizon 5  Microsoft's closing price, 5 days ahead
  rnnkit forecast runs/forecast/20261123-160000 --horizon 24 --plot next.png
  rnnkit train translate --data de-en           German to English with attention, BLEU
  rnnkit translate runs/translate/20261123-170000 "Wo ist der Bahnhof?" --show-attention a.png
  rnnkit train nextitem                          GRU4Rec on MovieLens 100K, beside item-kNN
  rnnkit recommend runs/nextitem/20261202-170000 --history "50 172 133" --k 10
  rnnkit train asr                               BiGRU + CTC on recorded Czech speech
  rnnkit transcribe runs/asr/20261203-140000 clip.wav other.ogg
  rnnkit train video --predict-frames 10         ConvLSTM next frames on Moving MNIST
  rnnkit predict runs/video/20261202-190000 test:3   PNG strip and GIF of a prediction
  rnnkit export runs/seqclass/20261123-101500 --format onnx --output digits.onnx
  rnnkit serve runs/textclass/20261123-130000 --port 8000
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong option answered by one line (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    """rnnkit's version and torch's, read from the installed metadata (torch is not imported)."""
    import platform
    from importlib import metadata

    from rnnkit import __version__

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return f"rnnkit {__version__} (torch {torch_version}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rnnkit", description="Train, evaluate and use recurrent neural networks.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_train, _add_lab, _add_evaluate_and_predict, _add_generate, _add_forecast,
                _add_translate, _add_recommend, _add_transcribe, _add_export, _add_serve):
        add(commands)
    return parser


def _add_train(commands) -> None:
    """``rnnkit train TASK``: one sub-command per task of the catalog, its options first."""
    from rnnkit.tasks.catalog import CATALOG, STANDALONE
    from rnnkit.training.options import COMMON_OPTIONS, add_options

    train = commands.add_parser("train", help="train a model for a task",
                                description="Train a model for a task; each task has its own options "
                                            "(rnnkit train TASK --help).")
    tasks = train.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in CATALOG.values():  # options only: no task module is imported for parsing
        sub = tasks.add_parser(task.name, help=task.description, description=task.description)
        own = sub.add_argument_group(f"{task.name} options")
        add_options(own, task.options, task.defaults, getattr(task, "shown_defaults", None))
        common = sub.add_argument_group("model and training options")
        add_options(common, COMMON_OPTIONS, task.defaults,
                    getattr(task, "shown_defaults", None))
        run = sub.add_argument_group("run options")
        run.add_argument("--config", metavar="FILE", help="YAML or JSON file with any of the options "
                         "above (keys with - or _); command-line options override it")
        run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its "
                         "last checkpoint (only --epochs, --max-time, --patience, --nan-patience, "
                         "--quiet and device options may change)")
        _threads_option(run)
    for spec in STANDALONE.values():  # not Lightning tasks: their own options only
        sub = tasks.add_parser(spec.name, help=spec.description, description=spec.description)
        own = sub.add_argument_group(f"{spec.name} options")
        add_options(own, spec.options, spec.defaults)
        run = sub.add_argument_group("run options")
        run.add_argument("--config", metavar="FILE", help="YAML or JSON file with any of the "
                         "options above (keys with - or _); command-line options override it")
        run.add_argument("--threads", type=positive_int, default=None, metavar="N",
                         help="worker threads (default: 1, which makes a run repeatable)")


def _add_lab(commands) -> None:
    """``rnnkit lab compare``: the tasks that call themselves lab problems."""
    from rnnkit.tasks.catalog import CATALOG
    from rnnkit.training.options import COMMON_OPTIONS, add_options

    lab = commands.add_parser("lab", help="the long-range-dependency lab",
                              description="Experiments on long-range dependencies.")
    lab_commands = lab.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)
    cmp = lab_commands.add_parser(
        "compare", help="train several cells under one budget and compare them",
        description="Train each cell at each length under the same options; write a table "
                    "(test metric, baseline, steps to solve, wall time) and one plot of the "
                    "learning curves against the baseline.")
    what = cmp.add_argument_group("what to compare")
    lab_tasks = [name for name, spec in CATALOG.items() if getattr(spec, "lab", False)]
    what.add_argument("--task", choices=lab_tasks, default=lab_tasks[0],
                      help=f"the problem (default: {lab_tasks[0]})")
    what.add_argument("--length", type=_int_list, default=[200], metavar="T[,T...]",
                      help="sequence lengths (adding) or delays (copy) (default: 200)")
    what.add_argument("--cells", type=_cell_list, default=["rnn", "lstm", "gru"], metavar="CELLS",
                      help="comma list of cells (default: rnn,lstm,gru)")
    what.add_argument("--out", metavar="DIR", help="folder for the runs and the comparison "
                      "(default: runs/lab/<task>-<timestamp>); an existing one is continued")
    what.add_argument("--train-size", type=int, default=20000, metavar="N",
                      help="training sequences (default: 20000)")
    budget = cmp.add_argument_group("the shared budget and model options")
    add_options(budget, [o for o in COMMON_OPTIONS if o.key not in ("cell", "out")],
                CATALOG[lab_tasks[0]].defaults)
    _threads_option(cmp)



def _add_evaluate_and_predict(commands) -> None:
    from rnnkit.training.options import positive_int

    evaluate = commands.add_parser("evaluate", help="metrics of a trained run",
                                   description="Evaluate a trained run on its test (or validation) split.")
    _run_dir_argument(evaluate, "rnnkit train")
    _checkpoint_option(evaluate)
    evaluate.add_argument("--split", default="test", choices=("test", "validation"),
                          help="which split (default: test)")

    predict = commands.add_parser("predict", help="predict with a trained run",
                                  description="Predict with a trained run. For seqclass, INPUT is an "
                                              "image file (PNG/JPEG), a .npy array or an IDX file; "
                                              "for textclass, a sentence in quotes, or - to read "
                                              "one sentence per line from stdin; for video, a "
                                              "folder of frames, a .npy clip or test:N (a "
                                              "frame predictor writes a PNG strip and a GIF).")
    _run_dir_argument(predict, "rnnkit train")
    predict.add_argument("input", metavar="INPUT", help="what to predict on")
    _checkpoint_option(predict)
    predict.add_argument("--top", type=positive_int, default=3, metavar="K",
                         help="classes to show (default: 3)")
    predict.add_argument("--out", default=None, metavar="DIR",
                         help="video frame predictors: where the PNG strip and the GIF go "
                              "(default: RUN_DIR/predictions)")



def _add_generate(commands) -> None:
    from rnnkit.training.options import non_negative, positive_int

    generate = commands.add_parser(
        "generate", help="sample text from a language-model run",
        description="Continue a prompt with a trained language model (rnnkit train lm), "
                    "printing each token as it is sampled. Prompt characters (or words) "
                    "missing from the run's vocabulary are read as <unk>, with a notice on "
                    "stderr; an empty prompt starts at the beginning of a line.")
    _run_dir_argument(generate, "rnnkit train lm")
    generate.add_argument("--prompt", default="", help="text to continue (default: empty)")
    generate.add_argument("--length", type=_count, default=500, metavar="N",
                          help=f"tokens to generate, at most {MAX_LENGTH:,} (default: 500)")
    generate.add_argument("--temperature", type=non_negative, default=0.8, metavar="T",
                          help="softmax temperature; 0 is greedy (default: 0.8)")
    generate.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                          help="sample among the K most likely tokens only (default: all)")
    generate.add_argument("--seed", type=int, default=None, metavar="S",
                          help="random seed, for a reproducible sample (default: none)")
    _checkpoint_option(generate)


def _add_forecast(commands) -> None:
    fc = commands.add_parser(
        "forecast", help="forecast with a trained forecast run",
        description="Forecast past the end of a forecast run's series (or, with --test, from "
                    "the start of its test part), print the table, and optionally plot it "
                    "or write it as CSV.")
    _run_dir_argument(fc, "rnnkit train forecast")
    fc.add_argument("--horizon", type=_horizon, default=None, metavar="H",
                    help="steps to forecast (default: the run's horizon; with --test, the "
                         "test part's length)")
    fc.add_argument("--test", action="store_true",
                    help="forecast from the first test step, beside the actual values")
    fc.add_argument("--plot", metavar="PNG", help="draw history, forecast and intervals")
    fc.add_argument("--csv", metavar="FILE", help="write the forecast table as CSV")
    _checkpoint_option(fc)


def _add_translate(commands) -> None:
    from rnnkit.training.options import positive_int

    tr = commands.add_parser(
        "translate", help="translate sentences with a trained translate run",
        description="Translate sentences with a run of rnnkit train translate, one output line "
                    "per input sentence. An empty sentence gives an empty line; a sentence "
                    "longer than the run's --max-tokens is cut to its first --max-tokens "
                    "tokens, with a note on stderr, as are words the run never saw (read as "
                    "<unk>).")
    _run_dir_argument(tr, "rnnkit train translate")
    tr.add_argument("sentences", nargs="*", metavar="SENTENCE",
                    help="sentences to translate (quote each); - reads one per line from stdin")
    tr.add_argument("--file", metavar="PATH", help="translate every line of a UTF-8 text file")
    tr.add_argument("--beam", type=positive_int, default=None, metavar="K",
                    help="beam size; 1 is greedy (default: the run's --beam, 5)")
    tr.add_argument("--show-attention", metavar="PNG",
                    help="draw the attention matrix of the translation (several sentences: "
                         "PNG-1.png, PNG-2.png, ...)")
    _checkpoint_option(tr)


def _add_recommend(commands) -> None:
    from rnnkit.training.options import positive_int

    rec = commands.add_parser(
        "recommend", help="recommend next items with a trained nextitem run",
        description="Print the items a run of rnnkit train nextitem expects next after a "
                    "history of item ids (oldest first), one line each: rank, probability, "
                    "id and name. Ids the run never saw are skipped, with a note on stderr.")
    _run_dir_argument(rec, "rnnkit train nextitem")
    rec.add_argument("--history", required=True, metavar='"I1 I2 ..."',
                     help="the item ids read so far, oldest first, separated by spaces or "
                          "commas")
    rec.add_argument("--k", type=positive_int, default=20, metavar="K",
                     help="items to recommend (default: 20)")
    _checkpoint_option(rec)


def _add_transcribe(commands) -> None:
    tr = commands.add_parser(
        "transcribe", help="transcribe audio files with a trained asr run",
        description="Transcribe audio files (WAV, FLAC, Ogg Vorbis, ...: what soundfile "
                    "reads, at any sample rate, mixed to mono) with a run of rnnkit train asr: "
                    "one line per file, its name, a colon and the text.")
    _run_dir_argument(tr, "rnnkit train asr")
    tr.add_argument("files", nargs="+", metavar="FILE", help="audio files to transcribe")
    tr.add_argument("--beam", type=non_negative_int, default=None, metavar="K",
                    help="beam width of the CTC beam search; 0 decodes greedily (default: "
                         "the run's --beam)")
    _checkpoint_option(tr)


def _add_export(commands) -> None:
    export = commands.add_parser(
        "export", help="write a trained network as ONNX, TorchScript or safetensors",
        description="Export a run's network. ONNX and TorchScript keep batch and sequence "
                    "length dynamic and are checked against PyTorch on inputs of other "
                    "shapes; safetensors holds the weights and a JSON config that "
                    "rnnkit.export.load_safetensors reads without pickle.")
    _run_dir_argument(export, "rnnkit train")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript", "safetensors"),
                        help="the file format")
    export.add_argument("--output", required=True, metavar="PATH", help="the file to write")
    _checkpoint_option(export)


def _add_serve(commands) -> None:
    from rnnkit.training.options import non_negative, positive_int

    serve = commands.add_parser(
        "serve", help="serve a trained run over HTTP (JSON)",
        description="Serve a run: GET /health, and the endpoint its task offers (POST "
                    "/predict for classifiers, /generate for language models, streaming "
                    "with \"stream\": true, /forecast, /translate, /recommend, /transcribe for "
                    "speech: the audio file as the body). Needs pip install "
                    "'rnnkit[serve]' (in a clone: pip install -e '.[serve]').")
    _run_dir_argument(serve, "rnnkit train")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    serve.add_argument("--max-batch", type=positive_int, default=64, metavar="N",
                       help="most inputs of concurrent requests run together (default: 64)")
    serve.add_argument("--max-wait-ms", type=non_negative, default=5.0, metavar="MS",
                       help="how long a batch waits for more requests (default: 5)")
    serve.add_argument("--token", default=None, metavar="TOKEN",
                       help="require 'Authorization: Bearer TOKEN' on every request "
                            "(default: $RNNKIT_SERVE_TOKEN, else none; binding beyond this "
                            "machine without one prints a warning)")
    serve.add_argument("--no-docs", action="store_true",
                       help="serve no /docs, /redoc or /openapi.json")
    _checkpoint_option(serve)


def _run_dir_argument(parser: argparse.ArgumentParser, written_by: str) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help=f"a run folder written by {written_by}")
    _threads_option(parser)


def _threads_option(parser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="CPU threads torch may use (default: torch's choice, one per core); "
                             "on a shared or busy machine, 1 or 2 can be many times faster")


def _checkpoint_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="best", metavar="best|last|PATH",
                        help="which checkpoint (default: best)")


MAX_LENGTH = 100_000  # generate --length: about an hour of sampling a large model here
MAX_HORIZON = 10_000  # forecast --horizon, as the server caps it
_count = at_most(non_negative_int, MAX_LENGTH, "tokens")
_horizon = at_most(positive_int, MAX_HORIZON, "steps")
_port = at_most(positive_int, 65535, "(the highest port)")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers such as 100,200, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 100,200, got {text!r}")
    return values


def _cell_list(text: str) -> list[str]:
    from rnnkit.choices import ENCODER_CELL_CHOICES as CELL_CHOICES

    cells = [c for c in text.split(",") if c]
    bad = [c for c in cells if c not in CELL_CHOICES]
    if bad or not cells:
        raise argparse.ArgumentTypeError(f"expected cells from {', '.join(CELL_CHOICES)}, got {text!r}")
    return cells
