"""What the ``rnnkit`` commands do once their arguments are parsed (:mod:`rnnkit.cli`
parses them and dispatches here): export, forecast, translate and generate from a trained
run, and the lab's comparison. Output goes to stdout, notes about the input to stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def export(args: argparse.Namespace) -> None:
    from rnnkit.export import export_run

    report = export_run(args.run_dir, args.format, args.output, args.checkpoint)
    print(f"wrote {report['output']} ({report['format']})")
    if report.get("inputs"):
        print(f"inputs: {', '.join(report['inputs'])}; outputs: {', '.join(report['outputs'])} "
              "(batch and steps dynamic)")
    if report.get("max_abs_diff") is None:
        print(report.get("note", "not checked"))
    elif report.get("checked_shapes"):
        shapes = ", ".join(f"{b}x{t}" for b, t in report["checked_shapes"])
        print(f"checked against PyTorch on batch x steps {shapes}: max |difference| "
              f"{report['max_abs_diff']:.2e}")
    else:
        print(f"reloaded without pickle: max |weight difference| {report['max_abs_diff']:.2e}")


def forecast(args: argparse.Namespace, task: Any) -> None:
    from rnnkit.tasks.forecast import forecast_frame, plot_frame
    from rnnkit.training import runner

    module, data, config = runner.load_trained(task, args.run_dir, args.checkpoint)
    start = data.pipeline.test_start if args.test else None
    horizon = args.horizon or (len(data.series) - data.pipeline.test_start if args.test
                               else config["horizon"])
    frame = forecast_frame(module, data, horizon, start, seed=config["seed"])
    with __import__("pandas").option_context("display.max_rows", 200, "display.width", 120):
        print(frame.to_string(float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        frame.to_csv(args.csv, index_label="time" if data.series.index is not None else "step")
        print(f"wrote {args.csv}")
    if args.plot:
        plot_frame(args.plot, data, frame, len(data.series) if start is None else start)
        print(f"wrote {args.plot}")


def translate(args: argparse.Namespace) -> None:
    """Translations to stdout, one line each; notes about the input to stderr."""
    from pathlib import Path

    from rnnkit.tasks.translate import SentenceTranslator, plot_attention

    sentences = list(args.sentences)
    if sentences == ["-"]:
        sentences = [line.rstrip("\n") for line in sys.stdin]
    elif "-" in sentences:
        raise ValueError("SENTENCE: - (read stdin) must be the only sentence")
    if args.file:
        try:
            sentences += Path(args.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--file: cannot read {args.file} as UTF-8 text ({exc})") from None
    if not sentences:
        raise ValueError("SENTENCE: expected a sentence to translate, - for stdin, or --file")
    translator = SentenceTranslator.from_run(args.run_dir, args.checkpoint)
    results = translator.translate(sentences, args.beam)
    known = translator.data.source_vocab.index
    for number, item in enumerate(results, 1):
        where = f"sentence {number}: " if len(results) > 1 else ""
        if item.truncated:
            print(f"rnnkit: note: {where}{item.truncated} tokens past the run's --max-tokens "
                  f"{translator.config['max_tokens']} were cut off", file=sys.stderr)
        unknown = list(dict.fromkeys(t for t in item.source_tokens if t not in known))
        if unknown:
            print(f"rnnkit: note: {where}not in the run's vocabulary, read as <unk>: "
                  f"{', '.join(repr(t) for t in unknown[:10])}", file=sys.stderr)
        print(item.text)
    if args.show_attention:
        base = Path(args.show_attention)
        for number, item in enumerate(results, 1):
            path = base if len(results) == 1 else base.with_name(
                f"{base.stem}-{number}{base.suffix or '.png'}")
            if item.tokens:
                plot_attention(path, item, known)
                print(f"wrote {path}", file=sys.stderr)
            elif len(results) == 1:
                plot_attention(path, item)  # explains why there is nothing to draw


def generate(args: argparse.Namespace) -> None:
    """Stream a sample to stdout; notices about the prompt go to stderr."""
    from rnnkit.tasks.lm import TextGenerator

    generator = TextGenerator.from_run(args.run_dir, args.checkpoint)
    ids, unknown = generator.encode_prompt(args.prompt)
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        print(f"rnnkit: note: not in the run's vocabulary, read as <unk>: {shown}",
              file=sys.stderr)
    sys.stdout.write(args.prompt)
    for piece in generator.stream(ids, args.length, args.temperature, args.top_k, args.seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def recommend(args: argparse.Namespace) -> None:
    """Ranked items to stdout, one per line; unknown ids noted on stderr."""
    from rnnkit.tasks.nextitem.recommend import Recommender

    history = [i for i in args.history.replace(",", " ").split() if i]
    if not history:
        raise ValueError("--history: expected item ids separated by spaces, got nothing")
    recommender = Recommender.from_run(args.run_dir, args.checkpoint)
    _, unknown = recommender.encode(history)
    if unknown:
        shown = ", ".join(dict.fromkeys(unknown[:10]))
        print(f"rnnkit: note: not items of the run, skipped: {shown}", file=sys.stderr)
    ranked = recommender.recommend([history], args.k)[0]
    width = max(len(r["item"]) for r in ranked)
    for rank, r in enumerate(ranked, 1):
        print(f"{rank:>3}  {r['score']:.4f}  {r['item']:<{width}}  {r['name']}".rstrip())


def transcribe(args: argparse.Namespace) -> None:
    """One line per file on stdout: its name, a colon and the text."""
    from rnnkit.tasks.asr.task import Transcriber

    transcriber = Transcriber.from_run(args.run_dir, args.checkpoint)
    for path, text in zip(args.files, transcriber.transcribe(args.files, args.beam)):
        print(f"{path}: {text}")


def train_standalone(args: argparse.Namespace, spec: Any) -> None:
    """``rnnkit train embeddings``: options resolved as for the tasks, then its own run."""
    from rnnkit.tasks.embeddings import run
    from rnnkit.training.options import load_config_file, resolve

    given = {k: v for k, v in vars(args).items()
             if k not in ("command", "task", "config", "threads")}
    from_file = load_config_file(args.config) if args.config else {}
    config = resolve(spec.options, spec.defaults, given, from_file)
    config["workers"] = args.threads or 1
    run(config)


def lab_compare(args: argparse.Namespace, tasks: dict[str, Any]) -> None:
    import time
    from pathlib import Path

    from rnnkit.training.compare import compare
    from rnnkit.training.options import COMMON_OPTIONS, resolve

    task = tasks[args.task]
    given = {k: v for k, v in vars(args).items()
             if k not in ("command", "lab_command", "task", "length", "cells", "out", "threads")}
    config = resolve([*task.options, *COMMON_OPTIONS], task.defaults, given, {})
    out = Path(args.out) if args.out else Path("runs") / "lab" / f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    compare(task, config, args.length, args.cells, out)
