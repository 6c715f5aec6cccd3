"""The fair protocol behind the comparison tables (issue 5; BASELINES.md, fair comparison).

Every cell (method × committee) of :data:`diversedistill.tables.TABLES` gets the same
student, the same frozen teachers, the same split and the same epoch budget with early
stopping on validation (the one training loop, ``STUDENT.train_config``), and its own small
search on validation:

1. on the first seed, one run per value of the method's grid (:data:`GRIDS`); the value
   with the lowest validation MSE is chosen (the first on ties; a NaN never);
2. that run is the cell's result for the first seed (same config, same seed: rerunning it
   would reproduce it), and the chosen value is run on every other seed.

The test MSE of a search run that is not chosen is never written anywhere. Each grid varies
the one or two knobs that matter for its method (λ, or AMTML's α); the temperature is left
out because a rating has no softmax (``methods/common.py``). Two values per method keep the
whole protocol within the 2-hour budget of the 2-core CPU machine: see :meth:`describe`.
A YAML ``tables: grids:`` section replaces a method's grid.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diversedistill.claims import cell_label
from diversedistill.config import from_dict
from diversedistill.errors import ConfigError
from diversedistill.methods import METHODS, DiverseDistill, DiverseDistillConfig, build_method
from diversedistill.methods.base import Method
from diversedistill.results import ResultRow, write_csv
from diversedistill.tables import SearchRow, table_cells

# method -> grid: each entry fills the method's config (build_method); DiverseDistill's
# entries change the run's DiverseDistill configuration (flags / YAML), the others start
# from the method's defaults. Feature terms use reduction "mean" so that one λ suits teachers
# of different widths (the LM's 384 against an MLP's 64).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "ld": [{"lam": 1.0}, {"lam": 3.0}],
    "fd": [{"lam": 0.3, "reduction": "mean"}, {"lam": 3.0, "reduction": "mean"}],
    "sckd": [{"lam_logit": 1.0, "lam_feature": 1.0, "reduction": "mean"},
             {"lam_logit": 3.0, "lam_feature": 3.0, "reduction": "mean"}],
    "mt": [{"lam": 1.0}, {"lam": 3.0}],
    "amtml": [{"alpha": 0.3, "reduction": "mean"}, {"alpha": 0.6, "reduction": "mean"}],
    "autoskd": [{"lam": 1.0}, {"lam": 3.0}],
    "aekd": [{"lam": 1.0}, {"lam": 3.0}],
    # λ = 10 won the earlier search on MLP-M + MLP-L (docs/movielens.md); 3 for the LM
    "diversedistill": [{"lam": 3.0}, {"lam": 10.0}],
}


@dataclass
class TablesConfig:
    """The YAML ``tables:`` section."""

    grids: dict = field(default_factory=dict)  # method -> list of configs: replaces GRIDS[method]

    def __post_init__(self):
        if not isinstance(self.grids, Mapping):
            raise ConfigError(f"tables.grids: expected a mapping of method -> list of configs, "
                              f"got {self.grids!r}")
        for name, grid in self.grids.items():
            if name not in GRIDS:
                raise ConfigError(f"tables.grids: {name!r} is not a method of the tables; "
                                  f"known: {sorted(GRIDS)}")
            if not isinstance(grid, list) or not grid or not all(
                    isinstance(v, Mapping) for v in grid):
                raise ConfigError(f"tables.grids.{name}: expected a non-empty list of "
                                  f"mappings (one config each), got {grid!r}")
            for k, values in enumerate(grid):  # a typo fails now, not an hour into the run
                make_method(name, values, DiverseDistillConfig(), f"tables.grids.{name}[{k}]")

    def merged(self) -> dict[str, list[dict[str, Any]]]:
        return {**GRIDS, **{k: [dict(v) for v in grid] for k, grid in self.grids.items()}}


def make_method(method: str, values: Mapping, base: DiverseDistillConfig,
                where: str | None = None) -> Method:
    """A fresh method with grid ``values`` filled in: DiverseDistill's over ``base`` (the
    run's configuration), any other's over its defaults."""
    where = where or f"method {method!r}"
    if method == "diversedistill":
        return DiverseDistill(from_dict(DiverseDistillConfig, {**asdict(base), **values}, where))
    if method not in METHODS:
        raise ConfigError(f"{where}: method {method!r} is not registered")
    return build_method(method, values, where)


def choose(trials: list[SearchRow]) -> int:
    """Index of the trial with the lowest validation MSE: the first on ties, NaN never
    (unless every trial is NaN: then the first)."""
    def key(k: int) -> float:
        v = trials[k].val_mse
        return math.inf if math.isnan(v) else v
    return min(range(len(trials)), key=key)


# run(committee names, method, seed, run directory) -> an object with val_mse, test_mse, seconds
RunFn = Callable[[tuple[str, ...], Method, int, Path], Any]


@dataclass(frozen=True)
class TableRun:
    """One run the protocol asks for, as plain data (so that it can go to a worker)."""

    method: str
    teachers: str
    seed: int
    values: str  # JSON of the grid value
    run_dir: Path
    trial: int = -1  # the grid value's index in a search run; -1 after the search

    @property
    def cell(self) -> tuple[str, str]:
        return self.method, self.teachers


# execute(runs, on_result): train every run (in any order, in any process) and call
# on_result(run, result) with an object holding val_mse, test_mse, seconds
ExecuteFn = Callable[[list[TableRun], Callable[[TableRun, Any], None]], None]


def search_run_dir(out: Path, method: str, teachers: str, trial: int) -> Path:
    """Where the tables' search trains ``trial`` (a grid value's index) of a cell; the
    chosen trial's run is the cell's seed-0 result (``report`` reads it from here)."""
    return out / "runs" / "search" / f"{method}-{teachers}-{trial}"


class TableProtocol:
    """Search on the first seed, then the chosen config on every seed.

    ``run`` trains one student (see :func:`diversedistill.ml_runs.distill_run`); or
    ``execute`` trains a list of :class:`TableRun` (several at a time, in worker
    processes); the protocol only decides what runs, records it and writes ``search.csv``.
    All search runs are asked for at once, then all runs of the later seeds. ``teachers``,
    when given, are the teachers available by name: a cell needing another one is skipped
    (e.g. the LM cells under ``--lm none``).
    """

    def __init__(self, run: RunFn | None, base: DiverseDistillConfig, seeds: int, out: str | Path,
                 grids: Mapping[str, list[dict]] | None = None, cells=None, log=print,
                 teachers: Mapping[str, Any] | None = None, done: list[ResultRow] = (),
                 done_search: list[SearchRow] | None = None, execute: ExecuteFn | None = None):
        self.run, self.base, self.seeds, self.out, self.log = run, base, seeds, Path(out), log
        self.execute = execute or self._execute_here
        # a resumed run: finished runs are recorded again instead of trained again
        self.done = {(r.method, r.teachers, r.seed): r for r in done}
        self.done_search = done_search
        self.grids = dict(grids or GRIDS)
        self.teachers = dict(teachers or {})
        wanted = list(cells or table_cells())
        self.cells = [c for c in wanted if teachers is None
                      or all(n in self.teachers for n in c[1].split("+"))]
        self.skipped = [c for c in wanted if c not in self.cells]
        self.search: list[SearchRow] = []
        self.chosen: dict[tuple[str, str], dict] = {}
        self._done, self._resumed, self._started = 0, 0, time.perf_counter()
        for method, _ in self.cells:  # every grid value builds, before anything trains
            if method not in self.grids:
                raise ConfigError(f"no search grid for method {method!r}")
            for k, values in enumerate(self.grids[method]):
                make_method(method, values, base, f"tables.grids.{method}[{k}]")

    @property
    def total_runs(self) -> int:
        search = sum(len(self.grids[m]) for m, _ in self.cells)
        return search + len(self.cells) * (self.seeds - 1)

    def describe(self) -> str:
        """The run count, printed before anything trains."""
        search = sum(len(self.grids[m]) for m, _ in self.cells)
        sizes = sorted({len(self.grids[m]) for m, _ in self.cells})
        return (f"tables: {len(self.cells)} cells (method × committee); validation search on "
                f"seed 0: {search} runs ({'/'.join(map(str, sizes))} values per method; each "
                f"cell's chosen run is its seed-0 result), then {self.seeds - 1} more seed(s) × "
                f"{len(self.cells)} cells = {len(self.cells) * (self.seeds - 1)} runs; "
                f"{self.total_runs} distillation runs in all, plus {self.seeds} student-alone "
                f"runs (teachers trained or read from the cache once)"
                + (f"; skipped, a teacher missing: {', '.join(map(cell_label, self.skipped))}"
                   if self.skipped else ""))

    def run_seed(self, seed: int, record: Callable[[ResultRow], None]) -> None:
        self.run_seeds([seed], record)

    def run_seeds(self, seeds, record: Callable[[ResultRow], None]) -> None:
        """Every cell on ``seeds``: the search on seed 0, then the chosen configs."""
        seeds = list(seeds)
        if 0 in seeds:
            self._search_all(record)
        later = []
        for seed in (s for s in seeds if s != 0):
            for method, teachers in self.cells:
                cell = (method, teachers)
                if cell not in self.chosen:
                    raise RuntimeError(f"{cell_label(cell)}: run seed 0 (the search) first")
                if (method, teachers, seed) in self.done:
                    record(self.done[(method, teachers, seed)])
                    self._resumed += 1
                    continue
                later.append(TableRun(method, teachers, seed,
                                      json.dumps(self.chosen[cell], sort_keys=True),
                                      self.out / "runs" / f"{method}-{teachers}-{seed}"))

        def finished(run: TableRun, result) -> None:
            self._count()
            record(ResultRow(run.method, run.teachers, run.seed, result.val_mse,
                             result.test_mse, result.seconds))
        self.execute(later, finished)

    def _search_all(self, record) -> None:
        if self.done_search is None:
            # a search.csv left by an earlier run must not pass for this one's
            (self.out / "search.csv").unlink(missing_ok=True)
        runs, trials = [], {}
        for method, teachers in self.cells:
            if self._resume_search((method, teachers), record):
                continue
            trials[(method, teachers)] = {}
            for k, values in enumerate(self.grids[method]):
                runs.append(TableRun(method, teachers, 0, json.dumps(values, sort_keys=True),
                                     search_run_dir(self.out, method, teachers, k), k))

        def finished(run: TableRun, result) -> None:
            self._count()
            self.log(f"  search {run.method:<14} {run.teachers:<12} {run.values:<50} "
                     f"val {result.val_mse:.4f}")
            got = trials[run.cell]
            got[run.trial] = result
            if len(got) == len(self.grids[run.method]):  # the cell's search is complete
                self._choose(run.cell, [got[k] for k in range(len(got))], record)
        self.execute(runs, finished)

    def _choose(self, cell, results: list, record) -> None:
        method, teachers = cell
        trials = [SearchRow(method, teachers, 0, k, json.dumps(values, sort_keys=True),
                            r.val_mse, r.seconds, False)
                  for k, (values, r) in enumerate(zip(self.grids[method], results))]
        best = choose(trials)
        trials[best].chosen = True
        self.chosen[cell] = dict(self.grids[method][best])
        self.search += trials
        write_csv(self.out / "search.csv", self.search)
        r = results[best]
        record(ResultRow(method, teachers, 0, r.val_mse, r.test_mse, r.seconds))

    def _resume_search(self, cell, record) -> bool:
        """A cell whose whole search and seed-0 result an earlier run recorded: take them."""
        method, teachers = cell
        grid = [json.dumps(v, sort_keys=True) for v in self.grids[method]]
        trials = [r for r in self.done_search or [] if (r.method, r.teachers) == cell]
        if [t.config for t in trials] != grid or (method, teachers, 0) not in self.done:
            return False  # searched with another grid, or cut short: search again
        self.chosen[cell] = dict(self.grids[method][next(k for k, t in enumerate(trials)
                                                        if t.chosen)])
        self.search += trials
        self._resumed += len(trials)
        write_csv(self.out / "search.csv", self.search)
        record(self.done[(method, teachers, 0)])
        self.log(f"  search {method:<14} {teachers:<12} kept from the earlier run")
        return True

    def _execute_here(self, runs: list[TableRun], on_result) -> None:
        for run in runs:
            method = make_method(run.method, json.loads(run.values), self.base)
            on_result(run, self.run(tuple(run.teachers.split("+")), method, run.seed, run.run_dir))

    def _count(self) -> None:
        self._done += 1
        elapsed = time.perf_counter() - self._started
        left = elapsed / self._done * (self.total_runs - self._done - self._resumed)
        self.log(f"  [{self._done + self._resumed}/{self.total_runs}] {elapsed / 60:.1f} min so "
                 f"far, about {left / 60:.0f} min left at this pace")
