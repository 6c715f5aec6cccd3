"""Result rows, per-method summaries (mean ± std over seeds, gap recovered) and tables.

One :class:`ResultRow` serves every data set; its ``metric`` names the score: test MSE for
MovieLens (lower is better), test accuracy for image classification (higher is better), as a
:class:`Metric` says. In CSV the scores are written as ``val_<metric>`` and ``test_<metric>``
(``val_mse``, ``test_accuracy``), so a file says what it holds without a metric column.
Summaries and tables take the metric as an argument; its default keeps the MovieLens files
and tables exactly as they were.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from diversedistill.errors import ConfigError, DataError
from diversedistill.runs.atomic import write_text_atomic
from diversedistill_recipes.comparison.sweep import tau_of_label


@dataclass
class ResultRow:
    """One run's scores: validation (NaN where not measured, as for the references) and
    test, in the units of ``metric`` (accuracy as a fraction in [0, 1])."""

    method: str  # "student alone", "teacher alone", "diversedistill", "reference", ...
    teachers: str  # committee members joined by "+", or the model itself
    seed: int
    val: float
    test: float
    seconds: float
    metric: str = "mse"  # a Metric's name: the CSV columns are val_<metric>, test_<metric>


@dataclass(frozen=True)
class Metric:
    name: str  # the CSV columns are ``val_<name>`` and ``test_<name>``
    label: str  # in the table header
    higher_is_better: bool

    def row(self, method: str, teachers: str, seed: int, val: float, test: float,
            seconds: float) -> ResultRow:
        return ResultRow(method, teachers, seed, val, test, seconds, self.name)


MSE = Metric("mse", "test MSE", False)
ACCURACY = Metric("accuracy", "test accuracy", True)
METRICS = (MSE, ACCURACY)


def metric_in_header(names, prefix: str) -> Metric | None:
    """The metric whose ``<prefix>_<name>`` column a CSV header holds (None: none does)."""
    return next((m for m in METRICS if f"{prefix}_{m.name}" in (names or ())), None)


@dataclass
class SummaryRow:
    method: str
    teachers: str
    seeds: int
    test_mean: float  # the metric's mean over seeds (CSV column ``test_<metric>_mean``)
    test_std: float
    gap_recovered: float | None  # from the means; None for the references themselves
    gap_recovered_std: float | None  # spread of the per-seed gap recovered
    # True when there is no gap to recover: the best teacher alone is not better than the
    # student alone, so the ratio's sign (and size) would say nothing
    gap_undefined: bool = False


def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def gap_recovered(distilled: float, student: float, teacher: float) -> float:
    """METHOD.md: (M(distilled) − M(student)) / (M(best teacher) − M(student)), signed so
    that improvement is positive; for MSE both differences are negative when it helps."""
    return (distilled - student) / (teacher - student)


def has_gap(student: float, teacher: float, metric: Metric) -> bool:
    """Whether the teacher is better than the student, so a gap exists to be recovered."""
    return teacher > student if metric.higher_is_better else teacher < student


def gap_text(r: SummaryRow) -> str:
    """"12.3% ± 4.5", "undefined" (no gap to recover), or "" (not measured)."""
    if r.gap_undefined:
        return "undefined"
    if r.gap_recovered is None:
        return ""
    text = f"{100 * r.gap_recovered + 0.0:.1f}%"  # "+ 0.0" turns the student's -0.0 into 0.0
    return text + (f" ± {100 * r.gap_recovered_std:.1f}" if r.gap_recovered_std is not None
                   else "")


def undefined_gap(summary: list[SummaryRow], best_teacher: str | None) -> str:
    """The sentence a table prints under itself when its gap column is undefined, or ""."""
    rows = {(r.method, r.teachers): r for r in summary}
    teacher = rows.get(("teacher alone", best_teacher or ""))
    student = next((r for r in summary if r.method == "student alone"), None)
    if not (teacher and student and any(r.gap_undefined for r in summary)):
        return ""
    return (f"Gap recovered is undefined: the best teacher alone ({best_teacher}, "
            f"{teacher.test_mean:.4f}) is not better than the student alone "
            f"({student.test_mean:.4f}), so there is no gap to recover.")


def summarize(rows: list, student_key=("student alone", "mlp-s"),
              teacher_method: str = "teacher alone",
              metric: Metric = MSE) -> tuple[list[SummaryRow], str | None]:
    """Group rows by (method, teachers); gap recovered is measured against the student
    alone and the best teacher alone (best mean test score: lowest MSE, highest accuracy).
    Where that teacher is not better than the student there is no gap: every row's gap is
    ``None`` with ``gap_undefined`` set (a seed whose teacher is not better is left out of
    the spread for the same reason)."""
    groups: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in rows:
        groups[(r.method, r.teachers)][r.seed] = r.test
    teachers = {k: mean_std(list(v.values()))[0] for k, v in groups.items()
                if k[0] == teacher_method}
    pick = max if metric.higher_is_better else min
    best = pick(teachers, key=lambda k: teachers[k]) if teachers else None
    student = groups.get(student_key)
    out = []
    for method, names in _in_table_order(list(groups)):
        by_seed = groups[(method, names)]
        m, s = mean_std(list(by_seed.values()))
        gap = gap_std = None
        undefined = False
        if student and best and method != "reference":
            sm, bm = mean_std(list(student.values()))[0], teachers[best]
            undefined = not has_gap(sm, bm, metric)
            if not undefined:
                gap = gap_recovered(m, sm, bm)
                per_seed = [gap_recovered(v, student[k], groups[best][k])
                            for k, v in by_seed.items() if k in student and k in groups[best]
                            and has_gap(student[k], groups[best][k], metric)]
                gap_std = mean_std(per_seed)[1] if per_seed else None
        out.append(SummaryRow(method, names, len(by_seed), m, s, gap, gap_std, undefined))
    return out, (best[1] if best else None)


def _in_table_order(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The order rows were first met, except that a τ sweep's rows, which finish in any
    order when runs go in parallel, take their slots sorted by τ."""
    swept = iter(sorted((k for k in keys if tau_of_label(k[0]) is not None),
                        key=lambda k: (tau_of_label(k[0]), k[1])))
    return [next(swept) if tau_of_label(k[0]) is not None else k for k in keys]


