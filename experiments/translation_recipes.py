"""English to Chinese: which attention score, chosen on validation BLEU (issue #30).

Luong's ``general`` score (the default until this experiment) saturates on en-zh: from the
first epochs most attention weights are exactly 0 or 1, so the gradient through the
softmax vanishes. Dividing the scores by sqrt(H), as Vaswani et al. 2017 do, keeps them
in the softmax's working range. Arms (everything else the task's default recipe; the same
seeds for all):

* ``general``: ``translate --data en-zh --attention general``;
* ``scaled-general``: ``... --attention scaled-general``;
* ``additive``: ``... --attention additive`` (Bahdanau's score, which a tanh bounds);
* ``scaled-general-glove``: ``... --attention scaled-general --source-vectors glove-6b-50d``
  (the English embedding from GloVe, which added 0.6 BLEU to ``general``:
  ``experiments/word_vectors_other_tasks.py``);
* ``scaled-general-ls``: ``... --attention scaled-general --label-smoothing 0.1`` (Szegedy
  et al. 2016; 0.1 as in Vaswani et al. 2017).

Then, from the default that won (``scaled-general-ls``):

* ``subword-source``: ``translate --data en-zh --source-tokenizer subword --target-tokenizer
  auto --subword-vocab 1000``: English split into 1,000 SentencePiece BPE pieces (Sennrich
  et al. 2016) learnt from the training split, so a word never seen in training is spelt in
  pieces instead of read as ``<unk>`` (14.6% of the English test words are); Chinese stays
  in characters;
* ``average5``: ``translate --data en-zh --average-last 5``: the mean of the weights at the
  last five epoch ends, scored on validation beside the best epoch (checkpoint averaging,
  as in Vaswani et al. 2017). It won and is the default since; the other arms pin
  ``--average-last 0``, the default when they ran.

Then, from ``average5``, the low-resource regularisation of Sennrich & Zhang 2019,
screened on seed 0 (an arm that loses to ``average5``'s seed 0 on validation gets no more
seeds): ``dropout5`` (``--dropout 0.5``) and ``tied`` (``--tie-embeddings``: the target
embedding is the output layer's weight; Press & Wolf 2017).

The arm with the best mean validation BLEU (greedy, the checkpoint's own criterion) is the
one to make the default (``scaled-general-ls`` became it); the test split is read once per
run, as every run does. Each run's attention saturation is measured too: the share of
output tokens of its validation translations whose largest weight is above 0.99. The
script trains what is missing (a run folder that holds its results is reused) and writes
a JSON record::

    OMP_NUM_THREADS=1 python experiments/translation_recipes.py --arms general --seeds 0,1,2
    python experiments/translation_recipes.py --length-penalty   # every arm, then the scan
    python experiments/translation_recipes.py --arms dropout5,tied --seeds 0 --length-penalty

(``--length-penalty`` scans the arm chosen at the time; the record keeps each arm's scan.)

(measured with two or three runs side by side, one thread each; the ``general`` runs are
``experiments/word_vectors_other_tasks.py``'s ``en-zh-default``, the same command).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _runs import earlier_results, seeded_runs, write_record
from word_vectors_other_tasks import _row

HERE = Path(__file__).parent
# The recipe of the time, apart from what each arm sets: no label smoothing.
EN_ZH = ["translate", "--data", "en-zh", "--label-smoothing", "0", "--average-last", "0",
         "--no-progress"]
ARMS = {"general": [*EN_ZH, "--attention", "general"],
        "scaled-general": [*EN_ZH, "--attention", "scaled-general"],
        "additive": [*EN_ZH, "--attention", "additive"],
        "scaled-general-glove": [*EN_ZH, "--attention", "scaled-general", "--source-vectors",
                                 "glove-6b-50d"],
        "scaled-general-ls": [*EN_ZH, "--attention", "scaled-general", "--label-smoothing",
                              "0.1"]}
DEFAULT = ["translate", "--data", "en-zh", "--no-progress"]  # scaled-general-ls since
ARMS |= {"subword-source": [*DEFAULT, "--average-last", "0", "--source-tokenizer", "subword",
                            "--target-tokenizer", "auto", "--subword-vocab", "1000"],
         "average5": [*DEFAULT, "--average-last", "5"]}  # the default since
# Then, from average5, the regularisation Sennrich & Zhang 2019 found to matter most for
# low-resource NMT: more dropout and tied target embeddings (Press & Wolf 2017).
ARMS |= {"dropout5": [*DEFAULT, "--dropout", "0.5"],
         "tied": [*DEFAULT, "--tie-embeddings"]}

PENALTIES = (0.0, 0.5, 1.0, 1.5, 2.0)  # beam search: log-probability / length ** this


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default=",".join(ARMS), help="default: %(default)s")
    p.add_argument("--seeds", default="0,1,2", help="default: %(default)s")
    p.add_argument("--runs", type=Path, default=Path("runs/experiments/translation-recipes"),
                   help="folder for the run folders (default: %(default)s)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "translation-recipes.json")
    p.add_argument("--length-penalty", action="store_true", help="then score the chosen "
                   f"arm's runs with beam 5 at each length penalty of {PENALTIES}")
    return p.parse_args(argv)


def saturation(run: Path) -> float:
    """How saturated the run's attention is: the share of output tokens, over its
    validation sentences translated greedily, whose largest attention weight is above
    0.99 (the softmax nearly one-hot, so almost no gradient passes through it)."""
    from rnnkit.tasks.translate import SentenceTranslator

    translator = SentenceTranslator.from_run(run)
    data = translator.data
    data.setup()  # reads the pairs and draws the run's split
    sources = [data.pairs.source[i] for i in data.splits["validation"]]
    peaks = torch.cat([t.attention.max(dim=-1).values for t in translator.translate(sources, 1)
                       if t.attention is not None and len(t.attention)])
    return float((peaks > 0.99).float().mean())


def length_penalties(run: Path) -> dict[str, dict[str, float]]:
    """Beam-5 BLEU of the run's validation split for each of PENALTIES, and the test BLEU
    for each too (reported, never used to choose)."""
    from rnnkit.tasks.translate import SentenceTranslator, corpus_scores

    translator = SentenceTranslator.from_run(run)
    data = translator.data
    data.setup()
    scores: dict[str, dict[str, float]] = {}
    for penalty in PENALTIES:
        translator.config["length_penalty"] = penalty
        for split in ("validation", "test"):
            sources = [data.pairs.source[i] for i in data.splits[split]]
            texts = [t.text for t in translator.translate(sources, 5)]
            bleu = corpus_scores(texts, data.references(split), data.spec.bleu_tokenize)["bleu"]
            scores.setdefault(split, {})[str(penalty)] = bleu
    return scores


def run(args: argparse.Namespace) -> dict:
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results: dict[str, dict] = earlier_results(args.json)
    scans = earlier_scans(args.json)
    for arm in [a for a in args.arms.split(",") if a]:
        runs = seeded_runs(ARMS[arm], args.runs, arm, seeds, lambda m, a=arm: _row(a, m))
        for r in runs:
            r["attention_above_0.99"] = saturation(Path(r["run"]))
        summary = {}
        for key in ("val_bleu", "test_bleu_greedy", "test_bleu_beam", "test_chrf_beam",
                    "attention_above_0.99"):
            values = [r[key] for r in runs]
            summary[f"{key}_mean"] = statistics.mean(values)
            summary[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        results[arm] = {"command": ARMS[arm], **summary, "runs": runs}
    chosen = max(results, key=lambda a: results[a]["val_bleu_mean"]) if results else None
    record = {"experiment": "translation-recipes", "chosen_on_validation": chosen,
              "results": results}
    if chosen and args.length_penalty:  # then the length penalty, for the chosen arm
        per_run = [length_penalties(Path(r["run"])) for r in results[chosen]["runs"]]
        mean = {split: {p: statistics.mean(s[split][p] for s in per_run)
                        for p in per_run[0][split]} for split in ("validation", "test")}
        scans[chosen] = {
            "arm": chosen, "beam": 5, "per_run": per_run, "mean": mean,
            "chosen_on_validation": max(mean["validation"], key=mean["validation"].get)}
    if scans:  # one scan per arm that was the chosen one when scanned
        record["length_penalty"] = scans
    return record


def earlier_scans(path: Path) -> dict[str, dict]:
    """The length-penalty scans of an earlier record, by arm (a record of one scan, as
    first written, counts as its arm's)."""
    if not path.is_file():
        return {}
    scans = json.loads(path.read_text()).get("length_penalty") or {}
    return {scans["arm"]: scans} if "arm" in scans else scans


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    record = run(args)
    write_record(args.json, record)
    for arm, r in record["results"].items():
        print(f"{arm:22s} val BLEU {r['val_bleu_mean']:.2f}  test beam {r['test_bleu_beam_mean']:.2f}"
              f" ± {r['test_bleu_beam_sd']:.2f}  greedy {r['test_bleu_greedy_mean']:.2f}"
              f"  ({len(r['runs'])} runs)")
    for arm, lp in record.get("length_penalty", {}).items():
        print(f"length penalty for {arm} (beam 5, mean of {len(lp['per_run'])} runs): "
              f"validation {lp['mean']['validation']}, test {lp['mean']['test']}; chosen on "
              f"validation: {lp['chosen_on_validation']}")
    print(f"chosen on validation: {record['chosen_on_validation']}; wrote {args.json}")


if __name__ == "__main__":
    main()
