"""What several test modules share: cell facts from the registry, weights, lengths, and
small generated data sets. Test modules import from here (``tests.helpers``), never from
``conftest``."""

from __future__ import annotations

import torch

from rnnkit.functional import CELLS as SPECS

PLAIN_CELLS = ["rnn", "rnn-relu", "lstm", "gru"]  # the ones torch.nn has
CELLS = list(SPECS)  # and the variants
GATES = {name: spec.gates for name, spec in SPECS.items()}
NUM_STATES = {name: spec.num_states for name, spec in SPECS.items()}


def make_weights(cell: str, input_size: int, hidden: int, dtype: torch.dtype, bias: bool = True,
                 requires_grad: bool = True) -> list[torch.Tensor | None]:
    """w_ih, w_hh, b_ih, b_hh with torch.nn's scale, as leaf tensors."""
    g = GATES[cell] * hidden
    scale = hidden ** -0.5
    shapes = [(g, input_size), (g, hidden)] + ([(g,), (g,)] if bias else [])
    ws = [((torch.rand(s, dtype=dtype) * 2 - 1) * scale).requires_grad_(requires_grad)
          for s in shapes]
    return ws + ([] if bias else [None, None])


def make_extra(cell: str, hidden: int, dtype: torch.dtype, requires_grad: bool = True
               ) -> list[torch.Tensor]:
    """The cell's extra parameters (layer-norm gains and biases), near their initial values
    but not at them, so that every term of their gradients is exercised."""
    return [(e.init + 0.3 * torch.randn(e.width * hidden, dtype=dtype)).requires_grad_(requires_grad)
            for e in SPECS[cell].extra]


def random_lengths(batch: int, steps: int) -> torch.Tensor:
    """Unsorted lengths in 1..steps, always including steps and 1 when batch allows."""
    lengths = torch.randint(1, steps + 1, (batch,))
    if batch >= 2:
        lengths[torch.randperm(batch)[:2]] = torch.tensor([steps, 1])
    return lengths


# --- Small data sets made on the spot --------------------------------------------------

def write_corpus(folder, lines: int = 200, seed: int = 0):
    """A folder with one text file of simple generated sentences (for ``text:DIR``)."""
    import random

    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "park", "while", "bird", "sang", "in", "tree"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("".join(" ".join(rng.choice(words) for _ in range(8)) + ".\n"
                                          for _ in range(lines)), encoding="utf-8")
    return folder


def write_reviews(path, rows: int = 200, seed: int = 0):
    """A two-class CSV (``text``, ``label``) whose label is carried by one word."""
    import random

    rng = random.Random(seed)
    cue = {"pos": ["wonderful", "brilliant", "funny"], "neg": ["dull", "awful", "boring"]}
    lines = ["text,label"]
    for _ in range(rows):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(["the", "film", "is", "a", "plot"]) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randint(0, len(words)), rng.choice(cue[label]))
        words[0] = words[0].capitalize()
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_pairs(path, n: int = 300, seed: int = 0):
    """Tab-separated sentence pairs of a toy language: the translation is the reverse, in
    capitals, with a full stop."""
    import random

    rng = random.Random(seed)
    vocabulary = ["ka", "lo", "mi", "nu", "pe", "ru", "sa", "ti"]
    seen, lines = set(), []
    while len(lines) < n:
        words = tuple(rng.choice(vocabulary) for _ in range(rng.randint(3, 6)))
        if words not in seen:
            seen.add(words)
            source = " ".join(words).capitalize()
            lines.append(f"{source}\t{' '.join(w.upper() for w in reversed(words))} .")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TONES = {"a": 300.0, "e": 520.0, "i": 850.0, "o": 1300.0, "u": 2000.0}  # Hz per letter


