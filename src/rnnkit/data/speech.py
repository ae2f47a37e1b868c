"""Recorded speech with transcripts: sources, audio decoding, log-mel features, splits.

Sources (``--data``):

* ``fillets-cs`` (default), ``fillets-nl``, ``fillets-en``: the recorded dialogue of the
  game Fish Fillets NG, as Debian packages it (GPL-2): ``fillets-ng-data-cs`` (Czech,
  39 MB) and ``fillets-ng-data-nl`` (Dutch) hold ``sound/<level>/<lang>/<id>.ogg``;
  ``fillets-ng-data`` (70 MB) holds the texts, ``script/<level>/dialogs_<lang>.lua``,
  where ``dialogId("<id>", "<speaker font>", "<English>")`` is followed by
  ``dialogStr("<translation>")``, and the ~200 English clips, whose text is the English
  of ``dialogId``. The speaker field names the character (``font_small``: the small fish,
  ``font_big``: the big fish, others). Clips without a text, texts without a clip, and
  texts with a ``%1`` placeholder (the game fills in a number, the clip says one) are
  dropped and counted. The packages are fetched once with ``apt-get download`` (no root)
  into the cache folder, or read from ``/usr/share/games/fillets-ng`` when installed;
  the clips and a ``transcripts.tsv`` are unpacked there once.
* ``audio:DIR``: your recordings: ``DIR/transcripts.tsv`` holds one clip per line, the
  audio file's path (relative to DIR), a tab, its text, and optionally a tab and its
  speaker. Any format soundfile reads (WAV, FLAC, Ogg Vorbis, MP3 with libsndfile 1.1).

Every clip is decoded with soundfile, mixed to mono and resampled to 16 kHz (SciPy's
polyphase filter), then turned into log-mel features (:func:`log_mel`: 25 ms Hann windows
every 10 ms, 80 mel bands by default). Texts are normalised for recognition and scoring
alike (:func:`normalise_text`): lower case, punctuation removed (an apostrophe inside a
word kept; a hyphen or slash is a space), spaces collapsed. Splits (:func:`split_clips`):
``clip``, a seeded permutation of the clips, 80/10/10; ``speaker``, every clip of one
speaker held out for testing (``--test-speaker``, default the speaker with the most
clips), and a seeded 10% of the others for validation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnkit.atomic import write_text
from rnnkit.data.cache import apt_fetch, cache_dir, deb_files

SAMPLE_RATE = 16_000
WINDOW = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
N_FFT = 512
FILLETS_VERSION = "1.0.1-1.1"
FILLETS_TEXTS = "fillets-ng-data"
FILLETS = {"fillets-cs": ("cs", "fillets-ng-data-cs"), "fillets-nl": ("nl", "fillets-ng-data-nl"),
           "fillets-en": ("en", FILLETS_TEXTS)}
FILLETS_INSTALLED = Path("/usr/share/games/fillets-ng")
SOURCES = (*FILLETS, "audio:DIR")
TRANSCRIPTS = "transcripts.tsv"
_STRING = r'"((?:[^"\\]|\\.)*)"'
_DIALOG = re.compile(rf'dialogId\(\s*{_STRING}\s*,\s*{_STRING}\s*,\s*{_STRING}\s*\)'
                     rf'(?:\s*dialogStr\(\s*{_STRING}\s*\))?')
_ESCAPES = re.compile(r"\\(.)")
_NOT_SPOKEN = re.compile(r"[^\w\s']|_")  # punctuation and symbols; \w keeps every script


@dataclass
class Dialogue:
    """One line of a game level's dialogue file."""

    id: str
    speaker: str
    english: str
    translation: str | None


@dataclass
class Clip:
    """One recording and its transcript."""

    path: Path
    text: str
    speaker: str = ""


@dataclass
class SpeechSet:
    """The clips of a source, with what loading dropped (``notes``)."""

    clips: list[Clip]
    notes: dict[str, int] = field(default_factory=dict)


def parse_dialogs(text: str) -> list[Dialogue]:
    """The ``dialogId(...)`` lines of a Fish Fillets ``dialogs_<lang>.lua`` file, each with
    the ``dialogStr(...)`` that follows it (``None`` where none does); Lua's backslash
    escapes are undone."""
    def unescape(s: str | None) -> str | None:
        return None if s is None else _ESCAPES.sub(lambda m: {"n": "\n", "t": "\t"}.get(
            m.group(1), m.group(1)), s)

    return [Dialogue(m.group(1), m.group(2), unescape(m.group(3)), unescape(m.group(4)))
            for m in _DIALOG.finditer(text)]


