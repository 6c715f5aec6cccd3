"""The sections of a command's ``--config`` YAML file that configure a method or a teacher:
``diversedistill:``, ``injection:``, ``lm:``, ``tables:`` and one per baseline (``fd:``)."""

from __future__ import annotations

from typing import Any

from diversedistill.config import from_dict, load_yaml, short
from diversedistill.errors import ConfigError


def sections(config: str | None,
             parameter_keys: set[str] | frozenset[str] = frozenset()) -> dict:
    """The file's sections, every top-level key checked: a section, or a key that the
    command reads as one of its flags (``parameter_keys``)."""
    from diversedistill.methods import METHODS

    base = load_yaml(config) if config else {}
    # a baseline's options sit under its own name (e.g. "fd:"), DiverseDistill's under its own
    known = ["diversedistill", "injection", "lm", "tables",
             *sorted(set(METHODS) - {"diversedistill", "student"})]
    unknown = set(base) - set(known) - set(parameter_keys)
    if unknown:
        flags = f"; or a flag: {', '.join(sorted(k for k in parameter_keys if '-' not in k))}" \
            if parameter_keys else ""
        raise ConfigError(f"{config}: unknown top-level key {sorted(unknown)[0]!r}; "
                          f"known: {', '.join(known)}{flags}")
    return {k: v for k, v in base.items() if k not in parameter_keys}


def _mapping(config: str | None, name: str, value: Any) -> dict:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{config}: {name}: expected a mapping of keys to values, "
                          f"got {type(value).__name__}")
    return dict(value or {})


def diversedistill_config(config: str | None, flags: dict, injection: str | None,
                          base: dict | None = None):
    """DiverseDistill's configuration and the MLP teachers' injection mode: the file's
    ``diversedistill:`` and ``injection:``, under the flags given."""
    from diversedistill.methods.diversedistill import DiverseDistillConfig

    base = sections(config) if base is None else base
    values = _mapping(config, "diversedistill", base.get("diversedistill"))
    if config:  # the file alone first, so that its mistakes are blamed on it
        from_dict(DiverseDistillConfig, values, config)
    values.update(flags)
    injection = injection or base.get("injection", "add")
    if injection not in ("add", "replace"):
        raise ConfigError(f"{config}: injection must be 'add' or 'replace', "
                          f"got {short(injection)}")
    return from_dict(DiverseDistillConfig, values, "command line"), injection


def lm_config(config: str | None, lm: str | None, base: dict | None = None):
    """The language-model teacher from --lm and the file's ``lm:``; None for --lm none."""
    from diversedistill_recipes.movielens.lm.prepare import LMConfig

    base = sections(config) if base is None else base
    values = _mapping(config, "lm", base.get("lm"))
    if lm:
        values["model"] = lm
    if values.get("model") == "none":
        return None
    return from_dict(LMConfig, values, f"{config}: lm" if config else "--lm")


def tables_config(config: str | None, base: dict | None = None):
    """The tables' protocol with the file's ``tables:`` (its grids replace the default
    ones of the methods it names)."""
    from diversedistill_recipes.comparison.search import TablesConfig

    base = sections(config) if base is None else base
    values = base.get("tables") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{config}: tables: expected a mapping, got {values!r}")
    return from_dict(TablesConfig, values, f"{config}: tables" if config else "tables")
