"""diversedistill: distill a committee of diverse frozen teachers into a compact student.

The public API; everything else is an implementation detail.
"""

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError, DataError, DiverseDistillError, ModelError
from diversedistill.export import export_model, load_model
from diversedistill.interface import Answer, HookedStudent, HookedTeacher, StudentOutput, Teacher
from diversedistill.methods import (METHODS, DiverseDistill, DiverseDistillConfig, Method,
                                    register_method)
from diversedistill.module import AnswerAugmenter, DistillationModule, QuestionAugmenter
from diversedistill.training import DistillationTask, FitResult, TrainConfig, fit

__all__ = [
    "METHODS", "Answer", "AnswerAugmenter", "Committee", "ConfigError", "DataError",
    "DistillationModule", "DistillationTask", "DiverseDistill", "DiverseDistillConfig",
    "DiverseDistillError", "FitResult", "HookedStudent", "HookedTeacher", "Method", "ModelError",
    "QuestionAugmenter", "StudentOutput", "Teacher", "TrainConfig", "export_model", "fit",
    "load_model", "register_method",
]
__version__ = "0.1.0"
