"""``rnnkit train video``: clip classification and next-frame prediction (:mod:`.task`)."""

from rnnkit.tasks.video.task import TASK, VideoTask

__all__ = ["TASK", "VideoTask"]
