"""``diversedistill compare``: will distillation help on my data?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from diversedistill_recipes.cli.typed import Flag


def compare(*, config: str, out: str, seeds: int = 3,
            methods: Annotated[list[str] | None, Flag(metavar="METHOD")] = None,
            workers: int = 1, resume: bool = False, no_progress: bool = False,
            trust_code: bool = False) -> int:
    """Compare the student alone, each teacher alone, LD from each teacher, the
    multi-teacher baselines and DiverseDistill on your own table (docs/user-guide.md,
    "Will it help on my data?").

    Args:
        config: YAML with data, student and teachers sections (as distill --config)
        out: results directory (results.csv, search.csv, comparison.md/.csv, report/)
        seeds: seeds per method; each method's knob is chosen on validation on seed 0
        methods: only these methods, e.g. ld diversedistill (default: ld mt amtml autoskd
            aekd diversedistill; fd and sckd on request)
        workers: students trained at a time, each in a single-threaded process
        resume: keep the runs already in --out and train only the missing ones
        no_progress: hide the progress bars
        trust_code: rebuild a teacher without class_path by importing and calling the
            factory its config.json names; without it such a teacher is refused
    """
    from diversedistill.errors import ConfigError
    from diversedistill.runs import rundir
    from diversedistill_recipes.jobs import own_results
    from diversedistill_recipes.tabular.compare import compare_config

    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    rundir.check_out(out)
    rundir.check_inputs_outside(Path(out), [("--config", config)])
    own_results(out)
    print(compare_config(config, out, seeds, methods, workers, resume, not no_progress,
                         trust_code=trust_code))
    print(f"wrote {out}/comparison.md, {out}/comparison.csv and {out}/report/")
    return 0


def reproduce_suite(*, out: str = "results/suite",
                    tasks: Annotated[list[str] | None, Flag(metavar="TASK")] = None,
                    seeds: int = 3, max_epochs: int = 20, rows: int | None = None,
                    methods: Annotated[list[str] | None, Flag(metavar="METHOD")] = None,
                    workers: int = 1, resume: bool = False) -> int:
    """The suite of tasks no recipe was tuned on (docs/suite.md): each task's teachers
    trained, then one compare run per task on the library's defaults.

    Args:
        out: results directory (one folder per task, suite.md)
        tasks: only these tasks (default: fair-affairs fair-rating randhie friedman tertiles
            quadrants)
        seeds: seeds per method
        max_epochs: the students' epoch budget (early stopping on validation)
        rows: keep only this many rows of each table (a quick look, not the suite)
        methods: only these methods (default: compare's)
        workers: students trained at a time, each in a single-threaded process
        resume: keep every finished run and teacher in --out
    """
    from diversedistill.errors import ConfigError
    from diversedistill.runs import rundir
    from diversedistill_recipes.jobs import own_results
    from diversedistill_recipes.tabular.suite import SuiteSettings, aims_summary, run_suite

    for flag, value in (("--seeds", seeds), ("--workers", workers), ("--max-epochs", max_epochs),
                        ("--rows", rows or 1)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    rundir.check_out(out)
    own_results(out)
    settings = SuiteSettings(seeds=seeds, max_epochs=max_epochs, rows=rows, methods=methods,
                             workers=workers)
    table = run_suite(out, tasks, settings, resume=resume)
    print(table)
    print(aims_summary(table))
    print(f"wrote {out}/suite.md")
    return 0
