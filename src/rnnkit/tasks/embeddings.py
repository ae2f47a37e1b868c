"""``rnnkit train embeddings``: word vectors trained with gensim into a run folder.

Not a Lightning task: gensim's word2vec trains the vectors (:func:`rnnkit.embeddings.train`).
The run folder holds:

* ``vectors.txt``: the vectors in word2vec's text format (a ``<count> <dimension>`` header,
  then one word and its numbers per line), which ``--vectors RUN_DIR`` (or the file itself)
  reads, and any word2vec tool too;
* ``vectors.kv`` (+ ``.npy``): the same vectors in gensim's own format, for
  ``gensim.models.KeyedVectors.load``. That format is a pickle: rnnkit never loads it, and
  neither should you from a folder you did not make; ``vectors.txt`` is the safe copy;
* ``config.json`` (the options), ``report.json`` (corpus, time, nearest neighbours of the
  probe words, analogy accuracy, WordSim-353 correlation) and ``plots/projection.png``
  (t-SNE of the most frequent words).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from rnnkit import atomic
from rnnkit.data.vectors import RUN_VECTORS
from rnnkit.training.run_folder import new_run_dir, write_json

# Probe words for the nearest-neighbour report when --probes is not given: the ones the
# vectors know, in this order, up to six.
PROBES = ("good", "bad", "funny", "boring", "love", "king", "man", "day", "film", "great",
          "death", "music")
MAX_PROBES = 6
VECTORS_FILE = RUN_VECTORS
GENSIM_FILE = "vectors.kv"
REPORT_FILE = "report.json"

log = logging.getLogger("rnnkit")


def run(config: dict[str, Any]) -> Path:
    """Train the vectors ``config`` describes (the options of ``rnnkit train embeddings``),
    write the run folder, print the report; returns the folder."""
    from rnnkit import embeddings

    config = dict(config)
    probes = config.get("probes")
    sentences = embeddings.read_sentences(config["data"], config["lowercase"],
                                          config["split_seed"], config["text_col"],
                                          config["label_col"])
    embeddings.check_corpus(sentences, config["min_count"])  # before the run folder
    out = new_run_dir("embeddings", config.get("out"), resumable=False)
    write_json(out / "config.json", {"task": "embeddings", **config})
    words = sum(len(s) for s in sentences)
    log.info(f"{config['data']}: {len(sentences):,} sentences, {words:,} words; "
             f"{config['method']} with {config['dimension']} dimensions, window "
             f"{config['window']}, {config['epochs']} epochs")
    started = time.perf_counter()
    model = embeddings.train(sentences, method=config["method"],
                             dimension=config["dimension"], window=config["window"],
                             negative=config["negative"], min_count=config["min_count"],
                             epochs=config["epochs"], sample=config["sample"],
                             seed=config["seed"], workers=config["workers"],
                             lowercase=config["lowercase"])
    seconds = time.perf_counter() - started
    vectors = model.wv
    with atomic.atomic_path(out / VECTORS_FILE) as tmp:
        vectors.save_word2vec_format(str(tmp), binary=False)
    vectors.save(str(out / GENSIM_FILE))
    chosen = probes if probes else [w for w in PROBES if w in vectors.key_to_index][:MAX_PROBES]
    missing = [w for w in (probes or []) if w not in vectors.key_to_index]
    report = {
        "data": config["data"], "method": config["method"],
        "sentences": len(sentences), "words": words, "vocabulary": len(vectors),
        "dimension": vectors.vector_size, "train_seconds": round(seconds, 2),
        "neighbours": embeddings.neighbours(vectors, chosen),
        "probes_missing": missing,
        "analogies": embeddings.analogy_accuracy(vectors),
        "wordsim353": embeddings.similarity_correlation(vectors),
    }
    plot = plot_projection(vectors, out / "plots" / "projection.png", config["plot_words"],
                           config["seed"])
    report["plot"] = str(plot.relative_to(out)) if plot else None
    write_json(out / REPORT_FILE, report)
    _show(report, out)
    return out


def _show(report: dict[str, Any], out: Path) -> None:
    log.info(f"{report['vocabulary']:,} words with vectors of {report['dimension']}, trained "
             f"in {report['train_seconds']:.1f} s")
    for word, near in report["neighbours"].items():
        log.info(f"  {word}: {', '.join(n for n, _ in near)}")
    if report["probes_missing"]:
        log.info(f"  not in the vocabulary: {', '.join(report['probes_missing'])}")
    a = report["analogies"]
    if a["accuracy"] is None:
        log.info(f"analogies: none of the {a['questions']:,} questions has all its words here")
    else:
        log.info(f"analogies: {a['accuracy']:.1%} of the {a['answered']:,} questions (of "
                 f"{a['questions']:,}) whose words are all here")
    s = report["wordsim353"]
    rho = "n/a (too few pairs)" if s["spearman"] is None else f"{s['spearman']:.3f}"
    log.info(f"WordSim-353: Spearman {rho}, {s['pairs_missing']:.0%} of the pairs missing")
    log.info(f"wrote {out / VECTORS_FILE} (use it with rnnkit train textclass --vectors {out})")


def plot_projection(vectors, path: Path, count: int, seed: int) -> Path | None:
    """t-SNE map of the ``count`` most frequent words of three characters or more, with a
    letter (None if fewer than 10 are left)."""
    if count == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.manifold import TSNE

    words = [w for w in vectors.index_to_key
             if len(w) >= 3 and any(c.isalpha() for c in w)][:count]
    if len(words) < 10:
        return None
    points = np.stack([vectors[w] for w in words]).astype(np.float64)
    xy = TSNE(n_components=2, perplexity=min(30.0, (len(words) - 1) / 3), init="pca",
              random_state=seed, metric="cosine").fit_transform(points)
    fig, ax = plt.subplots(figsize=(12, 10))
    ax.scatter(xy[:, 0], xy[:, 1], s=6, color="tab:blue", alpha=0.6)
    for (x, y), word in zip(xy, words):
        ax.annotate(word, (x, y), fontsize=7, alpha=0.85, xytext=(2, 2),
                    textcoords="offset points")
    ax.set_title(f"the {len(words)} most frequent words (t-SNE of the cosine distances)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def is_embeddings_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a run folder of ``rnnkit train embeddings``."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text()).get("task") == "embeddings"
    except (OSError, ValueError, AttributeError):
        return False
