"""The options of ``rnnkit train asr``, declared without importing torch."""

from __future__ import annotations

from rnnkit.training.options import Option, finite, non_negative_int, positive_int, seed

SPLITS = ("clip", "speaker")
ENCODER_KINDS = ("rnn", "conv")


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    import argparse

    value = finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, got {text}")
    return value


class AsrOptions:
    """The options of ``rnnkit train`` for :class:`rnnkit.tasks.asr.task.SpeechTask`."""

    name = "asr"
    run_commands = ("transcribe",)
    noun = "asr"
    description = ("recognise recorded speech: convolutions and bidirectional recurrent "
                   "layers trained with CTC (Czech game dialogue, or your clips), scored by "
                   "character and word error rates")
    options = [
        Option("data", str, "fillets-cs", "recordings with transcripts: fillets-cs (1,804 "
               "Czech clips, 1.7 hours), fillets-nl (1,615 Dutch clips), fillets-en (30 "
               "English clips: too few to learn from), all from Debian's Fish Fillets NG "
               "packages fetched with apt-get on first use; or audio:DIR "
               "(DIR/transcripts.tsv: file<TAB>text[<TAB>speaker])",
               metavar="SOURCE"),
        Option("split", str, "clip", "clip: a seeded 80/10/10 split of the clips; speaker: "
               "every clip of --test-speaker is the test set", SPLITS),
        Option("test-speaker", str, None, "--split speaker: the speaker held out (default: "
               "the one with the most clips)", metavar="NAME"),
        Option("split-seed", seed, 0, "seed of the split; fixed apart from --seed",
               metavar="S"),
        Option("mels", positive_int, 80, "mel bands per 10 ms frame"),
        Option("channels", positive_int, 32, "channels of the two subsampling convolutions"),
        Option("encoder", str, "rnn", "rnn: --layers recurrent layers of --cell; conv: as many "
               "1-D convolutions of the same width instead (the ablation without "
               "recurrence)", ENCODER_KINDS),
        Option("spec-augment", bool, False, "SpecAugment (Park et al. 2019): mask two bands of "
               "up to 15 of 80 mels and two spans of up to 5% of each training clip",
               flag=True),
        Option("max-seconds", positive_seconds, 20.0, "training clips longer than this are "
               "left out (validation and test keep every clip)", metavar="S"),
        Option("beam", non_negative_int, 16, "width of the CTC prefix beam search scored beside "
               "greedy decoding on the test set (and rnnkit transcribe's default); 0: greedy "
               "only", metavar="K"),
    ]
    # Deep Speech 2's shape scaled to 1.4 hours of training audio on two cores. GRU, not
    # LSTM: validation CER 38.2% against 41.3% on the Czech clips (docs/asr.md).
    defaults = {"cell": "gru", "hidden": 256, "layers": 2, "bidirectional": True,
                "dropout": 0.2, "epochs": 30, "batch_size": 16, "lr": 1e-3,
                "optimizer": "adam", "schedule": "cosine", "clip": 5.0, "patience": 10}
