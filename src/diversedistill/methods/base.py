"""What a method is: a module that turns one batch into a dict of losses.

A method never owns a loop. The one training loop (:mod:`diversedistill.training`) calls
``method(student, committee, batch)``, backpropagates ``out["loss"]`` and logs every other
entry. A method's own parameters (projections, the distillation module) are trained by the
loop's optimizer beside the student's, at the method's learning rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError
from diversedistill.interface import Batch, HookedStudent

METHODS: dict[str, type["Method"]] = {}


def register_method(name: str) -> Callable[[type["Method"]], type["Method"]]:
    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        METHODS[name] = cls
        return cls
    return add


def method_class(name: str) -> type["Method"]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; registered methods: {sorted(METHODS)}")
    return METHODS[name]


class Method(nn.Module):
    name: ClassVar[str]
    needs_teachers: ClassVar[bool] = True

    def __init__(self):
        super().__init__()
        self.epoch = 0  # set by the training loop at the start of every epoch

    def setup(self, student: HookedStudent, committee: Committee, example: Batch) -> None:
        """Build parameters whose shapes depend on the student and teachers."""

    def learning_rate(self) -> float | None:
        """The method's own learning rate, or None to use the student's."""
        return None

    def uses_every_parameter(self) -> bool:
        """Whether every step gives every parameter a gradient. DDP must otherwise look for
        the unused ones on each step (slower), or it stops with an error."""
        return True

    def epoch_stats(self) -> dict[str, float]:
        """Figures to log once per epoch (and then reset)."""
        return {}

    def forward(self, student: HookedStudent, committee: Committee, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError
