"""A run on the user's own table and models, as YAML names it, every part checked before
anything loads (``distill``, ``train-teacher`` and ``compare --config``):

    data:                        # a table: CSV (or TSV, by its extension) with a header
      file: rows.csv
      features: [f0, f1, f2]     # numeric columns, the student's and teachers' input "x"
      target: y                  # integers -> classification (accuracy), else regression
      task: auto                 # or regression / classification
      val_fraction: 0.1
      test_fraction: 0.1
      batch_size: 64
    student:
      class_path: my_models.Student      # an nn.Module class: installed, or my_models.py
                                         # beside the YAML file
      init_args: {width: 32}
      question_at: body.0                # as HookedStudent takes them
      head: head
    teachers:
      - name: wide
        export_dir: teachers/wide        # an export_model directory (checksum checked)
        class_path: my_models.Wide       # the class it was exported with (a factory
                                         # export's code is run only when named here, or
                                         # with --trust-code)
        inject_at: "0"
        head: "2"
    method: diversedistill               # or any registered baseline, or student (alone)
    diversedistill: {lam: 3.0}           # the method's options
    train: {max_epochs: 20, lr: 1.0e-3}  # TrainConfig

Every model is called on the batch's ``"x"`` (the feature columns as float32). Training
goes through :class:`~diversedistill_recipes.tabular.recipe.TableRecipe`, the same
``DataSetRecipe`` path MovieLens and CIFAR take.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from diversedistill.config import from_dict, short
from diversedistill.errors import ConfigError, DataError

SECTIONS = ("data", "student", "teachers", "method", "diversedistill", "train")


@dataclass
class TableData:
    file: str
    features: list[str]
    target: str
    task: str = "auto"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    batch_size: int = 64
    split_seed: int = 0


@dataclass
class StudentSpec:
    class_path: str
    question_at: str
    head: str
    init_args: dict = field(default_factory=dict)
    token: int | None = None


@dataclass
class ModelSpec:
    """A teacher to train: ``train-teacher --config`` (its ``model:`` section)."""

    class_path: str
    init_args: dict = field(default_factory=dict)


@dataclass
class TeacherSpec:
    name: str
    export_dir: str
    inject_at: str
    head: str
    mode: str = "add"
    token: int | None = None
    class_path: str | None = None  # the class it was exported with: the user's typed choice


@dataclass
class UserRun:
    data: TableData
    student: StudentSpec
    teachers: list[TeacherSpec]
    method: str
    method_options: dict
    train: dict
    where: Path


def inputs(run: UserRun) -> list[tuple[str, Path]]:
    """What the run reads (its table, its teachers' exports), as ``rundir.check_inputs_outside``
    takes them: a fresh run clears its ``--out``, so none may lie inside it."""
    return [("data.file", resolve(run.data.file, run.where)),
            *((f"teachers: {t.name}", resolve(t.export_dir, run.where)) for t in run.teachers)]


def is_user_run(config: dict) -> bool:
    return any(key in config for key in ("data", "student", "teachers"))


def _sections(config: dict, where: Path, needed: tuple[str, ...], what: str) -> str:
    """Check the top-level keys (one file serves ``distill`` and ``train-teacher``: the
    sections of both, and the named method's own); return the method's name."""
    method = config.get("method", "diversedistill")
    check_method(method, f"{where}: method")
    known = [*SECTIONS, "model", method]
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {short(unknown[0])}; known: "
                          f"{known}")
    for key in needed:
        if key not in config:
            raise ConfigError(f"{where}: {what} needs a {key!r} section")
    return method


def check_method(method, where: str) -> None:
    """A registered method's name ("student": the student alone), or one sentence."""
    from diversedistill.methods import METHODS

    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(f"{where}: unknown method {short(method)}; known: {sorted(METHODS)}")


def method_options(config: dict, method: str, where: Path) -> dict:
    """The options section named after the method; the student alone has none (its name
    is also the ``student:`` section, which describes the model)."""
    if method == "student":
        return {}
    options = config.get(method) or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: {method}: expected a mapping of options, got "
                          f"{short(options)}")
    return dict(options)


def _train_options(config: dict, where: Path) -> dict:
    """The ``train:`` section, its keys and values checked against TrainConfig."""
    from diversedistill.training import TrainConfig

    train = dict(config.get("train") or {})
    from_dict(TrainConfig, train, f"{where}: train")
    return train


def _init_args(spec, where: str) -> None:
    if not isinstance(spec.init_args, dict):
        raise ConfigError(f"{where}.init_args: expected a mapping of argument names to "
                          f"values, got {short(spec.init_args)}")


def read_user_run(config: dict, where: Path) -> UserRun:
    """The run the YAML describes, every key, file and class path checked; nothing loaded
    but the file's header line and the modules the class paths name."""
    method = _sections(config, where, ("data", "student", "teachers"),
                       "a run on your own data")
    data = from_dict(TableData, config["data"], f"{where}: data")
    student = from_dict(StudentSpec, config["student"], f"{where}: student")
    _init_args(student, f"{where}: student")
    teachers_raw = config["teachers"]
    if not isinstance(teachers_raw, list) or not teachers_raw:
        raise ConfigError(f"{where}: teachers: expected a list of teachers, got "
                          f"{short(teachers_raw)}")
    teachers = [from_dict(TeacherSpec, t, f"{where}: teachers[{i}]")
                for i, t in enumerate(teachers_raw)]
    run = UserRun(data, student, teachers, method, method_options(config, method, where),
                  _train_options(config, where), where)
    _check_files(run)
    return run


def read_teacher_config(config: dict, where: Path) -> tuple[TableData, ModelSpec, dict]:
    """``train-teacher --config``: its ``data``, ``model`` and ``train`` sections, checked
    as :func:`read_user_run` checks a run (the other sections of a run's file are allowed,
    so one YAML can serve both commands)."""
    _sections(config, where, ("data", "model"), "training a teacher")
    data = from_dict(TableData, config["data"], f"{where}: data")
    model = from_dict(ModelSpec, config["model"], f"{where}: model")
    _init_args(model, f"{where}: model")
    train = _train_options(config, where)
    _check_table(data, where)
    importable(model.class_path, f"{where}: model.class_path", where)
    return data, model, train


def factory_of(class_path: str) -> str:
    """``package.module.Name`` as the export's factory, ``package.module:Name``."""
    module, _, name = class_path.rpartition(".")
    return f"{module}:{name}"


def build_model(class_path: str, init_args: dict, where: str, config: Path | None = None):
    """An instance of the class ``class_path`` names, built with ``init_args``."""
    cls = importable(class_path, f"{where}.class_path", config)
    try:
        return cls(**init_args)
    except TypeError as err:
        raise ConfigError(f"{where}.init_args do not fit {class_path} ({err})") from None


def _check_files(run: UserRun) -> None:
    _check_table(run.data, run.where)
    where = run.where
    importable(run.student.class_path, f"{where}: student.class_path", where)
    names = [t.name for t in run.teachers]
    for i, teacher in enumerate(run.teachers):
        if names.count(teacher.name) > 1:
            raise ConfigError(f"{where}: teachers[{i}]: name {teacher.name!r} used twice")
        if not (resolve(teacher.export_dir, where) / "config.json").is_file():
            raise ConfigError(f"{where}: teachers[{i}].export_dir {teacher.export_dir!r}: no "
                              "exported model there (export_model writes config.json)")
        if teacher.class_path is not None:  # typed by the user: importing it is their choice
            importable(teacher.class_path, f"{where}: teachers[{i}].class_path", where)


def _check_table(data: TableData, where: Path) -> None:
    if data.task not in ("auto", "regression", "classification"):
        raise ConfigError(f"{where}: data.task must be auto, regression or classification, "
                          f"got {short(data.task)}")
    if not 0 < data.val_fraction < 1 or not 0 <= data.test_fraction < 1 or \
            data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(f"{where}: data.val_fraction and data.test_fraction must leave "
                          "training rows (each in [0, 1), val above 0, their sum below 1)")
    if not data.features:
        raise ConfigError(f"{where}: data.features is empty; list the columns the model "
                          "reads")
    path = resolve(data.file, where)
    if not path.is_file():
        raise ConfigError(f"{where}: data.file {data.file!r}: no such file ({path})")
    if data.target in data.features:  # the answer among the inputs: a perfect, useless fit
        raise ConfigError(f"{where}: data: the target {data.target!r} is also listed in "
                          "data.features")
    header = _header(path)
    for column in [*data.features, data.target]:
        if column not in header:
            raise ConfigError(f"{where}: data: column {column!r} is not in {path} (its "
                              f"columns: {header[:12]})")


def resolve(path: str, where: Path) -> Path:
    """A path as written, or relative to the YAML file's folder when only that exists."""
    given = Path(path)
    beside = where.parent / given
    return beside if not given.exists() and beside.exists() else given


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def _header(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        try:
            return next(csv.reader(f, delimiter=_separator(path)))
        except StopIteration:
            raise DataError(f"{path}: empty file; expected a header line") from None
        except UnicodeDecodeError:
            raise not_utf8(path) from None


def not_utf8(path: Path) -> DataError:
    """The line of the first byte that is not UTF-8 (a table saved as latin-1, say); the
    decoder's own offset counts from the chunk it was reading, not from the file's start."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        start = len(data)
    except UnicodeDecodeError as err:
        start = err.start
    line = data[:start].count(b"\n") + 1
    return DataError(f"{path}, line {line}: not valid UTF-8 text (byte {start}); save the "
                     "table as UTF-8")


def importable(class_path: str, where: str, config: Path | None = None):
    """``package.module.Name`` -> the nn.Module class. ``config``: the YAML file naming it,
    whose folder is searched after every installed package (so a ``my_models.py`` beside the
    YAML imports without PYTHONPATH, and never shadows an installed module)."""
    from torch import nn

    if config is not None:
        folder = str(Path(config).resolve().parent)
        if folder not in sys.path:
            sys.path.append(folder)

    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise ConfigError(f"{where}: {class_path!r} is not 'package.module.Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{where}: cannot import {module_name!r} ({err})") from None
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"{where}: {class_path!r} is not an nn.Module class")
    return cls
