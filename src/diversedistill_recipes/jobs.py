"""What every data set's reproduction shares: the job, one student's training, the results
book, the teacher cache key.

A reproduction (MovieLens ratings, CIFAR images, a third data set) trains many students on
one split against one set of frozen teachers, some of them in worker processes
(:mod:`diversedistill.loop.parallel`). These pieces are the same whatever the data:

- :class:`Job`: one run as plain, picklable data (what to train, on which seed, from which
  committee, with which config values, into which directory);
- :class:`DataSetRecipe`: the few things a data set answers (its student, its loaders, its
  training settings, its metric, what to leave behind a finished run), and
  :func:`train_student`, which trains one job's student from them, alone or distilled;
- :class:`ResultBook`: ``results.csv``, one row per (method, teachers, seed), rewritten
  after every run, so that a killed reproduction keeps what finished and ``--resume``
  continues from it;
- :func:`cache_entry`: where a teacher trained once is kept, named by a hash of everything
  that decides its weights.

A third data set is one new recipe (``tests/recipes/test_dataset_recipe.py`` has one in a
page); how its teachers are trained and cached stays with it, since that is where data sets
differ (a language model's text, an image tower's prompts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from torch.utils.data import DataLoader

from diversedistill.committee import Committee
from diversedistill.interface import HookedStudent
from diversedistill.methods import StudentOnly
from diversedistill.methods.base import Method
from diversedistill.runs import rundir
from diversedistill.training import RUN_FILE, FitResult, TrainConfig, fit, run_settings
from diversedistill_recipes.comparison.results import Metric, read_results, write_csv
from diversedistill_recipes.comparison.tables import read_search


@dataclass(frozen=True)
class Job:
    """One run of a reproduction.

    ``names`` empty is the student trained alone; ``kind`` "teacher" (with one name) trains
    or reads that teacher. ``values`` are sorted (key, value) pairs: changes to
    DiverseDistill's config (ablations, the tables' search, a τ) or a baseline's config
    values; the key "injection" says how questions enter the teachers for this run.
    ``own_pass``: the teachers' own passes are served from the worker's memo (frozen
    teachers: a row's own pass never changes)."""

    label: str  # the results row's method column
    seed: int = 0
    names: tuple[str, ...] = ()
    method: str = "diversedistill"
    values: tuple = ()
    own_pass: bool = False
    run_name: str = ""  # directory under out/runs ("" = label-teachers-seed)
    kind: str = "run"  # "run" (a student, alone or distilled) or "teacher"

    @property
    def committee(self) -> str:
        """The results row's teachers column ("" for the student alone: the caller's
        student name goes there)."""
        return "+".join(self.names)

    def run_dir(self, out: Path) -> Path:
        default = f"{self.label.replace(' ', '_')}-{self.committee}-{self.seed}"
        return Path(out) / "runs" / (self.run_name or default)

    def split_values(self) -> tuple[dict, str]:
        """(the config values, the injection mode: "" = the reproduction's own)."""
        values = dict(self.values)
        return values, str(values.pop("injection", ""))


@runtime_checkable
class DataSetRecipe(Protocol):
    """What a data set answers so that :func:`train_student` can train its student on a
    seed, alone or from a committee. Everything else (the split, the teachers, the
    search) is shared or belongs to the caller."""

    metric: Metric  # what the rows carry, and which way is better
    student_name: str  # the results row's teachers column for the student alone
    clamp: tuple[float, float] | None  # predictions clamped to this range when scored

    def new_student(self, seed: int) -> HookedStudent:
        """A freshly initialized student, its weights drawn from ``seed``."""
        ...

    def loaders(self, seed: int) -> tuple[DataLoader, DataLoader, DataLoader]:
        """(train, validation, test) loaders; ``seed`` orders the training batches."""
        ...

    def train_config(self, seed: int, progress: bool) -> TrainConfig:
        ...

    def finish(self, student: HookedStudent, result: FitResult, info: dict) -> None:
        """Called after every finished run with the best epoch restored: e.g. export the
        student (``info``: its method and teachers) so ``diversedistill export`` finds it."""
        ...


@dataclass
class JobResult:
    val: float  # the recipe's metric at the best epoch
    test: float
    seconds: float
    epochs: int
    run_dir: Path


def train_student(recipe: DataSetRecipe, job: Job, method: Method | None,
                  committee: Committee | None, out: Path, progress: bool,
                  run_dir: Path | None = None, resume: bool = False) -> JobResult:
    """Train ``job``'s student in this process: alone (``method`` None) or distilled from
    ``committee``, into ``run_dir`` (default ``job.run_dir(out)``; ``resume``: from its last
    checkpoint, when the run there was started with the same settings; a run of other
    settings, e.g. of a changed grid, starts afresh). The committee must come back unchanged
    (frozen teachers); a DiverseDistill run also leaves its ``importance.csv``."""
    run_dir = Path(run_dir) if run_dir is not None else job.run_dir(out)
    student = recipe.new_student(job.seed)  # drawn before the loaders: seeds as they were
    train, val, test = recipe.loaders(job.seed)
    before = committee.fingerprint() if committee is not None else ""
    distiller = method or StudentOnly()
    training = recipe.train_config(job.seed, progress)
    resume = resume and started_with(run_dir,
                                     run_settings(training, distiller, committee, train, val))
    result = fit(student, distiller, committee, train, val, test, training, run_dir,
                 clamp=recipe.clamp, metric=recipe.metric.name, resume=resume)
    info: dict = {"method": "student alone"}
    if committee is not None:
        committee.check_unchanged(before)
        info = {"method": distiller.name, "teachers": committee.names}
        cfg = getattr(distiller, "cfg", None)  # a configured method's settings, when it has them
        if dataclasses.is_dataclass(cfg):
            info["distillation"] = dataclasses.asdict(cfg)  # type: ignore[arg-type]
    recipe.finish(student, result, info)
    return JobResult(result.val, result.test if result.test is not None else math.nan,
                     result.seconds, result.epochs, run_dir)


def own_results(out: str | Path) -> Path:
    """A reproduction's or comparison's output directory, made the tool's (refused, writing
    nothing, when it holds a user's files). A comparison an older version marked as a run
    is recognised and kept; an unmarked folder is never taken, whatever it holds."""
    out = Path(out)
    if (out / "results.csv").is_file() and rundir.kind_of(out) == "run":
        rundir.adopt(out, "results")
    return rundir.own(out, "results")


def started_with(run_dir: Path, settings: dict) -> bool:
    """The run in ``run_dir`` was started with ``settings``, as its ``run.json`` records
    them (written when it started, the same settings as its checkpoints')."""
    try:
        recorded = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded == json.loads(json.dumps(settings)))


