"""Command-line parsers built from typed, documented functions.

A subcommand is one function. Its signature is the parser and its docstring is ``--help``:

- a positional-only parameter (before ``/``) is a positional argument, the others flags
  (``data_dir`` is ``--data-dir``); a keyword parameter without a default is a required flag;
- the type decides the flag's form: ``int``/``float``/``str`` take a value, ``bool`` is a
  switch (``--resume``; ``bool | None`` is ``--x/--no-x``, unset when neither is given),
  ``list[T]`` takes one or more values (``--seeds-list 1 2``), ``Literal[...]`` gives choices;
- ``Annotated[..., Flag(...)]`` adds what a type cannot say (repeatable, metavar);
- a dataclass parameter is a group of flags, one per field, its fields documented in the
  class docstring's ``Attributes:``; the function receives the instance;
- ``Annotated[dict, FieldFlags(SomeConfig)]`` gives one flag per field of ``SomeConfig``,
  unset unless given: the function receives the dictionary of the ones given (a config
  file's values stay the defaults under them).

A command called with ``config_sets_flags=True`` also reads its flags from the top-level
keys of the YAML file its ``config`` parameter names (``seeds: 5``); a flag on the command
line wins over the file. The file's other keys are left to the command, and so are the
keys it names in ``SECTIONS`` (``lm:`` is a section of the file, though ``--lm`` is a flag).

Why not jsonargparse: its flags are spelled with underscores, and its lists are written
``--committees '[a, b]'``; this project's commands (README, docs, Makefile) are spelled
``--data-dir`` and ``--committees a b``, which argparse keeps. The docstrings are read by
docstring_parser, jsonargparse's own reader.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docstring_parser

from diversedistill.config import load_yaml, short
from diversedistill.errors import ConfigError


@dataclass(frozen=True)
class Flag:
    """What a type cannot say about one flag."""

    repeat: bool = False  # given once per value (--teacher a --teacher b), not nargs
    metavar: str | None = None


@dataclass(frozen=True)
class FieldFlags:
    """One flag per field of a configuration dataclass, unset unless given."""

    config: type
    title: str  # the group's title in --help


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()  # a flag not given on the command line (argparse's default for all)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class _Param:
    """One parameter of a command, as the parser and the call see it."""

    name: str
    kind: type | None  # the scalar type: int, float, str, bool; None for FieldFlags/groups
    default: Any
    many: bool = False  # list[T]
    optional: bool = False  # T | None
    choices: tuple | None = None
    flag: Flag = Flag()
    group: type | None = None  # a dataclass of flags
    fields_of: type | None = None  # FieldFlags
    doc: str = ""
    positional: bool = False


def _unwrap(hint: Any) -> tuple[Any, Flag | FieldFlags | None]:
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        extra = next((e for e in extras if isinstance(e, (Flag, FieldFlags))), None)
        return base, extra
    return hint, None


def _describe(name: str, hint: Any, default: Any, doc: str, positional: bool) -> _Param:
    hint, extra = _unwrap(hint)
    if isinstance(extra, FieldFlags):
        return _Param(name, None, default, fields_of=extra.config, doc=extra.title)
    if dataclasses.is_dataclass(hint):
        return _Param(name, None, default, group=hint, doc=doc)  # type: ignore[arg-type]
    param = _Param(name, None, default, flag=extra or Flag(), doc=doc, positional=positional)
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        param.optional = True
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        param.many, hint = True, args[0]
    if typing.get_origin(hint) is typing.Literal:
        param.choices = typing.get_args(hint)
        hint = type(param.choices[0])
    if hint not in (int, float, str, bool):
        raise TypeError(f"{name}: a command-line parameter is int, float, str, bool, a list or "
                        f"Literal of them, a dataclass or FieldFlags; got {hint!r}")
    param.kind = hint
    return param


def _docs(obj: Any) -> dict[str, str]:
    parsed = docstring_parser.parse(inspect.getdoc(obj) or "")
    return {p.arg_name: " ".join((p.description or "").split()) for p in parsed.params}


def parameters(fn: Callable) -> list[_Param]:
    """The command-line parameters of a command function, in order."""
    hints = typing.get_type_hints(fn, include_extras=True)
    docs = _docs(fn)
    out = []
    for p in inspect.signature(fn).parameters.values():
        default = None if p.default is inspect.Parameter.empty else p.default
        param = _describe(p.name, hints[p.name], default, docs.get(p.name, ""),
                          p.kind is inspect.Parameter.POSITIONAL_ONLY)
        if p.default is inspect.Parameter.empty and not param.positional and param.kind:
            param.default = UNSET  # a required flag
        out.append(param)
    return out


def _paragraphs(obj: Any) -> list[str]:
    """The docstring's paragraphs before its sections (Args:, Attributes:), each one line."""
    text = (inspect.getdoc(obj) or "").split("\n\n")
    out = []
    for paragraph in text:
        if paragraph.split(":")[0].strip() in ("Args", "Attributes", "Returns", "Raises"):
            break
        out.append(" ".join(paragraph.split()))
    return out


