"""``diversedistill report RESULTS_DIR [RESULTS_DIR ...] [--out DIR]``: a Markdown report
with PNG plots, made from saved results only (nothing is trained or evaluated again).

What a results directory may hold, and what becomes of it:

- ``results.csv`` (required): the summary table, gap recovered and the test metric;
- ``runs/<run>/logs/metrics.csv``: learning curves (validation metric per epoch);
- ``runs/<run>/importance.csv``: the importance α of each teacher on fixed sample points,
  written by DiverseDistill runs (:mod:`diversedistill.methods.importance`): the paper's Figure 4;
- the ``diag/...`` columns of a DiverseDistill run's metrics.csv: what each teacher's
  answer carries, per epoch (:meth:`~diversedistill.methods.DiverseDistill.validation_stats`);
- ``sweep.csv``: the τ sweep (passes skipped, test metric and epoch time against τ).

A single run's directory (``distill --out``, ``fit``'s ``run_dir``, one of ``runs/``) is a
results directory of one row: its method, committee and seed from ``run.json``, its best
validation figure from ``logs/metrics.csv`` and its test figure from ``student/config.json``
when the run exported one.

Several directories (one per seed, say) are read together, as ``summarize`` does. An
optional input that is missing is named in the report instead of stopping it. Every file
is written atomically and ``report.md`` last, so a report is never seen half-written.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global state, no display backend
from matplotlib.ticker import MaxNLocator

from diversedistill.errors import ConfigError, DataError
from diversedistill.runs import rundir
from diversedistill.runs.atomic import atomic_path, write_text_atomic
from diversedistill_recipes.comparison.diagnostics import (
    LONG_PLATEAU,
    epochs_at_constant,
    read_curve,
    read_diagnostics,
    read_training_answers,
)
from diversedistill_recipes.comparison.results import (
    MSE,
    Metric,
    check_one_metric,
    format_table,
    mean_std,
    metric_in_header,
    metric_of,
    read_results,
    summarize,
    undefined_gap,
)
from diversedistill_recipes.comparison.sweep import (
    read_sweep_columns,
    sweep_run_name,
    tau_of_label,
)
from diversedistill_recipes.comparison.tables import read_search, search_run_dir

PLOTS = ("gap_recovered.png", "test_metric.png", "learning_curves.png", "importance.png",
         "diagnostics.png", "sweep.png")
NO_RUNS = ("reference", "teacher alone")  # rows that no run directory of their own backs
DPI = 120


@dataclass
class Inputs:
    dirs: list[Path]
    rows: list
    metric: Metric
    runs: dict[tuple, Path] = field(default_factory=dict)  # (method, teachers, seed) -> run dir
    sweep: list[dict] = field(default_factory=list)  # rows of every sweep.csv
    notes: list[str] = field(default_factory=list)  # inputs missing, said in the report
    # runs that sat at the constant prediction longer than patience: "<run dir>: N epochs"
    stalled: list[str] = field(default_factory=list)


def results_path(where: str | Path) -> Path:
    """A results directory's results.csv (or the file itself), as ``summarize`` takes it."""
    path = Path(where)
    path = path / "results.csv" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"{where}: no results.csv there")
    return path


def run_name(row) -> str:
    """The run directory ``reproduce`` writes for a row (spaces of ablation labels become
    underscores); the student alone is ``student-<seed>``, a τ sweep run
    ``diversedistill-tau<τ>-<teachers>-<seed>``."""
    if row.method == "student alone":
        return f"student-{row.seed}"
    if (tau := tau_of_label(row.method)) is not None:
        return sweep_run_name(tau, row.teachers, row.seed)
    return f"{row.method.replace(' ', '_')}-{row.teachers}-{row.seed}"


def chosen_search_runs(directory: Path) -> dict[tuple[str, str, int], Path]:
    """(method, teachers, seed) -> the run of the value the tables' search chose
    (:func:`diversedistill_recipes.comparison.tables.search_run_dir`)."""
    if not (directory / "search.csv").is_file():
        return {}
    return {(r.method, r.teachers, r.seed): search_run_dir(directory, r.method, r.teachers, r.trial)
            for r in read_search(directory / "search.csv") if r.chosen}