class ResultBook:
    """``results.csv`` of a reproduction: one row per (method, teachers, seed), written
    atomically after every recorded row; a row recorded again (a resumed run) replaces the
    earlier one. Each recorded row is logged as one line."""

    def __init__(self, out: Path, metric: Metric, log: Callable[[str], None] = print,
                 rows: list | None = None):
        self.out, self.metric, self.log = own_results(out), metric, log
        self.rows: list = list(rows or [])

    def record(self, row) -> None:
        key = (row.method, row.teachers, row.seed)
        self.rows[:] = [r for r in self.rows if (r.method, r.teachers, r.seed) != key] + [row]
        write_csv(self.out / "results.csv", self.rows)
        shown = "   -  " if math.isnan(row.val) else f"{row.val:.4f}"
        self.log(f"  seed {row.seed}  {row.method:<28} {row.teachers:<18} val {shown}  "
                 f"test {row.test:.4f}  ({row.seconds:.0f}s)")

    def record_run(self, job: Job, result: JobResult, student_name: str) -> None:
        """Record a trained student's row (``student_name``: the teachers column of the
        student alone)."""
        self.record(self.metric.row(job.label, job.committee or student_name, job.seed,
                                    result.val, result.test, result.seconds))

    def resume(self) -> list | None:
        """Keep the rows of an earlier run in ``out`` and return its search rows (None: no
        search.csv there)."""
        if (self.out / "results.csv").is_file():
            self.rows = read_results(self.out / "results.csv")
        search = None
        if (self.out / "search.csv").is_file():
            search = read_search(self.out / "search.csv")
        return search

    def kept(self) -> set[tuple[str, str, int]]:
        return {(r.method, r.teachers, r.seed) for r in self.rows}

    def missing(self, jobs: list[Job], student_name: str) -> list[Job]:
        """The ``jobs`` whose row is not in the book yet: what a resumed run still has to
        train (``student_name``: the teachers column of the student alone)."""
        kept = self.kept()
        return [j for j in jobs if (j.label, j.committee or student_name, j.seed) not in kept]


def cache_entry(cache_root: Path, name: str, key_data: dict) -> tuple[Path, str]:
    """(the cache directory of teacher ``name``, its key): a hash of ``key_data`` (the data,
    the split, the recipe, the seed: everything that decides the weights), so that a
    changed recipe or split never reads a stale teacher."""
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_root) / f"{name}-{key}", key
