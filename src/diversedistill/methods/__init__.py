"""Distillation methods, one file each, found by name in :data:`METHODS`."""

from diversedistill.methods.base import METHODS, Method, method_class, register_method
from diversedistill.methods.diversedistill import DiverseDistill, DiverseDistillConfig
from diversedistill.methods.student_only import StudentOnly

__all__ = ["METHODS", "DiverseDistill", "DiverseDistillConfig", "Method", "StudentOnly",
           "method_class", "register_method"]