def normalise_text(text: str) -> str:
    """A transcript as the recogniser writes it: lower case, no punctuation."""
    text = text.lower().replace("’", "'").replace("-", " ").replace("/", " ")
    text = _NOT_SPOKEN.sub(" ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def _wanted(lang: str):
    """Which files of the packages a language needs: its dialogue texts and its clips."""
    def wanted(path: str) -> bool:
        return ("/script/" in path and path.endswith(f"dialogs_{lang}.lua")
                or "/sound/" in path and path.endswith(f"/{lang}/{Path(path).name}")
                and path.endswith(".ogg"))
    return wanted


def _fillets_files(lang: str, package: str, source: str) -> dict[str, bytes]:
    """The dialogue files and the clips of one language, installed or fetched."""
    wanted = _wanted(lang)
    if any((FILLETS_INSTALLED / "sound").glob(f"**/{lang}/*.ogg")):
        return {str(p): p.read_bytes() for p in FILLETS_INSTALLED.rglob("*")
                if p.is_file() and wanted(str(p))}
    files = {}
    for name in dict.fromkeys((FILLETS_TEXTS, package)):
        deb = apt_fetch(name, FILLETS_VERSION, "fillets-ng", source,
                        ", or record your own clips and use --data audio:DIR")
        try:
            files |= deb_files(deb, wanted)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ValueError(f"--data {source}: {deb} is not a readable {name} package "
                             f"({exc}); delete it and run again to fetch it anew") from exc
    return files


def fillets_clips(files: dict[str, bytes], lang: str) -> tuple[list[tuple[str, str, str]],
                                                               dict[str, int]]:
    """(clip path under ``sound/``, text, speaker) of every clip of ``lang`` that has a
    usable text, from the packages' files by path, and counts of what was dropped. A clip
    ``sound/<level>/<lang>/<id>.ogg`` is matched to the dialogue line of the same id in
    any ``script/**/*dialogs_<lang>.lua`` (ids are unique across the game)."""
    wanted = _wanted(lang)
    clips = {path.split("/sound/")[-1]: path for path in files
             if path.endswith(".ogg") and wanted(path)}
    texts, placeholder = {}, set()
    for path, data in sorted(files.items()):
        if path.endswith(f"dialogs_{lang}.lua"):
            for d in parse_dialogs(data.decode("utf-8", errors="replace")):
                said = d.english if lang == "en" else d.translation
                if said is None or not normalise_text(said):
                    continue
                if "%" in said:
                    placeholder.add(d.id)
                    continue
                texts.setdefault(d.id, (said, d.speaker or "unnamed"))
    ids = {name: Path(name).stem for name in clips}
    kept = [(name, *texts[ids[name]]) for name in sorted(clips) if ids[name] in texts]
    spoken = set(ids.values())
    return kept, {"clips_found": len(clips),
                  "dropped_placeholder_text": sum(i in placeholder for i in ids.values()),
                  "dropped_without_text": sum(i not in texts and i not in placeholder
                                              for i in ids.values()),
                  "texts_without_clip": len(set(texts) - spoken)}


def prepare_fillets(source: str) -> Path:
    """The folder of a ``fillets-*`` source in the cache: its clips and ``transcripts.tsv``
    (file, text, speaker), unpacked from the Debian packages once."""
    lang, package = FILLETS[source]
    folder = cache_dir() / "fillets-ng" / f"{lang}-{FILLETS_VERSION}"
    table = folder / TRANSCRIPTS
    if table.is_file():
        return folder
    files = _fillets_files(lang, package, source)
    kept, notes = fillets_clips(files, lang)
    if not kept:
        raise ValueError(f"--data {source}: the packages hold no clips of language {lang!r} "
                         f"with a text")
    sound = {path.split("/sound/")[-1]: path for path in files}
    for name, _, _ in kept:
        target = folder / "clips" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[sound[name]])
    lines = [f"clips/{name}\t{' '.join(text.split())}\t{speaker}\n" for name, text, speaker in kept]
    write_text(folder / "notes.tsv", "".join(f"{k}\t{v}\n" for k, v in notes.items()))
    write_text(table, "".join(lines))  # last: its presence means the folder is complete
    return folder


def read_transcripts(folder: Path, source: str) -> SpeechSet:
    """The clips listed in ``folder/transcripts.tsv`` (file, text, optional speaker)."""
    table = folder / TRANSCRIPTS
    if not folder.is_dir():
        raise ValueError(f"--data {source}: no such folder {folder}")
    if not table.is_file():
        raise ValueError(f"--data {source}: expected {table}: one line per clip, the audio "
                         f"file's path relative to {folder}, a tab, its text (and optionally a "
                         f"tab and the speaker)")
    try:
        lines = table.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"--data {source}: {table} is not UTF-8 text ({exc.reason})") from None
    clips, empty = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise ValueError(f"--data {source}: {table} line {number} has no tab; expected "
                             f"'file<TAB>text', got {line[:80]!r}")
        path = (folder / parts[0]).resolve()
        if not path.is_file():
            raise ValueError(f"--data {source}: {table} line {number}: no such audio file "
                             f"{parts[0]}")
        if not normalise_text(parts[1]):
            empty += 1
            continue
        clips.append(Clip(path, " ".join(parts[1].split()), parts[2].strip() if len(parts) > 2
                          else ""))
    if not clips:
        raise ValueError(f"--data {source}: {table} lists no clip with a text")
    notes = {"clips": len(clips), "dropped_empty_text": empty}
    extra = folder / "notes.tsv"
    if extra.is_file():
        notes = {**{k: int(v) for k, v in (line.split("\t") for line in
                                           extra.read_text().splitlines())}, **notes}
    return SpeechSet(clips, notes)


