"""The paper's comparison tables, built from saved results (never retraining).

    # rebuild from results.csv (+ search.csv)
    python -m diversedistill_recipes.comparison.tables results/tables

Reads ``results.csv`` (one row per method × committee × seed, written by
``diversedistill reproduce movielens --tables`` or ``reproduce cifar10 --tables``) and, when
present, ``search.csv`` (the validation search), and writes beside them:

- ``table3.md/.csv``: single teacher × LD, FD, SCKD, DiverseDistill (MovieLens: LM, MLP-L;
  vision: CLIP, ViT-L);
- ``table4.md/.csv``: the committee (LM + MLP-L; ViT-L + CLIP) × MT, AMTML, AutoSKD, AEKD,
  DiverseDistill;
- ``table5.md/.csv`` (MovieLens): DiverseDistill from MLP-M + MLP-L against LM + MLP-L;
- ``raw.md/.csv``: the per-seed test score behind every cell and every reference row;
- ``claims.md``: METHOD.md's claims decided by :mod:`diversedistill_recipes.comparison.claims`;
- ``search.md``: every trial of the search, its validation score, the value chosen per cell.

A :class:`TableLayout` says which tables, teachers and metric a domain has: MovieLens
(:data:`MOVIELENS`, test MSE, lower better) or a vision experiment (:func:`vision_layout`,
test accuracy, higher better; its teachers are read from ``tables.json``, written by the
reproduction). Each cell is gap recovered (METHOD.md; from the means, ± the spread of the
per-seed gap) with the test score mean ± std behind it; a cell not run shows "—".
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from diversedistill.config import from_dict
from diversedistill.errors import ConfigError, DataError
from diversedistill.methods import DiverseDistill, DiverseDistillConfig, build_method
from diversedistill.methods.base import Method
from diversedistill.runs.atomic import write_text_atomic
from diversedistill_recipes.comparison.claims import (
    DD,
    LABELS,
    MOVIELENS_CLAIMS,
    MULTI_BASELINES,
    SINGLE_BASELINES,
    Cell,
    ClaimSettings,
    Spread,
    committee_label,
    decide_claims,
    format_claims,
)
from diversedistill_recipes.comparison.diagnostics import describe, plateau_note
from diversedistill_recipes.comparison.results import (
    ACCURACY,
    MSE,
    Metric,
    SummaryRow,
    csv_text,
    gap_text,
    metric_in_header,
    metric_of,
    read_results,
    summarize,
    undefined_gap,
)


@dataclass(frozen=True)
class TableSpec:
    name: str  # file stem: table3
    title: str
    settings: tuple[str, ...]  # the rows: committees as in results.csv ("lm+mlp-l")
    methods: tuple[str, ...]  # the columns: registered method names


TABLES = (
    TableSpec("table3", "Table 3: single teacher", ("lm", "mlp-l"),
              ("ld", "fd", "sckd", "diversedistill")),
    TableSpec("table4", "Table 4: committee LM + MLP-L", ("lm+mlp-l",),
              ("mt", "amtml", "autoskd", "aekd", "diversedistill")),
    TableSpec("table5", "Table 5: DiverseDistill, similar against diverse committee",
              ("mlp-m+mlp-l", "lm+mlp-l"), ("diversedistill",)),
)


@dataclass(frozen=True)
class TableLayout:
    """One domain's tables: which, on which teachers, scored by which metric."""

    tables: tuple[TableSpec, ...]
    claims: ClaimSettings
    student: str  # the student-alone row's name in results.csv ("mlp-s", "vit-s")

    @property
    def metric(self) -> Metric:
        return self.claims.metric


MOVIELENS = TableLayout(TABLES, MOVIELENS_CLAIMS, "mlp-s")
LAYOUT_FILE = "tables.json"  # a vision reproduction's teachers, for rebuilding its tables


def vision_layout(committee: list[str] | tuple[str, ...], student: str,
                  foundation: str | None = None) -> TableLayout:
    """Tables 3 and 4 of a vision experiment: each teacher of ``committee`` alone (the
    foundation model first, as the LM is on MovieLens), then the committee; accuracy."""
    names = list(committee)
    first = foundation if foundation in names else names[0]
    singles = (first, *[n for n in names if n != first])
    joined = "+".join(names)
    tables = (TableSpec("table3", "Table 3: single teacher", singles, (*SINGLE_BASELINES, DD)),
              TableSpec("table4", f"Table 4: committee {committee_label(joined)}", (joined,),
                        (*MULTI_BASELINES, DD)))
    return TableLayout(tables, ClaimSettings(singles, joined, None, ACCURACY), student)


