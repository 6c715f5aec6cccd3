"""``diversedistill reproduce movielens``: the paper's MovieLens experiment, end to end.

One seeded 80/10/10 split; the MLP-M and MLP-L teachers trained on it once and the
language-model teacher ("lm", all-MiniLM-L6-v2 by default) fine-tuned on it once (then
read from the cache); then per seed: the simple references, MLP-S alone, DiverseDistill
from each single teacher and from the committees MLP-M + MLP-L and LM + MLP-L, and the
baselines of :data:`BASELINE_ROWS` that are registered. Results are written after every
run, so an interrupted reproduction keeps what it measured. Every student is a job
(:mod:`diversedistill_recipes.movielens.runs`): ``workers`` of them train at a time, each in its own
single-threaded process (:mod:`diversedistill.loop.parallel`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from diversedistill.errors import ConfigError
from diversedistill.loop.parallel import run_jobs
from diversedistill.methods import METHODS, DiverseDistillConfig
from diversedistill_recipes.comparison.gating_claim import decide_gating_claim, format_gating_claim
from diversedistill_recipes.comparison.results import (
    MSE,
    ResultRow,
    format_table,
    summarize,
    write_summary_csv,
)
from diversedistill_recipes.comparison.search import GRIDS, TableProtocol, TableRun, TablesConfig
from diversedistill_recipes.comparison.sweep import (
    SweepRow,
    format_sweep,
    read_sweep,
    skipped_fractions,
    sweep_label,
    sweep_run_name,
    write_sweep,
)
from diversedistill_recipes.comparison.tables import table_cells, write_tables
from diversedistill_recipes.jobs import Job, JobResult, ResultBook
from diversedistill_recipes.locate import cache_dir, locate_movielens
from diversedistill_recipes.movielens import runs as ml_runs
from diversedistill_recipes.movielens.lm.prepare import LMConfig, prepare_language_teacher
from diversedistill_recipes.movielens.rating_recipes import (
    STUDENT,
    TEACHERS,
    references,
    train_or_load_teacher,
)
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import (
    UNSEEN_COLUMN,
    check_holdout,
    make_split,
    teacher_holdout,
)

COMMITTEES = (("mlp-m",), ("mlp-l",), ("mlp-m", "mlp-l"))
LM_COMMITTEES = (("lm", "mlp-l"), ("lm",))  # the committee first: the headline row
SWEEP_COMMITTEE = ("lm", "mlp-l", "mlp-m")  # issue 6: the gating sweep's committee
# Baselines run beside DiverseDistill (the LM rows of the paper's Table 3, and plain KD
# from the stronger MLP: the first question a user asks; the full tables are `--tables`):
# method name -> committees. A method not registered is skipped.
BASELINE_ROWS = {"fd": (("lm",),), "ld": (("mlp-l",),)}
# Ablations (METHOD.md's open choices): each row changes the default configuration in one
# respect — or, for "first implementation", in all of them — on the same committee.
ABLATIONS = {
    # every field where legacy() differs from today's defaults
    "first implementation (all old choices)": {
        k: v for k, v in asdict(DiverseDistillConfig.legacy()).items()
        if v != getattr(DiverseDistillConfig(), k)},
    "answers detached": {"distill_trains_answers": False},
    "answers and alpha trained by distill": {"distill_trains_importance": True},
    "answers detached, alpha trained by distill": {"distill_trains_answers": False,
                                                   "distill_trains_importance": True},
    # two opt-in switches measured against the plateau at the global mean that a large
    # lambda causes (docs/tables.md)
    "answers pulled at weight 1, z at lam": {"answer_pull": 1.0},
    "lam grows over 5 epochs": {"lam_warmup_epochs": 5},
    "distance: sum, lam 10": {"distance": "sum", "lam": 10.0},
    "z with dropout": {"z_as_served": False},
    "questions: random init": {"zero_init_questions": False},
    "injection: replace": {"injection": "replace"},
    "importance: soft, T 0.25": {"importance_target": "soft", "importance_temperature": 0.25},
    "importance: none (alpha = 1)": {"importance_target": "none"},
    "importance: expected gain": {"importance_target": "expected"},
    "module lr 3x the student's": {"module_lr": 3 * STUDENT.lr},
}
ABLATION_COMMITTEES = (("mlp-m", "mlp-l"), ("lm", "mlp-l"))


def reproduce_movielens(data_dir=None, seeds: int = 3, out: str | Path = "results/movielens",
                        split: str = "random", release: str = "ml-100k",
                        cfg: DiverseDistillConfig | None = None, injection: str = "add",
                        ablations: bool = False, cache: str | Path | None = None,
                        progress: bool = True, split_seed: int = 0, log=print,
                        lm: LMConfig | None = None, first_seed: int = 0,
                        committees: list[str] | None = None,
                        tables: TablesConfig | None = None,
                        methods: list[str] | None = None,
                        tau_sweep: list[float] | None = None,
                        resume: bool = False, workers: int = 1,
                        variants: dict[str, dict] | None = None,
                        holdout: float = 0.0) -> list[ResultRow]:
    """``lm=None`` leaves the language-model teacher and its rows out. Seeds run from
    ``first_seed`` (so that seeds can be spread over processes or machines and their
    results.csv summarized together); ``committees`` (e.g. ``["lm", "lm+mlp-l"]``) keeps
    only the rows whose teachers are one of them, ``methods`` (e.g. ``["fd"]``) only the
    distillation rows of these methods (references, teachers and the student alone always
    run: they are what gap recovered is measured against). ``tables`` runs the comparison tables'
    protocol (:mod:`diversedistill_recipes.comparison.search`) instead of those rows and writes the
    tables (:mod:`diversedistill_recipes.comparison.tables`). ``tau_sweep`` runs DiverseDistill at
    each of these gating thresholds instead, on the committee LM + MLP-L + MLP-M (MLP-M + MLP-L
    without the LM; or the one committee named in ``committees``), and writes ``sweep.csv``
    (:mod:`diversedistill_recipes.comparison.sweep`). ``resume`` keeps the rows already
    in ``out``/results.csv, search.csv and sweep.csv and runs only what is missing, in every
    mode (a plain run, the ablations, the tables, the sweep); a run cut short continues from
    its last checkpoint (in ``out``/runs/NAME/checkpoints). ``workers`` students train
    at a time, each in its own single-threaded process.
    ``variants`` (label -> changes to ``cfg``) replaces :data:`ABLATIONS` for ``ablations``,
    e.g. a λ grid on validation. ``holdout`` > 0 trains every teacher without a seeded
    share of the training split (:func:`~diversedistill_recipes.movielens.splits.teacher_holdout`)
    and, unless ``cfg`` names other rows, lets DiverseDistill's importance learn from those
    rows only."""
    out = Path(out)
    cfg = cfg or DiverseDistillConfig()
    check_holdout(holdout)  # before anything is read or written
    if tau_sweep:  # checked before any teacher is trained
        sweep_committee(committees, lm is not None)
        if tables is not None or ablations:
            raise ConfigError("--tau-sweep runs on its own, without --tables or --ablations")
        bad = [t for t in tau_sweep if not 0 <= t < 1]
        if bad:
            raise ConfigError(f"--tau-sweep: thresholds are importances in [0, 1), got {bad[0]:g}")
    cache_root = Path(cache) if cache else cache_dir() / "teachers"
    lm_cache = Path(cache) / "lm" if cache else cache_dir() / "lm"
    ml = load_movielens(locate_movielens(release, data_dir))
    log(ml.summary())
    book = ResultBook(out, MSE, log)
    rows = book.rows  # the book's own list: every recorded row lands in it
    previous_search = None
    sweep_rows: list[SweepRow] = []
    if resume:
        previous_search = book.resume()
        rows = book.rows
        if tau_sweep and (out / "sweep.csv").is_file():
            sweep_rows = read_sweep(out / "sweep.csv")
        log(f"resuming {out}: {len(rows)} result rows, {len(previous_search or [])} search "
            f"rows and {len(sweep_rows)} sweep rows kept")
    record = book.record

    # One split and one set of teachers; the seeds vary the students (initialization and
    # shuffling). Every method is then compared on the same test ratings against the same
    # frozen teachers, so the spread is the distillation's own, not the split's.
    part = make_split(ml, split, split_seed)
    log(part.describe())
    taught, unseen = teacher_holdout(part, holdout, split_seed)
    if unseen is not None:
        log(f"teachers train on {len(taught.train):,} of the {len(part.train):,} training "
            f"ratings; the other {int(unseen.sum()):,} are the rows importance learns from")
        if cfg.importance_rows is None:
            cfg = replace(cfg, importance_rows=UNSEEN_COLUMN)
    teachers = {}
    for name, recipe in TEACHERS.items():
        log(f"teacher {name}: training (or reading it from {cache_root})")
        model, metrics, _ = train_or_load_teacher(ml, taught, name, recipe, split_seed,
                                                  cache_root, progress, log=log)
        teachers[name] = (model, metrics)
    if lm is not None:
        log(f"teacher lm: {lm.model} (fine-tuned once, then read from {lm_cache})")
        teachers["lm"] = prepare_language_teacher(ml, taught, lm, lm_cache, split_seed,
                                                  progress, log)
    teacher_models = {name: model for name, (model, _) in teachers.items()}
    # this process runs the jobs itself with what it holds; a worker reads the same caches
    # with --resume, a run cut short (killed, interrupted) continues from its checkpoint
    here = ml_runs.state_from(ml, part, teacher_models, injection, cfg, out,
                              progress and workers <= 1, unseen, resume)
    worker_args = (release, data_dir, split, split_seed, cache_root, lm, lm_cache, injection,
                   cfg, out, False, holdout, resume)

    def execute(jobs: list[Job], on_result) -> None:
        # the dearest runs (language-model committees, bigger committees) first: with
        # several workers the last ones to finish are then short
        jobs = sorted(jobs, key=lambda j: (-("lm" in j.names), -len(j.names)))
        if jobs:
            log(f"{len(jobs)} run(s), {max(workers, 1)} at a time")
        run_jobs(jobs, ml_runs.run, on_result, workers, ml_runs.prepare, worker_args, here)

    student_name = here["recipe"].student_name  # the teachers column of the student alone

    def record_run(job: Job, result: JobResult) -> None:
        book.record_run(job, result, student_name)

    protocol = None
    if tables is not None:
        protocol = TableProtocol(
            None, cfg, seeds, out, tables.merged(GRIDS), log=log, teachers=teacher_models,
            # --committees (or --methods) splits the tables over processes: each runs the
            # cells of its committees; `summarize --tables` joins their directories
            cells=[c for c in table_cells() if (committees is None or c[1] in committees)
                   and (methods is None or c[0] in methods)],
            done=list(rows), done_search=previous_search, workers=workers,
            execute=lambda runs, on_result: execute_table_runs(runs, on_result, execute, out))
        log(protocol.describe())
    # with an LM that reads histories, also what its text hands it, without the LM: users
    # see what the model adds
    reference_rows = references(ml, part, lm.history_k if lm is not None and lm.history else None)

    def wanted(names) -> bool:
        return committees is None or "+".join(names) in committees

    def method_wanted(label: str) -> bool:
        return methods is None or label in methods

    seed_range = range(first_seed, first_seed + seeds)
    for seed in seed_range:
        for name, (val, test) in reference_rows.items():
            record(ResultRow("reference", name, seed, val, test, 0.0))
        for name, (_, metrics) in teachers.items():
            record(ResultRow("teacher alone", name, seed, metrics["val_mse"], metrics["test_mse"],
                             metrics["seconds"]))
    execute(book.missing([Job("student alone", seed, run_name=f"student-{seed}")
                          for seed in seed_range], student_name), record_run)
    if protocol is not None:
        protocol.run_seeds(seed_range, record)
        for line in ml_runs.describe_own_passes(here):  # runs made in this process
            log(f"  {line}")
    elif tau_sweep:
        names = sweep_committee(committees, lm is not None)

        def swept(job: Job, result) -> None:
            record_run(job, result)
            sweep_rows.append(SweepRow(dict(job.values)["tau"], job.seed, result.val,
                                       result.test, result.epochs,
                                       result.seconds / max(result.epochs, 1),
                                       skipped_fractions(result.run_dir),
                                       skipped_fractions(result.run_dir, "asked_by_alpha")))
            write_sweep(out / "sweep.csv", sorted(sweep_rows, key=lambda r: (r.tau, r.seed)))
        done = {(r.tau, r.seed) for r in sweep_rows}  # kept by --resume
        execute([Job(sweep_label(tau), seed, names, values=(("tau", tau),),
                     run_name=sweep_run_name(tau, "+".join(names), seed))
                 for seed in seed_range for tau in tau_sweep if (tau, seed) not in done], swept)
    else:
        execute(book.missing(default_runs(seed_range, lm is not None, ablations, wanted,
                                          method_wanted, teacher_models, variants),
                             student_name), record_run)
    summary, best = summarize(rows)
    write_summary_csv(out / "summary.csv", summary)
    log("\n" + format_table(summary, best))
    if protocol is not None:
        log("\n" + write_tables(out))
    if sweep_rows:
        log("\n" + format_sweep(sweep_rows))
        log("\n" + format_gating_claim(decide_gating_claim(sweep_rows)))
    return rows


def default_runs(seed_range, with_lm: bool, ablations: bool, wanted, method_wanted,
                 teachers: dict, changes: dict[str, dict] | None = None) -> list[Job]:
    """The rows of a reproduction without --tables / --tau-sweep: DiverseDistill on every
    committee (or the ablations on MLP-M + MLP-L and LM + MLP-L) and the baselines of
    BASELINE_ROWS."""
    if ablations:  # the committees only: the default, then the changes
        chosen = tuple(c for c in ABLATION_COMMITTEES if with_lm or "lm" not in c)
        variants = {"diversedistill": ({}, chosen)}
        variants.update({f"dd ablation: {k}": (v, chosen)
                         for k, v in (ABLATIONS if changes is None else changes).items()})
    else:
        variants = {"diversedistill": ({}, COMMITTEES + (LM_COMMITTEES if with_lm else ()))}
    runs = []
    for seed in seed_range:
        for label, (change, chosen) in variants.items():
            runs += [Job(label, seed, names, values=tuple(sorted(change.items())))
                     for names in filter(wanted, chosen) if method_wanted(label)]
        for name, chosen in ({} if ablations else BASELINE_ROWS).items():
            # a baseline reads only the teachers' own passes: computed once, then served
            runs += [Job(name, seed, names, method=name, own_pass=True)
                     for names in filter(wanted, chosen if method_wanted(name) else ())
                     if name in METHODS and all(n in teachers for n in names)]
    return runs


def execute_table_runs(runs: list[TableRun], on_result, execute, out: Path) -> None:
    """The tables' runs as jobs: every teacher's own pass served from its cache (frozen
    teachers); DiverseDistill's questions still go to the teacher itself."""
    jobs = {Job(r.method, r.seed, tuple(r.teachers.split("+")), method=r.method,
                values=tuple(sorted(json.loads(r.values).items())), own_pass=True,
                run_name=str(r.run_dir.relative_to(out / "runs"))): r for r in runs}
    execute(list(jobs), lambda job, result: on_result(jobs[job], result))


def sweep_committee(committees: list[str] | None, with_lm: bool) -> tuple[str, ...]:
    if committees:
        if len(committees) != 1:
            raise ConfigError(f"--tau-sweep runs one committee; --committees named {committees}")
        names = tuple(committees[0].split("+"))
        unknown = [n for n in names if n not in (*TEACHERS, "lm")]
        if unknown or ("lm" in names and not with_lm):
            raise ConfigError(f"--committees {committees[0]}: unknown or absent teacher "
                              f"{(unknown or ['lm'])[0]!r} (known: {', '.join(TEACHERS)}"
                              f"{', lm' if with_lm else ''})")
        return names
    return SWEEP_COMMITTEE if with_lm else COMMITTEES[-1]
