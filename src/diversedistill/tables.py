"""The paper's MovieLens comparison tables, built from saved results (never retraining).

    python -m diversedistill.tables results/tables      # rebuild from results.csv (+ search.csv)

Reads ``results.csv`` (one row per method × committee × seed, written by
``diversedistill reproduce movielens --tables``) and, when present, ``search.csv`` (the
validation search), and writes beside them:

- ``table3.md/.csv``: single teacher (LM, MLP-L) × LD, FD, SCKD, DiverseDistill;
- ``table4.md/.csv``: committee LM + MLP-L × MT, AMTML, AutoSKD, AEKD, DiverseDistill;
- ``table5.md/.csv``: DiverseDistill from MLP-M + MLP-L against LM + MLP-L;
- ``raw.md/.csv``: the per-seed test MSE behind every cell and every reference row;
- ``claims.md``: METHOD.md's claims 1-4 decided by :mod:`diversedistill.claims`;
- ``search.md``: the grid, each value's validation MSE, the value chosen per cell.

Each cell is gap recovered (METHOD.md; from the means, ± the spread of the per-seed gap)
with the test MSE mean ± std behind it; a cell not run shows "—".
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from diversedistill.atomic import write_text_atomic
from diversedistill.claims import (LABELS, Cell, Spread, committee_label, decide_claims,
                                   format_claims)
from diversedistill.results import ResultRow, SummaryRow, csv_text, read_results, summarize


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


def table_cells(tables=TABLES) -> list[Cell]:
    """Every (method, committee) the tables need, each once, in table order."""
    cells = [(m, s) for t in tables for s in t.settings for m in t.methods]
    return list(dict.fromkeys(cells))


@dataclass
class TableRow:
    """One cell of a table, as its CSV holds it (empty values: not run)."""

    table: str
    setting: str
    method: str
    seeds: int
    test_mse_mean: float | None
    test_mse_std: float | None
    gap_recovered: float | None
    gap_recovered_std: float | None


@dataclass
class SearchRow:
    """One grid value of one cell, trained on the search seed and judged on validation."""

    method: str
    teachers: str
    seed: int
    trial: int
    config: str  # the grid values, JSON
    val_mse: float
    seconds: float
    chosen: bool


def read_search(path: str | Path) -> list[SearchRow]:
    with open(path, newline="", encoding="utf-8") as f:
        return [SearchRow(r["method"], r["teachers"], int(r["seed"]), int(r["trial"]),
                          r["config"], float(r["val_mse"]), float(r["seconds"]),
                          r["chosen"] == "True") for r in csv.DictReader(f)]


def short_config(config: str) -> str:
    """'{"lam": 3.0}' -> 'lam=3.0'."""
    values = json.loads(config)
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "defaults"


# ----------------------------------------------------------------------------- the tables


def _gap(r: SummaryRow) -> str:
    if r.gap_recovered is None:
        return ""
    text = f"{100 * r.gap_recovered + 0.0:.1f}%"  # "+ 0.0" turns -0.0 into 0.0
    return text + (f" ± {100 * r.gap_recovered_std:.1f}" if r.gap_recovered_std is not None
                   else "")


def _cell_text(r: SummaryRow | None, bold: bool) -> str:
    if r is None:
        return "—"
    mse = f"{r.test_mean:.4f} ± {r.test_std:.4f}"
    text = f"{_gap(r)} ({mse})" if r.gap_recovered is not None else mse
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


def format_table(spec: TableSpec, summary: dict[Cell, SummaryRow], seeds: int,
                 chosen: dict[Cell, str]) -> str:
    """Markdown: one line per setting, one column per method; bold marks the lowest mean
    test MSE of the line (lines of one cell have none)."""
    corner = "teacher" if all("+" not in s for s in spec.settings) else "committee"
    lines = [f"## {spec.title}", "",
             f"Gap recovered (test MSE), mean ± std over {seeds} seed(s).", "",
             f"| {corner} | " + " | ".join(LABELS.get(m, m) for m in spec.methods) + " |",
             "|---" * (len(spec.methods) + 1) + "|"]
    for setting in spec.settings:
        found = {m: summary.get((m, setting)) for m in spec.methods}
        ran = [m for m, r in found.items() if r is not None]
        best = min(ran, key=lambda m: found[m].test_mean) if len(ran) > 1 else None
        cells = [_cell_text(found[m], m == best) for m in spec.methods]
        lines.append(f"| {committee_label(setting)} | " + " | ".join(cells) + " |")
    picks = [f"{LABELS.get(m, m)} from {committee_label(s)}: {chosen[(m, s)]}"
             for s in spec.settings for m in spec.methods if (m, s) in chosen]
    if picks:
        lines += ["", "Chosen on validation (search seed): " + "; ".join(picks) + "."]
    return "\n".join(lines) + "\n"


def _reference_note(summary: dict[Cell, SummaryRow], best_teacher: str | None) -> str:
    student = summary.get(("student alone", "mlp-s"))
    parts = []
    if student:
        parts.append(f"Student alone (MLP-S): {student.test_mean:.4f} ± "
                     f"{student.test_std:.4f}.")
    if best_teacher:
        teacher = summary[("teacher alone", best_teacher)]
        parts.append(f"Best teacher alone: {committee_label(best_teacher)}, "
                     f"{teacher.test_mean:.4f}.")
    parts.append("Gap recovered = (M(distilled) − M(student alone)) / (M(best teacher alone) − "
                 "M(student alone)), test MSE; 100% = as good as the best teacher.")
    return " ".join(parts) + "\n"


# ----------------------------------------------------------------------------- raw and search


def raw_rows(rows: list[ResultRow]) -> tuple[list[str], list[list[str]]]:
    """The per-seed test MSE of every (method, committee): header and lines."""
    by_cell: dict[Cell, dict[int, float]] = defaultdict(dict)
    for r in rows:
        by_cell[(r.method, r.teachers)][r.seed] = r.test_mse
    seeds = sorted({r.seed for r in rows})
    header = ["method", "teachers"] + [f"seed {s}" for s in seeds]
    lines = [[m, t] + [f"{v[s]:.4f}" if s in v else "" for s in seeds]
             for (m, t), v in by_cell.items()]
    return header, lines


def format_raw(rows: list[ResultRow]) -> str:
    header, lines = raw_rows(rows)
    out = ["## Test MSE per seed", "", "| " + " | ".join(header) + " |",
           "|---" * len(header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def _csv_text(header: list[str], lines: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(lines)
    return buffer.getvalue()


def format_search(search: list[SearchRow]) -> str:
    lines = ["## Validation search", "",
             "Each method's grid, trained on the search seed; the lowest validation MSE is "
             "chosen (first on ties) and then run on every seed.", "",
             "| method | teachers | values | val MSE | chosen |", "|---|---|---|---|---|"]
    lines += [f"| {LABELS.get(r.method, r.method)} | {committee_label(r.teachers)} | "
              f"{short_config(r.config)} | {r.val_mse:.4f} | {'yes' if r.chosen else ''} |"
              for r in search]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- all of it


def build_tables(rows: list[ResultRow], search: list[SearchRow] | None = None,
                 tables=TABLES) -> dict[str, str]:
    """File name -> text of every table, CSV and the claims, from result rows."""
    summary_rows, best_teacher = summarize(rows)
    summary = {(r.method, r.teachers): r for r in summary_rows}
    seeds = max((r.seeds for r in summary_rows if r.method != "reference"), default=0)
    chosen = {(r.method, r.teachers): short_config(r.config) for r in search or () if r.chosen}
    files: dict[str, str] = {}
    note = _reference_note(summary, best_teacher)
    for spec in tables:
        files[f"{spec.name}.md"] = format_table(spec, summary, seeds, chosen) + "\n" + note
        files[f"{spec.name}.csv"] = csv_text(table_rows(spec, summary))
    files["raw.md"] = format_raw(rows)
    files["raw.csv"] = _csv_text(*raw_rows(rows))
    spreads = {cell: Spread(r.test_mean, r.test_std, r.seeds)
               for cell, r in summary.items()}
    lm = summary.get(("teacher alone", "lm"))
    lm_alone = Spread(lm.test_mean, lm.test_std, lm.seeds) if lm else None
    files["claims.md"] = format_claims(decide_claims(spreads, lm_alone), seeds)
    if search:
        files["search.md"] = format_search(search)
    return files


def write_tables(out: str | Path) -> str:
    """Build every file from ``out``/results.csv (and search.csv) and write it into ``out``;
    return the Markdown to print (tables, then claims)."""
    out = Path(out)
    rows = read_results(out / "results.csv")
    search = read_search(out / "search.csv") if (out / "search.csv").is_file() else None
    files = build_tables(rows, search)
    for name, text in files.items():
        write_text_atomic(out / name, text)
    shown = [files[f"{t.name}.md"] for t in TABLES] + [files["claims.md"]]
    return "\n".join(shown) + f"\nWritten to {out}: {', '.join(sorted(files))}\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m diversedistill.tables RESULTS_DIR  (holding results.csv)",
              file=sys.stderr)
        return 2
    if not (Path(args[0]) / "results.csv").is_file():
        print(f"python -m diversedistill.tables: no results.csv in {args[0]}", file=sys.stderr)
        return 2
    print(write_tables(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

