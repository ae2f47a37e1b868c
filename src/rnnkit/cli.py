"""The ``rnnkit`` command: parses arguments (:mod:`rnnkit.parser`), dispatches to the tasks and
:mod:`rnnkit.commands`, and turns a user's mistake into one line and an exit status."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from typing import Any

from rnnkit import commands as handlers
from rnnkit.parser import build_parser


def _task_registry() -> Mapping[str, Any]:
    """Task objects by name (each task's module is imported when it is looked up)."""
    from rnnkit.tasks import TASKS

    return TASKS


def _run(args: argparse.Namespace) -> None:
    from rnnkit.tasks.catalog import STANDALONE
    from rnnkit.training import runner
    from rnnkit.training.options import COMMON_OPTIONS, load_config_file, resolve
    from rnnkit.training.run_folder import read_run_config

    tasks = _task_registry()
    if args.command == "lab":
        handlers.lab_compare(args, tasks)
        return
    if args.command == "train" and args.task in STANDALONE:
        handlers.train_standalone(args, STANDALONE[args.task])
        return
    if args.command == "train":
        task = tasks[args.task]
        given = {k: v for k, v in vars(args).items()
                 if k not in ("command", "task", "config", "resume", "threads")}
        from_file = load_config_file(args.config) if args.config else {}
        config = resolve([*task.options, *COMMON_OPTIONS], task.defaults, given, from_file)
        if args.resume is not None:  # only what was asked for may change the saved run
            config = {k: v for k, v in config.items() if k in given or k in from_file}
        if args.resume is None and config.get("folds"):  # a task with --folds
            from rnnkit.training.crossval import cross_validate

            cross_validate(task, config)
            return
        runner.train(task, config, resume=args.resume)
        return
    if getattr(args, "run_dir", None) is not None:
        from rnnkit.tasks.embeddings import is_embeddings_run

        if is_embeddings_run(args.run_dir):
            raise ValueError(f"{args.run_dir} is an embeddings run: it holds word vectors "
                             f"(vectors.txt), not a model for rnnkit {args.command}; use them "
                             f"with rnnkit train textclass --vectors {args.run_dir}")
    if args.command == "export":
        handlers.export(args)
        return
    if args.command == "serve":
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401

            from rnnkit.serving import serve
        except ImportError:
            from rnnkit.choices import install_hint

            raise ValueError(f"rnnkit serve needs FastAPI and uvicorn: "
                             f"{install_hint('serve')}") from None
        serve(args.run_dir, args.host, args.port, args.checkpoint, args.max_batch,
              args.max_wait_ms, token=args.token, docs=not args.no_docs)
        return
    saved = read_run_config(args.run_dir)
    task = tasks.get(saved.get("task"))
    if task is None:
        raise ValueError(f"{args.run_dir}: unknown task {saved.get('task')!r} in config.json")
    commands = {"translate": ("translates with", handlers.translate),
                "generate": ("samples from", handlers.generate),
                "forecast": ("forecasts with", lambda a: handlers.forecast(a, task)),
                "recommend": ("recommends with", handlers.recommend),
                "transcribe": ("transcribes with", handlers.transcribe)}
    if args.command in commands:
        what, handler = commands[args.command]
        if args.command not in getattr(task, "run_commands", ()):  # the task says what it offers
            from rnnkit.tasks.catalog import CATALOG

            wanted = [n for n, s in CATALOG.items() if args.command in getattr(s, "run_commands", ())]
            raise ValueError(f"{args.run_dir} is a {task.name!r} run; rnnkit {args.command} "
                             f"{what} {' or '.join(CATALOG[w].noun for w in wanted)} runs "
                             f"(rnnkit train {wanted[0]})")
        handler(args)
    elif args.command == "evaluate":
        runner.evaluate(task, args.run_dir, args.checkpoint, args.split)
    elif args.command == "predict":
        module, data, _ = runner.load_trained(task, args.run_dir, args.checkpoint)
        extra = {}
        if args.out is not None:
            import inspect

            if "out" not in inspect.signature(task.predict).parameters:
                raise ValueError(f"--out: {task.name} predictions are printed; only video "
                                 "frame predictors write files")
            extra["out"] = args.out
        results = task.predict(module, data, args.input, args.top, **extra)
        for r in results:
            where = f"{args.input}[{r['index']}]" if len(results) > 1 else args.input
            if "text" in r:
                where = f'"{r["text"]}"'
            print(f"{where}: {r['summary']}")


class _StdoutHandler(logging.Handler):
    """Messages to whatever ``sys.stdout`` is at the time (so redirection and capture work)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stdout, flush=True)


def _show_reports() -> None:
    """The library reports through the ``rnnkit`` logger; the command shows it on stdout."""
    logger = logging.getLogger("rnnkit")
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        logger.addHandler(_StdoutHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rnnkit`` console script; returns the exit status."""
    _show_reports()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        _run(args)
    except KeyboardInterrupt as exc:
        detail = f": {_one_line(exc)}" if str(exc) else ""
        print(f"rnnkit: interrupted{detail}", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only folder, a missing file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rnnkit: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        print(f"rnnkit: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return 0


def _one_line(exc: BaseException) -> str:
    """An error message on one line (a parser's message may span several)."""
    return " ".join(str(exc).split())


def _is_usage_error(exc: Exception) -> bool:
    """Errors that mean the user asked for something that cannot be done (one line, exit
    status 2); anything else is a bug and keeps its traceback."""
    if isinstance(exc, ValueError):
        return True
    if "lightning" not in sys.modules:
        return False
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return isinstance(exc, MisconfigurationException)


if __name__ == "__main__":
    sys.exit(main())