def csv_text(rows: list) -> str:
    """Dataclass rows as CSV text: a header of the field names, None as an empty value. A row
    with a ``metric`` field (:class:`ResultRow`, a search trial) names its ``val`` and
    ``test`` columns after it (``val_mse``) and writes no metric column."""
    buffer = io.StringIO()
    if rows:
        columns = [_column(f.name, rows[0]) for f in fields(rows[0]) if f.name != "metric"]
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({_column(k, row): ("" if v is None else v)
                             for k, v in asdict(row).items() if k != "metric"})
    return buffer.getvalue()


def _column(field: str, row) -> str:
    metric = getattr(row, "metric", None)
    return f"{field}_{metric}" if metric and field in ("val", "test") else field


def write_csv(path: str | Path, rows: list) -> None:
    write_text_atomic(path, csv_text(rows))


def write_summary_csv(path: str | Path, summary: list[SummaryRow], metric: Metric = MSE) -> None:
    """The summary as CSV, its score columns named after the metric (``test_mse_mean``,
    ``test_accuracy_mean``, ...)."""
    buffer = io.StringIO()
    names = [f.name.replace("test_", f"test_{metric.name}_") for f in fields(SummaryRow)]
    writer = csv.writer(buffer)
    writer.writerow(names)
    for row in summary:
        writer.writerow(["" if v is None else v for v in asdict(row).values()])
    write_text_atomic(path, buffer.getvalue())


def read_results(path: str | Path) -> list:
    """The rows of a results.csv, their metric read from its header (``val_mse`` and
    ``test_mse``, or ``val_accuracy`` and ``test_accuracy``).
    A run listed twice, or a score that is not a finite number, is refused."""
    try:
        return _read_results(path)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 text (byte {err.start})") from None


