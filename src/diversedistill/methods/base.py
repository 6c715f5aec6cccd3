"""What a method is: a module that turns one batch into a dict of losses.

A method never owns a loop. The one training loop (:mod:`diversedistill.training`) calls
``method(student, committee, batch)``, backpropagates ``out["loss"]`` and logs every other
entry. A method's own parameters (projections, the distillation module) are trained by the
loop's optimizer beside the student's, at the method's learning rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from diversedistill.committee import Committee
from diversedistill.config import from_dict
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


def build_method(name: str, values: Mapping[str, Any] | None = None,
                 where: str | None = None) -> "Method":
    """Method ``name`` built from plain data, e.g. a YAML section or CLI flags.

    ``values`` fills the method's ``config_class`` dataclass through
    :func:`diversedistill.config.from_dict`: an unknown key, a wrongly typed value or a value
    the config rejects raises one :class:`ConfigError` that names ``where`` (default
    ``method <name>``). A method without a config class takes no values.
    """
    cls = method_class(name)
    where = where or f"method {name!r}"
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {type(values).__name__}")
    if cls.config_class is None:
        if values:
            raise ConfigError(f"{where}: method {name!r} takes no options, got {sorted(values)}")
        return cls()
    try:
        cfg: Any = from_dict(cls.config_class, dict(values or {}), where)
    except ConfigError as err:  # a __post_init__ check does not know where the values came from
        text = str(err)
        raise ConfigError(text if text.startswith(where) else f"{where}: {text}") from None
    return cls(cfg)  # type: ignore[call-arg]  # a method with a config_class takes it


class Method(nn.Module):
    name: ClassVar[str]
    needs_teachers: ClassVar[bool] = True
    # the dataclass that holds the method's knobs (None: it has none); ``build_method`` fills it
    config_class: ClassVar[type | None] = None
    # what the distillation distance is measured in, in words: the comparison tables state it
    # per method, so that a reader can judge whether one λ is one strength for each
    distance_in_words: ClassVar[str] = "not stated"

    def __init__(self):
        super().__init__()
        self.epoch = 0  # set by the training loop at the start of every epoch

    def setup(self, student: HookedStudent, committee: Committee, example: Batch) -> None:
        """Build parameters whose shapes depend on the student and teachers."""

    def learning_rate(self) -> float | None:
        """The method's own learning rate, or None to use the student's."""
        return None

    def distance_note(self) -> str:
        """:attr:`distance_in_words`, or (overridden) the distance this config chose."""
        return self.distance_in_words

    def uses_every_parameter(self) -> bool:
        """Whether every step gives every parameter a gradient. DDP must otherwise look for
        the unused ones on each step (slower), or it stops with an error."""
        return True

    def epoch_stats(self) -> dict[str, float]:
        """Figures to log once per training epoch (and then reset)."""
        return {}

    def observe_validation(self, student: HookedStudent, committee: Committee | None,
                           batch: Batch) -> None:
        """See one validation batch (eval mode, no gradient) for :meth:`validation_stats`."""

    def validation_stats(self) -> dict[str, float]:
        """Diagnostics of the validation epoch just seen (then reset), logged per epoch."""
        return {}

    def forward(self, student: HookedStudent, committee: Committee,
                batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError
