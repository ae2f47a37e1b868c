"""Every ``rnnkit`` command the README and the documentation pages (``docs/*.md``) show is
one the command line accepts, and (in the slow suite) runs to the end with a tiny budget
on data that needs no fetch.

The commands are read from the pages' fenced shell blocks: line continuations joined,
comments, environment assignments, redirections and pipes removed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_commands(page: Path) -> list[tuple[str, list[str]]]:
    """("page-line", argv) of every ``rnnkit`` command in a page's shell blocks."""
    commands = []
    fence, joined, start = None, "", 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence not in ("bash", "sh"):
            continue
        if not joined:
            start = number
        joined += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if line.rstrip().endswith("\\"):
            continue
        text, joined = joined, ""
        for part in re.split(r"&&|\|", text):
            part = re.sub(r"^\s*([A-Z_]+=(\$\([^)]*\)|\S+)\s+)+", "", part)  # VAR=value cmd
            if not re.search(r"(^|\s)rnnkit\s", part):
                continue  # other programs' lines (pip, python, sanitizer runs)
            words = shlex.split(part, comments=True)
            if ">" in words:
                words = words[:words.index(">")]
            if words[:1] == ["rnnkit"]:
                commands.append((f"{page.stem}-{start}", words))
    return commands


COMMANDS = [command for page in PAGES for command in readme_commands(page)]


def test_the_readme_shows_the_commands_it_should():
    seen = {tuple(argv[1:3]) for _, argv in COMMANDS}
    for expected in [("train", "seqclass"), ("train", "lm"), ("train", "textclass"),
                     ("train", "forecast"), ("train", "translate"), ("train", "adding"),
                     ("train", "copy"), ("train", "nextitem"), ("train", "video"),
                     ("train", "asr"), ("train", "tsclass"), ("lab", "compare")]:
        assert expected in seen
    assert {argv[1] for _, argv in COMMANDS} >= {"evaluate", "predict", "generate", "forecast",
                                                 "translate", "recommend", "transcribe", "export",
                                                 "serve"}


@pytest.mark.parametrize("line,argv", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_readme_command_is_accepted_by_the_parser(line, argv):
    from rnnkit.cli import build_parser

    try:
        build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"{line}: {' '.join(argv)} is refused (exit {exc.code})")


# --- every command, run with a tiny budget (slow suite) ----------------------------------

PLACEHOLDER = re.compile(r"runs/(seqclass|lm|textclass|forecast|translate|nextitem|video|"
                         r"embeddings|asr|tsclass)/"
                         r"\d{8}-\d{6}")
# A tiny budget per task, appended after the README's own options (the last one wins).
BUDGET = {
    "seqclass": ["--epochs", "1", "--hidden", "8"],
    "lm": ["--epochs", "1", "--hidden", "8", "--embedding", "8", "--bptt", "20",
           "--batch-size", "4", "--eval-streams", "2"],
    "textclass": ["--epochs", "1", "--hidden", "8", "--min-freq", "1"],
    "forecast": ["--epochs", "1", "--hidden", "8", "--baselines", "naive"],
    "translate": ["--epochs", "1", "--hidden", "8", "--embedding", "8", "--min-freq", "1",
                  "--beam", "2"],
    "nextitem": ["--epochs", "1", "--hidden", "8", "--embedding", "8", "--min-item-count", "1"],
    "video": ["--epochs", "1"],
    "adding": ["--epochs", "1", "--hidden", "8", "--length", "12", "--train-size", "128"],
    "copy": ["--epochs", "1", "--hidden", "8", "--delay", "3", "--train-size", "128"],
    "embeddings": ["--epochs", "1", "--min-count", "1", "--dimension", "8"],
    "asr": ["--epochs", "1", "--hidden", "8", "--mels", "16", "--channels", "4", "--beam", "2"],
    "tsclass": ["--epochs", "1", "--hidden", "8"],
}
WORDS = ["the", "film", "is", "a", "wonderful", "dull", "plot", "story", "station", "where"]


def _offline_data(task: str, argv: list[str], here: Path) -> list[str]:
    """The README's ``--data`` replaced by local data of the same kind (tests fetch
    nothing); the columns a command names are the ones the file has."""
    import random

    rng = random.Random(0)
    given = argv[argv.index("--data") + 1] if "--data" in argv else ""
    if task == "seqclass":
        return ["--data", "digits"]
    if task in ("lm", "embeddings"):
        corpus = here / "corpus.txt"
        corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(8))
                                    for _ in range(400)) + "\n")
        return ["--data", f"text:{corpus}"]
    if task == "textclass":
        text_col = argv[argv.index("--text-col") + 1] if "--text-col" in argv else "text"
        label_col = argv[argv.index("--label-col") + 1] if "--label-col" in argv else "label"
        sep = "\t" if given.endswith(".tsv") else ","
        path = here / (Path(given.removeprefix("csv:")).name if given.startswith("csv:")
                       else "reviews.csv")
        rows = [f"{text_col}{sep}{label_col}"]
        for _ in range(200):
            label = rng.choice(["pos", "neg"])
            words = [rng.choice(WORDS[:4]) for _ in range(5)]
            words.insert(2, "wonderful" if label == "pos" else "dull")
            rows.append(f"{' '.join(words)}{sep}{label}")
        path.write_text("\n".join(rows) + "\n")
        return ["--data", f"csv:{path}"]
    if task == "forecast":
        if given.startswith("csv:"):
            import numpy as np
            import pandas as pd

            days = pd.date_range("2020-01-01", periods=150, freq="D")
            t = np.arange(150)
            pd.DataFrame({"date": days, "units": 50 + 10 * np.sin(t / 7) + t / 10,
                          "price": 3 + np.cos(t / 5)}).to_csv(here / "sales.csv", index=False)
            return ["--data", f"csv:{here / 'sales.csv'}"]
        return ["--data", given or "airpassengers"]  # shipped with pmdarima
    if task == "translate":
        pairs = here / "pairs.tsv"
        pairs.write_text("\n".join(f"{' '.join(rng.choice(WORDS) for _ in range(4))}\t"
                                   f"{' '.join(rng.choice(WORDS[::-1]) for _ in range(4))}"
                                   for _ in range(200)) + "\n")
        return ["--data", f"tsv:{pairs}"]
    if task == "nextitem":  # MovieLens-like ids, so the README's --history finds its films
        from tests.nextitem.logs import rule_log

        def column(option: str, default: str) -> str:
            return argv[argv.index(option) + 1] if option in argv else default

        columns = (column("--session-col", "session"), column("--item-col", "item"),
                   column("--time-col", "time"), column("--event-col", "kind"))
        # one file per header: an earlier run reads its own file again (evaluate, recommend)
        clicks = rule_log(here / f"clicks-{'-'.join(columns)}.csv", sessions=600, items=300,
                          prefix="", columns=columns)
        return ["--data", f"csv:{clicks}", "--split", "days"]
    if task == "video":
        model = argv[argv.index("--model") + 1] if "--model" in argv else "cnn-rnn"
        sizes = ["--channels", "4"] if model != "cnn-rnn" else ["--hidden", "8", "--features", "8"]
        if given.startswith("frames:"):  # small clips of a square moving right or standing still
            import numpy as np

            folder = here / given.removeprefix("frames:")
            folder.mkdir(parents=True, exist_ok=True)
            rows = ["clip,label"]
            for i in range(12):
                clip = np.zeros((4, 8, 8), dtype=np.float32)
                for t in range(4):
                    x = 1 + t * (i % 2)
                    clip[t, 2:5, x:x + 3] = 1.0
                np.save(folder / f"c{i}.npy", clip)
                rows.append(f"c{i},{'moving' if i % 2 else 'still'}")
            labels = argv[argv.index("--labels") + 1]
            (here / labels).write_text("\n".join(rows) + "\n")
            return ["--data", f"frames:{folder}", *sizes]
        # Moving MNIST from the 8x8 digits that ship with scikit-learn
        small = ["--digit-source", "digits", "--frame", "16", "--length", "6", "--clips", "32",
                 "--eval-clips", "8"]
        if "--predict-frames" in argv:
            return [*small, "--predict-frames", "2", "--hidden", "8", "--channels", "4"]
        return [*small, *sizes]
    if task == "asr":
        from tests.helpers import write_speech

        return ["--data", f"audio:{write_speech(here / 'speech', clips=20)}"]
    if task == "tsclass":
        from tests.helpers import write_ts

        return ["--data", f"ts:{write_ts(here / 'waves', train=30, test=9)}"]
    return []


