"""``distill --config`` and ``train-teacher --config`` on a user's table: one student (or
one teacher) trained through the recipe path every data set takes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from diversedistill.config import from_dict
from diversedistill.errors import ConfigError
from diversedistill_recipes.jobs import Job, train_student
from diversedistill_recipes.tabular.recipe import TableRecipe
from diversedistill_recipes.tabular.spec import (
    UserRun,
    build_model,
    check_method,
    factory_of,
    read_teacher_config,
    resolve,
)
from diversedistill_recipes.tabular.table import read_table


def with_flags(run: UserRun, method: str | None, dd_flags: dict) -> UserRun:
    """The YAML's run with the command line's ``--method`` and DiverseDistill flags over
    it (flags win, as documented)."""
    if method is not None:
        check_method(method, "--method")
        options = run.method_options if method == run.method else {}
        run = dataclasses.replace(run, method=method, method_options=options)
    if dd_flags:
        if run.method != "diversedistill":
            raise ConfigError(f"DiverseDistill's flags ({', '.join(sorted(dd_flags))}) do not "
                              f"apply to method {run.method!r}")
        run = dataclasses.replace(run, method_options={**run.method_options, **dd_flags})
    return run


def distill_table(run: UserRun, out: str | Path, seed: int = 0, progress: bool = True,
                  resume: bool = False, train: dict | None = None,
                  trust_code: bool = False) -> dict:
    """Train the run's student (alone for ``method: student``) into ``out``; its
    ``student/`` is exported with its factory. ``train``: the command line's training
    settings over the YAML's; ``trust_code``: a teacher without ``class_path`` may run the
    factory its directory names. Returns the metrics ``distill`` prints."""
    from diversedistill.methods import build_method

    recipe = TableRecipe(run, export=True, train=train, trust_code=trust_code)
    alone = run.method == "student"
    method = None if alone else build_method(run.method, run.method_options or None,
                                             f"{run.where}: {run.method}")
    teachers = {} if alone else recipe.teachers()
    committee = None if alone else recipe.committee(teachers, recipe.teacher_names)
    job = Job(run.method, seed, () if alone else tuple(recipe.teacher_names), run.method)
    result = train_student(recipe, job, method, committee, Path(out), progress,
                           run_dir=Path(out), resume=resume)
    return {f"val_{recipe.metric.name}": result.val, f"test_{recipe.metric.name}": result.test,
            "seconds": result.seconds, "epochs": result.epochs}


def train_table_teacher(config: dict, where: Path, out: str | Path, seed: int = 0,
                        progress: bool = True, resume: bool = False,
                        train: dict | None = None) -> dict:
    """Train the ``model:`` alone on the table's training rows (the split a later
    ``distill --config`` of the same ``data:`` uses), export it to ``out`` with its class
    as factory; its run (checkpoints, logs) stays in ``out/run``."""
    from diversedistill.export import export_model
    from diversedistill.interface import HookedStudent
    from diversedistill.methods import StudentOnly
    from diversedistill.runs import rundir
    from diversedistill.training import TrainConfig, fit
    from diversedistill_recipes.tabular.recipe import read_features

    data, spec, train_options = read_teacher_config(config, where)
    # the YAML's table, like every other input, lies outside what a fresh run clears
    rundir.check_inputs_outside(Path(out), [("data.file", resolve(data.file, where))])
    table = read_table(data, where)
    import torch

    torch.manual_seed(seed)  # the teacher's first weights are the seed's
    model = build_model(spec.class_path, spec.init_args, f"{where}: model", where)
    # trained alone: only its prediction is read, so no question point or head is named
    alone = HookedStudent(model, "", "", call=read_features)
    cfg = from_dict(TrainConfig, {**train_options, **(train or {}), "progress": progress,
                                  "seed": seed}, f"{where}: train")
    result = fit(alone, StudentOnly(), None, *table.loaders(seed), cfg, Path(out) / "run",
                 resume=resume)
    if result.rank == 0:
        rundir.claim_names(rundir.mark(out, "teacher"), "run")
        labels = {"class_names": table.class_names} if table.class_names else {}
        export_model(model, out, {"metrics": result.summary(), "data": dataclasses.asdict(data),
                                  **labels},
                     factory=factory_of(spec.class_path), arguments=spec.init_args)
    return result.summary()