def write_speech(folder, clips: int = 40, seed: int = 0, rates=(16000, 22050, 8000)):
    """A folder of spoken "words" as ``audio:DIR`` reads it: each letter of a, e, i, o, u is
    a 0.12 s tone of its own pitch, letters are 0.04 s apart and words 0.15 s; one to three
    words of one to three letters per clip, files at each of ``rates`` in turn, two
    speakers (loud and soft). Returns the folder."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for n in range(clips):
        rate = rates[n % len(rates)]
        words = ["".join(rng.choice(list(TONES), size=rng.integers(1, 4)))
                 for _ in range(rng.integers(1, 4))]
        pieces = [np.zeros(int(0.1 * rate))]
        for word in words:
            for letter in word:
                t = np.arange(int(0.12 * rate)) / rate
                pieces += [np.sin(2 * np.pi * TONES[letter] * t) * np.hanning(len(t)),
                           np.zeros(int(0.04 * rate))]
            pieces.append(np.zeros(int(0.15 * rate)))
        gain = 0.5 if n % 2 else 0.2
        name = f"clip{n:03d}.{'wav' if n % 3 else 'flac'}"
        sf.write(folder / name, (gain * np.concatenate(pieces)).astype(np.float32), rate)
        lines.append(f"{name}\t{' '.join(words).upper()}.\t{'loud' if n % 2 else 'soft'}\n")
    (folder / "transcripts.tsv").write_text("".join(lines), encoding="utf-8")
    return folder


def write_ts(folder, train: int = 60, test: int = 30, seed: int = 0, name: str = "Waves"):
    """A UEA-format dataset in ``folder``: three classes of 3-dimensional sequences of 5 to
    15 steps, a sine of the class's frequency (1, 2 or 3 cycles per 10 steps) plus noise.
    Returns the folder."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("TRAIN", train), ("TEST", test)):
        lines = ["# generated", f"@problemName {name}", "@timeStamps false",
                 "@univariate false", "@equalLength false", "@classLabel true up mid down",
                 "@data"]
        for n in range(count):
            label = ("up", "mid", "down")[n % 3]
            steps = int(rng.integers(5, 16))
            t = np.arange(steps) / 10
            dims = [np.sin(2 * np.pi * (n % 3 + 1) * t + phase) + 0.2 * rng.normal(size=steps)
                    for phase in (0.0, 1.0, 2.0)]
            lines.append(":".join(",".join(f"{v:.5f}" for v in d) for d in dims) + f":{label}")
        (folder / f"{name}_{split}.ts").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tiny_options(task: str, folder) -> dict:
    """Options for a seconds-long run of ``task`` on data made in ``folder``."""
    from pathlib import Path

    folder = Path(folder)
    small = {"hidden": 8, "batch_size": 8, "epochs": 1, "quiet": True, "schedule": "none"}
    if task == "seqclass":
        return small | {"data": "digits"}
    if task == "textclass":
        path = folder / "reviews.csv"
        if not path.exists():
            write_reviews(path)
        return small | {"data": f"csv:{path}", "embedding": 8, "min_freq": 1, "vectors": "none"}
    if task == "lm":
        corpus = folder / "corpus"
        if not corpus.exists():
            write_corpus(corpus)
        return small | {"data": f"text:{corpus}", "embedding": 8, "bptt": 12}
    if task == "forecast":
        return small | {"data": "airpassengers", "baselines": []}
    if task == "translate":
        path = folder / "pairs.tsv"
        if not path.exists():
            write_pairs(path)
        return small | {"data": f"tsv:{path}", "embedding": 8, "max_tokens": 8, "min_freq": 1}
    if task == "nextitem":
        from tests.nextitem.logs import rule_log

        path = folder / "clicks.csv"
        if not path.exists():
            rule_log(path, sessions=120)
        return small | {"data": f"csv:{path}", "embedding": 8, "min_item_count": 1,
                        "baselines": False}
    if task == "video":
        # baselines on (the default): --hidden sizes the FC-LSTM when predicting; they are
        # trained after the test, which one_step never reaches
        return small | {"digit_source": "digits", "frame": 16, "length": 6, "clips": 32,
                        "eval_clips": 8}
    if task == "asr":
        speech = folder / "speech"
        if not (speech / "transcripts.tsv").exists():
            write_speech(speech, clips=12)
        return small | {"data": f"audio:{speech}", "mels": 8, "channels": 4, "beam": 2}
    if task == "tsclass":
        waves = folder / "waves"
        if not waves.exists():
            write_ts(waves)
        return small | {"data": f"ts:{waves}"}
    if task == "adding":
        return small | {"length": 12, "train_size": 64}
    if task == "copy":
        return small | {"delay": 6, "train_size": 64}
    raise KeyError(task)


