"""The fair protocol behind the comparison tables (issue 5; BASELINES.md, fair comparison).

Every cell (method × committee) of a domain's tables
(:mod:`diversedistill_recipes.comparison.tables`) gets the same student, the same frozen teachers,
the same split and the same epoch budget with early stopping on validation (the one training loop),
and its own search on validation, on seed 0:

1. **One knob at a time** (a coordinate search, in the grid's fixed knob order). Each method
   has one or two knobs (:data:`GRIDS` for MovieLens, :data:`VISION_GRIDS` for images), each
   with at least three values. The first knob's values run with every other knob at its
   first value; the best on validation is chosen (lowest MSE or highest accuracy, by the
   protocol's metric; the first on ties; a NaN never).
2. **An edge extends once.** When the choice is at an edge of the knob's list, one value
   beyond that edge runs (each knob says how: λ ×3 above the top and ÷3 below the bottom,
   a temperature ×2 / ÷2, AMTML's α ±0.15), and the choice is made again among all of them.
   A value the method's config refuses (α above 1) is not run.
3. The next knob runs at the values chosen so far; its first value ran already (a config
   that ran once never runs again).
4. The chosen config's run is the cell's seed-0 result (same config, same seed: rerunning it
   would reproduce it), and the chosen config runs on every other seed.

The search is adaptive, so :class:`TableProtocol` runs in rounds: each round hands everything
that is ready — the next trials of every cell still searching and the later seeds of every
cell whose search has ended — to ``execute`` at once (so that workers stay busy), records the
results and advances each cell. ``search.csv`` gets one row per trial (its knob, its values,
the validation score, its seconds, whether it was chosen and, for the one value beyond an
edge, why it ran), rewritten after every trial; the test score of a trial that is not
chosen is never written anywhere.

The temperature is searched only where predictions are class logits (vision): a rating has no
softmax (``methods/common.py``), so the MovieLens grids leave it out. A YAML ``tables: grids:``
section replaces a method's grid (:func:`parse_grid`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from diversedistill.config import from_dict, short
from diversedistill.errors import ConfigError
from diversedistill.methods import METHODS, DiverseDistill, DiverseDistillConfig, build_method
from diversedistill.methods.base import Method
from diversedistill_recipes.comparison.claims import Cell, cell_label
from diversedistill_recipes.comparison.results import MSE, Metric, write_csv
from diversedistill_recipes.comparison.tables import (
    search_row,
    search_run_dir,
    short_config,
    table_cells,
)

# ----------------------------------------------------------------------------- knobs and grids

MIN_VALUES = 3  # BASELINES.md: at least three values per knob


@dataclass(frozen=True)
class Knob:
    """One searched knob: the config keys it sets together (SCKD's two λ are tied as one),
    its values, and how it extends beyond an edge of them: ×/÷ ``times``, or +/− ``plus``."""

    keys: tuple[str, ...]
    values: tuple[float, ...]
    times: float | None = None
    plus: float | None = None

    @property
    def name(self) -> str:
        return "=".join(self.keys)

    def at(self, point: Mapping[str, Any], value: float) -> dict[str, Any]:
        """``point`` with this knob set to ``value``."""
        return {**point, **{k: value for k in self.keys}}

    def beyond(self, value: float) -> float | None:
        """The one value past ``value`` when it is an edge of the list; else None."""
        step = self.plus or 0.0
        if value == max(self.values):
            new = value * self.times if self.times is not None else value + step
        elif value == min(self.values):
            new = value / self.times if self.times is not None else value - step
        else:
            return None
        return float(f"{new:.6g}")  # 0.3 / 3 is 0.1, not 0.09999999999999999

    def describe(self) -> str:
        rule = (f"×{self.times:g} / ÷{self.times:g}" if self.times is not None
                else f"+{self.plus:g} / −{self.plus:g}")
        return (f"{self.name} {{{', '.join(f'{v:g}' for v in self.values)}}} "
                f"({rule} beyond an edge)")


@dataclass(frozen=True)
class MethodGrid:
    """A method's search: its knobs in search order, and the values it keeps fixed."""

    knobs: tuple[Knob, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def start(self) -> dict[str, Any]:
        """The first config: the fixed values and every knob at its first value."""
        point = dict(self.fixed)
        for knob in self.knobs:
            point = knob.at(point, knob.values[0])
        return point

    @property
    def min_runs(self) -> int:
        """Runs of a search that extends nowhere: the first knob's values, then each later
        knob's values but its first (already run at the choices before it)."""
        if not self.knobs:
            return 1
        return len(self.knobs[0].values) + sum(len(k.values) - 1 for k in self.knobs[1:])

    @property
    def max_runs(self) -> int:
        return self.min_runs + len(self.knobs)  # one extension per knob at most

    def describe(self) -> str:
        parts = [k.describe() for k in self.knobs] or ["no knob: one run"]
        fixed = ", ".join(f"{k}={v}" for k, v in self.fixed.items())
        return ", then ".join(parts) + (f"; fixed {fixed}" if fixed else "")


LAM = Knob(("lam",), (0.3, 1.0, 3.0), times=3.0)
TIED_LAM = Knob(("lam_logit", "lam_feature"), (0.3, 1.0, 3.0), times=3.0)  # SCKD: one strength
TEMPERATURE = Knob(("temperature",), (1.0, 2.0, 4.0), times=2.0)
ALPHA = Knob(("alpha",), (0.3, 0.45, 0.6), plus=0.15)  # AMTML's α lives in [0, 1]
# Comparable strengths (BASELINES.md): a feature term is measured like DiverseDistill's
# default distance, per dimension and relative to its target's mean square, so that one λ is
# one strength whatever the teacher's width (the LM's 384 against an MLP's 64) or scale.
NORMALIZED = {"reduction": "normalized"}
# MovieLens lists, centred where the earlier tables' validation search landed (docs/tables.md,
# "Chosen on validation"): LD, MT, AutoSKD and AEKD chose 9 (the value beyond the top of
# {0.3, 1, 3}) in most cells and SCKD chose 3 or 9, so their list is {1, 3, 10}; a choice of 1
# still reaches 1/3 beyond the bottom. DiverseDistill chose 10 or 30, and λ = 30 runs reached
# val 0.8184-0.8251 once early stopping waited past the constant prediction (docs/design.md),
# so its list is {3, 10, 30}. FD's distance is DiverseDistill's in kind (a projected feature
# against a target, relative to the target's size); it chose 1 and 10, inside {1, 3, 10}.
# The vision grids keep their own lists.
ML_LAM = Knob(("lam",), (1.0, 3.0, 10.0), times=3.0)
ML_TIED_LAM = Knob(("lam_logit", "lam_feature"), (1.0, 3.0, 10.0), times=3.0)
ML_DD_LAM = Knob(("lam",), (3.0, 10.0, 30.0), times=3.0)

# MovieLens: ratings, so no temperature.
GRIDS: dict[str, MethodGrid] = {
    "ld": MethodGrid((ML_LAM,)),
    "fd": MethodGrid((ML_LAM,), NORMALIZED),
    "sckd": MethodGrid((ML_TIED_LAM,), NORMALIZED),
    "mt": MethodGrid((ML_LAM,)),
    "amtml": MethodGrid((ALPHA,), NORMALIZED),
    "autoskd": MethodGrid((ML_LAM,)),
    "aekd": MethodGrid((ML_LAM,)),
    "diversedistill": MethodGrid((ML_DD_LAM,)),
}
# Images: class logits, so the methods built on a softened prediction alone search T too.
# The feature terms average over the width ("mean", free of width but not of scale): the
# vision tables (docs/vision.md) were measured so, before "normalized" existed; the grid's
# extension beyond an edge is what spans the teachers' scale there.
MEAN = {"reduction": "mean"}
VISION_GRIDS: dict[str, MethodGrid] = {
    "ld": MethodGrid((LAM, TEMPERATURE)),
    "fd": MethodGrid((LAM,), MEAN),
    "sckd": MethodGrid((TIED_LAM,), MEAN),
    "mt": MethodGrid((LAM, TEMPERATURE)),
    "amtml": MethodGrid((ALPHA,), MEAN),
    "autoskd": MethodGrid((LAM,)),
    "aekd": MethodGrid((LAM, TEMPERATURE)),
    "diversedistill": MethodGrid((LAM,)),
}

# How a knob named in YAML by a list of values extends, by its (first) key
EXTENSIONS = {"lam": {"times": 3.0}, "lam_logit": {"times": 3.0}, "lam_feature": {"times": 3.0},
              "temperature": {"times": 2.0}, "alpha": {"plus": 0.15}}


def parse_grid(spec: Any, where: str, known: set[str] | None = None) -> MethodGrid:
    """A method's grid from YAML: knob -> values, searched in the order written; a single
    value is kept fixed. Tied keys are joined by "=". For example::

        ld: {lam: [0.3, 1, 3], temperature: [1, 2, 4]}
        sckd: {lam_logit=lam_feature: [0.3, 1, 3], reduction: mean}
        amtml: {alpha: {values: [0.2, 0.4, 0.6], plus: 0.2}}

    ``known``, when given, are the method's config keys: any other is refused first (a
    typo is named as one, not as a knob without an extension rule).
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping of knob -> values, e.g. "
                          f"{{lam: [0.3, 1, 3]}}, got {short(spec)}")
    knobs, fixed = [], {}
    for name, value in spec.items():
        keys = tuple(str(name).split("="))
        if not all(keys):
            raise ConfigError(f"{where}: {short(name)} is not a key (tie keys as a=b)")
        unknown = [k for k in keys if known is not None and k not in known]
        if unknown:
            raise ConfigError(f"{where}: unknown key {short(unknown[0])}; known keys: "
                              f"{sorted(known or ())}")
        if isinstance(value, (list, tuple, Mapping)):
            knobs.append(parse_knob(keys, value, f"{where}.{name}"))
        else:
            fixed.update({k: value for k in keys})
    return MethodGrid(tuple(knobs), fixed)


def parse_knob(keys: tuple[str, ...], spec: Any, where: str) -> Knob:
    """A knob from a list of values (extended by :data:`EXTENSIONS`) or from
    ``{values: [...], times: F}`` / ``{values: [...], plus: S}``."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"values", "times", "plus"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {short(unknown[0])}; known: values, "
                              "times, plus")
        rule: dict[str, Any] = {k: spec[k] for k in ("times", "plus") if k in spec}
        values = spec.get("values")
    else:
        default = EXTENSIONS.get(keys[0])
        values = spec
        if default is None:
            raise ConfigError(f"{where}: no default extension for {keys[0]!r}; give "
                              "{values: [...], times: F} (×/÷ F beyond an edge) or "
                              "{values: [...], plus: S} (+/− S)")
        rule = dict(default)
    if len(rule) != 1:
        raise ConfigError(f"{where}: give one extension rule, times (×/÷ beyond an edge) or "
                          f"plus (+/−), got {sorted(rule) or 'none'}")
    (kind, step), = rule.items()
    if not _is_number(step) or step <= (1 if kind == "times" else 0):
        raise ConfigError(f"{where}.{kind}: expected a number above "
                          f"{1 if kind == 'times' else 0}, got {short(step)}")
    if (not isinstance(values, (list, tuple)) or not all(map(_is_number, values))
            or len(set(values)) != len(values)):
        raise ConfigError(f"{where}: expected a list of distinct numbers, got {short(values)}")
    if len(values) < MIN_VALUES:
        raise ConfigError(f"{where}: a knob needs at least {MIN_VALUES} values so that its "
                          f"choice can land inside the list (BASELINES.md), got {short(values)}; "
                          "a single value is written without brackets")
    return Knob(keys, tuple(float(v) for v in values), **{kind: float(step)})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


def config_keys(method: str) -> set[str] | None:
    """The keys a method's grid may set, the fields of its config (None: not registered,
    which building it says)."""
    if method == "diversedistill":
        return {f.name for f in fields(DiverseDistillConfig)}
    if method not in METHODS:
        return None
    cls = METHODS[method].config_class
    return {f.name for f in fields(cls)} if cls is not None else set()


def check_grid(method: str, grid: MethodGrid, base: DiverseDistillConfig, where: str) -> None:
    """Every value of every knob builds (the others at their first value): a typo fails
    now, not an hour into the run."""
    make_method(method, dict(grid.fixed), base, where)  # the fixed values, blamed on the grid
    start = grid.start()
    for knob in grid.knobs:
        for value in knob.values:
            make_method(method, knob.at(start, value), base, f"{where}.{knob.name}")


@dataclass
class TablesConfig:
    """The YAML ``tables:`` section."""

    grids: dict = field(default_factory=dict)  # method -> knobs (parse_grid): replaces its grid

    def __post_init__(self):
        if not isinstance(self.grids, Mapping):
            raise ConfigError(f"tables.grids: expected a mapping of method -> knobs, "
                              f"got {short(self.grids)}")
        self._parsed: dict[str, MethodGrid] = {}
        for name, spec in self.grids.items():
            if name not in GRIDS:
                raise ConfigError(f"tables.grids: {name!r} is not a method of the tables; "
                                  f"known: {sorted(GRIDS)}")
            where = f"tables.grids.{name}"
            self._parsed[name] = parse_grid(spec, where, config_keys(name))
            check_grid(name, self._parsed[name], DiverseDistillConfig(), where)

    def merged(self, grids: Mapping[str, MethodGrid] = GRIDS) -> dict[str, MethodGrid]:
        """The domain's ``grids`` with the methods this section names replaced."""
        return {**grids, **self._parsed}


def choose(scores: list[float], higher_is_better: bool = False) -> int:
    """Index of the best score: the lowest (MSE) or highest (accuracy); the first on ties;
    a NaN never (unless every score is NaN: then the first)."""
    sign = -1.0 if higher_is_better else 1.0

    def key(k: int) -> float:
        return math.inf if math.isnan(scores[k]) else sign * scores[k]
    return min(range(len(scores)), key=key)


def config_key(config: Mapping[str, Any]) -> str:
    """A config as search.csv and the run's values hold it: JSON with sorted keys."""
    return json.dumps(dict(config), sort_keys=True)


# ----------------------------------------------------------------------------- one cell's search


@dataclass
class Trial:
    knob: str  # the knob whose step asked for it ("" for a grid without knobs)
    config: dict
    number: int  # in the order asked for: the run directory's suffix
    val: float = math.nan
    test: float | None = None  # None: taken from an earlier search.csv, which never has it
    seconds: float = 0.0
    ran: bool = False
    why: str = ""  # for the one value beyond an edge: which choice at which edge asked for it

    @property
    def key(self) -> str:
        return config_key(self.config)


class CellSearch:
    """One cell's coordinate search: which configs to run next and, once every knob is
    decided, the chosen one (``point``). ``allowed(config)`` says whether an extension may
    run (its method's config accepts it)."""

    def __init__(self, grid: MethodGrid, higher_is_better: bool,
                 allowed: Callable[[dict], bool] = lambda _: True):
        self.grid, self.higher_is_better, self.allowed = grid, higher_is_better, allowed
        self.point = grid.start()
        self.knob = 0  # the knob being searched
        self.extra: float | None = None  # its extension, once one is asked for
        self.edge_decided = False  # whether its extension was decided (asked for or not)
        self.trials: dict[str, Trial] = {}  # config key -> trial, in the order asked for
        self.extensions = 0
        self.why = ""  # why the current knob's list grew, once it did
        self.done = False

    def _extra_config(self) -> dict | None:
        if self.extra is None:
            return None
        return self.grid.knobs[self.knob].at(self.point, self.extra)

    def step(self) -> list[tuple[str, dict]]:
        """(knob, config) of the current step: the knob's values (and extension) at the
        current point; without knobs, the point itself."""
        if not self.grid.knobs:
            return [("", dict(self.point))]
        knob = self.grid.knobs[self.knob]
        values = list(knob.values) + ([self.extra] if self.extra is not None else [])
        return [(knob.name, knob.at(self.point, v)) for v in values]

    def pending(self) -> list[Trial]:
        """The trials to run next, each asked for once; [] when the search is done or waits
        for results."""
        while not self.done:
            new = [(knob, c) for knob, c in self.step() if config_key(c) not in self.trials]
            if new:
                for knob, config in new:
                    why = self.why if config == self._extra_config() else ""
                    trial = Trial(knob, config, len(self.trials), why=why)
                    self.trials[trial.key] = trial
                return [self.trials[config_key(c)] for _, c in new]
            if not all(self.trials[config_key(c)].ran for _, c in self.step()):
                return []
            self._decide()
        return []

    def record(self, key: str, val: float, test: float | None, seconds: float) -> Trial:
        trial = self.trials[key]
        trial.val, trial.test, trial.seconds, trial.ran = val, test, seconds, True
        return trial

    def _decide(self) -> None:
        if not self.grid.knobs:
            self.done = True
            return
        knob = self.grid.knobs[self.knob]
        configs = [c for _, c in self.step()]
        best = configs[choose([self.trials[config_key(c)].val for c in configs],
                              self.higher_is_better)]
        value = best[knob.keys[0]]
        if not self.edge_decided:
            self.edge_decided = True
            extra = knob.beyond(value)
            if extra is not None and extra not in knob.values and self.allowed(
                    knob.at(self.point, extra)):
                self.extra, self.extensions = extra, self.extensions + 1
                self.why = (f"{knob.name}={value:g} was best at the "
                            f"{'top' if value == max(knob.values) else 'bottom'} edge of "
                            f"{{{', '.join(f'{v:g}' for v in knob.values)}}}: one value beyond")
                return
        self.point = knob.at(self.point, value)
        self.knob, self.extra, self.edge_decided = self.knob + 1, None, False
        self.done = self.knob == len(self.grid.knobs)

    @property
    def undecided_edges(self) -> int:
        """Extensions that may still be asked for."""
        if self.done:
            return 0
        return len(self.grid.knobs) - self.knob - int(self.edge_decided)

    @property
    def chosen(self) -> Trial:
        return self.trials[config_key(self.point)]


# ----------------------------------------------------------------------------- the protocol

# run(committee names, method, seed, run directory) -> an object with val, test and seconds
# (a FitResult)
RunFn = Callable[[tuple[str, ...], Method, int, Path], Any]


@dataclass(frozen=True)
class TableRun:
    """One run the protocol asks for, as plain data (so that it can go to a worker)."""

    method: str
    teachers: str
    seed: int
    values: str  # JSON of the method's config values (config_key)
    run_dir: Path
    trial: int = -1  # the trial's number in a search run; -1 for a seed's result

    @property
    def cell(self) -> tuple[str, str]:
        return self.method, self.teachers


# execute(runs, on_result): train every run (in any order, in any process) and call
# on_result(run, result) with an object holding val, test and seconds (a JobResult)
ExecuteFn = Callable[[list[TableRun], Callable[[TableRun, Any], None]], None]


class TableProtocol:
    """The search on seed 0, then the chosen config on every other seed, in rounds.

    ``run`` trains one student (see :func:`diversedistill_recipes.jobs.train_student`); or
    ``execute`` trains a list of :class:`TableRun` (several at a time, in worker
    processes); the protocol only decides what runs, records it and writes ``search.csv``.
    ``grids`` are the domain's (:data:`GRIDS`, :data:`VISION_GRIDS`); ``metric`` scores the
    runs and decides which way is better. ``teachers``, when given, are the teachers
    available by name: a cell needing another one is skipped (e.g. the LM cells under
    ``--lm none``). ``done`` and ``done_search`` (a resumed run) are the rows of the earlier
    results.csv and search.csv: a run recorded there is taken, not trained again.
    ``workers`` only scales the time estimates.
    """

    def __init__(self, run: RunFn | None, base: DiverseDistillConfig, seeds: int, out: str | Path,
                 grids: Mapping[str, MethodGrid] | None = None, cells=None, log=print,
                 teachers: Mapping[str, Any] | None = None, done: Sequence = (),
                 done_search: list | None = None, execute: ExecuteFn | None = None,
                 metric: Metric = MSE, workers: int = 1):
        self.run, self.base, self.seeds, self.out, self.log = run, base, seeds, Path(out), log
        self.execute = execute or self._execute_here
        self.metric, self.workers = metric, max(workers, 1)
        self.done = {(r.method, r.teachers, r.seed): r for r in done}
        self.done_search = done_search
        # trials of an earlier search.csv, by cell and config: taken instead of trained
        # the config each cell's earlier search chose: its later seeds' rows are of it
        self.earlier_choice = {(r.method, r.teachers): r.config for r in done_search or ()
                               if r.chosen}
        self.previous = {((r.method, r.teachers), r.config): r for r in done_search or ()
                         if r.seed == 0}
        self.grids = dict(grids or GRIDS)
        self.teachers = dict(teachers or {})
        wanted = list(cells if cells is not None else table_cells())
        self.cells = [c for c in wanted if teachers is None
                      or all(n in self.teachers for n in c[1].split("+"))]
        self.skipped = [c for c in wanted if c not in self.cells]
        for method, _ in self.cells:  # every grid value builds, before anything trains
            if method not in self.grids:
                raise ConfigError(f"no search grid for method {method!r}")
            check_grid(method, self.grids[method], base, f"tables.grids.{method}")
        self.searches: dict[Cell, CellSearch] = {}
        self.search: list = []  # search.csv's rows
        self._rows: dict[tuple[Cell, str], Any] = {}  # (cell, config key) -> its row
        self.chosen: dict[Cell, dict] = {}
        self._ended: set[Cell] = set()  # cells whose search has ended and been recorded
        self._trained = self._resumed = self._reruns = 0
        self._started: float | None = None

    # ------------------------------------------------------------------------- run counts

    def run_counts(self) -> tuple[int, int]:
        """(fewest, most) distillation runs in all, as far as the searches have decided."""
        low = high = len(self.cells) * (self.seeds - 1) + self._reruns
        for cell in self.cells:
            grid, search = self.grids[cell[0]], self.searches.get(cell)
            if search is None:
                low, high = low + grid.min_runs, high + grid.max_runs
            else:
                runs = grid.min_runs + search.extensions
                low, high = low + runs, high + runs + search.undecided_edges
        return low, high

    @property
    def total_runs(self) -> int:
        """The most runs the protocol can take."""
        return self.run_counts()[1]

    def describe(self) -> str:
        """The run counts, printed before anything trains (with the time, when an earlier
        run's trials say how long one takes); then each method's grid."""
        search_low = sum(self.grids[m].min_runs for m, _ in self.cells)
        search_high = sum(self.grids[m].max_runs for m, _ in self.cells)
        later = len(self.cells) * (self.seeds - 1)
        low, high = search_low + later, search_high + later
        text = (f"tables: {len(self.cells)} cells (method × committee); validation search on "
                f"seed 0, one knob at a time, a choice at an edge of its knob's list running one "
                f"value beyond it: {_span(search_low, search_high)} runs (each cell's chosen run "
                f"is its seed-0 result), then {self.seeds - 1} more seed(s) × {len(self.cells)} "
                f"cells = {later} runs; {_span(low, high)} distillation runs in all, plus "
                f"{self.seeds} student-alone runs (teachers trained or read from the cache once)")
        if self.skipped:
            text += f"; skipped, a teacher missing: {', '.join(map(cell_label, self.skipped))}"
        lines = [text]
        if self.previous:
            seconds = sum(r.seconds for r in self.previous.values()) / len(self.previous)
            lines.append(self.estimate(seconds, "the earlier run's search trials; the runs "
                                                "it finished are kept"))
        methods = dict.fromkeys(m for m, _ in self.cells)
        return "\n".join(lines + [f"  grid {m}: {self.grids[m].describe()}" for m in methods])

    def estimate(self, seconds_per_run: float, basis: str, at_least: bool = False) -> str:
        """The protocol's time in all at ``seconds_per_run``, ``workers`` runs at a time."""
        minutes = [round(n * seconds_per_run / self.workers / 60) for n in self.run_counts()]
        return (f"tables: {'at least ' if at_least else 'about '}{_span(*minutes)} min for the "
                f"{_span(*self.run_counts())} runs at {seconds_per_run:.0f} s per run, "
                f"{self.workers} at a time (seconds per run: {basis})")

    # ------------------------------------------------------------------------- running

    def run_seed(self, seed: int, record: Callable[[Any], None]) -> None:
        self.run_seeds([seed], record)

    def run_seeds(self, seeds, record: Callable[[Any], None]) -> None:
        """Every cell on ``seeds``: the search on seed 0, then the chosen configs, in rounds."""
        seeds = list(seeds)
        later = [s for s in seeds if s != 0]
        if 0 not in seeds:
            missing = [c for c in self.cells if c not in self.chosen]
            if missing:
                raise RuntimeError(f"{cell_label(missing[0])}: run seed 0 (the search) first")
        else:
            self._start_search()
        if self._started is None:
            self._started = time.perf_counter()
        waiting = list(self.cells)  # cells whose later seeds are not asked for yet
        while True:
            runs = []
            for cell in self.cells:
                search = self.searches.get(cell) if 0 in seeds else None
                if search is not None and not search.done:
                    runs += self._ready_trials(cell, search)
                if search is not None and search.done and cell not in self._ended:
                    runs += self._end_search(cell, search, record)
                if cell in waiting and cell in self.chosen:
                    waiting.remove(cell)
                    runs += self._later_runs(cell, later, record)
            if not runs:
                break
            self.execute(runs, lambda run, result: self._finished(run, result, record))
        stalled = [c for c in self.cells if 0 in seeds and not self.searches[c].done]
        if stalled:  # execute returned without a result for some run
            raise RuntimeError(f"{cell_label(stalled[0])}: the search got no result for a run")

    def _start_search(self) -> None:
        if self.done_search is None:
            # a search.csv left by an earlier run must not pass for this one's
            (self.out / "search.csv").unlink(missing_ok=True)
        self.search, self._rows, self._ended = [], {}, set()
        self.searches = {cell: CellSearch(self.grids[cell[0]], self.metric.higher_is_better,
                                          partial(self._allowed, cell))
                         for cell in self.cells}

    def _allowed(self, cell: Cell, config: dict) -> bool:
        try:
            make_method(cell[0], config, self.base)
        except ConfigError as err:
            self.log(f"  search {cell_label(cell)}: no value beyond the edge ({err})")
            return False
        return True

    def _ready_trials(self, cell: Cell, search: CellSearch) -> list[TableRun]:
        """The cell's next trials to train; those an earlier search.csv holds are taken."""
        method, teachers = cell
        runs: list[TableRun] = []
        while not runs:
            trials = search.pending()
            if not trials:
                return runs
            for trial in trials:
                earlier = self.previous.get((cell, trial.key))
                if earlier is not None:
                    search.record(trial.key, earlier.val, None, earlier.seconds)
                    self._resumed += 1
                    self._add_row(cell, trial)
                else:
                    runs.append(TableRun(method, teachers, 0, trial.key,
                                         search_run_dir(self.out, method, teachers, trial.number),
                                         trial.number))
        return runs

    def _end_search(self, cell: Cell, search: CellSearch, record) -> list[TableRun]:
        """Record the chosen trial; its run is the seed-0 result, unless an earlier run
        chose it (its test score was not kept) and results.csv lacks that run: then it
        runs once more (same config, same seed)."""
        self._ended.add(cell)
        method, teachers = cell
        best = search.chosen
        self.chosen[cell] = dict(search.point)
        self._rows[(cell, best.key)].chosen = True
        self._write_search()
        kept = sum(t.test is None for t in search.trials.values())
        self.log(f"  search {method:<14} {teachers:<12} chose {short_config(best.key)} "
                 f"(val {best.val:.4f}; {len(search.trials)} trials"
                 + (f", {kept} kept from the earlier run)" if kept else ")"))
        if best.test is not None:
            record(self.metric.row(method, teachers, 0, best.val, best.test, best.seconds))
            return []
        earlier = self.done.get((method, teachers, 0))
        if earlier is not None and earlier.val == best.val:
            record(earlier)
            return []
        self._reruns += 1
        return [TableRun(method, teachers, 0, best.key,
                         search_run_dir(self.out, method, teachers, best.number))]

    def _later_runs(self, cell: Cell, seeds: list[int], record) -> list[TableRun]:
        """The chosen config on every later seed; a row of the earlier run is kept only when
        that run chose the same config (a changed grid, e.g. another distance, may choose
        another, and its old rows must not be mixed with the new choice)."""
        method, teachers = cell
        chosen = config_key(self.chosen[cell])
        same = self.earlier_choice.get(cell) == chosen
        runs = []
        for seed in seeds:
            if (method, teachers, seed) in self.done and same:
                record(self.done[(method, teachers, seed)])
                self._resumed += 1
                continue
            runs.append(TableRun(method, teachers, seed, config_key(self.chosen[cell]),
                                 self.out / "runs" / f"{method}-{teachers}-{seed}"))
        return runs

    def _finished(self, run: TableRun, result, record) -> None:
        val, test = result.val, result.test
        if run.trial < 0:
            record(self.metric.row(run.method, run.teachers, run.seed, val, test, result.seconds))
        else:
            trial = self.searches[run.cell].record(run.values, val, test, result.seconds)
            self._add_row(run.cell, trial)
            self.log(f"  search {run.method:<14} {run.teachers:<12} "
                     f"{short_config(run.values):<36} val {val:.4f}")
        self._count()

    def _add_row(self, cell: Cell, trial: Trial) -> None:
        row = search_row(self.metric, cell[0], cell[1], 0, trial.number, trial.knob, trial.key,
                         trial.val, trial.seconds, False, trial.why)
        self._rows[(cell, trial.key)] = row
        self.search.append(row)
        self._write_search()

    def _write_search(self) -> None:
        order = {cell: k for k, cell in enumerate(self.cells)}
        self.search.sort(key=lambda r: (order[(r.method, r.teachers)], r.trial))
        write_csv(self.out / "search.csv", self.search)

    def _execute_here(self, runs: list[TableRun], on_result) -> None:
        if self.run is None:
            raise ValueError("TableProtocol needs run= or execute= to train anything")
        for run in runs:
            method = make_method(run.method, json.loads(run.values), self.base)
            on_result(run, self.run(tuple(run.teachers.split("+")), method, run.seed, run.run_dir))

    def _count(self) -> None:
        """The progress line; the total is a range while extensions are undecided."""
        self._trained += 1
        elapsed = time.perf_counter() - (self._started or time.perf_counter())
        low, high = self.run_counts()
        done = self._trained + self._resumed
        pace = elapsed / self._trained
        left = [round(pace * max(n - done, 0) / 60) for n in (low, high)]
        if self._trained == min(self.workers, low):  # the first runs: a measured estimate
            total = [round(pace * max(n - self._resumed, 0) / 60) for n in (low, high)]
            self.log(f"  tables: estimated {_span(*total)} min for the runs to train, at the "
                     f"pace of the first {self._trained} ({pace:.0f} s each, wall clock)")
        self.log(f"  [{done}/{_span(low, high)}] {elapsed / 60:.1f} min so far, about "
                 f"{_span(*left)} min left at this pace")


def _span(low, high) -> str:
    return f"{low}" if low == high else f"{low}-{high}"
