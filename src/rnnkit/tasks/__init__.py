"""One module per application; each exposes a ``TASK`` the runner and the CLI drive."""

from rnnkit.tasks import seqclass

TASKS = {seqclass.TASK.name: seqclass.TASK}

__all__ = ["TASKS"]