def write_layout(out: str | Path, layout: TableLayout) -> None:
    """Record a vision layout beside its results, so that the tables rebuild the same."""
    committee = layout.claims.committee.split("+")
    write_text_atomic(Path(out) / LAYOUT_FILE, json.dumps(
        {"committee": committee, "foundation": layout.claims.foundation,
         "student": layout.student}, indent=2))


def layout_for(rows: list, out: Path | None = None) -> TableLayout:
    """The layout of saved results: MovieLens for MSE rows; for accuracy rows, the one
    ``tables.json`` records, else the committee and student found in the rows (the
    committee's first teacher then stands for the foundation model)."""
    if metric_of(rows) is MSE:
        return MOVIELENS
    if out is not None and (out / LAYOUT_FILE).is_file():
        saved = json.loads((out / LAYOUT_FILE).read_text(encoding="utf-8"))
        return vision_layout(saved["committee"], saved["student"], saved.get("foundation"))
    committee = next((r.teachers for r in rows if "+" in r.teachers
                      and r.method in (*MULTI_BASELINES, DD)), None)
    student = next((r.teachers for r in rows if r.method == "student alone"), None)
    if committee is None or student is None:
        raise DataError("accuracy results without a committee row or a student-alone row: "
                        "no tables to lay out")
    return vision_layout(committee.split("+"), student)


def table_cells(tables=TABLES) -> list[Cell]:
    """Every (method, committee) the tables need, each once, in table order."""
    cells = [(m, s) for t in tables for s in t.settings for m in t.methods]
    return list(dict.fromkeys(cells))


@dataclass
class TableRow:
    """One cell of a table, as its CSV holds it (empty values: not run). The score columns
    are named after the metric (``test_mse_mean``, ``test_accuracy_mean``)."""

    table: str
    setting: str
    method: str
    seeds: int
    test_mean: float | None
    test_std: float | None
    gap_recovered: float | None
    gap_recovered_std: float | None


@dataclass
class SearchRow:
    """One trial of one cell's search, trained on the search seed and judged on its
    validation score (``metric``: the CSV column is ``val_mse`` or ``val_accuracy``)."""

    method: str
    teachers: str
    seed: int
    trial: int  # the cell's trials in the order they were asked for (the run directory)
    knob: str  # the knob whose step asked for it ("lam", "lam_logit=lam_feature"; "" fixed)
    config: str  # the method's values, JSON
    val: float
    seconds: float
    chosen: bool
    why: str = ""  # why the trial ran beyond its knob's list ("" for a value of the list)
    metric: str = "mse"


def search_row(metric: Metric, method: str, teachers: str, seed: int, trial: int, knob: str,
               config: str, val: float, seconds: float, chosen: bool,
               why: str = "") -> SearchRow:
    return SearchRow(method, teachers, seed, trial, knob, config, val, seconds, chosen, why,
                     metric.name)


NOT_RECORDED = "not recorded (a search.csv written before the why column)"