@pytest.mark.slow
def test_every_readme_command_runs_with_a_tiny_budget(tmp_path, monkeypatch, capsys):
    import io
    import sys

    import matplotlib.image
    import numpy as np

    from rnnkit.cli import main
    from rnnkit.data.images import load_image_source

    monkeypatch.chdir(tmp_path)
    matplotlib.image.imsave("digit.png", load_image_source("digits").test[0][0], cmap="gray")
    Path("recipe.yaml").write_text("hidden: 8\nepochs: 1\ndata: digits\n")
    Path("sentences.txt").write_text("where is the station\nthe film\n")
    # a clip for a video predictor's run (Moving MNIST of 16x16 frames, 6 per clip)
    np.save("clip.npy", np.random.default_rng(0).random((6, 16, 16)).astype(np.float32))
    # a recording for a speech run (tones of the generated speech: tests.helpers.write_speech)
    import soundfile

    tone = np.sin(np.arange(8000) / 16000 * 2 * np.pi * 520) * 0.3
    soundfile.write("clip.wav", tone, 16000)
    soundfile.write("other.ogg", tone, 16000, format="OGG", subtype="VORBIS")
    # a sequence for a feature-sequence classifier's run (3 features: tests.helpers.write_ts)
    np.save("utterance.npy", np.random.default_rng(0).random((8, 3)).astype(np.float32))
    latest: dict[str, str] = {}
    failures, ran = [], 0
    for line, argv in COMMANDS:
        args = argv[1:]
        if "--devices" in args or args[:1] == ["serve"] and "--host" in args:
            continue  # DDP: tests/training/test_distributed.py; a public bind: below
        args = [PLACEHOLDER.sub(lambda m: latest.get(m.group(1), m.group(0)), a) for a in args]
        if args[0] == "train":
            task = args[1]
            if "--resume" in args:
                args = [*args[:args.index("--epochs")], "--epochs", "2"] if "--epochs" in args \
                    else args
            else:
                if "--data" in args:
                    at = args.index("--data")
                    args = args[:at] + args[at + 2:]
                if "--config" in args:
                    args = [*args, "--data", "digits"]
                else:
                    args = [*args, *_offline_data(task, argv, tmp_path), *BUDGET.get(task, [])]
                if task == "textclass" and "--vectors" not in args and "--init-from" not in args:
                    args += ["--vectors", "glove-6b-50d"]  # the default, made explicit
                if "--vectors" in args and not args[args.index("--vectors") + 1].startswith(
                        ("runs/", "none")):  # a named source: a file made here (no fetch)
                    vectors = tmp_path / "vectors.txt"
                    vectors.write_text("".join(f"{w} " + " ".join(["0.1"] * 5) + "\n"
                                               for w in WORDS))
                    args[args.index("--vectors") + 1] = str(vectors)
                    args = [a for a in args]
                if "--folds" in args:
                    args[args.index("--folds") + 1] = "2"
                if "--tie-weights" in args:
                    args += ["--embedding", "8"]
                if "--out" not in args:
                    args += ["--out", f"runs/{task}/{line}"]
            if task != "embeddings":  # gensim's command has neither option
                args += ["--no-progress", "--quiet"] if "--resume" not in args else ["--quiet"]
        elif args[:2] == ["lab", "compare"]:
            at = args.index("--length")
            args[at + 1] = "6,8"
            args += ["--train-size", "64", "--epochs", "1", "--hidden", "4",
                     "--out", f"runs/lab/{line}"]
        elif args[0] == "serve":
            monkeypatch.setattr("uvicorn.run", lambda app, **kw: None)
        if args[:2] == ["predict", latest.get("textclass")] and args[2:3] == ["-"]:
            monkeypatch.setattr(sys, "stdin", io.StringIO("a wonderful film\n"))
        capsys.readouterr()
        code = main(args)
        err = capsys.readouterr().err
        ran += 1
        if code != 0:
            failures.append(f"{line}: {' '.join(args)} -> exit {code}: {err[-300:]}")
        elif args[0] == "train" and "--resume" not in args and "--folds" not in args:
            latest.setdefault(args[1], args[args.index("--out") + 1])  # the default recipe
    assert ran >= 35
    assert not failures, "\n".join(failures)
    np.testing.assert_equal(Path("digits.onnx").is_file(), True)


def test_the_examples_in_rnnkit_help_are_accepted_too():
    from rnnkit.parser import EPILOG, build_parser

    examples = [line.split("  ")[1] if line.startswith("  rnnkit") else None
                for line in EPILOG.splitlines()]
    examples = [shlex.split(e) for e in examples if e]
    assert len(examples) >= 15
    for argv in examples:
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"rnnkit --help example {' '.join(argv)} is refused (exit {exc.code})")
