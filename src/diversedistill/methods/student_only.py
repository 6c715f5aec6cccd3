"""The student (or a teacher) trained alone on the task: the reference every method beats."""

from __future__ import annotations

from diversedistill.losses import task_loss
from diversedistill.methods.base import Method, register_method


@register_method("student")
class StudentOnly(Method):
    needs_teachers = False
    distance_in_words = "no distillation term"

    def forward(self, student, committee, batch):
        loss = task_loss(student.predict(batch), batch["target"])
        return {"loss": loss, "task": loss.detach()}
