"""One module per application; each exposes task objects the runner and the CLI drive."""

from rnnkit.tasks import forecast, lm, longrange, seqclass, textclass, translate

TASKS = {task.name: task for task in (seqclass.TASK, textclass.TASK, lm.TASK, forecast.TASK,
                                      translate.TASK,
                                      longrange.ADDING, longrange.COPY)}

__all__ = ["TASKS"]
