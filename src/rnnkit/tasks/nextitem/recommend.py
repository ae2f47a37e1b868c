"""Recommendations from a trained ``nextitem`` run, for a whole history at once or one
event at a time (:meth:`Recommender.session`: each new event costs one recurrent step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rnnkit.models.recommender import SessionRecommender, State
from rnnkit.training.checkpoint_io import load_checkpoint_file
from rnnkit.training.run_folder import checkpoint_path


class Recommender:
    """A run's network and item list; items are named by the ids of the run's data.

    ``exclude_seen`` (the run's ``--exclude-seen`` by default) leaves out items already in
    the history.
    """

    def __init__(self, model: SessionRecommender, items: list[str], names: list[str],
                 exclude_seen: bool = False) -> None:
        self.model = model.eval()
        self.items, self.names = items, names
        self.index = {item: i for i, item in enumerate(items)}
        self.exclude_seen = exclude_seen

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best") -> Recommender:
        from rnnkit.tasks.nextitem.task import TASK, completed, model_config, read_items
        from rnnkit.training.runner import run_config

        config = completed(run_config(TASK, run_dir))
        if config.get("task") != TASK.name:
            raise ValueError(f"{run_dir} is a {config.get('task')!r} run, not a nextitem run "
                             "(rnnkit train nextitem)")
        items, names = read_items(run_dir)
        model = SessionRecommender(model_config(config, len(items)))
        state = load_checkpoint_file(checkpoint_path(run_dir, checkpoint))["state_dict"]
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise ValueError(f"{run_dir}: the checkpoint does not fit the run's model "
                             f"({exc})") from None
        return cls(model, items, names, bool(config["exclude_seen"]))

    def encode(self, history: list[str]) -> tuple[list[int], list[str]]:
        """Model indices of the known items of ``history``, and the unknown ones."""
        known = [self.index[i] for i in history if i in self.index]
        return known, [i for i in history if i not in self.index]

    def _ranked(self, scores: torch.Tensor, seen: list[int], k: int) -> list[dict[str, Any]]:
        scores = scores.clone()
        if self.exclude_seen and seen:
            scores[torch.tensor(seen)] = float("-inf")
        probs = torch.softmax(scores, dim=0)
        top = probs.topk(min(k, len(self.items)))
        return [{"item": self.items[i], "name": self.names[i], "score": float(p)}
                for p, i in zip(top.values.tolist(), top.indices.tolist())]

    @torch.no_grad()
    def recommend(self, histories: list[list[str]], k: int = 20) -> list[list[dict[str, Any]]]:
        """The top ``k`` next items (id, name, probability) after each history, in one
        padded forward pass. A history needs at least one known item."""
        encoded = []
        for n, history in enumerate(histories):
            known, unknown = self.encode(history)
            if not known:
                what = f" (unknown: {', '.join(unknown[:5])})" if unknown else ""
                raise ValueError(f"history {n + 1}: expected at least one item the run "
                                 f"knows{what}")
            encoded.append(known)
        longest = max(len(e) for e in encoded)
        items = torch.zeros(len(encoded), longest, dtype=torch.int64)
        for row, e in enumerate(encoded):
            items[row, : len(e)] = torch.tensor(e)
        lengths = torch.tensor([len(e) for e in encoded])
        queries, _ = self.model(items, lengths=lengths)
        last = queries[torch.arange(len(encoded)), lengths - 1]  # [B, D]
        scores = self.model.scores(last)
        return [self._ranked(scores[row], e, k) for row, e in enumerate(encoded)]

    def session(self) -> SessionStream:
        """A session advanced one event at a time."""
        return SessionStream(self)


class SessionStream:
    """One session's state, advanced by :meth:`add` (one recurrent step per event)."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender
        self.state: State | None = None
        self.query: torch.Tensor | None = None
        self.seen: list[int] = []

    @torch.no_grad()
    def add(self, item: str) -> bool:
        """Read one event; False (and nothing changes) when the item is unknown."""
        index = self.recommender.index.get(item)
        if index is None:
            return False
        query, self.state = self.recommender.model.step(torch.tensor([index]), self.state)
        self.query = query[0]
        self.seen.append(index)
        return True

    @torch.no_grad()
    def top(self, k: int = 20) -> list[dict[str, Any]]:
        if self.query is None:
            raise ValueError("the session has no known event yet; add one first")
        model = self.recommender.model
        return self.recommender._ranked(model.scores(self.query), self.seen, k)
