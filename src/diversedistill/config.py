"""Typed configuration: dataclasses filled from YAML files and command-line flags.

Unknown keys and wrongly typed values are rejected with the key's full name and the file
it came from, instead of being ignored or failing later inside a model. Every number is
also range-checked here, for every configuration class at once (:data:`RANGES`): NaN and
infinity are refused everywhere, learning rates must be positive, widths at least 1,
weights such as λ and epoch counts non-negative. A YAML file that names a key twice is
refused instead of silently keeping the last value.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from diversedistill.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, checking every key and value type."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {short(data)}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # T: a dataclass
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {short(unknown[0])}; known keys: {sorted(known)}")
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    for key, value in values.items():
        check_range(key, value, where)
    try:
        return cls(**values)
    except ConfigError as err:  # a value out of range: say where it came from
        raise ConfigError(f"{where}: {err}") from None


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message quotes a value, not a file."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 20]}... ({len(text)} characters)"


# Ranges by key name, for every configuration class built by from_dict (methods, LM,
# recipes): (lowest, lowest allowed?, highest, highest allowed?, in words)
_POSITIVE = (0.0, False, math.inf, False, "> 0")
_NON_NEGATIVE = (0.0, True, math.inf, False, ">= 0")
_WIDTH = (1, True, 1 << 20, True, "an integer in 1..1048576")
_FRACTION = (0.0, True, 1.0, False, "in [0, 1)")
_UNIT = (0.0, True, 1.0, True, "in [0, 1]")
# what numpy's and torch's generators take alike (a negative or larger seed raises there, or
# is silently folded onto another one)
_SEED = (0, True, (1 << 32) - 1, True, "an integer in 0..4294967295")
RANGES: dict[str, tuple] = {
    **dict.fromkeys(("lr", "module_lr", "weight_lr", "temperature", "importance_temperature",
                     "init_std", "logit_scale"), _POSITIVE),
    **dict.fromkeys(("lam", "lam_logit", "lam_feature", "hint_weight", "reg_weight",
                     "weight_decay", "epochs", "warmup_epochs", "finetune_layers", "patience",
                     "weights", "val_size"), _NON_NEGATIVE),
    **dict.fromkeys(("d1", "d2", "hidden", "embedding_dim", "max_length", "batch_size",
                     "build_batch", "solver_steps", "gate_every", "eval_batch_size",
                     "train_size"), _WIDTH),
    **dict.fromkeys(("dropout", "embedding_dropout"), _FRACTION),
    **dict.fromkeys(("cap", "alpha", "momentum", "drop_below"), _UNIT),
    **dict.fromkeys(("seed", "split_seed"), _SEED),
}


def check_range(key: str, value: Any, where: str) -> None:
    """NaN and infinity are refused for every number; known keys also get their range."""
    if isinstance(value, (list, tuple)):
        for item in value:
            check_range(key, item, where)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a finite number, got {value}")
    if key not in RANGES:
        return
    low, low_ok, high, high_ok, words = RANGES[key]
    if (value < low or (value == low and not low_ok)
            or value > high or (value == high and not high_ok)):
        raise ConfigError(f"{where}: {key} must be {words}, got {short(value)}")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {short(value)} is not a valid {hint}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {short(value)}")
        (inner, *_) = typing.get_args(hint) or (Any,)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {short(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {short(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {short(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {short(value)}")
    return value


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:  # before merging: an explicit key may override '<<'
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                try:
                    key = self.construct_object(key_node, deep=True)
                    hash(key)
                except (TypeError, yaml.YAMLError):
                    continue  # the base constructor reports an unusable key itself
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _DuplicateKey(key, line, seen[key])
                seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        # reading a named pipe blocks until something writes to it: refuse, never hang
        raise ConfigError(f"{path}: not a regular file (a pipe, socket or device); "
                          "save the config as a file")
    try:
        text = path.read_bytes().decode("utf-8")
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied; cannot read the config file") from None
    except UnicodeDecodeError as err:
        bom = " (it starts with a UTF-16 byte-order mark)" if err.object[:2] in (
            b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigError(f"{path}: not valid UTF-8 text (byte {err.start}){bom}; save the "
                          "config file as UTF-8") from None
    except _DuplicateKey as dup:
        raise ConfigError(f"{path}, line {dup.line}: duplicate key {short(dup.key)} (first at "
                          f"line {dup.first}); each key may appear once") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data
