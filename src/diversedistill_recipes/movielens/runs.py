"""MovieLens training runs as plain-data jobs, so that ``reproduce movielens --workers N``
can run them N at a time (:mod:`diversedistill.loop.parallel`).

A :class:`~diversedistill_recipes.jobs.Job` names what to train: the student alone, or a
method (DiverseDistill with changes to the run's configuration, or a baseline with its
config values) on a committee.
A worker holds the data, the split and the frozen teachers (read from the caches the parent
filled), and for the tables a cache of each teacher's own pass; :func:`run` trains one
student there through :func:`~diversedistill_recipes.jobs.train_student` (the data set as a
:class:`~diversedistill_recipes.movielens.rating_recipes.MovieLensRecipe`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from diversedistill.committee import Committee
from diversedistill.interface import Teacher
from diversedistill.loop.cached_teacher import CachedOwnPass
from diversedistill.loop.parallel import worker_state
from diversedistill.methods import DiverseDistill, DiverseDistillConfig, build_method
from diversedistill_recipes.jobs import Job, JobResult, train_student
from diversedistill_recipes.locate import locate_movielens
from diversedistill_recipes.movielens.lm.prepare import prepare_language_teacher
from diversedistill_recipes.movielens.rating_recipes import (
    TEACHERS,
    MovieLensRecipe,
    as_teacher,
    train_or_load_teacher,
)
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split, teacher_holdout


def prepare(release: str, data_dir, split: str, split_seed: int, cache_root: Path, lm,
            lm_cache: Path, injection: str, cfg: DiverseDistillConfig, out: Path,
            progress: bool, holdout: float = 0.0, resume: bool = False) -> dict:
    """A worker's state, read from the caches (the parent trained every teacher first)."""
    quiet = lambda *_: None  # noqa: E731 - the parent has logged all of this once
    ml = load_movielens(locate_movielens(release, data_dir))
    part = make_split(ml, split, split_seed)
    taught, unseen = teacher_holdout(part, holdout, split_seed)
    teachers = {n: train_or_load_teacher(ml, taught, n, r, split_seed, cache_root, False,
                                         log=quiet)[0]
                for n, r in TEACHERS.items()}
    if lm is not None:
        teachers["lm"] = prepare_language_teacher(ml, taught, lm, lm_cache, split_seed, False,
                                                  quiet)[0]
    return state_from(ml, part, teachers, injection, cfg, out, progress, unseen, resume)


def state_from(ml, part, teachers: dict, injection: str, cfg: DiverseDistillConfig, out: Path,
               progress: bool, unseen=None, resume: bool = False) -> dict:
    """``unseen``: the training rows the teachers never saw (``--teacher-holdout``);
    ``resume``: every run continues from its last checkpoint (``--resume``)."""
    return {"ml": ml, "part": part, "recipe": MovieLensRecipe(ml, part, unseen=unseen),
            "teachers": teachers, "own": {}, "injection": injection, "cfg": cfg,
            "out": Path(out), "progress": progress, "resume": resume}


def committee_of(teachers: dict, names, injection: str) -> Committee:
    """MLP teachers are hooked afresh (their injection mode may differ per run); a
    prepared teacher object (the LM, an own-pass cache) is used as it is."""
    return Committee([teachers[n] if isinstance(teachers[n], Teacher)
                      else as_teacher(n, teachers[n], mode=injection) for n in names])


def build_run_method(job: Job, cfg: DiverseDistillConfig):
    values, _ = job.split_values()
    if job.method == "diversedistill":
        return DiverseDistill(replace(cfg, **values))
    return build_method(job.method, values)


def run(job: Job) -> JobResult:
    """Train the student of ``job`` in this process (a worker, or the parent)."""
    state = worker_state()
    if not job.names:
        return train_student(state["recipe"], job, None, None, state["out"], state["progress"],
                             resume=state.get("resume", False))
    injection = job.split_values()[1] or state["injection"]
    teachers = state["teachers"]
    if job.own_pass:  # frozen teachers: their own pass per row never changes
        teachers = {n: state["own"].setdefault(n, CachedOwnPass(
            m if isinstance(m, Teacher) else as_teacher(n, m, injection)))
            for n, m in teachers.items() if n in job.names}
    return train_student(state["recipe"], job, build_run_method(job, state["cfg"]),
                         committee_of(teachers, job.names, injection), state["out"],
                         state["progress"], resume=state.get("resume", False))


def describe_own_passes(state: dict) -> list[str]:
    """What the own-pass caches of a state (this process's) stored and served."""
    return [f"own-pass cache {name}: {t.rows_stored} rows stored, {t.hits:,} rows served from "
            f"memory, {t.misses:,} computed" for name, t in state["own"].items()
            if t.hits + t.misses]
