"""A suite of tasks no recipe was tuned on: ``diversedistill reproduce suite``.

Each task is a table a user could bring — real ones that ship inside PyPI packages
(statsmodels' ``fair`` and ``randhie``) and synthetic ones — with two teachers of different
architectures that the suite trains itself through ``train-teacher --config``'s path (a
wide :class:`~.suite_models.TableMLP` and a :class:`~.suite_models.FeatureTokenTransformer`
over the features as tokens) and a student several times smaller (a 32-wide MLP). Then
each task is one :func:`~diversedistill_recipes.tabular.compare.compare_config` run, on the
library's defaults. Every task folder holds the YAML a user would write (``task.yaml``),
so ``diversedistill compare --config <out>/<task>/task.yaml`` reruns one by hand.

The features are standardized with the training rows' mean and spread (a regression target
too, so that every task's MSE is in units of its variance); the split is the table's own
(``data.split_seed``), the one every run of the task sees.

The suite is a benchmark, not a test: its figures go to docs/suite.md as they print.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from diversedistill.errors import ConfigError
from diversedistill.runs.atomic import write_text_atomic

MODELS = "diversedistill_recipes.tabular.suite_models"


@dataclass(frozen=True)
class SuiteTask:
    name: str
    kind: str  # "regression", "binary" or "multi-class"
    source: str  # where the rows come from, in words
    rows: Callable[[int], pd.DataFrame]  # seed -> the table: feature columns, then "target"
    batch_size: int = 64


def _fair(target: str) -> pd.DataFrame:
    import statsmodels.api as sm

    table = sm.datasets.fair.load_pandas().data
    if target == "affairs":  # did the respondent have an affair: binary
        table = table.assign(target=(table.pop("affairs") > 0).astype(int))
    else:  # the marriage's rating 1-5 from everything else: five classes
        table = table.assign(target=table.pop("rate_marriage").astype(int))
    return table


def _randhie() -> pd.DataFrame:
    import statsmodels.api as sm

    table = sm.datasets.randhie.load_pandas().data
    return table.assign(target=np.log1p(table.pop("mdvis")))  # visits: a heavy tail


def _synthetic(kind: str, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 10))
    if kind == "friedman":  # Friedman #1 on ten columns, five of them noise
        u = 1 / (1 + np.exp(-x))  # squashed to (0, 1), as the benchmark draws them
        y = (10 * np.sin(np.pi * u[:, 0] * u[:, 1]) + 20 * (u[:, 2] - 0.5) ** 2 + 10 * u[:, 3]
             + 5 * u[:, 4] + rng.normal(scale=1.0, size=rows))
    elif kind == "tertiles":  # the user table: a smooth target cut in three classes
        score = np.sin(x[:, 0]) * x[:, 1] + 0.5 * x[:, 2] ** 2 - x[:, 3] * x[:, 4] + 0.3 * x[:, 5]
        score = score + rng.normal(scale=0.3, size=rows)
        y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])).astype(int)
    else:  # "quadrants": four classes from the signs of two interactions, with label noise
        y = 2 * (x[:, 0] * x[:, 1] > 0) + (x[:, 2] + x[:, 3] * x[:, 4] > 0)
        flip = rng.random(rows) < 0.05
        y = np.where(flip, rng.integers(0, 4, size=rows), y).astype(int)
    table = pd.DataFrame(x.round(5), columns=[f"x{i}" for i in range(10)])
    return table.assign(target=y)


TASKS: dict[str, SuiteTask] = {t.name: t for t in (
    SuiteTask("fair-affairs", "binary", "statsmodels fair (6,366 rows): any affair",
              lambda seed: _fair("affairs")),
    SuiteTask("fair-rating", "multi-class", "statsmodels fair (6,366 rows): marriage rated 1-5",
              lambda seed: _fair("rate_marriage")),
    SuiteTask("randhie", "regression",
              "statsmodels randhie (20,190 rows): log(1 + doctor visits)",
              lambda seed: _randhie(), batch_size=128),
    SuiteTask("friedman", "regression", "synthetic Friedman #1, 10 columns (5,000 rows)",
              lambda seed: _synthetic("friedman", 5000, seed)),
    SuiteTask("tertiles", "multi-class", "synthetic, a smooth score in 3 classes (5,000 rows)",
              lambda seed: _synthetic("tertiles", 5000, seed)),
    SuiteTask("quadrants", "multi-class", "synthetic, 4 classes from interactions (4,000 rows)",
              lambda seed: _synthetic("quadrants", 4000, seed)),
)}


@dataclass
class SuiteSettings:
    """The suite's budgets (the defaults are the published run's; tests shrink them)."""

    seeds: int = 3
    max_epochs: int = 20  # the students'; early stopping on validation usually ends sooner
    teacher_epochs: int = 30
    rows: int | None = None  # keep only this many rows of each table (a quick look)
    methods: Sequence[str] | None = None  # compare's default set when None
    workers: int = 1
    wide: dict = field(default_factory=lambda: {"width": 256, "depth": 3})
    transformer: dict = field(default_factory=lambda: {"dim": 32, "layers": 2, "heads": 4})
    student: dict = field(default_factory=lambda: {"width": 32, "depth": 2})


def prepare_task(task: SuiteTask, folder: Path, settings: SuiteSettings,
                 log: Callable[[str], None] = print) -> Path:
    """The task's table (standardized on its training rows), its teachers trained and
    exported, and its ``task.yaml``; what is there already is kept. Returns the YAML."""
    from diversedistill_recipes.tabular.spec import TableData
    from diversedistill_recipes.tabular.table import read_table

    folder.mkdir(parents=True, exist_ok=True)
    table = task.rows(0)
    if settings.rows is not None and settings.rows < len(table):
        table = table.sample(n=settings.rows, random_state=0).reset_index(drop=True)
    features = [c for c in table.columns if c != "target"]
    classes = task.kind != "regression"
    raw = folder / "raw.csv"
    table.to_csv(raw, index=False)
    data = {"file": "data.csv", "features": features, "target": "target",
            "task": "classification" if classes else "regression",
            "batch_size": task.batch_size}
    split = read_table(TableData(**{**data, "file": str(raw)}), folder / "task.yaml")
    train = table.iloc[split.parts["train"].numpy()]
    scaled = table.copy()
    columns = features if classes else [*features, "target"]
    spread = train[columns].std().replace(0, 1.0)
    scaled[columns] = ((table[columns] - train[columns].mean()) / spread).round(6)
    scaled.to_csv(folder / "data.csv", index=False)
    raw.unlink()
    outputs = len(split.class_names) if split.class_names else 1
    shape = {"features": len(features), "outputs": outputs}
    config = {
        "data": data,
        "student": {"class_path": f"{MODELS}.TableMLP", "init_args": {**shape, **settings.student},
                    "question_at": "body.1", "head": "head"},
        "teachers": [
            {"name": "wide", "export_dir": "teachers/wide", "class_path": f"{MODELS}.TableMLP",
             "inject_at": "body.1", "head": "head"},
            {"name": "transformer", "export_dir": "teachers/transformer",
             "class_path": f"{MODELS}.FeatureTokenTransformer",
             "inject_at": "encoder.layers.0", "head": "head", "token": 0}],
        "train": {"max_epochs": settings.max_epochs},
    }
    models = {"wide": ("TableMLP", settings.wide),
              "transformer": ("FeatureTokenTransformer", settings.transformer)}
    from diversedistill.runs import rundir
    from diversedistill_recipes.tabular.table_runs import train_table_teacher

    for name, (cls, args) in models.items():
        out = folder / "teachers" / name
        if (out / "config.json").is_file():
            continue
        teacher_config = {"data": data, "model": {"class_path": f"{MODELS}.{cls}",
                                                  "init_args": {**shape, **args}},
                          "train": {"max_epochs": settings.teacher_epochs}}
        path = folder / f"teacher-{name}.yaml"
        write_text_atomic(path, yaml.safe_dump(teacher_config, sort_keys=False))
        rundir.check_owned(out, "teacher", kind="teacher")
        metrics = train_table_teacher(teacher_config, path, out, 0, progress=False)
        log(f"  {task.name}: teacher {name} trained: "
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                        if k.startswith("val_") and isinstance(v, float)))
    path = folder / "task.yaml"
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
    return path


def run_suite(out: str | Path, tasks: Sequence[str] | None = None,
              settings: SuiteSettings | None = None, resume: bool = False,
              log: Callable[[str], None] = print) -> str:
    """Every task: prepared, then compared; returns (and writes to ``out/suite.md``) the
    suite's table."""
    from diversedistill_recipes.jobs import own_results
    from diversedistill_recipes.tabular.compare import compare_config

    settings = settings or SuiteSettings()
    names = list(tasks or TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ConfigError(f"--tasks: unknown task {unknown[0]!r}; known: {list(TASKS)}")
    out = Path(out)
    for name in names:
        task = TASKS[name]
        folder = out / name
        log(f"suite: {name} ({task.kind}; {task.source})")
        config = prepare_task(task, folder, settings, log)
        results = folder / "compare"
        own_results(results)
        compare_config(config, results, settings.seeds, settings.methods, settings.workers,
                       resume=resume and (results / "results.csv").is_file(), log=log)
        write_text_atomic(out / "suite.md", suite_table(out, names))
    table = suite_table(out, names)
    write_text_atomic(out / "suite.md", table)
    return table


# ------------------------------------------------------------------------------ the table

SHOWN = ("student alone", "best teacher", "ld", "mt", "amtml", "autoskd", "aekd",
         "diversedistill")


def _cells(rows) -> dict[str, tuple[float, float, int]]:
    """method (LD: from the better teacher, by validation) -> (test mean, std, seeds)."""
    from diversedistill_recipes.comparison.results import mean_std

    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        groups.setdefault((r.method, r.teachers), []).append(r)
    higher = rows[0].metric == "accuracy"
    sign = 1 if higher else -1

    def score(key, column="test"):
        return mean_std([getattr(r, column) for r in groups[key]])

    out: dict[str, tuple[float, float, int]] = {}
    teachers = [k for k in groups if k[0] == "teacher alone"]
    if teachers:  # the better teacher, by validation
        best = max(teachers, key=lambda k: sign * score(k, "val")[0])
        out["best teacher"] = (*score(best), len(groups[best]))
    for key in groups:
        method = key[0]
        if method == "ld":  # from the teacher LD did best with on validation
            lds = [k for k in groups if k[0] == "ld"]
            key = max(lds, key=lambda k: sign * score(k, "val")[0])
        if method in SHOWN and method != "best teacher":
            out[method] = (*score(key), len(groups[key]))
    return out


def suite_table(out: Path, names: Sequence[str]) -> str:
    """One line per task: each method's test mean ± std over seeds, and which aims hold."""
    from diversedistill_recipes.comparison.results import read_results

    header = ["task", "metric", *SHOWN, "DD ≥ student", "DD ≥ LD", "DD ≥ MT/AMTML/AEKD"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        path = Path(out) / name / "compare" / "results.csv"
        if not path.is_file():
            continue
        rows = read_results(path)
        cells = _cells(rows)
        metric = rows[0].metric
        row = [name, metric]
        for method in SHOWN:
            if method in cells:
                mean, std, _ = cells[method]
                row.append(f"{mean:.4f} ± {std:.4f}")
            else:
                row.append("–")
        row += _aims(cells, metric == "accuracy")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _aims(cells: dict, higher: bool) -> list[str]:
    """Each aim for DiverseDistill: 'yes', 'no', or 'tied' when the means lie within one
    standard deviation (the larger of the two)."""
    dd = cells.get("diversedistill")
    if dd is None:
        return ["–"] * 3

    def versus(other: str) -> str:
        if other not in cells:
            return "–"
        (a, sa, _), (b, sb, _) = dd, cells[other]
        better = a - b if higher else b - a
        if better > 0:
            return "yes"
        return "tied" if abs(better) <= max(sa, sb) else "no"

    rivals = [versus(m) for m in ("mt", "amtml", "aekd") if m in cells]
    rival = ("yes" if all(v == "yes" for v in rivals) else
             "tied" if all(v in ("yes", "tied") for v in rivals) else "no") if rivals else "–"
    return [versus("student alone"), versus("ld"), rival]


def aims_summary(table: str) -> str:
    """How many tasks meet each aim, from the table's last three columns."""
    rows = [line.split(" | ") for line in table.splitlines()[2:] if line.startswith("| ")]
    if not rows:
        return "no task finished"
    counts = []
    for k, aim in enumerate(("never below the student alone", "at least LD from the better "
                             "teacher", "first or tied with MT, AMTML and AEKD")):
        column = [r[-3 + k].strip(" |") for r in rows]
        met = sum(v in ("yes", "tied") for v in column)
        counts.append(f"{aim}: {met}/{len(rows)} tasks")
    return "; ".join(counts)
