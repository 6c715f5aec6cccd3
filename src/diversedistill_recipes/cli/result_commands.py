"""The commands over finished runs: ``export``, ``summarize`` and ``report``."""

from __future__ import annotations

from pathlib import Path

from diversedistill.errors import ConfigError


def export(run: str, /, *, out: str, trust_code: bool = False) -> int:
    """Write the plain student of a run (MovieLens or vision).

    Any run whose student/config.json names an export architecture
    (diversedistill.export.architectures): the student is rebuilt from that config and its
    weights read from the best checkpoint.

    Args:
        run: run directory written by 'distill', or one of the runs/ of 'reproduce' (e.g.
            results/cifar10/runs/diversedistill-vit-l-0)
        out: directory for model.safetensors + config.json
        trust_code: rebuild a student exported by factory (your own model class) by
            importing and calling the factory its student/config.json names; without it
            such a run is refused, since a run directory may come from anyone
    """
    from diversedistill.export import export_from_checkpoint, read_config
    from diversedistill.runs import rundir

    target = rundir.check_owned(out, "--out", kind="export")
    path = export_from_checkpoint(run, target,
                                  before_writing=lambda: rundir.acquire(target, "export"),
                                  trust_code=trust_code)
    print(f"wrote {path} ({read_config(path)['architecture']})")
    return 0


def summarize(results: list[str], /, *, out: str | None = None, tables: bool = False) -> int:
    """One table from the results.csv of one or more runs.

    Args:
        results: results directories (or results.csv files)
        out: directory for the merged results.csv and summary.csv
        tables: also join the directories' search.csv and write the comparison tables into
            --out (directories of 'reproduce --tables' run in parts)
    """
    from diversedistill_recipes.comparison.results import (
        check_one_metric,
        format_table,
        merge_runs,
        metric_of,
        read_results,
        write_csv,
        write_summary_csv,
    )
    from diversedistill_recipes.comparison.results import summarize as summary_of

    if out is not None:  # refused before anything is read: an empty --out, a file, a folder
        from diversedistill.runs.rundir import check_owned  # of the user's own files

        check_owned(out, "--out", kind="results")
    if tables and not out:
        raise ConfigError("summarize --tables writes the tables: give --out")
    from diversedistill_recipes.report import is_single_run, single_run_row

    rows, searches = [], []
    for where in results:
        if is_single_run(where):  # a distill run (or a fit of your own): its one row
            rows.append([single_run_row(Path(where))])
            continue
        path = Path(where) / "results.csv" if Path(where).is_dir() else Path(where)
        if not path.is_file():
            raise ConfigError(f"{where}: no results.csv there, and not a run directory "
                              "(no logs/metrics.csv)")
        rows.append(read_results(path))
        searches.append(path.parent / "search.csv")
    check_one_metric(rows, [str(w) for w in results])
    merged = merge_runs(rows, [str(w) for w in results])
    # the rows say their domain: accuracy rows (vision) are summarized against their own
    # student-alone row, upwards
    metric = metric_of(merged)
    student = next((r.teachers for r in merged if r.method == "student alone"), "mlp-s")
    summary, best = summary_of(merged, ("student alone", student), metric=metric)
    if out:
        from diversedistill_recipes.jobs import own_results

        own_results(out)
        write_csv(Path(out) / "results.csv", merged)
        write_summary_csv(Path(out) / "summary.csv", summary, metric)
    print(format_table(summary, best, metric))
    if tables and out:
        from diversedistill_recipes.comparison.tables import read_search, write_tables

        search = [r for f in searches if f.is_file() for r in read_search(f)]
        if search:
            write_csv(Path(out) / "search.csv", search)
        print("\n" + write_tables(out))
    return 0


def report(results: list[str], /, *, out: str | None = None) -> int:
    """A Markdown report with plots from saved results (never retrains).

    Args:
        results: results directories (or results.csv files), e.g. one per seed
        out: directory for report.md and its PNGs (default: <first results
            directory>/report)
    """
    from diversedistill.runs.rundir import check_owned
    from diversedistill_recipes.report import write_report

    if out is not None:  # refused before anything is read: an empty --out, a file, a folder
        check_owned(out, "--out", kind="report")  # of the user's own files
    path, inputs, plots = write_report(list(results), out)
    print(f"wrote {path} ({len(inputs.rows)} result rows, {len(plots)} plots: "
          f"{', '.join(plots) or 'none'})")
    for note in inputs.notes:
        print(f"  missing: {note}")
    return 0
