"""Speech data: the Fish Fillets dialogue parser and package reader, audio:DIR, decoding,
resampling, log-mel features, text normalisation and splits (all on generated data)."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from rnnkit.data import speech
from rnnkit.data.speech import (
    Clip,
    fillets_clips,
    load_speech,
    log_mel,
    mel_filterbank,
    normalise_text,
    parse_dialogs,
    read_audio,
    split_clips,
)
from tests.helpers import write_deb, write_speech

LUA = r'''
dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")
dialogStr("Co je to za divnou loď?")


dialogId("v-nenifer", "font_big", "It isn’t fair, my way was free.")
dialogStr(
"Tohle není fér, \"měl\" jsem volnou cestu.")

dialogId("war-v-c", "font_big", "In C:\\WINDOWS we talk.")
dialogStr("V C:\\WINDOWS si povídáme.")

dialogId("z-c-hodin", "font_white", "It took you %1 hours!")
dialogStr("Konkrétně %1 hodin!")

dialogId("bez-textu", "font_small", "No Czech line follows.")
'''


def test_dialog_lines_are_parsed_with_lua_escapes_and_multiline_strings():
    lines = parse_dialogs(LUA)
    assert [d.id for d in lines] == ["let-m-divna", "v-nenifer", "war-v-c", "z-c-hodin",
                                     "bez-textu"]
    assert lines[0].speaker == "font_small" and lines[0].translation == "Co je to za divnou loď?"
    assert lines[1].translation == 'Tohle není fér, "měl" jsem volnou cestu.'
    assert lines[2].english == "In C:\\WINDOWS we talk."
    assert lines[4].translation is None


def test_text_is_normalised_as_the_recogniser_writes_it():
    assert normalise_text("Tohle není fér, \"měl\" jsem volnou cestu.") == \
        "tohle není fér měl jsem volnou cestu"
    assert normalise_text("It isn’t fair - my way/your way!") == "it isn't fair my way your way"
    assert normalise_text("  'Quoted'  C:\\WINDOWS_X ") == "quoted c windows x"
    assert normalise_text("?!") == ""


def _ogg(seconds: float = 0.3, rate: int = 22050) -> bytes:
    import io

    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate,
             format="OGG", subtype="VORBIS")
    return buffer.getvalue()


def _game_files() -> dict[str, bytes]:
    base = "usr/share/games/fillets-ng"
    return {f"{base}/script/airplane/dialogs_cs.lua": LUA.encode(),
            f"{base}/script/share/border_dialogs_cs.lua":
                b'dialogId("hr-v-x", "font_big", "Border.")\ndialogStr("Hranice.")\n',
            f"{base}/script/airplane/dialogs_en.lua": LUA.encode(),
            f"{base}/sound/airplane/cs/let-m-divna.ogg": _ogg(),
            f"{base}/sound/airplane/cs/v-nenifer.ogg": _ogg(),
            f"{base}/sound/airplane/cs/z-c-hodin.ogg": _ogg(),
            f"{base}/sound/airplane/cs/neni-v-textech.ogg": _ogg(),
            f"{base}/sound/share/border/cs/hr-v-x.ogg": _ogg(),  # nested: matched by id
            f"{base}/sound/airplane/en/let-m-divna.ogg": _ogg()}


def test_clips_are_matched_to_their_lines_by_id_and_the_unusable_ones_counted():
    kept, notes = fillets_clips(_game_files(), "cs")
    assert [(path, text, who) for path, text, who in kept] == [
        ("airplane/cs/let-m-divna.ogg", "Co je to za divnou loď?", "font_small"),
        ("airplane/cs/v-nenifer.ogg", 'Tohle není fér, "měl" jsem volnou cestu.', "font_big"),
        ("share/border/cs/hr-v-x.ogg", "Hranice.", "font_big")]
    assert notes == {"clips_found": 5, "dropped_placeholder_text": 1,
                     "dropped_without_text": 1, "texts_without_clip": 1}
    english, _ = fillets_clips(_game_files(), "en")
    assert english == [("airplane/en/let-m-divna.ogg", "What kind of strange ship is that?",
                        "font_small")]


def test_the_packages_are_read_from_the_cache_without_dpkg(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(speech, "FILLETS_INSTALLED", tmp_path / "not-installed")
    files = _game_files()
    folder = tmp_path / "fillets-ng"
    folder.mkdir()
    texts = {k: v for k, v in files.items() if k.endswith(".lua") or "/en/" in k}
    write_deb(folder / f"fillets-ng-data_{speech.FILLETS_VERSION}_all.deb", texts)
    write_deb(folder / f"fillets-ng-data-cs_{speech.FILLETS_VERSION}_all.deb",
              {k: v for k, v in files.items() if "/cs/" in k})
    got = load_speech("fillets-cs")
    assert [c.text for c in got.clips] == ["Co je to za divnou loď?",
                                           'Tohle není fér, "měl" jsem volnou cestu.',
                                           "Hranice."]
    assert got.notes["dropped_placeholder_text"] == 1 and got.notes["clips"] == 3
    assert read_audio(got.clips[0].path).shape[0] == pytest.approx(0.3 * 16000, abs=2)


def test_a_missing_package_says_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(speech, "FILLETS_INSTALLED", tmp_path / "not-installed")
    with pytest.raises(ValueError, match=r"apt-get download fillets-ng-data=.*audio:DIR"):
        load_speech("fillets-cs")  # the suite runs with RNNKIT_OFFLINE=1

    def no_apt(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "apt-get")

    monkeypatch.setenv("RNNKIT_OFFLINE", "0")
    monkeypatch.setattr(subprocess, "run", no_apt)
    with pytest.raises(ValueError) as caught:
        load_speech("fillets-nl")
    message = str(caught.value)
    assert "\n" not in message and "`apt-get download` did not run" in message
    assert "apt-get install fillets-ng-data" in message and "audio:DIR" in message


def test_audio_dir_reads_the_transcripts_and_names_what_is_wrong(tmp_path):
    folder = write_speech(tmp_path / "mine", clips=6)
    got = load_speech(f"audio:{folder}")
    assert len(got.clips) == 6 and {c.speaker for c in got.clips} == {"loud", "soft"}
    with pytest.raises(ValueError, match="no such folder"):
        load_speech(f"audio:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="transcripts.tsv: one line per clip"):
        load_speech(f"audio:{tmp_path / 'empty'}")
    table = folder / "transcripts.tsv"
    table.write_text("clip000.flac\tAE\nclip001.wav no tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 has no tab"):
        load_speech(f"audio:{folder}")
    table.write_text("missing.wav\tAE\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: no such audio file missing.wav"):
        load_speech(f"audio:{folder}")
    with pytest.raises(ValueError, match="--data: expected one of fillets-cs"):
        load_speech("librispeech")


def test_unreadable_or_empty_audio_is_named(tmp_path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match="cannot read .*noise.wav as audio"):
        read_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="empty.wav holds no audio samples"):
        read_audio(empty)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_features_do_not_depend_on_the_file_sample_rate(tmp_path, rate):
    def tone(r):
        t = np.arange(int(0.5 * r)) / r
        wave = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1800 * t)
        path = tmp_path / f"tone{r}.wav"
        sf.write(path, np.stack([wave, wave], 1).astype(np.float32), r)  # stereo
        return log_mel(read_audio(path), 40)

    reference, other = tone(16000), tone(rate)
    assert other.shape == reference.shape == (51, 40)
    inner = slice(3, -3)  # the edges see the resampler's filter start and stop
    loud = reference[inner] > reference[inner].max() - 8  # the bands holding the tones
    assert (other[inner][loud] - reference[inner][loud]).abs().max() < 0.05


def test_mel_filters_are_triangles_on_the_htk_mel_scale():
    bank = mel_filterbank(10, n_fft=512, rate=16000)
    assert bank.shape == (257, 10)
    mel = np.linspace(0, 2595 * math.log10(1 + 8000 / 700), 12)
    centres = 700 * (10 ** (mel[1:-1] / 2595) - 1)
    bins = np.linspace(0, 8000, 257)
    for k in range(10):
        peak = int(bank[:, k].argmax())
        assert abs(bins[peak] - centres[k]) <= 8000 / 256  # within one FFT bin
        nonzero = np.flatnonzero(bank[:, k].numpy())
        assert bins[nonzero[0]] > centres[k - 1] - 1e-6 if k else True
        assert bins[nonzero[-1]] < (centres[k + 1] if k < 9 else 8000) + 1e-6
    # a sine's energy lands in the band whose triangle covers its frequency
    t = torch.arange(16000) / 16000
    features = log_mel(torch.sin(2 * math.pi * 1000 * t), 10)
    assert int(features[20:-20].mean(0).argmax()) == int(np.abs(centres - 1000).argmin())


def test_clip_and_speaker_splits():
    clips = [Clip(f"c{i}", f"text {i}", "big" if i % 3 == 0 else "small" if i % 3 == 1
                  else "statue") for i in range(60)]
    parts = split_clips(clips, "clip", seed=0)
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [48, 6, 6]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(60))
    assert all((a == b).all() for a, b in zip(split_clips(clips, "clip", 0).values(),
                                              parts.values()))
    held = split_clips(clips, "speaker", seed=0, test_speaker="statue")
    assert {clips[i].speaker for i in held["test"]} == {"statue"}
    assert not {clips[i].speaker for i in held["train"]} & {"statue"}
    assert len(held["validation"]) == 4 and len(held["train"]) == 36
    with pytest.raises(ValueError, match="--test-speaker: expected one of big, small, statue"):
        split_clips(clips, "speaker", seed=0, test_speaker="parrot")
    nameless = [Clip("a", "x"), Clip("b", "y"), Clip("c", "z")]
    with pytest.raises(ValueError, match="names no speakers"):
        split_clips(nameless, "speaker", seed=0)
