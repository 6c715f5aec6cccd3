"""diversedistill: distill a committee of diverse frozen teachers into a compact student.

The public API; everything else is an implementation detail. Names are imported on first
use (PEP 562), so that ``diversedistill --help`` and ``import diversedistill.errors`` do
not pay for torch, Lightning and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_WHERE = {
    "Committee": "committee",
    "ConfigError": "errors", "DataError": "errors", "DiverseDistillError": "errors",
    "ModelError": "errors",
    "NamedRows": "loop.contract",
    "export_model": "export", "load_model": "export", "model_factory": "export",
    "Answer": "interface", "HookedStudent": "interface", "HookedTeacher": "interface",
    "StudentOutput": "interface", "Teacher": "interface",
    "METHODS": "methods", "DiverseDistill": "methods", "DiverseDistillConfig": "methods",
    "Method": "methods", "register_method": "methods",
    # the baselines (BASELINES.md) and the student alone, beside DiverseDistill
    "LD": "methods",
    "LDConfig": "methods",
    "FD": "methods",
    "FDConfig": "methods",
    "SCKD": "methods",
    "SCKDConfig": "methods",
    "MT": "methods",
    "MTConfig": "methods",
    "AMTML": "methods",
    "AMTMLConfig": "methods",
    "AutoSKD": "methods",
    "AutoSKDConfig": "methods",
    "AEKD": "methods",
    "AEKDConfig": "methods",
    "StudentOnly": "methods",
    "build_method": "methods",
    "AnswerAugmenter": "methods.module", "DistillationModule": "methods.module",
    "QuestionAugmenter": "methods.module",
    "DistillationTask": "training", "FitResult": "training", "TrainConfig": "training",
    "fit": "training",
}
__all__ = [  # the names of _WHERE, written out for tools that read __all__ statically
    "AEKD", "AEKDConfig", "AMTML", "AMTMLConfig", "Answer", "AnswerAugmenter", "AutoSKD",
    "AutoSKDConfig", "Committee", "ConfigError", "DataError", "DistillationModule",
    "DistillationTask", "DiverseDistill", "DiverseDistillConfig", "DiverseDistillError", "FD",
    "FDConfig", "FitResult", "HookedStudent", "HookedTeacher", "LD", "LDConfig", "METHODS", "MT",
    "MTConfig", "Method", "ModelError", "NamedRows", "QuestionAugmenter", "SCKD", "SCKDConfig",
    "StudentOnly", "StudentOutput", "Teacher", "TrainConfig", "build_method", "export_model",
    "fit", "load_model", "model_factory", "register_method",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'diversedistill' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"diversedistill.{_WHERE[name]}"), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from diversedistill.committee import Committee
    from diversedistill.errors import ConfigError, DataError, DiverseDistillError, ModelError
    from diversedistill.export import export_model, load_model, model_factory
    from diversedistill.interface import (
        Answer,
        HookedStudent,
        HookedTeacher,
        StudentOutput,
        Teacher,
    )
    from diversedistill.loop.contract import NamedRows
    from diversedistill.methods import (
        AEKD,
        AMTML,
        FD,
        LD,
        METHODS,
        MT,
        SCKD,
        AEKDConfig,
        AMTMLConfig,
        AutoSKD,
        AutoSKDConfig,
        DiverseDistill,
        DiverseDistillConfig,
        FDConfig,
        LDConfig,
        Method,
        MTConfig,
        SCKDConfig,
        StudentOnly,
        build_method,
        register_method,
    )
    from diversedistill.methods.module import AnswerAugmenter, DistillationModule, QuestionAugmenter
    from diversedistill.training import DistillationTask, FitResult, TrainConfig, fit
