"""What every data set's reproduction shares: the job, the results book, the teacher cache key.

A reproduction (MovieLens ratings, CIFAR images, a third data set) trains many students on
one split against one set of frozen teachers, some of them in worker processes
(:mod:`diversedistill.parallel`). Three pieces of that are the same whatever the data:

- :class:`Job`: one run as plain, picklable data (what to train, on which seed, from which
  committee, with which config values, into which directory);
- :class:`ResultBook`: ``results.csv``, one row per (method, teachers, seed), rewritten
  after every run, so that a killed reproduction keeps what finished and ``--resume``
  continues from it;
- :func:`cache_entry`: where a teacher trained once is kept, named by a hash of everything
  that decides its weights.

What differs per data set stays in its own recipe module: how a batch is loaded, how a
student and a teacher are built and trained, which metric the rows carry
(:class:`~diversedistill_recipes.comparison.results.Metric`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


class ResultBook:
    """``results.csv`` of a reproduction: one row per (method, teachers, seed), written
    atomically after every recorded row; a row recorded again (a resumed run) replaces the
    earlier one. Each recorded row is logged as one line."""

    def __init__(self, out: Path, metric: Metric, log: Callable[[str], None] = print,
                 rows: list | None = None):
        self.out, self.metric, self.log = Path(out), metric, log
        self.rows: list = list(rows or [])

    def record(self, row) -> None:
        key = (row.method, row.teachers, row.seed)
        self.rows[:] = [r for r in self.rows if (r.method, r.teachers, r.seed) != key] + [row]
        write_csv(self.out / "results.csv", self.rows)
        val = getattr(row, f"val_{self.metric.name}")
        test = getattr(row, f"test_{self.metric.name}")
        shown = "   -  " if math.isnan(val) else f"{val:.4f}"
        self.log(f"  seed {row.seed}  {row.method:<28} {row.teachers:<18} val {shown}  "
                 f"test {test:.4f}  ({row.seconds:.0f}s)")

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


def cache_entry(cache_root: Path, name: str, key_data: dict) -> tuple[Path, str]:
    """(the cache directory of teacher ``name``, its key): a hash of ``key_data`` (the data,
    the split, the recipe, the seed: everything that decides the weights), so that a
    changed recipe or split never reads a stale teacher."""
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_root) / f"{name}-{key}", key
