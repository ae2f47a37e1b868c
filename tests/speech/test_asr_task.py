"""rnnkit train asr end to end on generated "speech" (tones per letter): CTC learns it,
the run reports and plots, transcribe and evaluate read the run, mistakes get one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from rnnkit.cli import main
from rnnkit.tasks.asr.task import ctc_feasible
from tests.helpers import TONES, raw_request, write_speech

TINY = ["--hidden", "32", "--layers", "1", "--mels", "20", "--channels", "8",
        "--batch-size", "8", "--lr", "1e-2", "--patience", "100", "--beam", "4", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr")
    data = write_speech(root / "tones", clips=50)
    run = root / "run"
    assert main(["train", "asr", "--data", f"audio:{data}", "--epochs", "40", *TINY,
                 "--out", str(run)]) == 0
    return data, run


def test_ctc_learns_the_tones_and_the_run_reports_it(trained):
    _, run = trained
    rows = list(csv.DictReader((run / "logs" / "version_0" / "metrics.csv").open()))
    losses = [float(r["train_loss_epoch"]) for r in rows if r.get("train_loss_epoch")]
    assert losses[-1] < losses[0] / 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["cer"] < 0.5 and metrics["test"]["cer_beam"] < 0.5
    assert metrics["validation"]["cer"] < 0.5
    splits = metrics["data"]["splits"]
    assert [splits[s]["clips"] for s in ("train", "validation", "test")] == [40, 5, 5]
    assert metrics["data"]["labels"] == 1 + len(TONES) + 1  # blank, letters, space
    example = metrics["examples"][0]
    assert set(example) == {"reference", "greedy", "beam", "seconds"}
    assert example["reference"] == example["reference"].lower()
    assert sum(t["clips"] for t in metrics["errors_by_length"]) == 5
    for plot in ("alignment.png", "errors_by_length.png", "loss.png", "cer.png"):
        assert (run / "plots" / plot).stat().st_size > 10_000


def test_transcribe_prints_one_line_per_file(trained, capsys, tmp_path):
    data, run = trained
    table = [line.split("\t") for line in (data / "transcripts.tsv").read_text().splitlines()]
    files = [str(data / name) for name, _, _ in table[:3]]
    capsys.readouterr()
    assert main(["transcribe", str(run), *files, "--beam", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == files
    spoken = [text.lower().rstrip(".").replace(" ", "") for _, text, _ in table[:3]]
    heard = [line.split(": ", 1)[1].replace(" ", "") for line in lines]
    assert sum(a == b for a, b in zip(spoken, heard)) >= 2
    # the same clip resampled to 44.1 kHz and made stereo reads the same
    samples, rate = sf.read(files[0])
    from scipy.signal import resample_poly

    other = resample_poly(samples, 44100, rate)
    sf.write(tmp_path / "stereo.wav", np.stack([other, other], 1), 44100)
    assert main(["transcribe", str(run), str(tmp_path / "stereo.wav"), "--beam", "0"]) == 0
    assert capsys.readouterr().out.strip().split(": ", 1)[1] == lines[0].split(": ", 1)[1]
    (tmp_path / "bad.ogg").write_bytes(b"OggS but nothing else")
    assert main(["transcribe", str(run), str(tmp_path / "bad.ogg")]) == 2
    err = capsys.readouterr().err
    assert "bad.ogg" in err and len(err.strip().splitlines()) == 1


def test_evaluate_reproduces_the_recorded_test_scores(trained, capsys):
    _, run = trained
    recorded = json.loads((run / "metrics.json").read_text())["test"]
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"cer {recorded['cer']:.4f}" in out and f"cer_beam {recorded['cer_beam']:.4f}" in out


def test_clips_ctc_cannot_align_and_long_clips_are_left_out_of_training(tmp_path):
    assert ctc_feasible(np.array([1, 2, 3]), 3)
    assert not ctc_feasible(np.array([1, 1, 2]), 3)  # a blank must part the two 1s
    assert ctc_feasible(np.array([1, 1, 2]), 4)
    assert ctc_feasible(np.array([], dtype=np.int64), 1)
    from rnnkit.tasks import TASKS
    from rnnkit.training.options import COMMON_OPTIONS, resolve

    data = write_speech(tmp_path / "tones", clips=20)
    task = TASKS["asr"]
    config = resolve([*task.options, *COMMON_OPTIONS], task.defaults,
                     {"data": f"audio:{data}", "max_seconds": 1.0, "beam": 0}, {})
    _, speech_data = task.build(task.prepare(config), tmp_path / "run")
    kept, left_out = speech_data.training_indices()
    seconds = {i: len(speech_data.features[i]) / 100 for i in speech_data.splits["train"]}
    assert left_out["train_left_out_too_long"] == sum(s > 1.0 for s in seconds.values()) > 0
    assert all(seconds[i] <= 1.0 for i in kept)


@pytest.mark.parametrize(("extra", "message"), [
    (["--encoder", "conv", "--cell", "lstm"], "--cell: --encoder conv has no recurrent layers"),
    (["--test-speaker", "loud"], "--test-speaker loud: only --split speaker"),
    (["--split", "speaker", "--test-speaker", "parrot"],
     "--test-speaker: expected one of loud, soft"),
])
def test_mistakes_get_one_line(tmp_path, capsys, extra, message):
    data = write_speech(tmp_path / "tones", clips=6)
    assert main(["train", "asr", "--data", f"audio:{data}", *extra, "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_server_transcribes_an_uploaded_file_as_the_command_does(trained, capsys):
    import urllib.request

    from rnnkit.serving import build_app
    from tests.helpers import start_server

    data, run = trained
    clip = data / "clip001.wav"
    capsys.readouterr()
    assert main(["transcribe", str(run), str(clip)]) == 0
    expected = capsys.readouterr().out.split(": ", 1)[1].strip()
    url, instance, thread = start_server(build_app(run))

    def post(body: bytes, query: str = "") -> tuple[int, dict]:
        request = urllib.request.Request(f"{url}/transcribe{query}", data=body,
                                         headers={"Content-Type": "audio/wav"})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        status, body = post(clip.read_bytes())
        assert status == 200 and body["text"] == expected and body["beam"] == 4
        assert post(clip.read_bytes(), "?beam=0")[1]["text"] in (expected, body["text"])
        status, body = post(b"RIFF....WAVEfmt nothing")
        assert status == 422 and "the request body" in body["detail"]
        assert post(b"")[0] == 422
        # Over the server's body limit: only the headers are sent, as a client that sent the
        # whole body could see its connection reset before it reads the 413.
        head, reply = raw_request(url, b"POST /transcribe HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Type: audio/wav\r\nContent-Length: 2000000\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413") and b"over the limit" in reply
        assert post(clip.read_bytes(), "?beam=-1")[0] == 422
    finally:
        instance.should_exit = True
        thread.join(timeout=15)


def test_the_acoustic_model_exports_to_onnx_with_dynamic_length(trained, tmp_path, capsys):
    _, run = trained
    capsys.readouterr()
    assert main(["export", str(run), "--format", "onnx", "--output",
                 str(tmp_path / "asr.onnx")]) == 0
    out = capsys.readouterr().out
    assert "inputs: features; outputs: log_probs" in out
    difference = float(out.split("max |difference| ")[1].split()[0])
    assert difference < 1e-4
