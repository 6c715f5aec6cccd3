"""Which code loading a model directory may run.

A model directory is data: a downloaded run or a teacher someone sent holds a
``config.json`` that anyone could have written. Loading it never imports a module or
calls a constructor the directory names, unless that code is one of

- a registered architecture (:func:`~diversedistill.export.register_architecture`, an entry
  point, or a built-in: code the user installed and chose);
- a factory the *caller* passes (``load_model(path, factory=MyNet)`` or
  ``factory="pkg.mod:MyNet"``), which the directory's recorded factory must then match;
- any factory, after an explicit ``trust_code=True`` (``--trust-code`` on the command line).

Without one of them the directory is refused in one sentence, before anything is imported.
Even with them, only an ``nn.Module`` subclass or a function marked with
:func:`model_factory` is ever called: a config naming ``os:system`` is refused, not run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from torch import nn

from diversedistill.errors import ModelError

FACTORY_MARK = "__diversedistill_factory__"

# what a caller may pass as ``factory=``: the builder itself, or its "pkg.mod:Name"
Factory = Union[Callable[..., nn.Module], str]


def model_factory(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Mark a function as one an export config may name as its ``factory``."""
    setattr(fn, FACTORY_MARK, True)
    return fn


def check_factory_text(target: Any) -> tuple[str, str]:
    """``"package.module:Name"`` -> (module, attribute), read as text: nothing imported."""
    if not isinstance(target, str) or target.count(":") != 1 or target.startswith(":"):
        raise ValueError(f"factory must be 'package.module:Name', got {target!r}")
    module_name, _, attribute = target.partition(":")
    return module_name, attribute


def factory_name(build: Callable[..., Any]) -> str:
    """The ``"package.module:Name"`` an export of ``build`` records."""
    return f"{build.__module__}:{build.__qualname__}"


def check_builder(build: Any, target: str) -> Callable[..., nn.Module]:
    """``build`` if it is a model builder (an ``nn.Module`` class or a marked function)."""
    is_module_class = isinstance(build, type) and issubclass(build, nn.Module)
    if not (is_module_class or getattr(build, FACTORY_MARK, False)):
        raise ModelError(f"factory {target!r} is not an nn.Module class or a function marked "
                         "with @diversedistill.export.model_factory; refused (a config file "
                         "names it, so only model builders are called)")
    return build


def importable(target: Any) -> Callable[..., nn.Module]:
    """``"package.module:Name"`` -> the builder. Imports the module: call it only for a
    factory the caller chose or trusted (see :func:`choose_factory`)."""
    module_name, attribute = check_factory_text(target)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelError(f"factory {target!r}: cannot import {module_name!r} ({err}); install "
                         "the package that defines the model first") from None
    build: Any = module
    for part in attribute.split("."):
        build = getattr(build, part, None)
    return check_builder(build, target)


@dataclass(frozen=True)
class ChosenFactory:
    """A factory loading may call, not yet imported: the caller's own builder, or the
    recorded ``"pkg.mod:Name"`` that the caller typed or trusted."""

    recorded: str
    given: Callable[..., nn.Module] | None = None

    def builder(self) -> Callable[..., nn.Module]:
        if self.given is not None:
            return check_builder(self.given, self.recorded)
        return importable(self.recorded)


def choose_factory(directory: Path, recorded: Any, factory: Factory | None,
                   trust_code: bool) -> ChosenFactory:
    """The factory a ``factory`` export in ``directory`` may be rebuilt with, decided from
    text alone: the caller's ``factory`` (which must be the one recorded), or the recorded
    one under ``trust_code``; refused otherwise."""
    if not isinstance(recorded, str):
        raise ModelError(f"{directory / 'config.json'}: key 'model.factory' is {recorded!r}, "
                         "not 'package.module:Name'")
    if factory is not None:
        given = factory if isinstance(factory, str) else factory_name(factory)
        if given != recorded:
            raise ModelError(f"{directory}: its config.json names factory {recorded!r}, not "
                             f"{given!r} as given; refused (pass the factory the model was "
                             "exported with)")
        return ChosenFactory(recorded, None if isinstance(factory, str) else factory)
    if trust_code:
        return ChosenFactory(recorded)
    raise ModelError(refusal(directory, recorded))


def refusal(directory: Path, recorded: str,
            ways_out: str = "pass the factory yourself (load_model(path, factory=...)) or "
                            "opt in with trust_code=True (on the command line: --trust-code)"
            ) -> str:
    """Why a directory's own code is not run, and the ways to run it anyway."""
    return (f"{directory}: its config.json names factory {recorded!r}, code that loading "
            f"would import and run; refused, nothing was imported: {ways_out}")
