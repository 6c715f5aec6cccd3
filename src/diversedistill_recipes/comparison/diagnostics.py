"""DiverseDistill's module diagnostics read back from its runs, for the tables and reports.

Every DiverseDistill run logs, per epoch on validation rows, ``diag/...`` columns in its
``logs/metrics.csv`` (:mod:`diversedistill.methods.diversedistill`): per teacher, its task
metric when asked the question against its own pass (``teacher_asked``, ``teacher_own``),
the student head's metric on the teacher's answer (``head_on_answer``) against on the
student's own ``z`` (``head_on_z``), α's mean and spread across samples (``alpha_mean``,
``alpha_std``) and the share of the distance along the directions the head reads
(``along_head``). The tables print them under each DiverseDistill cell, so that where
DiverseDistill is not first a reader sees what its teachers' answers carried.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from diversedistill.loop.constant_plateau import LEARNED_SHARE, learned_share

PER_TEACHER = ("teacher_asked", "teacher_own", "head_on_answer", "alpha_mean", "alpha_std",
               "along_head")


def read_curve(path: Path, column: str) -> dict[int, float]:
    """One column per epoch from a Lightning metrics.csv (validation and training rows are
    separate lines; the last value of an epoch wins, as after a resume)."""
    curve = {}
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r.get(column) not in (None, "") and r.get("epoch") not in (None, ""):
                curve[int(r["epoch"])] = float(r[column])
    return curve


def read_curves(path: Path, prefix: str, suffix: str = "") -> dict[str, dict[int, float]]:
    """Every column of a metrics.csv whose name starts with ``prefix``, per epoch, keyed by
    the rest of its name followed by ``suffix``."""
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return {c.removeprefix(prefix) + suffix: read_curve(path, c)
            for c in header if c.startswith(prefix)}


def read_diagnostics(path: Path) -> dict[str, dict[int, float]]:
    """Every ``diag/...`` column of a metrics.csv, per epoch."""
    return read_curves(path, "diag/")


def read_training_answers(path: Path) -> dict[str, dict[int, float]]:
    """Per teacher, the student head's loss on its answers over the training rows, per
    epoch (``train/head_on_answer/<teacher>``), keyed ``<teacher>/train_head_on_answer``
    as :func:`read_diagnostics` keys its columns. For ratings that loss is the squared
    error of the validation ``head_on_answer``, so the two can share an axis: a teacher
    better on the training rows and worse on validation has memorized the rows its α
    target is computed on. With ``importance_rows`` set, also the loss over the rows it
    marks (``train/head_on_answer_unseen/<teacher>``, keyed ``.../unseen_head_on_answer``):
    what α's targets compare there."""
    return {**read_curves(path, "train/head_on_answer/", "/train_head_on_answer"),
            **read_curves(path, "train/head_on_answer_unseen/", "/unseen_head_on_answer")}


# a run is reported as stalled when it sat at the constant prediction for more epochs than
# the default patience: plain early stopping would have ended it there, reporting the
# constant's score as the method's (constant_plateau.py)
LONG_PLATEAU = 4


def epochs_at_constant(log: Path, metric: str) -> int | None:
    """How many epochs of a run's metrics.csv scored no better than the best constant
    prediction (closing less than ``LEARNED_SHARE`` of its gap to a perfect score, as early
    stopping judges it); None when the log does not hold the constant's score (a run
    written before ``val_<metric>_constant`` was logged)."""
    constant = read_curve(log, f"val_{metric}_constant")
    if not constant:
        return None
    score = read_curve(log, f"val_{metric}")
    shares = [learned_share(metric, score[e], constant[e]) for e in score if e in constant]
    return sum(1 for share in shares if share is not None and share < LEARNED_SHARE)


def plateau_note(run_dirs: list[Path], metric: str) -> str:
    """"k of n runs sat at the constant prediction for more than LONG_PLATEAU epochs (their
    counts)"; "none of n runs ..." when every log says so; "" when no log holds the constant."""
    counts = []
    for run in run_dirs:
        log = run / "logs" / "metrics.csv"
        count = epochs_at_constant(log, metric) if log.is_file() else None
        if count is not None:
            counts.append(count)
    if not counts:
        return ""
    long = [c for c in counts if c > LONG_PLATEAU]
    said = f"{len(long)} of {len(counts)} run(s)" if long else f"none of {len(counts)} run(s)"
    epochs = f" ({', '.join(map(str, long))} epochs)" if long else ""
    return (f"{said} sat at the constant prediction for more than {LONG_PLATEAU} "
            f"epochs{epochs}")


def last_epoch(run_dirs: list[Path]) -> tuple[dict[str, float], int]:
    """Each diagnostic at its run's last logged epoch, averaged over the runs that have it;
    and how many runs had any."""
    values: dict[str, list[float]] = {}
    runs = 0
    for run in run_dirs:
        log = run / "logs" / "metrics.csv"
        if not log.is_file():
            continue
        curves = {k: v for k, v in read_diagnostics(log).items() if v}
        runs += bool(curves)
        for name, curve in curves.items():
            values.setdefault(name, []).append(curve[max(curve)])
    return {k: statistics.fmean(v) for k, v in values.items()}, runs


def describe(run_dirs: list[Path], teachers: list[str], metric_short: str) -> str:
    """One paragraph: per teacher, what its answers carried at the last epoch (mean over
    the runs found); "" when no run logged diagnostics."""
    diag, runs = last_epoch(run_dirs)
    if not runs:
        return ""
    parts = []
    for t in teachers:
        d = {k: diag.get(f"{t}/{k}") for k in PER_TEACHER}
        if all(v is None for v in d.values()):
            continue
        text = [f"**{t}**:"]
        if d["teacher_asked"] is not None and d["teacher_own"] is not None:
            text.append(f"the teacher asked the question {d['teacher_asked']:.4f} against its "
                        f"own pass {d['teacher_own']:.4f};")
        if d["head_on_answer"] is not None:
            on_z = diag.get("head_on_z")
            text.append(f"the student's head on its answer {d['head_on_answer']:.4f}"
                        + (f" against on z {on_z:.4f};" if on_z is not None else ";"))
        if d["alpha_mean"] is not None:
            spread = f" ± {d['alpha_std']:.3f}" if d["alpha_std"] is not None else ""
            text.append(f"α {d['alpha_mean']:.3f}{spread} across samples;")
        if d["along_head"] is not None:
            text.append(f"{d['along_head']:.0%} of the distance along the head")
        parts.append(" ".join(text).rstrip(";"))
    if not parts:
        return ""
    return (f"validation {metric_short} at the last epoch, mean over {runs} run(s): "
            + "; ".join(parts) + ".")
