"""A user's table, student and teachers as a :class:`~diversedistill_recipes.jobs.DataSetRecipe`:
what MovieLens and CIFAR answer, answered from the YAML, so that ``distill``, ``compare``
and ``train-teacher`` train the user's student through :func:`~diversedistill_recipes.jobs.
train_student` like every other data set.

The seed fixes everything a run draws: the student's first weights (drawn in
:meth:`TableRecipe.new_student`), the module's (drawn in ``fit`` after it seeds), and the
order of the training batches. The same config twice gives the same figures.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError, ModelError
from diversedistill.interface import HookedStudent, HookedTeacher
from diversedistill.training import FitResult, TrainConfig
from diversedistill_recipes.comparison.results import ACCURACY, MSE
from diversedistill_recipes.tabular.spec import (
    UserRun,
    build_model,
    factory_of,
    resolve,
)
from diversedistill_recipes.tabular.table import Table, read_table


def read_features(model, batch):
    """Every model of a table run reads the feature columns."""
    return model(batch["x"])


class TableRecipe:
    """``run`` (a checked :class:`~diversedistill_recipes.tabular.spec.UserRun`) as a recipe.
    ``export``: leave each finished run's student in its ``student/`` folder (``distill``
    does; ``compare`` keeps only the scores)."""

    clamp = None

    def __init__(self, run: UserRun, export: bool = True, train: dict | None = None,
                 trust_code: bool = False):
        self.run, self.export = run, export
        self.trust_code = trust_code  # --trust-code: a teacher's recorded factory may run
        self.table: Table = read_table(run.data, run.where)
        self.metric = ACCURACY if self.table.classes else MSE
        self.student_name = "student"  # the student-alone row's teachers column
        self.train = {**run.train, **(train or {})}  # flags over the YAML's train: section
        TrainConfig(**self.train)  # a bad value fails now, not after a teacher has loaded

    def new_student(self, seed: int) -> HookedStudent:
        torch.manual_seed(seed)  # the student's first weights are the seed's
        spec = self.run.student
        model = build_model(spec.class_path, spec.init_args, f"{self.run.where}: student",
                            self.run.where)
        self.check_classes("student", model)
        return HookedStudent(model, spec.question_at, spec.head, call=read_features,
                             token=spec.token)

    def check_classes(self, who: str, model: torch.nn.Module) -> None:
        """A classifier needs a logit for every class of the table: a label past its last
        logit ends the run in cross-entropy's IndexError, at whichever batch holds it."""
        if not self.table.class_names:
            return
        logits = _logits_of_two_rows(model, self.table.x[:2])
        classes = len(self.table.class_names)
        if logits is not None and logits < classes:
            data = self.run.data
            raise ModelError(
                f"{self.run.where}: {who} answers {logits} classes but column {data.target!r} "
                f"of {data.file} holds {classes} ({', '.join(self.table.class_names[:8])}"
                f"{', ...' if classes > 8 else ''}); give it one output per class")

    def loaders(self, seed: int):
        return self.table.loaders(seed)

    def train_config(self, seed: int, progress: bool) -> TrainConfig:
        return TrainConfig(**{**self.train, "progress": progress, "seed": seed})

    def finish(self, student: HookedStudent, result: FitResult, info: dict) -> None:
        if not self.export:
            return
        from diversedistill.export import export_run_student

        spec = self.run.student
        # the label of each output (a factory's export has no other place for them)
        labels = {"class_names": self.table.class_names} if self.table.class_names else {}
        export_run_student(student, result, {**info, "data": asdict(self.run.data), **labels},
                           factory=factory_of(spec.class_path), arguments=spec.init_args)

    # ------------------------------------------------------------------------ teachers

    @property
    def teacher_names(self) -> list[str]:
        return [t.name for t in self.run.teachers]

    def teachers(self) -> dict[str, HookedTeacher]:
        """Every teacher the YAML names, loaded (weights checked against their checksum)."""
        models = [self.teacher_model(i) for i in range(len(self.run.teachers))]
        for i, model in enumerate(models):
            self.check_classes(f"teachers[{i}] ({self.run.teachers[i].name!r})", model)
        return {t.name: HookedTeacher(t.name, model, t.inject_at, t.head,
                                      mode=t.mode, call=read_features, token=t.token)
                for t, model in zip(self.run.teachers, models)}

    def teacher_model(self, i: int):
        """The ``i``-th teacher's exported model. A factory export is rebuilt by the class
        the YAML names for it (``class_path``, which must be the one recorded), or by the
        recorded factory under ``--trust-code``; refused otherwise, nothing imported."""
        from diversedistill.export import load_model, read_config
        from diversedistill.models.model_code import refusal

        teacher = self.run.teachers[i]
        path = resolve(teacher.export_dir, self.run.where)
        if teacher.class_path is not None:
            return load_model(path, factory=factory_of(teacher.class_path))
        config = read_config(path)
        if config["architecture"] == "factory" and not self.trust_code:
            recorded = (config.get("model") or {}).get("factory")
            raise ConfigError(f"{self.run.where}: teachers[{i}]: " + refusal(
                path, str(recorded), f"name its class in the YAML (teachers[{i}].class_path: "
                                     "package.module.Class) or pass --trust-code"))
        return load_model(path, trust_code=self.trust_code)

    def committee(self, teachers: dict[str, HookedTeacher], names) -> Committee:
        missing = [n for n in names if n not in teachers]
        if missing:
            raise ConfigError(f"{self.run.where}: no teacher named {missing[0]!r}; the YAML "
                              f"names {sorted(teachers)}")
        return Committee([teachers[n] for n in names])

    def describe(self) -> str:
        sizes = {k: len(v) for k, v in self.table.parts.items()}
        task = (f"classification, {len(self.table.class_names)} classes, scored by accuracy"
                if self.table.class_names else "regression, scored by MSE")
        return (f"{resolve(self.run.data.file, self.run.where)}: {len(self.table.y)} rows, "
                f"{self.table.x.shape[1]} features; {task}; split {sizes['train']} train / "
                f"{sizes['val']} val / {sizes['test']} test (split_seed "
                f"{self.run.data.split_seed})")


def _logits_of_two_rows(model: torch.nn.Module, x: torch.Tensor) -> int | None:
    """The width of ``model``'s answer to two rows, in eval mode (no batch statistics
    updated, no dropout drawn), or None when it does not answer [rows, width]: the
    contract's first pass names that problem itself."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception:  # noqa: BLE001 - reported by the first pass, with its context
        return None
    finally:
        model.train(was_training)
    return int(out.shape[1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None