# --- One training step of a task ------------------------------------------------------

def one_step(task_name: str, options: dict, run_dir, steps: int = 2) -> dict:
    """Build ``task_name`` from ``options`` (through the same resolve, refuse and prepare as
    ``rnnkit train``), take ``steps`` optimiser steps (two: momentum acts from the second)
    with a Lightning Trainer set up as rnnkit's (clipping, per-step seeds), and return what
    an option could change: the config, the module, the last batch as the step saw it, its
    loss, and every parameter after the steps."""
    from pathlib import Path

    import lightning as L

    from rnnkit.tasks import TASKS
    from rnnkit.training.options import COMMON_OPTIONS, refuse_unused, resolve
    from rnnkit.training.trainer import StepSeeds, quiet_lightning

    class Keep(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.loss, self.batch = loss.detach(), batch

    task = TASKS[task_name]
    config = resolve([*task.options, *COMMON_OPTIONS], task.defaults, options, {})
    refuse_unused(task, config)
    if hasattr(task, "prepare"):
        config = task.prepare(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    L.seed_everything(config["seed"], verbose=False)
    module, data = task.build(config, run_dir)
    if hasattr(task, "initialise"):
        task.initialise(module, data, config, run_dir)
    keep = Keep()
    clip = config["clip"] or None
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1,
                        gradient_clip_val=clip,
                        gradient_clip_algorithm=config["clip_mode"] if clip else None,
                        callbacks=[keep, StepSeeds(config["seed"])], default_root_dir=run_dir)
    trainer.fit(module, datamodule=data)
    return {"config": config, "module": module, "batch": keep.batch, "loss": keep.loss,
            "parameters": {k: v.detach().clone() for k, v in module.state_dict().items()}}


# --- A real server on a free port ----------------------------------------------------

def start_server(app):
    """Run ``app`` with uvicorn in a thread on a free local port; (url, server, thread)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                             log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", instance, thread


def raw_request(url: str, request: bytes, read_until: bytes = b"}") -> tuple[bytes, bytes]:
    """Send raw bytes to a server at ``url``; the reply's head and body."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(request)
        reply = b""
        while read_until not in reply.partition(b"\r\n\r\n")[2]:
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return head, body


class Client:
    """A real server on a free port, spoken to with urllib (the ``with`` block stops it)."""

    def __init__(self, app) -> None:
        self.url, self.instance, self.thread = start_server(app)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.instance.should_exit = True
        self.thread.join(timeout=15)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict, str]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method,
                                         headers={"Content-Type": "application/json",
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def post(self, path: str, payload=None, raw: bytes | None = None, headers=None):
        import json

        body = raw if raw is not None else json.dumps(payload).encode()
        return self.request("POST", path, body, headers)

    def get(self, path: str, headers=None):
        return self.request("GET", path, None, headers)


def write_deb(path, files: dict[str, bytes]):
    """A Debian package (an ``ar`` archive with ``data.tar.xz``) holding ``files`` by path
    (``usr/share/...``), as ``apt-get download`` leaves one; returns ``path``."""
    import io
    import tarfile

    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out = b"!<arch>\n"
    members = {"debian-binary": b"2.0\n", "control.tar.xz": b"x",
               "data.tar.xz": payload.getvalue()}
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(out)
    return path
