"""``diversedistill distill --config my.yaml --out runs/x``: a run on the user's own data
and models, every part named in the YAML and checked before anything loads.

    data:                        # a table: CSV (or TSV, by its extension) with a header
      file: rows.csv
      features: [f0, f1, f2]     # numeric columns, the student's and teachers' input "x"
      target: y                  # integers -> classification (accuracy), else regression
      task: auto                 # or regression / classification
      val_fraction: 0.1
      test_fraction: 0.1
      batch_size: 64
    student:
      class_path: my_models.Student      # an nn.Module class, importable
      init_args: {width: 32}
      question_at: body.0                # as HookedStudent takes them
      head: head
    teachers:
      - name: wide
        export_dir: teachers/wide        # an export_model directory (checksum checked)
        inject_at: "0"
        head: "2"
    method: diversedistill               # or any registered baseline
    diversedistill: {lam: 3.0}           # the method's options
    train: {max_epochs: 20, lr: 1.0e-3}  # TrainConfig

Every model is called on the batch's ``"x"`` (the feature columns as float32). The run
directory ends with ``student/`` (exported with its factory, so ``load_model`` rebuilds it).
"""

from __future__ import annotations

import dataclasses
import importlib
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


@dataclass
class UserRun:
    data: TableData
    student: StudentSpec
    teachers: list[TeacherSpec]
    method: str
    method_options: dict
    train: dict
    where: Path


def is_user_run(config: dict) -> bool:
    return any(key in config for key in ("data", "student", "teachers"))