def read_search(path: str | Path) -> list:
    """The trials of a search.csv (MSE or accuracy, by its header; a file written before
    the knobs has an empty knob)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        metric = metric_in_header(reader.fieldnames, "val")
        if metric is None:
            raise DataError(f"{path}: expected a val_mse or val_accuracy column")
        try:
            return [search_row(metric, r["method"], r["teachers"], int(r["seed"]), int(r["trial"]),
                               r.get("knob") or "", r["config"], float(r[f"val_{metric.name}"]),
                               float(r["seconds"]), r["chosen"] == "True",
                               r.get("why", NOT_RECORDED) or "")
                    for r in reader]
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path}: line {reader.line_num}: malformed row ({err})") from None


def distance_note(method: str, config: str) -> str:
    """What ``method``'s distillation distance is measured in, at the config ``config`` (a
    search row's JSON): the method built from it says (BASELINES.md, comparable strengths).
    DiverseDistill's keys not in ``config`` are taken at their defaults, as the reproduction
    runs them."""
    values = json.loads(config)
    try:
        if method == DD:
            built: Method = DiverseDistill(from_dict(DiverseDistillConfig, values, method))
        else:
            built = build_method(method, values)
    except ConfigError as err:
        return f"unknown ({err})"
    return built.distance_note()


def short_config(config: str) -> str:
    """'{"lam": 3.0}' -> 'lam=3.0'."""
    values = json.loads(config)
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "defaults"


# ----------------------------------------------------------------------------- the tables


def _cell_text(r: SummaryRow | None, bold: bool) -> str:
    if r is None:
        return "—"
    score = f"{r.test_mean:.4f} ± {r.test_std:.4f}"
    gap = gap_text(r)
    text = f"{gap} ({score})" if gap else score
    return f"**{text}**" if bold else text


def table_rows(spec: TableSpec, summary: dict[Cell, SummaryRow]) -> list[TableRow]:
    out = []
    for setting in spec.settings:
        for method in spec.methods:
            r = summary.get((method, setting))
            if r is None:
                out.append(TableRow(spec.name, setting, method, 0, None, None, None, None))
            else:
                out.append(TableRow(spec.name, setting, method, r.seeds, r.test_mean,
                                    r.test_std, r.gap_recovered, r.gap_recovered_std))
    return out


def table_csv(rows: list[TableRow], metric: Metric) -> str:
    """A table's CSV, its score columns named after the metric (``test_mse_mean``)."""
    text = csv_text(rows)
    header, _, body = text.partition("\n")
    header = header.replace("test_mean", f"test_{metric.name}_mean").replace(
        "test_std", f"test_{metric.name}_std")
    return f"{header}\n{body}"


def best_of(values: dict, metric: Metric):
    """The key of the best value: the lowest MSE, the highest accuracy (first on ties)."""
    pick = max if metric.higher_is_better else min
    return pick(values, key=lambda k: values[k])


def format_table(spec: TableSpec, summary: dict[Cell, SummaryRow], seeds: int,
                 chosen: dict[Cell, str], metric: Metric = MSE,
                 distances: dict[str, str] | None = None) -> str:
    """Markdown: one line per setting, one column per method; bold marks the best mean
    test score of the line (lowest MSE, highest accuracy; lines of one cell have none)."""
    corner = "teacher" if all("+" not in s for s in spec.settings) else "committee"
    lines = [f"## {spec.title}", "",
             f"Gap recovered ({metric.label}), mean ± std over {seeds} seed(s).", "",
             f"| {corner} | " + " | ".join(LABELS.get(m, m) for m in spec.methods) + " |",
             "|---" * (len(spec.methods) + 1) + "|"]
    for setting in spec.settings:
        found = {m: summary.get((m, setting)) for m in spec.methods}
        means = {m: r.test_mean for m, r in found.items() if r is not None}
        best = best_of(means, metric) if len(means) > 1 else None
        cells = [_cell_text(found[m], m == best) for m in spec.methods]
        lines.append(f"| {committee_label(setting)} | " + " | ".join(cells) + " |")
    picks = [f"{LABELS.get(m, m)} from {committee_label(s)}: {chosen[(m, s)]}"
             for s in spec.settings for m in spec.methods if (m, s) in chosen]
    if picks:
        lines += ["", "Chosen on validation (search seed): " + "; ".join(picks) + "."]
    distances = distances or {}
    measured = [f"- {LABELS.get(m, m)}: {distances[m]}" for m in spec.methods if m in distances]
    if measured:
        lines += ["", "What each method's distillation distance is measured in:", *measured]
    return "\n".join(lines) + "\n"


def _reference_note(summary: dict[Cell, SummaryRow], best_teacher: str | None,
                    layout: TableLayout) -> str:
    student = summary.get(("student alone", layout.student))
    parts = []
    if student:
        parts.append(f"Student alone ({committee_label(layout.student)}): "
                     f"{student.test_mean:.4f} ± {student.test_std:.4f}.")
    if best_teacher:
        teacher = summary[("teacher alone", best_teacher)]
        parts.append(f"Best teacher alone: {committee_label(best_teacher)}, "
                     f"{teacher.test_mean:.4f}.")
    undefined = undefined_gap(list(summary.values()), best_teacher)
    if undefined:
        parts.append(undefined)
    parts.append("Gap recovered = (M(distilled) − M(student alone)) / (M(best teacher alone) − "
                 f"M(student alone)), {layout.metric.label}; 100% = as good as the best teacher.")
    return " ".join(parts) + "\n"


# ----------------------------------------------------------------------------- raw and search


def raw_rows(rows: list, metric: Metric = MSE) -> tuple[list[str], list[list[str]]]:
    """The per-seed test score of every (method, committee): header and lines."""
    by_cell: dict[Cell, dict[int, float]] = defaultdict(dict)
    for r in rows:
        by_cell[(r.method, r.teachers)][r.seed] = r.test
    seeds = sorted({r.seed for r in rows})
    header = ["method", "teachers"] + [f"seed {s}" for s in seeds]
    lines = [[m, t] + [f"{v[s]:.4f}" if s in v else "" for s in seeds]
             for (m, t), v in by_cell.items()]
    return header, lines


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def format_raw(rows: list, metric: Metric = MSE) -> str:
    header, lines = raw_rows(rows, metric)
    out = [f"## {_capital(metric.label)} per seed", "", "| " + " | ".join(header) + " |",
           "|---" * len(header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def _csv_text(header: list[str], lines: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(lines)
    return buffer.getvalue()


def format_search(search: list, metric: Metric = MSE) -> str:
    short = metric.label.removeprefix("test ")
    best = "highest" if metric.higher_is_better else "lowest"
    lines = ["## Validation search", "",
             ("Each method's knobs searched one at a time on the search seed (the other knobs "
              "at their chosen or first value); a choice at an edge of its knob's list runs one "
              f"value beyond that edge, once. The {best} validation {short} is chosen (first on "
              "ties) and then run on every seed."), "",
             f"| method | teachers | knob | values | val {short} | chosen | why it ran |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {LABELS.get(r.method, r.method)} | {committee_label(r.teachers)} | "
              f"{r.knob or '—'} | {short_config(r.config)} | {r.val:.4f} | "
              f"{'yes' if r.chosen else ''} | {r.why or 'in the grid'} |" for r in search]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- all of it


def search_run_dir(out: Path, method: str, teachers: str, trial: int) -> Path:
    """Where the tables' search trains ``trial`` (its number in the cell) of a cell; the
    chosen trial's run is the cell's seed-0 result (``report`` reads it from here)."""
    return Path(out) / "runs" / "search" / f"{method}-{teachers}-{trial}"


def cell_run_dirs(out: Path, method: str, teachers: str, seeds: list[int],
                  search: list | None) -> list[Path]:
    """The run directories behind ``method``'s cell on ``teachers``: each seed's own run,
    or for seed 0 the search's chosen trial (which is that seed's result)."""
    chosen = {r.teachers: r.trial for r in search or () if r.method == method and r.chosen}
    dirs = []
    for seed in seeds:
        own = Path(out) / "runs" / f"{method}-{teachers}-{seed}"
        if own.is_dir() or seed != 0 or teachers not in chosen:
            dirs.append(own)
        else:
            dirs.append(search_run_dir(out, method, teachers, chosen[teachers]))
    return dirs


def dd_places(spec: TableSpec, summary: dict[Cell, SummaryRow], metric: Metric,
              rows: list, out: Path | None, search: list | None) -> list[str]:
    """Per line of a table: DiverseDistill's rank by mean test score among the methods run
    there, the first method when it is not DiverseDistill, and (``out`` given) what its
    module diagnostics say its teachers' answers carried."""
    lines = []
    short = metric.label.removeprefix("test ")
    for setting in spec.settings:
        means = {m: summary[(m, setting)].test_mean for m in spec.methods
                 if (m, setting) in summary}
        if DD not in means:
            continue
        order = sorted(means, key=lambda m: means[m], reverse=metric.higher_is_better)
        place = order.index(DD) + 1
        text = (f"- from {committee_label(setting)}: **{_ordinal(place)} of {len(order)}**"
                + ("" if place == 1 else f" (first: {LABELS.get(order[0], order[0])}, "
                   f"{means[order[0]]:.4f} against {means[DD]:.4f})"))
        if out is not None:
            seeds = sorted({r.seed for r in rows if r.method == DD and r.teachers == setting})
            dirs = cell_run_dirs(out, DD, setting, seeds, search)
            said = describe(dirs, setting.split("+"), short)
            text += f"; diagnostics ({said})" if said else "; no diagnostics logged"
        lines.append(text)
    if not lines:
        return []
    return ["", "DiverseDistill's place in each line (by mean test score):", *lines]


def stalled_runs(spec: TableSpec, rows: list, metric: Metric, out: Path,
                 search: list | None) -> list[str]:
    """Under a table: every cell (any method) with a run that sat at the constant
    prediction for longer than plain patience allows (its metrics.csv), since such a run
    widens the cell's spread and pulls its mean; nothing when no cell had one."""
    lines = []
    for setting in spec.settings:
        for method in spec.methods:
            seeds = sorted({r.seed for r in rows if r.method == method and r.teachers == setting})
            note = plateau_note(cell_run_dirs(out, method, setting, seeds, search), metric.name)
            if note and not note.startswith("none"):
                lines.append(f"- {LABELS.get(method, method)} from {committee_label(setting)}: "
                             f"{note}")
    if not lines:
        return []
    return ["", "Runs that sat at the constant prediction (no better than predicting the "
            "mean or the majority class on validation):", *lines]


def _ordinal(n: int) -> str:
    return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


def build_tables(rows: list, search: list | None = None,
                 layout: TableLayout | None = None, out: Path | None = None) -> dict[str, str]:
    """File name -> text of every table, CSV and the claims, from result rows; with the
    results directory ``out``, DiverseDistill's module diagnostics under each table."""
    layout = layout or layout_for(rows)
    metric = layout.metric
    summary_rows, best_teacher = summarize(rows, ("student alone", layout.student),
                                           metric=metric)
    summary = {(r.method, r.teachers): r for r in summary_rows}
    seeds = max((r.seeds for r in summary_rows if r.method != "reference"), default=0)
    chosen = {(r.method, r.teachers): short_config(r.config) for r in search or () if r.chosen}
    distances = {r.method: distance_note(r.method, r.config) for r in search or () if r.chosen}
    files: dict[str, str] = {}
    note = _reference_note(summary, best_teacher, layout)
    for spec in layout.tables:
        places = dd_places(spec, summary, metric, rows, out, search)
        if out is not None:
            places += stalled_runs(spec, rows, metric, out, search)
        files[f"{spec.name}.md"] = (format_table(spec, summary, seeds, chosen, metric, distances)
                                    + "\n".join(places) + ("\n" if places else "") + "\n" + note)
        files[f"{spec.name}.csv"] = table_csv(table_rows(spec, summary), metric)
    files["raw.md"] = format_raw(rows, metric)
    files["raw.csv"] = _csv_text(*raw_rows(rows, metric))
    spreads = {cell: Spread(r.test_mean, r.test_std, r.seeds)
               for cell, r in summary.items()}
    teacher = summary.get(("teacher alone", layout.claims.foundation))
    alone = Spread(teacher.test_mean, teacher.test_std, teacher.seeds) if teacher else None
    files["claims.md"] = format_claims(decide_claims(spreads, alone, layout.claims), seeds,
                                       layout.claims)
    if search:
        files["search.md"] = format_search(search, metric)
    return files


def write_tables(out: str | Path, layout: TableLayout | None = None) -> str:
    """Build every file from ``out``/results.csv (and search.csv) and write it into ``out``;
    return the Markdown to print (tables, then claims). ``layout`` defaults to the one of
    the results (:func:`layout_for`)."""
    out = Path(out)
    rows = read_results(out / "results.csv")
    layout = layout or layout_for(rows, out)
    search = read_search(out / "search.csv") if (out / "search.csv").is_file() else None
    files = build_tables(rows, search, layout, out)
    for name, text in files.items():
        write_text_atomic(out / name, text)
    shown = [files[f"{t.name}.md"] for t in layout.tables] + [files["claims.md"]]
    return "\n".join(shown) + f"\nWritten to {out}: {', '.join(sorted(files))}\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m {__spec__.name if __spec__ else __name__} RESULTS_DIR  "
              "(holding results.csv)", file=sys.stderr)
        return 2
    if not (Path(args[0]) / "results.csv").is_file():
        print(f"{__name__}: no results.csv in {args[0]}", file=sys.stderr)
        return 2
    print(write_tables(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