def summary(obj: Any) -> str:
    """The docstring's first paragraph: a command's line in the list of commands."""
    return (_paragraphs(obj) or [""])[0]


def description(obj: Any) -> str:
    """The docstring's paragraphs before its sections: a command's --help."""
    return "\n\n".join(textwrap.fill(p, 88) for p in _paragraphs(obj))


def _help(param: _Param) -> str:
    text = param.doc
    shown = param.default not in (None, False, UNSET) and not param.positional
    if shown and "default" not in text:
        value = " ".join(map(str, param.default)) if param.many else param.default
        text = f"{text} (default {value})" if text else f"default {value}"
    return text.replace("%", "%%")


def _add_flag(parser: Any, param: _Param, dest: str | None = None) -> None:
    dest = dest or param.name
    if param.positional:
        parser.add_argument(dest, type=param.kind, nargs="+" if param.many else None,
                            choices=param.choices, metavar=param.flag.metavar,
                            help=_help(param))
        return
    common: dict[str, Any] = {"dest": dest, "help": _help(param)}
    if param.default is UNSET:
        common["required"] = True
    if param.kind is bool and not param.many:
        action = argparse.BooleanOptionalAction if param.optional else "store_true"
        parser.add_argument(flag_name(param.name), action=action, default=UNSET, **common)
        return
    metavar = param.flag.metavar or (None if param.choices else param.name.upper())
    if param.many and param.flag.repeat:  # argparse appends to the default: None, not UNSET
        parser.add_argument(flag_name(param.name), action="append", type=param.kind,
                            choices=param.choices, metavar=metavar, default=None, **common)
        return
    parser.add_argument(flag_name(param.name), type=param.kind, choices=param.choices,
                        nargs="+" if param.many else None, metavar=metavar, default=UNSET,
                        **common)


def _field_params(config: type) -> list[_Param]:
    hints = typing.get_type_hints(config, include_extras=True)
    docs = _docs(config)
    return [_describe(f.name, hints[f.name], None if f.default is dataclasses.MISSING
                      else f.default, docs.get(f.name, ""), False)
            for f in dataclasses.fields(config)]


def _field_help(param: _Param) -> str:
    if param.default is None:  # the doc says what unset means
        return param.doc
    default = {True: "on", False: "off"}.get(param.default, param.default) \
        if isinstance(param.default, bool) else param.default
    return f"{param.doc} (default {default})" if param.doc else f"default {default}"