def _sections(config: dict, where: Path, needed: tuple[str, ...], what: str) -> str:
    """Check the top-level keys (one file serves ``distill`` and ``train-teacher``: the
    sections of both, and the named method's own); return the method's name."""
    method = config.get("method", "diversedistill")
    if not isinstance(method, str):
        raise ConfigError(f"{where}: method: expected a method name, got {short(method)}")
    known = [*SECTIONS, "model", method]
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {short(unknown[0])}; known: "
                          f"{known}")
    for key in needed:
        if key not in config:
            raise ConfigError(f"{where}: {what} needs a {key!r} section")
    return method


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
    options = config.get(method)
    run = UserRun(data, student, teachers, method, dict(options or {}),
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
    importable(model.class_path, f"{where}: model.class_path")
    return data, model, train


def train_user_teacher(config: dict, where: Path, out: str | Path, seed: int = 0,
                       progress: bool = True) -> dict:
    """Train the ``model:`` alone on the table's training rows (the same split a later
    ``distill --config`` of the same ``data:`` uses), export it to ``out`` with its class
    as factory; its run (checkpoints, logs) stays in ``out/run``."""
    from diversedistill import rundir
    from diversedistill.export import export_model
    from diversedistill.interface import HookedStudent
    from diversedistill.methods import StudentOnly
    from diversedistill.training import TrainConfig, fit

    data, spec, train_options = read_teacher_config(config, where)
    train, val, test = table_loaders(data, where)
    model = _build(spec.class_path, spec.init_args, f"{where}: model")
    # trained alone: only its prediction is read, so no question point or head is named
    alone = HookedStudent(model, "", "", call=lambda m, b: m(b["x"]))
    cfg = TrainConfig(**{"progress": progress, "seed": seed, **train_options})
    result = fit(alone, StudentOnly(), None, train, val, test, cfg, Path(out) / "run")
    if result.rank == 0:
        rundir.mark(out, "model")
        export_model(model, out, {"metrics": result.summary(), "data": dataclasses.asdict(data)},
                     factory=_factory(spec.class_path), arguments=spec.init_args)
    return result.summary()


def _factory(class_path: str) -> str:
    """``package.module.Name`` as the export's factory, ``package.module:Name``."""
    module, _, name = class_path.rpartition(".")
    return f"{module}:{name}"


def _build(class_path: str, init_args: dict, where: str):
    cls = importable(class_path, f"{where}.class_path")
    try:
        return cls(**init_args)
    except TypeError as err:
        raise ConfigError(f"{where}.init_args do not fit {class_path} ({err})") from None


def _check_files(run: UserRun) -> None:
    _check_table(run.data, run.where)
    where = run.where
    importable(run.student.class_path, f"{where}: student.class_path")
    names = [t.name for t in run.teachers]
    for i, teacher in enumerate(run.teachers):
        if names.count(teacher.name) > 1:
            raise ConfigError(f"{where}: teachers[{i}]: name {teacher.name!r} used twice")
        if not (resolve(teacher.export_dir, where) / "config.json").is_file():
            raise ConfigError(f"{where}: teachers[{i}].export_dir {teacher.export_dir!r}: no "
                              "exported model there (export_model writes config.json)")


def _check_table(data: TableData, where: Path) -> None:
    if data.task not in ("auto", "regression", "classification"):
        raise ConfigError(f"{where}: data.task must be auto, regression or classification, "
                          f"got {short(data.task)}")
    if not 0 < data.val_fraction < 1 or not 0 <= data.test_fraction < 1 or \
            data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(f"{where}: data.val_fraction and data.test_fraction must leave "
                          "training rows (each in [0, 1), val above 0, their sum below 1)")
    path = resolve(data.file, where)
    if not path.is_file():
        raise ConfigError(f"{where}: data.file {data.file!r}: no such file ({path})")
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


def importable(class_path: str, where: str):
    """``package.module.Name`` -> the nn.Module class."""
    from torch import nn

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


def table_loaders(data: TableData, where: Path):
    """(train, val, test) loaders of {"x": [B, features] float32, "target": [B]} batches."""
    import numpy as np
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from diversedistill.contract import NamedRows

    path = resolve(data.file, where)
    table = pd.read_csv(path, sep=_separator(path))
    for column in [*data.features, data.target]:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            raise DataError(f"{path}, line {int(bad[0]) + 2}: column {column!r} holds "
                            f"{short(table[column].iloc[bad[0]])}, not a number")
    x = torch.tensor(table[data.features].to_numpy(dtype=np.float32))
    target = table[data.target].to_numpy()
    classes = data.task == "classification" or (
        data.task == "auto" and np.issubdtype(target.dtype, np.integer))
    y = torch.tensor(target.astype(np.int64 if classes else np.float32))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(data.split_seed))
    n_val, n_test = round(len(y) * data.val_fraction), round(len(y) * data.test_fraction)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test],
             "train": order[n_val + n_test:]}
    if min(len(parts["train"]), len(parts["val"])) == 0:
        raise DataError(f"{path}: {len(y)} rows leave no training or validation rows")
    named = {k: NamedRows(TensorDataset(x[rows], y[rows]), ("x", "target"))
             for k, rows in parts.items()}
    train = DataLoader(named["train"], batch_size=data.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(data.split_seed))
    evaluate = {k: DataLoader(named[k], batch_size=max(data.batch_size, 256))
                for k in ("val", "test")}
    return train, evaluate["val"], evaluate["test"] if len(parts["test"]) else None


def run_user_config(run: UserRun, out: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """Train, export the student, return the metrics (what ``distill`` prints)."""
    from diversedistill.committee import Committee
    from diversedistill.export import export_run_student, load_model
    from diversedistill.interface import HookedStudent, HookedTeacher
    from diversedistill.methods import build_method
    from diversedistill.training import TrainConfig, fit

    train, val, test = table_loaders(run.data, run.where)
    call = lambda m, b: m(b["x"])  # noqa: E731  every model reads the feature columns
    model = _build(run.student.class_path, run.student.init_args, f"{run.where}: student")
    student = HookedStudent(model, run.student.question_at, run.student.head, call=call,
                            token=run.student.token)
    teachers = [HookedTeacher(t.name, load_model(resolve(t.export_dir, run.where)), t.inject_at,
                              t.head, mode=t.mode, call=call, token=t.token)
                for t in run.teachers]
    method = build_method(run.method, run.method_options or None, f"{run.where}: {run.method}")
    cfg = TrainConfig(**{"progress": progress, "seed": seed, **run.train})
    result = fit(student, method, Committee(teachers), train, val, test, cfg, out)
    export_run_student(student, result,
                       {"method": run.method, "teachers": [t.name for t in run.teachers],
                        "distillation": dataclasses.asdict(method.cfg)
                        if hasattr(method, "cfg") else {}},
                       factory=_factory(run.student.class_path), arguments=run.student.init_args)
    return result.summary()

