"""One module per application; each exposes task objects the runner and the CLI drive."""

from rnnkit.tasks import longrange, seqclass

TASKS = {task.name: task for task in (seqclass.TASK, longrange.ADDING, longrange.COPY)}

__all__ = ["TASKS"]