def add_command(subparsers: Any, name: str, fn: Callable, help: str | None = None,
                fixed: dict[str, Any] | None = None) -> Any:
    """A subparser whose flags are ``fn``'s parameters; ``--help`` is its docstring.
    ``fixed`` parameters are no flags: the subcommand gives them (``reproduce cifar10``
    calls its function with ``dataset="cifar10"``)."""
    fixed = fixed or {}
    parser = subparsers.add_parser(name, help=help or summary(fn), description=description(fn),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    for param in parameters(fn):
        if param.name in fixed:
            continue
        if param.group is not None:
            group = parser.add_argument_group(summary(param.group))
            for field in _field_params(param.group):
                _add_flag(group, field, f"{param.name}.{field.name}")
        elif param.fields_of is not None:
            group = parser.add_argument_group(param.doc)
            for field in _field_params(param.fields_of):
                # unset unless given (every switch --x/--no-x); the help shows the default
                kwargs: dict[str, Any] = {"dest": f"{param.name}.{field.name}",
                                          "default": UNSET, "help": _field_help(field)}
                if field.kind is bool:
                    group.add_argument(flag_name(field.name),
                                       action=argparse.BooleanOptionalAction, **kwargs)
                else:
                    group.add_argument(flag_name(field.name), type=field.kind,
                                       metavar=field.name.upper(), **kwargs)
        else:
            _add_flag(parser, param)
    parser.set_defaults(_command=fn, _fixed=fixed)
    return parser


def _check_type(param: _Param, value: Any, where: str) -> Any:
    """A YAML value for a parameter, checked as the flag would have checked it."""
    kind = param.kind
    assert kind is not None  # a scalar flag

    def one(v: Any) -> Any:
        # a YAML bool is an int to Python: it passes for bool only; an int passes for float
        ok = (isinstance(v, kind) and (kind is bool or not isinstance(v, bool))) or (
            kind is float and isinstance(v, int) and not isinstance(v, bool))
        if not ok:
            raise ConfigError(f"{where}: expected {kind.__name__}, got {short(v)}")
        if param.choices and v not in param.choices:
            raise ConfigError(f"{where}: expected one of {list(param.choices)}, got {short(v)}")
        return kind(v)

    if value is None and (param.optional or param.default is None):
        return None
    if param.many:
        if not isinstance(value, list):
            value = [value]
        return [one(v) for v in value]
    return one(value)


SECTIONS = "__config_sections__"  # a command's attribute: config keys that are not flags


def _slots(fn: Callable) -> dict[str, _Param]:
    """Every flag a config file may set: the plain parameters and the fields of the groups,
    by the name the file uses (a group's field by its own name: ``seeds``, not
    ``run.seeds``)."""
    slots = {}
    for param in parameters(fn):
        if param.group is not None:
            slots.update({f.name: f for f in _field_params(param.group)})
        elif param.kind is not None and not param.positional and param.name != "config":
            slots[param.name] = param
    for name in getattr(fn, SECTIONS, ()):
        slots.pop(name, None)
    return slots


def config_values(fn: Callable, path: str) -> dict[str, Any]:
    """The top-level keys of a YAML file that name ``fn``'s flags, checked."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        return {}
    slots = _slots(fn)
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in slots:
            values[name] = _check_type(slots[name], value, f"{path}: {key}")
    return values


def parameter_keys(fn: Callable) -> set[str]:
    """The YAML keys a ``config_sets_flags`` command reads as its flags (both spellings)."""
    names = set(_slots(fn))
    return names | {n.replace("_", "-") for n in names}


def call(namespace: argparse.Namespace, config_sets_flags: bool = False) -> Any:
    """Call the command the namespace was parsed for, with its parameters: a flag given on
    the command line, else the config file's key (``config_sets_flags``), else the
    function's default."""
    fn = namespace._command
    given = vars(namespace)
    fixed = given.get("_fixed", {})
    file_values: dict[str, Any] = {}
    if config_sets_flags and given.get("config") not in (None, UNSET):
        file_values = config_values(fn, given["config"])

    def value(dest: str, param: _Param, file_key: str) -> Any:
        got = given.get(dest, UNSET)
        if got is UNSET or (got is None and param.flag.repeat):
            got = file_values.get(file_key, param.default)
        return None if got is UNSET else got

    kwargs: dict[str, Any] = {}
    for param in parameters(fn):
        if param.name in fixed:
            kwargs[param.name] = fixed[param.name]
        elif param.group is not None:
            kwargs[param.name] = param.group(**{
                f.name: value(f"{param.name}.{f.name}", f, f.name)
                for f in _field_params(param.group)})
        elif param.fields_of is not None:
            prefix = f"{param.name}."
            kwargs[param.name] = {k[len(prefix):]: v for k, v in given.items()
                                  if k.startswith(prefix) and v is not UNSET}
        else:
            kwargs[param.name] = value(param.name, param, param.name)
    positional = [kwargs.pop(p.name) for p in parameters(fn) if p.positional]
    return fn(*positional, **kwargs)
