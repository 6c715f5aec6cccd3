"""Distillation methods, one file each, found by name in :data:`METHODS`.

Build one from plain data with :func:`build_method`, e.g.
``build_method("aekd", {"lam": 1.0, "cap": 0.6})``; its knobs are the fields of
``METHODS[name].config_class``.
"""

from diversedistill.methods.aekd import AEKD, AEKDConfig
from diversedistill.methods.amtml import AMTML, AMTMLConfig
from diversedistill.methods.autoskd import AutoSKD, AutoSKDConfig
from diversedistill.methods.base import METHODS, Method, build_method, method_class, register_method
from diversedistill.methods.diversedistill import DiverseDistill, DiverseDistillConfig
from diversedistill.methods.fd import FD, FDConfig
from diversedistill.methods.ld import LD, LDConfig
from diversedistill.methods.mt import MT, MTConfig
from diversedistill.methods.sckd import SCKD, SCKDConfig
from diversedistill.methods.student_only import StudentOnly

__all__ = ["AEKD", "AMTML", "FD", "LD", "METHODS", "MT", "SCKD", "AEKDConfig", "AMTMLConfig",
           "AutoSKD", "AutoSKDConfig", "DiverseDistill", "DiverseDistillConfig", "FDConfig",
           "LDConfig", "MTConfig", "Method", "SCKDConfig", "StudentOnly", "build_method",
           "method_class", "register_method"]