def load_speech(source: str) -> SpeechSet:
    """The clips of a ``--data`` source (see the module docstring)."""
    if source in FILLETS:
        return read_transcripts(prepare_fillets(source), source)
    if source.startswith("audio:") and len(source) > len("audio:"):
        return read_transcripts(Path(source[len("audio:"):]).expanduser(), source)
    raise ValueError(f"--data: expected one of {', '.join(SOURCES)}, got {source!r}")


def read_audio(source, name: str | None = None) -> torch.Tensor:
    """A clip as float32 mono samples at 16 kHz.

    Args:
        source: a file's path, or a binary file object (an upload).
        name: what to call it in errors (default: the path).

    Raises:
        ValueError: naming the file, when it cannot be read or holds no samples.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    if isinstance(source, (str, Path)):
        name, source = name or str(source), str(source)
    name = name or "the audio"
    try:
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise ValueError(f"cannot read {name} as audio ({exc})") from None
    if samples.size == 0:
        raise ValueError(f"{name} holds no audio samples")
    mono = samples.mean(axis=1)
    if not np.isfinite(mono).all():
        raise ValueError(f"{name} holds samples that are not finite")
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(mono))


def mel_filterbank(n_mels: int, n_fft: int = N_FFT, rate: int = SAMPLE_RATE,
                   low: float = 0.0, high: float | None = None) -> torch.Tensor:
    """Triangular filters equally spaced on the HTK mel scale, m = 2595 log10(1 + f / 700):
    ``[n_fft // 2 + 1, n_mels]``. Filter k rises from 0 at mel point k to 1 at point k+1
    and falls to 0 at point k+2 (of n_mels + 2 points from ``low`` to ``high``)."""
    high = rate / 2 if high is None else high
    mel = torch.linspace(2595 * math.log10(1 + low / 700), 2595 * math.log10(1 + high / 700),
                         n_mels + 2, dtype=torch.float64)
    hz = 700 * (10 ** (mel / 2595) - 1)  # [n_mels + 2]
    bins = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)[:, None]
    left, centre, right = hz[:-2], hz[1:-1], hz[2:]
    rising = (bins - left) / (centre - left)
    falling = (right - bins) / (right - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0).float()


def log_mel(samples: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """``[samples]`` at 16 kHz -> natural-log mel energies ``[frames, n_mels]``, one frame
    per 10 ms (frames = samples // 160 + 1)."""
    spectrum = torch.stft(samples, N_FFT, HOP, WINDOW, torch.hann_window(WINDOW),
                          center=True, return_complex=True)  # [n_fft // 2 + 1, frames]
    power = spectrum.abs().pow(2).T  # [frames, n_fft // 2 + 1]
    return torch.log(power @ mel_filterbank(n_mels) + 1e-6)


def split_clips(clips: list[Clip], split: str, seed: int,
                test_speaker: str | None = None) -> dict[str, np.ndarray]:
    """Indices of the train, validation and test clips (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = len(clips)
    if split == "clip":
        order = rng.permutation(n)
        n_val, n_test = max(1, n // 10), max(1, n // 10)
        if n < 3:
            raise ValueError(f"--split clip: needs at least 3 clips, the source has {n}")
        return {"train": np.sort(order[n_val + n_test:]), "validation": np.sort(order[:n_val]),
                "test": np.sort(order[n_val:n_val + n_test])}
    speakers = [c.speaker for c in clips]
    counts = {s: speakers.count(s) for s in dict.fromkeys(speakers)}
    if not any(counts):
        raise ValueError("--split speaker: the source names no speakers (a third column of "
                         "transcripts.tsv)")
    held = test_speaker or max(counts, key=counts.get)
    if held not in counts:
        raise ValueError(f"--test-speaker: expected one of {', '.join(sorted(counts))}, got "
                         f"{held!r}")
    test = np.array([i for i, s in enumerate(speakers) if s == held])
    rest = rng.permutation(np.array([i for i, s in enumerate(speakers) if s != held]))
    n_val = max(1, len(rest) // 10)
    if len(rest) < 2:
        raise ValueError(f"--split speaker: holding out {held!r} leaves {len(rest)} clips to "
                         "train on")
    return {"train": np.sort(rest[n_val:]), "validation": np.sort(rest[:n_val]), "test": test}
