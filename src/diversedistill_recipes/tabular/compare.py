"""*Will it help on my data?* ``diversedistill compare --config my.yaml`` and
:func:`compare`: every method a user would weigh, on their data, teachers and student,
under the protocol the comparison tables use.

It runs, on N seeds:

- each teacher alone (its own score: frozen, so one row) and the student alone;
- LD (plain knowledge distillation) from each teacher;
- the multi-teacher baselines (MT, AMTML, AutoSKD, AEKD) and DiverseDistill on the whole
  committee.

Each method's one main knob (λ; AMTML's α) is chosen on validation by the tables' search
(:class:`~diversedistill_recipes.comparison.search.TableProtocol`: three values, one more
beyond an edge, on seed 0), the same effort for every method; the chosen value then runs
on every seed. The test column is read once, after. The run writes ``results.csv`` and
``search.csv`` (as the tables do, so ``--resume`` keeps every finished run), the table as
``comparison.md`` / ``comparison.csv``, and ``report/`` with its plots.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from diversedistill.config import from_dict
from diversedistill.diversedistill_config import DiverseDistillConfig
from diversedistill.errors import ConfigError
from diversedistill.interface import Teacher
from diversedistill.methods.base import Method
from diversedistill_recipes.comparison.claims import Cell
from diversedistill_recipes.comparison.results import (
    format_table,
    summarize,
    write_summary_csv,
)
from diversedistill_recipes.comparison.search import (
    ALPHA,
    LAM,
    NORMALIZED,
    TIED_LAM,
    MethodGrid,
    TableProtocol,
    make_method,
)
from diversedistill_recipes.jobs import DataSetRecipe, Job, JobResult, ResultBook, train_student

# one knob per method, three values and one beyond an edge: the same effort for each
COMPARE_GRIDS: dict[str, MethodGrid] = {
    "ld": MethodGrid((LAM,)),
    "fd": MethodGrid((LAM,), NORMALIZED),
    "sckd": MethodGrid((TIED_LAM,), NORMALIZED),
    "mt": MethodGrid((LAM,)),
    "amtml": MethodGrid((ALPHA,), NORMALIZED),
    "autoskd": MethodGrid((LAM,)),
    "aekd": MethodGrid((LAM,)),
    "diversedistill": MethodGrid((LAM,)),
}
PER_TEACHER = ("ld", "fd", "sckd")  # methods that distill from one teacher: a cell each
DEFAULT_METHODS = ("ld", "mt", "amtml", "autoskd", "aekd", "diversedistill")
TEACHER_ALONE = "teacher alone"
STUDENT_ALONE = "student alone"


def comparison_cells(teachers: Sequence[str], methods: Sequence[str]) -> list[Cell]:
    """(method, teachers) cells: a per-teacher method once per teacher, the others on the
    whole committee."""
    unknown = [m for m in methods if m not in COMPARE_GRIDS]
    if unknown:
        raise ConfigError(f"--methods: unknown method {unknown[0]!r}; known: "
                          f"{sorted(COMPARE_GRIDS)}")
    cells: list[Cell] = []
    for method in dict.fromkeys(methods):
        if method in PER_TEACHER:
            cells += [(method, name) for name in teachers]
        else:
            cells.append((method, "+".join(teachers)))
    return cells


@torch.no_grad()
def teacher_score(teacher: Teacher, loader, metric: str) -> float:
    """A frozen teacher's own metric over a loader (its mean over rows)."""
    from diversedistill.training import METRICS

    score, total, rows = METRICS[metric][1], 0.0, 0
    for batch in loader:
        total += float(score(teacher.predict(batch), batch["target"]).sum())
        rows += batch["target"].shape[0]
    return total / max(rows, 1)


def train_cell(recipe: DataSetRecipe, teachers: Mapping[str, Teacher], names: tuple[str, ...],
               method: Method, seed: int, out: Path, run_dir: Path, progress: bool,
               resume: bool = False) -> JobResult:
    """One distilled student of a cell, here or in a worker: ``method`` from the committee
    of ``names``, into ``run_dir`` (``resume``: from its last checkpoint)."""
    from diversedistill.committee import Committee

    return train_student(recipe, Job(method.name, seed, names, method.name), method,
                         Committee([teachers[n] for n in names]), out, progress,
                         run_dir=run_dir, resume=resume)