def _read_results(path: str | Path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        metric = metric_in_header(reader.fieldnames, "test")
        if metric is None:
            raise DataError(f"{path}: expected a test_mse or test_accuracy column, "
                            f"found {', '.join(reader.fieldnames or ()) or 'no header'}")
        rows: list = []
        seen: dict[tuple[str, str, int], int] = {}
        for r in reader:
            try:
                row = metric.row(r["method"], r["teachers"], int(r["seed"]),
                                 float(r[f"val_{metric.name}"]), float(r[f"test_{metric.name}"]),
                                 float(r["seconds"]))
            except (KeyError, TypeError, ValueError) as err:
                raise DataError(f"{path}: line {reader.line_num}: malformed row ({err})") from None
            _check_row(row, metric, path, reader.line_num)
            key = (row.method, row.teachers, row.seed)
            if key in seen:
                raise DataError(f"{path}: line {reader.line_num}: {row.method} / {row.teachers} / "
                                f"seed {row.seed} is listed twice (first at line {seen[key]}); "
                                "one run, one row")
            seen[key] = reader.line_num
            rows.append(row)
        return rows


def _check_row(row, metric: Metric, path, line: int) -> None:
    """A score must be a finite number; only the validation score may be NaN (not measured,
    as for the references)."""
    for name, value, nan_ok in ((f"test_{metric.name}", row.test, False),
                                (f"val_{metric.name}", row.val, True),
                                ("seconds", row.seconds, False)):
        if math.isinf(value) or (math.isnan(value) and not nan_ok):
            raise DataError(f"{path}: line {line}: {name} is {value}, not a finite number "
                            f"({row.method} / {row.teachers} / seed {row.seed})")


def metric_of(rows: list) -> Metric:
    """The metric of rows read by :func:`read_results` (MSE for an empty list)."""
    return next((m for m in METRICS if m.name == rows[0].metric), MSE) if rows else MSE


def format_table(summary: list[SummaryRow], best_teacher: str | None, metric: Metric = MSE) -> str:
    """A Markdown table: one line per method × committee."""
    lines = [f"| method | teachers | seeds | {metric.label} (mean ± std) | gap recovered |",
             "|---|---|---|---|---|"]
    for r in summary:
        lines.append(f"| {r.method} | {r.teachers} | {r.seeds} | "
                     f"{r.test_mean:.4f} ± {r.test_std:.4f} | {gap_text(r)} |")
    undefined = undefined_gap(summary, best_teacher)
    if undefined:
        lines.append("\n" + undefined)
    elif best_teacher:
        lines.append(f"\nGap recovered: against the student alone and the best teacher alone "
                     f"({best_teacher}); 100% = as good as that teacher.")
    return "\n".join(lines)


def check_one_metric(parts: list[list], sources: list[str]) -> None:
    """Rows of several results (each read with its own metric) are summarized together
    only when they measure the same thing: an accuracy is never averaged into an MSE."""
    found = {metric_of(rows).name: source for rows, source in zip(parts, sources) if rows}
    if len(found) > 1:
        shown = "; ".join(f"{source}: test {name}" for name, source in found.items())
        raise ConfigError(f"these results measure different things ({shown}); summarize or "
                          "report them separately")


def merge_runs(parts: list[list], sources: list[str]) -> list:
    """Rows of several results files as one list. A run present in more than one (the
    reference, teacher and student-alone rows every part of a split reproduction repeats)
    is kept once; the same run with different scores in two files is an error."""
    kept: dict[tuple, tuple[ResultRow, str]] = {}
    for rows, source in zip(parts, sources):
        for row in rows:
            key = (row.method, row.teachers, row.seed)
            if key not in kept:
                kept[key] = (row, source)
                continue
            first, where = kept[key]
            same = _same(first.val, row.val) and _same(first.test, row.test)
            if not same:
                raise DataError(f"{source}: {row.method} / {row.teachers} / seed {row.seed} "
                                f"differs from the same run in {where}")
    return [row for row, _ in kept.values()]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9
