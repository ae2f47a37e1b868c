"""Next-item recommendation from event sequences (GRU4Rec) with its classical baselines:
the task (:mod:`.task`), ranking metrics (:mod:`.ranking`), baselines (:mod:`.baselines`)
and recommendations from a run (:mod:`.recommend`)."""

from rnnkit.tasks.nextitem.recommend import Recommender, SessionStream
from rnnkit.tasks.nextitem.task import TASK, NextItemModule, NextItemTask

__all__ = ["TASK", "NextItemModule", "NextItemTask", "Recommender", "SessionStream"]