class Comparison:
    """One ``compare`` run: trains what is missing from ``out`` and writes the table.

    ``execute(runs, on_result)`` trains a list of :class:`TableRun` (here, in order, unless
    the caller hands worker processes in); the student-alone jobs go the same way."""

    def __init__(self, recipe: DataSetRecipe, teachers: Mapping[str, Teacher], out: str | Path,
                 seeds: int = 3, methods: Sequence[str] | None = None,
                 base: DiverseDistillConfig | None = None,
                 grids: Mapping[str, MethodGrid] | None = None, resume: bool = False,
                 progress: bool = False, log: Callable[[str], None] = print, workers: int = 1):
        if seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {seeds}")
        if not teachers:
            raise ConfigError("compare needs at least one teacher")
        self.recipe, self.teachers, self.out = recipe, dict(teachers), Path(out)
        self.seeds, self.base, self.progress, self.log = seeds, base or DiverseDistillConfig(), \
            progress, log
        self.cells = comparison_cells(list(self.teachers), methods or DEFAULT_METHODS)
        self.book = ResultBook(self.out, recipe.metric, log)
        previous = self.book.resume() if resume else None
        if resume:
            log(f"resuming {self.out}: {len(self.book.rows)} result rows and "
                f"{len(previous or [])} search rows kept")
        elif (self.out / "results.csv").is_file():
            log(f"note: {self.out} holds an earlier comparison; this run replaces it "
                "(--resume continues it instead)")
        self.protocol = TableProtocol(
            self._run, self.base, seeds, self.out, {**COMPARE_GRIDS, **(grids or {})},
            cells=self.cells, log=log, done=self.book.rows if resume else (),
            done_search=previous, metric=recipe.metric, workers=workers)
        self.resume = resume

    # -------------------------------------------------------------------------- training

    def _run(self, names: tuple[str, ...], method: Method, seed: int, run_dir: Path) -> JobResult:
        return train_cell(self.recipe, self.teachers, names, method, seed, self.out, run_dir,
                          self.progress, self.resume)

    def student_jobs(self) -> list[Job]:
        jobs = [Job(STUDENT_ALONE, s, run_name=f"student-{s}") for s in range(self.seeds)]
        return self.book.missing(jobs, self.recipe.student_name) if self.resume else jobs

    def run(self, execute: Callable[[list, Callable], None] | None = None) -> str:
        """Train what is missing, then write and return the table (Markdown). ``execute``
        (runs, on_result), when given, trains the runs (the student-alone jobs and the
        protocol's), e.g. in worker processes; by default they train here, in order."""
        self.log(self.protocol.describe())
        self._teacher_rows()
        student_jobs = self.student_jobs()
        if execute is None:
            for job in student_jobs:
                result = train_student(self.recipe, job, None, None, self.out, self.progress,
                                       resume=self.resume)
                self.book.record_run(job, result, self.recipe.student_name)
        else:
            execute(student_jobs, lambda job, result: self.book.record_run(
                job, result, self.recipe.student_name))
            self.protocol.execute = execute
        self.protocol.run_seeds(range(self.seeds), self.book.record)
        return self.write()

    def _teacher_rows(self) -> None:
        _, val, test = self.recipe.loaders(0)
        metric = self.recipe.metric
        for name, teacher in self.teachers.items():
            scores = [teacher_score(teacher, loader, metric.name) if loader is not None
                      else math.nan for loader in (val, test)]
            for seed in range(self.seeds):  # frozen: the same on every seed, as gap needs
                self.book.record(metric.row(TEACHER_ALONE, name, seed, *scores, 0.0))

    def write(self) -> str:
        metric = self.recipe.metric
        summary, best = summarize(self.book.rows, (STUDENT_ALONE, self.recipe.student_name),
                                  TEACHER_ALONE, metric)
        table = format_table(summary, best, metric)
        chosen = ", ".join(f"{m} {t}: {json.dumps(c)}" for (m, t), c in
                           self.protocol.chosen.items())
        text = (f"# Will it help on this data?\n\n{table}\n\nChosen on validation (seed 0): "
                f"{chosen or 'nothing searched'}.\n")
        from diversedistill.runs.atomic import write_text_atomic

        write_text_atomic(self.out / "comparison.md", text)
        write_summary_csv(self.out / "comparison.csv", summary, metric)
        from diversedistill_recipes.report import write_report

        write_report([self.out])
        return table


def compare(recipe: DataSetRecipe, teachers: Mapping[str, Teacher], out: str | Path,
            seeds: int = 3, methods: Sequence[str] | None = None,
            base: DiverseDistillConfig | None = None, resume: bool = False,
            progress: bool = False, log: Callable[[str], None] = print) -> str:
    """Compare every method on ``recipe``'s data from ``teachers`` (name -> frozen teacher),
    into ``out``; return the table. ``recipe``: a
    :class:`~diversedistill_recipes.jobs.DataSetRecipe` (a
    :class:`~diversedistill_recipes.tabular.recipe.TableRecipe` for a YAML table)."""
    return Comparison(recipe, teachers, out, seeds, methods, base, resume=resume,
                      progress=progress, log=log).run()


# ------------------------------------------------------------------ from a YAML, on workers


def _worker_init(config: str, out: str, trust_code: bool = False,
                 resume: bool = False) -> dict:
    """A worker's own recipe and teachers, read from the YAML as the parent read them;
    ``resume``: its runs continue from their last checkpoints."""
    recipe, base = table_recipe(config, trust_code)
    return {"recipe": recipe, "teachers": recipe.teachers(), "base": base, "out": out,
            "resume": resume}


def _worker_run(run) -> JobResult:
    from diversedistill.loop.parallel import worker_state

    state = worker_state()
    recipe = state["recipe"]
    if isinstance(run, Job):  # the student alone
        return train_student(recipe, run, None, None, Path(state["out"]), False,
                             resume=state.get("resume", False))
    method = make_method(run.method, json.loads(run.values), state["base"])
    return train_cell(recipe, state["teachers"], tuple(run.teachers.split("+")), method,
                      run.seed, Path(state["out"]), run.run_dir, False,
                      state.get("resume", False))


def table_recipe(config: str | Path, trust_code: bool = False):
    """The YAML's table recipe and DiverseDistill's base settings (its ``diversedistill:``
    section), every part checked before anything trains; ``trust_code`` as
    :class:`~diversedistill_recipes.tabular.recipe.TableRecipe` takes it."""
    from diversedistill.config import load_yaml
    from diversedistill_recipes.tabular.recipe import TableRecipe
    from diversedistill_recipes.tabular.spec import read_user_run

    raw = load_yaml(str(config))
    run = read_user_run(raw, Path(config))
    base = from_dict(DiverseDistillConfig, dict(raw.get("diversedistill") or {}),
                     f"{config}: diversedistill")
    return TableRecipe(run, export=False, trust_code=trust_code), base


def compare_config(config: str | Path, out: str | Path, seeds: int = 3,
                   methods: Sequence[str] | None = None, workers: int = 1,
                   resume: bool = False, progress: bool = False,
                   log: Callable[[str], None] = print, trust_code: bool = False) -> str:
    """``diversedistill compare --config``: :func:`compare` on the YAML's table, student and
    teachers; ``workers`` students at a time, each in a single-threaded process (which
    reads the YAML itself)."""
    from diversedistill.loop.parallel import run_jobs

    recipe, base = table_recipe(config, trust_code)
    log(recipe.describe())
    comparison = Comparison(recipe, recipe.teachers(), out, seeds, methods, base,
                            resume=resume, progress=progress, log=log, workers=workers)
    state = {"recipe": recipe, "teachers": comparison.teachers, "base": base,
             "out": str(comparison.out), "resume": resume}

    def execute(runs: list, on_result) -> None:
        run_jobs(runs, _worker_run, on_result, workers, _worker_init,
                 (str(config), str(comparison.out), trust_code, resume), state=state)
    return comparison.run(execute if workers > 1 else None)
