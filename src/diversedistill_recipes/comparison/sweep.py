"""The importance-gating sweep: DiverseDistill at several thresholds τ, what each one skips,
what it saves in wall time, and what it costs in MSE; and the τ chosen on validation.

With threshold τ a teacher is asked only the rows whose importance α exceeds τ (after the
warm-up epochs, plus a random ``explore`` fraction), gathered into one sub-batch
(``DiverseDistill.gate``). A run's ``logs/metrics.csv`` holds, per epoch, the fraction of
each teacher's rows skipped (``train/skipped/<teacher>``); the sweep reads it back.

Choosing τ uses validation only: the largest τ whose mean validation MSE stays within the
τ = 0 runs' spread (their mean + one standard deviation over seeds). Test MSE is reported,
never used to choose.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from diversedistill.errors import DataError
from diversedistill.runs.atomic import write_text_atomic

SWEEP_LABEL = "diversedistill τ="  # a sweep run's method in results.csv: "diversedistill τ=0.5"


def sweep_label(tau: float) -> str:
    return f"{SWEEP_LABEL}{tau:g}"


def sweep_run_name(tau: float, teachers: str, seed: int) -> str:
    """The run directory of a sweep run, under ``runs/`` (ASCII: no τ in file names)."""
    return f"diversedistill-tau{tau:g}-{teachers}-{seed}"


def tau_of_label(method: str) -> float | None:
    """0.5 for "diversedistill τ=0.5"; None for any other method."""
    return float(method.removeprefix(SWEEP_LABEL)) if method.startswith(SWEEP_LABEL) else None


@dataclass
class SweepRow:
    tau: float
    seed: int
    val_mse: float
    test_mse: float
    epochs: int
    epoch_seconds: float  # wall time per epoch, validation included
    skipped: dict[str, float] = field(default_factory=dict)  # teacher -> fraction of rows
    # teacher -> fraction of rows asked because α > τ (the rest of the asked rows were
    # explored at random); absent in sweeps of older versions
    by_alpha: dict[str, float] = field(default_factory=dict)


def skipped_fractions(run_dir: str | Path, what: str = "skipped") -> dict[str, float]:
    """Fraction of each teacher's rows skipped (``what="asked_by_alpha"``: asked because
    α > τ) over the whole run (every epoch has the same number of rows, so it is the mean
    of the per-epoch fractions)."""
    path = Path(run_dir) / "logs" / "metrics.csv"
    per_teacher: dict[str, list[float]] = {}
    prefix = f"train/{what}/"
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key and key.startswith(prefix) and value not in ("", None):
                    per_teacher.setdefault(key.removeprefix(prefix), []).append(float(value))
    return {name: statistics.fmean(v) for name, v in per_teacher.items()}


def sweep_csv_text(rows: list[SweepRow]) -> str:
    teachers = sorted({t for r in rows for t in r.skipped})
    head = ["tau", "seed", "val_mse", "test_mse", "epochs", "epoch_seconds"]
    lines = [",".join(head + [f"skipped/{t}" for t in teachers]
                      + [f"asked_by_alpha/{t}" for t in teachers])]
    for r in rows:
        values = ([asdict(r)[k] for k in head] + [r.skipped.get(t, float("nan")) for t in teachers]
                  + [r.by_alpha.get(t, float("nan")) for t in teachers])
        lines.append(",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values))
    return "\n".join(lines) + "\n"


def write_sweep(path: str | Path, rows: list[SweepRow]) -> None:
    write_text_atomic(path, sweep_csv_text(rows))


def read_sweep_columns(path: str | Path) -> list[dict[str, float]]:
    """Rows of a sweep.csv as floats; ``tau`` is required, every other column optional (an
    empty cell is left out). A malformed file is one error naming it and the line."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "tau" not in (reader.fieldnames or ()):
            raise DataError(f"{path}: expected a 'tau' column, found "
                            f"{', '.join(reader.fieldnames or ()) or 'no header'}")
        try:
            return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in reader]
        except ValueError as err:
            raise DataError(f"{path}: line {reader.line_num}: {err}") from None


def read_sweep(path: str | Path) -> list[SweepRow]:
    """The rows of a ``sweep.csv`` written by :func:`write_sweep` (a resumed sweep keeps them)."""
    return [SweepRow(r["tau"], int(r["seed"]), r["val_mse"], r["test_mse"], int(r["epochs"]),
                     r["epoch_seconds"], _columns(r, "skipped/"), _columns(r, "asked_by_alpha/"))
            for r in read_sweep_columns(path)]


def _columns(row: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): v for k, v in row.items()
            if k.startswith(prefix) and not math.isnan(v)}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def choose_tau(rows: list[SweepRow]) -> float | None:
    """The largest τ whose mean validation MSE is at most the τ = 0 mean + std."""
    by_tau = group_by_tau(rows)
    if 0.0 not in by_tau:
        return None
    mean0, std0 = _mean_std([r.val_mse for r in by_tau[0.0]])
    fine = [t for t, rs in by_tau.items()
            if statistics.fmean(r.val_mse for r in rs) <= mean0 + std0]
    return max(fine)


def group_by_tau(rows: list[SweepRow]) -> dict[float, list[SweepRow]]:
    groups: dict[float, list[SweepRow]] = {}
    for r in rows:
        groups.setdefault(r.tau, []).append(r)
    return dict(sorted(groups.items()))


def format_sweep(rows: list[SweepRow]) -> str:
    """Per τ: passes skipped per teacher, epoch time against τ = 0, val and test MSE."""
    by_tau = group_by_tau(rows)
    teachers = sorted({t for r in rows for t in r.skipped})
    base = statistics.fmean(r.epoch_seconds for r in by_tau[0.0]) if 0.0 in by_tau else math.nan
    lines = ["| τ | seeds | " + " | ".join(f"skipped {t}" for t in teachers)
             + " | all passes skipped | asked: by α / explored | s / epoch | time saved vs τ = 0 "
             "| val MSE | test MSE |",
             "|---|---|" + "---|" * len(teachers) + "---|---|---|---|---|---|"]
    for tau, rs in by_tau.items():
        skips = [statistics.fmean(r.skipped.get(t, 0.0) for r in rs) for t in teachers]
        # of all rows (every teacher, every epoch): asked because α > τ, and asked only by
        # the random exploration (the rest were skipped)
        asked = 1 - statistics.fmean(skips) if skips else 1.0
        by_alpha = [r.by_alpha[t] for r in rs for t in teachers if t in r.by_alpha]
        share = (f"{statistics.fmean(by_alpha):.1%} / {asked - statistics.fmean(by_alpha):.1%}"
                 if by_alpha else "-")
        seconds = statistics.fmean(r.epoch_seconds for r in rs)
        val, val_sd = _mean_std([r.val_mse for r in rs])
        test, test_sd = _mean_std([r.test_mse for r in rs])
        lines.append(f"| {tau:g} | {len(rs)} | " + " | ".join(f"{s:.1%}" for s in skips)
                     + f" | {statistics.fmean(skips) if skips else 0:.1%} | {share} | "
                     f"{seconds:.1f} | {1 - seconds / base:.1%} | {val:.4f} ± {val_sd:.4f} | "
                     f"{test:.4f} ± {test_sd:.4f} |")
    chosen = choose_tau(rows)
    if chosen is not None:
        lines.append(f"\nτ chosen on validation (largest τ with mean val MSE ≤ the τ = 0 mean + "
                     f"std): {chosen:g}")
    return "\n".join(lines)