def is_single_run(where: str | Path) -> bool:
    path = Path(where)
    return (path.is_dir() and not (path / "results.csv").exists()
            and (path / "logs" / "metrics.csv").is_file())


def single_run_row(run: Path):
    """The one result row of a run directory (see the module docstring)."""
    import json

    try:
        settings = json.loads((run / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        settings = {}
    with open(run / "logs" / "metrics.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        metric = metric_in_header(header, "val") or MSE
        column = f"val_{metric.name}"
        values = [float(r[column]) for r in reader if r.get(column) not in (None, "")]
    if not values:
        raise DataError(f"{run / 'logs' / 'metrics.csv'}: no {column} column with values; "
                        "not a finished epoch of a run")
    val = max(values) if metric.higher_is_better else min(values)
    test, seconds = math.nan, math.nan
    # the run's own result.json (every finished fit leaves one); an older run's export
    for source, figures in ((run / "result.json", lambda d: d),
                            (run / "student" / "config.json", lambda d: d.get("metrics", {}))):
        try:
            recorded = figures(json.loads(source.read_text(encoding="utf-8")))
            test = float(recorded.get(f"test_{metric.name}", math.nan))
            val = float(recorded.get(f"val_{metric.name}", val))
            seconds = float(recorded.get("seconds", math.nan))
            break
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # unfinished, or no export: the test figure is unknown, shown as nan
    method = str(settings.get("method", "run"))
    teachers = str(settings.get("teachers", "-"))
    if method == "student" or not teachers:  # the student alone
        return metric.row("student alone", "student", int(settings.get("train.seed", 0)), val,
                          test, seconds)
    lam = settings.get(f"{method}.lam")
    if isinstance(lam, (int, float)):  # runs at different λ are different rows
        method = f"{method} λ={lam:g}"
    return metric.row(method, teachers, int(settings.get("train.seed", 0)), val, test, seconds)


def load_inputs(results: list[str | Path]) -> Inputs:
    rows, dirs, runs = [], [], {}
    parts = []  # the rows of each input, to check that they measure the same thing
    for where in results:
        if is_single_run(where):  # one run: its own row, its own curves and diagnostics
            row = single_run_row(Path(where))
            parts.append([row])
            rows.append(row)
            dirs.append(Path(where))
            runs[(row.method, row.teachers, row.seed)] = Path(where)
            continue
        path = results_path(where)
        found = read_results(path)
        parts.append(found)
        rows += found
        dirs.append(path.parent)
        searched = chosen_search_runs(path.parent)
        for row in found:  # a later directory's run of the same row wins, as in summarize
            run = path.parent / "runs" / run_name(row)
            if not run.is_dir():  # the tables' seed-0 result is its chosen search run
                run = searched.get((row.method, row.teachers, row.seed), run)
            if row.method not in NO_RUNS and run.is_dir():
                runs[(row.method, row.teachers, row.seed)] = run
    check_one_metric(parts, [str(w) for w in results])
    if not rows:
        raise DataError(f"{', '.join(map(str, results))}: results.csv has no rows")
    inputs = Inputs(dirs, rows, metric_of(rows), runs)
    named = {run.name for run in runs.values()} | {"search"}  # search/: the tables' λ search
    extra = sorted(p.name for d in dirs if (d / "runs").is_dir() for p in (d / "runs").iterdir()
                   if p.is_dir() and p.name not in named)
    if extra:
        inputs.notes.append(f"{len(extra)} run director{'ies' if len(extra) > 1 else 'y'} without "
                            f"a results.csv row (unfinished?) left out: {', '.join(extra)}")
    for d in dirs:
        if (d / "sweep.csv").is_file():
            inputs.sweep += read_sweep_columns(d / "sweep.csv")
    return inputs


def student_key(rows) -> tuple[str, str] | None:
    """The student alone's (method, teachers): mlp-s for MovieLens, the ViT's name for vision."""
    return next((("student alone", r.teachers) for r in rows if r.method == "student alone"), None)


def label(method: str, teachers: str) -> str:
    return f"{method} · {teachers}"


def save(fig: Figure, path: Path) -> Path:
    """PNG to a temporary name, then renamed: a killed report leaves no half-written plot.
    No metadata that changes between runs, so the same inputs give the same bytes."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path


GAP_VIEW = (-150.0, 300.0)  # % shown at most: a teacher far worse than the student alone
#                            (the LM alone: about -700%) would squash every other bar


def gap_plot(summary, best: str | None, path: Path) -> Path | None:
    """Gap recovered per method × committee, sorted, ± std over seeds; 0% = the student
    alone, 100% = the best teacher alone (the dashed line). A bar beyond :data:`GAP_VIEW`
    is cut at the edge, its value written there."""
    shown = sorted((r for r in summary if r.gap_recovered is not None),
                   key=lambda r: (r.gap_recovered, r.method, r.teachers))
    if not shown:
        return None
    fig = Figure(figsize=(9, 1.4 + 0.4 * len(shown)), layout="constrained")
    ax = fig.add_subplot()
    y = range(len(shown))
    values = [100 * r.gap_recovered for r in shown]
    errors = [100 * (r.gap_recovered_std or 0.0) for r in shown]
    low = max(GAP_VIEW[0], min([0.0] + [v - e for v, e in zip(values, errors)]))
    high = min(GAP_VIEW[1], max([100.0] + [v + e for v, e in zip(values, errors)]))
    margin = 0.15 * (high - low)  # room for the figures written beside the bars
    ax.set_xlim(low - margin, high + margin)
    ax.barh(y, values, xerr=errors, color=["C0" if v >= 0 else "C3" for v in values],
            capsize=3, height=0.6)
    for k, (v, e) in enumerate(zip(values, errors)):
        text = f"{round(v)}%"  # a whole number: no "-0%" for the student alone
        if v < low - margin or v > high + margin:  # cut: the value inside, at the edge
            edge = low - margin if v < 0 else high + margin
            ax.annotate(f"{text} (off scale)", (edge, k), xytext=(4 if v < 0 else -4, 0),
                        textcoords="offset points", va="center", fontsize=8,
                        ha="left" if v < 0 else "right", color="white", fontweight="bold")
        else:
            end = v + e if v >= 0 else v - e
            ax.annotate(text, (end, k), xytext=(4 if v >= 0 else -4, 0),
                        textcoords="offset points", va="center", fontsize=8,
                        ha="left" if v >= 0 else "right", zorder=5,  # over the 100% line
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvline(100, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(list(y), [label(r.method, r.teachers) for r in shown])
    # two short lines: long method labels (ablations) leave the axes narrow
    ax.set_xlabel("gap recovered (%), mean over seeds ± std\ndashed: the best teacher alone"
                  + (f" ({best})" if best else ""))
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def metric_plot(summary, metric: Metric, path: Path) -> Path | None:
    """The test metric, mean ± std over seeds, as points: the differences are small next
    to the values, so bars from zero would hide them. References are in the table only
    (the global mean would squash the scale)."""
    shown = sorted((r for r in summary if r.method != "reference"),
                   key=lambda r: (r.test_mean if metric.higher_is_better else -r.test_mean,
                                  r.method, r.teachers))
    if not shown:
        return None
    fig = Figure(figsize=(9, 1.4 + 0.4 * len(shown)), layout="constrained")
    ax = fig.add_subplot()
    y = list(range(len(shown)))
    ax.errorbar([r.test_mean for r in shown], y, xerr=[r.test_std for r in shown], fmt="o",
                capsize=3, color="C0")
    ax.margins(x=0.08)  # the extreme points clear of the frame
    ax.set_yticks(y, [f"{label(r.method, r.teachers)} (n={r.seeds})" for r in shown])
    better = "higher" if metric.higher_is_better else "lower"
    ax.set_xlabel(f"{metric.label}, mean over seeds ± std\n({better} is better; best at the top)")
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def curves_plot(inputs: Inputs, path: Path) -> Path | None:
    """Validation metric per epoch, one colour per method × committee: the mean over the
    seeds that reached the epoch (early stopping ends seeds at different epochs), shaded
    between the seeds' minimum and maximum."""
    column = f"val_{inputs.metric.name}"
    groups: dict[tuple, list[dict]] = defaultdict(list)
    missing = []
    for (method, teachers, _seed), run in sorted(inputs.runs.items()):
        log = run / "logs" / "metrics.csv"
        curve = read_curve(log, column) if log.is_file() else {}
        if curve:
            groups[(method, teachers)].append(curve)
        else:
            missing.append(run.name)
    constants = []
    for (_method, _teachers, _seed), run in sorted(inputs.runs.items()):
        log = run / "logs" / "metrics.csv"
        count = epochs_at_constant(log, inputs.metric.name) if log.is_file() else None
        if count is not None and count > LONG_PLATEAU:
            inputs.stalled.append(f"`{run.name}`: {count} epochs")
        constants += list(read_curve(log, f"{column}_constant").values()) if log.is_file() else []
    if missing:
        inputs.notes.append(f"no validation curve (logs/metrics.csv) for {len(missing)} run(s): "
                            f"{', '.join(missing)}")
    if not groups:
        return None
    fig = Figure(figsize=(9, 5.5 + 0.2 * len(groups)), layout="constrained")
    ax = fig.add_subplot()
    everything = []
    for k, ((method, teachers), curves) in enumerate(sorted(groups.items())):
        epochs = sorted(set().union(*curves))
        at = [[c[e] for c in curves if e in c] for e in epochs]
        mean = [sum(v) / len(v) for v in at]
        colour = f"C{k % 10}"  # ten colours; past them the line style tells curves apart
        ax.plot(epochs, mean, color=colour, marker=".", linestyle=("-", "--", ":")[k // 10 % 3],
                label=f"{label(method, teachers)} ({len(curves)} seed{'s' * (len(curves) > 1)})")
        if len(curves) > 1:
            ax.fill_between(epochs, [min(v) for v in at], [max(v) for v in at], color=colour,
                            alpha=0.15, linewidth=0)
        everything += [x for v in at for x in v]
    # The first epochs can sit far from the rest; zoom on the range where runs are compared
    # (a few percent of the values out of view beats a flat, unreadable picture).
    everything.sort()
    low = (everything[int(0.02 * (len(everything) - 1))] if inputs.metric.higher_is_better
           else everything[0])
    high = (everything[-1] if inputs.metric.higher_is_better
            else everything[int(0.9 * (len(everything) - 1))])
    pad = 0.08 * (high - low) or 0.01
    ax.set_ylim(low - pad, high + pad)
    if constants and low - pad <= constants[0] <= high + pad:  # the same validation set
        ax.axhline(constants[0], color="grey", linestyle=":", label="constant prediction")
    ax.set_xlabel("epoch")
    ax.set_ylabel(inputs.metric.label.replace("test", "validation"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    ax.grid(alpha=0.3)
    # below the axes: long labels (ablations) beside them would leave the curves no room
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return save(fig, path)


def read_importance(path: Path) -> tuple[list[str], list[list[float]]]:
    """Teacher names and α [teacher][sample] from an importance.csv."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0] != "sample" or len(header) < 2:
            raise DataError(f"{path}: expected a header 'sample,<teacher>,...'")
        try:
            samples = [[float(v) for v in line[1:]] for line in reader if line]
        except ValueError as err:
            raise DataError(f"{path}: {err}") from None
    return header[1:], [list(column) for column in zip(*samples)]


def is_dd(method: str) -> bool:
    """DiverseDistill's row, at the default λ or at one a single run names
    ("diversedistill λ=1")."""
    return method.split(" ")[0] == "diversedistill"


def importance_plot(inputs: Inputs, path: Path) -> Path | None:
    """The paper's Figure 4: α of each teacher (rows) over fixed sample points (columns),
    one heatmap per method × committee, from its lowest seed that saved importance.csv."""
    chosen: dict[tuple, tuple[int, Path]] = {}
    for (method, teachers, seed), run in sorted(inputs.runs.items()):
        if (run / "importance.csv").is_file() and (method, teachers) not in chosen:
            chosen[(method, teachers)] = (seed, run / "importance.csv")
    dd_runs = [k for k in inputs.runs if is_dd(k[0]) or "ablation" in k[0]]
    if not chosen:
        if dd_runs:
            inputs.notes.append("no importance.csv in any DiverseDistill run (every finished "
                                "fit writes one; these runs did not finish): importance "
                                "heatmap left out")
        return None
    # DiverseDistill itself first, then its ablations
    maps = [(key, seed, *read_importance(file)) for key, (seed, file)
            in sorted(chosen.items(), key=lambda kv: (not is_dd(kv[0][0]), kv[0]))]
    heights = [len(names) + 1.2 for *_, names, _ in maps]
    fig = Figure(figsize=(10, 0.9 + 0.45 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(maps), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, ((method, teachers), seed, names, alpha) in zip(axes, maps):
        image = ax.imshow(alpha, aspect="auto", vmin=0, vmax=1, cmap="viridis",
                          interpolation="nearest")
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"{label(method, teachers)}, seed {seed}", fontsize=9, loc="left")
    axes[-1].set_xlabel("sample point (the first test rows, the same in every run)", fontsize=9)
    fig.colorbar(image, ax=list(axes), label="importance α", fraction=0.04, pad=0.01)
    return save(fig, path)


DIAGNOSTIC_PANELS = (  # (title, [(column suffix, line style, legend word)])
    ("teacher's {metric}: asked (solid) / own pass (dashed)",
     [("teacher_asked", "-", "asked"), ("teacher_own", "--", "own")]),
    ("student head's {metric}: on the answer (solid) / on z (dotted)\n"
     "/ on the answer, training rows (dash-dot; squared error only)\n"
     "/ training rows the teachers never saw (dashed, with importance_rows)",
     [("head_on_answer", "-", "answer"), ("train_head_on_answer", "-.", "answer, training"),
      ("unseen_head_on_answer", "--", "answer, unseen training")]),
    ("importance α: mean ± spread over samples (solid)\n/ its correlation with the gain (dashed)",
     [("alpha_mean", "-", "α"), ("alpha_gain_corr", "--", "corr(α, gain)")]),
    ("share of ‖a − z‖² the head reads", [("along_head", "-", "share")]),
)


def diagnostics_plot(inputs: Inputs, path: Path) -> Path | None:
    """Per DiverseDistill committee (lowest seed), what each teacher's answer carries per
    epoch on validation rows: the teacher asked against its own pass, the student's head on
    the answer against on ``z`` (and, for ratings, on the answer over the training rows), α
    and its spread, and the share of the distance the head reads. One colour per teacher."""
    chosen: dict[str, tuple[int, dict]] = {}
    for (method, teachers, seed), run in sorted(inputs.runs.items()):
        log = run / "logs" / "metrics.csv"
        if is_dd(method) and teachers not in chosen and log.is_file():
            diag = read_diagnostics(log)
            if diag and inputs.metric.name == "mse":  # the same units as validation's
                diag.update(read_training_answers(log))
            if diag:
                chosen[teachers] = (seed, diag)
    if not chosen:
        if any(is_dd(k[0]) for k in inputs.runs):
            inputs.notes.append("no diag/ columns in any DiverseDistill run's metrics.csv: run "
                                "with a version that logs them (diagnostics left out)")
        return None
    metric = inputs.metric.name
    fig = Figure(figsize=(4.2 * len(DIAGNOSTIC_PANELS), 3.3 * len(chosen)), layout="constrained")
    axes = fig.subplots(len(chosen), len(DIAGNOSTIC_PANELS), squeeze=False)
    for row, (teachers, (seed, diag)) in zip(axes, sorted(chosen.items())):
        names = teachers.split("+")
        for ax, (title, lines) in zip(row, DIAGNOSTIC_PANELS):
            for k, name in enumerate(names):
                for suffix, style, word in lines:
                    curve = diag.get(f"{name}/{suffix}", {})
                    if not curve:
                        continue
                    epochs = sorted(curve)
                    values = [curve[e] for e in epochs]
                    ax.plot(epochs, values, linestyle=style, color=f"C{k}", marker=".",
                            label=f"{name} {word}")
                    if suffix == "alpha_mean" and f"{name}/alpha_std" in diag:
                        spread = [diag[f"{name}/alpha_std"].get(e, 0.0) for e in epochs]
                        ax.fill_between(epochs, [v - s for v, s in zip(values, spread)],
                                        [v + s for v, s in zip(values, spread)],
                                        color=f"C{k}", alpha=0.2, linewidth=0)
            if lines[0][0] == "head_on_answer" and diag.get("head_on_z"):
                epochs = sorted(diag["head_on_z"])
                ax.plot(epochs, [diag["head_on_z"][e] for e in epochs], ":", color="black",
                        label="z")
            ax.set_title(f"{teachers}, seed {seed}\n" + title.format(metric=metric), fontsize=8)
            ax.set_xlabel("epoch", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return save(fig, path)


def sweep_stats(rows: list[dict], column: str) -> tuple[list[float], list[float], list[float]]:
    """τ, mean and std over seeds of ``column`` (τ with no value of it left out)."""
    by_tau: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        if column in r and not math.isnan(r[column]):
            by_tau[r["tau"]].append(r[column])
    taus = sorted(by_tau)
    stats = [mean_std(by_tau[t]) for t in taus]
    return taus, [m for m, _ in stats], [s for _, s in stats]


def sweep_plot(inputs: Inputs, path: Path) -> Path | None:
    """The τ sweep: share of each teacher's passes skipped, the test metric and the epoch
    time against τ, each mean ± std over seeds (a panel whose column is absent is left out)."""
    rows, metric = inputs.sweep, inputs.metric
    # the file's column order: the committee's order, the same colours as in training logs
    skipped = list(dict.fromkeys(k for r in rows for k in r if k.startswith("skipped/")))
    panels = [(c, t) for c, t in ((f"test_{metric.name}", metric.label),
                                  ("epoch_seconds", "seconds per epoch"))
              if any(c in r for r in rows)]
    if skipped:
        panels.insert(0, ("skipped", "teacher passes skipped"))
    if not panels:
        inputs.notes.append("sweep.csv has no skipped/<teacher>, test metric or epoch_seconds "
                            "column: nothing to plot")
        return None
    fig = Figure(figsize=(4.2 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (column, title) in zip(axes, panels):
        for k, name in enumerate(skipped if column == "skipped" else [column]):
            taus, mean, std = sweep_stats(rows, name)
            scale = 100 if column == "skipped" else 1
            ax.errorbar(taus, [scale * m for m in mean], yerr=[scale * s for s in std],
                        marker="o", capsize=3, color=f"C{k % 10}",
                        label=name.removeprefix("skipped/"))
        if column == "skipped":
            ax.set_ylim(-5, 105)
            ax.set_ylabel("% of passes skipped")
            ax.legend(fontsize=8, title="teacher", title_fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("gating threshold τ")
        ax.grid(alpha=0.3)
    return save(fig, path)


CAPTIONS = {
    "gap_recovered.png": "Gap recovered per method × committee (mean over seeds, bars ± std; "
                         "0% = the student alone, dashed line = the best teacher alone).",
    "test_metric.png": "{label} per method × committee, mean ± std over seeds (n = seeds).",
    "learning_curves.png": "Validation {name} per epoch: mean over the seeds still training, "
                           "shaded between their minimum and maximum (zoomed on the best "
                           "epochs: the first ones may lie out of view).",
    "importance.png": "Importance α of each teacher on the same fixed sample points (the first "
                      "test rows), lowest seed: the paper's Figure 4.",
    "diagnostics.png": "What each teacher's answer carries, per epoch on validation rows "
                       "(DiverseDistill, lowest seed): the teacher asked the question against "
                       "its own pass, the student's head on the answer against on z, α ± its "
                       "spread over samples (flat: α learned nothing), and the share of "
                       "‖a − z‖² along the directions the head reads.",
    "sweep.png": "τ sweep: teacher passes skipped, {label} and epoch time against τ "
                 "(mean ± std over seeds).",
}


def markdown(inputs: Inputs, summary, best, written: dict[str, Path]) -> str:
    seeds = sorted({r.seed for r in inputs.rows})
    better = "higher" if inputs.metric.higher_is_better else "lower"
    lines = ["# DiverseDistill report", "",
             (f"Results: {', '.join(f'`{d}`' for d in inputs.dirs)}; {len(inputs.rows)} rows, "
              f"seeds {', '.join(map(str, seeds))}; metric: {inputs.metric.label} ({better} is "
              "better). Made from saved results by `diversedistill report`; "
              "nothing was retrained."),
             "", "## Summary", "", format_table(summary, best, inputs.metric), ""]
    for name in PLOTS:
        if name in written:
            caption = CAPTIONS[name].format(label=inputs.metric.label, name=inputs.metric.name)
            lines += [f"## {name.removesuffix('.png').replace('_', ' ').capitalize()}", "",
                      f"![{name}]({name})", "", f"*{caption}*", ""]
            if name == "learning_curves.png" and inputs.stalled:
                lines += [f"Runs that sat at the constant prediction (validation no better "
                          f"than predicting the mean or the majority class) for more than "
                          f"{LONG_PLATEAU} epochs: {'; '.join(inputs.stalled)}.", ""]
    if inputs.notes:
        lines += ["## Missing inputs", "", *(f"- {n}" for n in inputs.notes), ""]
    return "\n".join(lines)


def write_report(results: list[str | Path], out: str | Path | None = None
                 ) -> tuple[Path, Inputs, list[str]]:
    """Write ``report.md`` and its plots to ``out`` (default: the first results directory's
    ``report/``); returns the report's path, its inputs and the plots written."""
    inputs = load_inputs(results)
    # a folder of the user's own is never written into: report.md and the plots go only
    # into a new, empty or report-marked directory
    out = rundir.own(Path(out) if out else inputs.dirs[0] / "report", "report")
    summary, best = summarize(inputs.rows, student_key(inputs.rows) or ("student alone", ""),
                              metric=inputs.metric)
    if student_key(inputs.rows) is None:
        inputs.notes.append("no 'student alone' row: gap recovered cannot be measured")
    undefined = undefined_gap(summary, best)
    if undefined:  # no gap plot either: its bars would be ratios of noise
        inputs.notes.append(undefined)
    if not inputs.runs:
        inputs.notes.append("no runs/ directories: learning curves and importance left out")
    plots = {"gap_recovered.png": lambda p: gap_plot(summary, best, p),
             "test_metric.png": lambda p: metric_plot(summary, inputs.metric, p),
             "learning_curves.png": lambda p: curves_plot(inputs, p) if inputs.runs else None,
             "importance.png": lambda p: importance_plot(inputs, p),
             "diagnostics.png": lambda p: diagnostics_plot(inputs, p) if inputs.runs else None,
             "sweep.png": lambda p: sweep_plot(inputs, p) if inputs.sweep else None}
    written = {}
    for name, plot in plots.items():
        if plot(out / name) is not None:
            written[name] = out / name
        else:  # a plot of an earlier report whose input is gone would be out of date
            rundir.check_may_write(out / name)  # but never a file of the user's own
            (out / name).unlink(missing_ok=True)
    if not inputs.sweep:
        inputs.notes.append("no sweep.csv: run the τ sweep to plot passes skipped against τ")
    write_text_atomic(out / "report.md", markdown(inputs, summary, best, written))
    return out / "report.md", inputs, list(written)
