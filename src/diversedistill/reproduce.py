"""``diversedistill reproduce movielens``: the paper's MovieLens experiment, end to end.

One seeded 80/10/10 split; the MLP-M and MLP-L teachers trained on it once and the
language-model teacher ("lm", all-MiniLM-L6-v2 by default) fine-tuned on it once (then
read from the cache); then per seed: the simple references, MLP-S alone, DiverseDistill
from each single teacher and from the committees MLP-M + MLP-L and LM + MLP-L, and the
baselines of :data:`BASELINE_ROWS` that are registered. Results are written after every
run, so an interrupted reproduction keeps what it measured.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from diversedistill.cached_teacher import CachedOwnPass
from diversedistill.committee import Committee
from diversedistill.data import load_movielens, locate_movielens, make_split
from diversedistill.data.locate import cache_dir
from diversedistill.errors import ConfigError
from diversedistill.importance import sample_batch, save_importance
from diversedistill.interface import Teacher
from diversedistill.lm.prepare import LMConfig, prepare_language_teacher
from diversedistill.methods import METHODS, DiverseDistill, DiverseDistillConfig
from diversedistill.recsys import (
    STUDENT, TEACHERS, as_student, as_teacher, build, loaders, reference_mse,
    train_alone, train_or_load_teacher,
)
from diversedistill.results import (
    ResultRow, format_table, read_results, summarize, write_csv, write_summary_csv,
)
from diversedistill.search import TableProtocol, TablesConfig
from diversedistill.sweep import SweepRow, format_sweep, skipped_fractions, write_sweep
from diversedistill.tables import read_search, table_cells, write_tables
from diversedistill.training import fit

COMMITTEES = (("mlp-m",), ("mlp-l",), ("mlp-m", "mlp-l"))
LM_COMMITTEES = (("lm", "mlp-l"), ("lm",))
SWEEP_COMMITTEE = ("lm", "mlp-l", "mlp-m")  # issue 6: the gating sweep's committee  # the committee first: the headline row
# Baselines run beside DiverseDistill (the LM rows of the paper's Table 3; the full tables
# are `--tables`): method name -> committees. A method not registered is skipped.
BASELINE_ROWS = {"fd": (("lm",),)}
# Open-choice ablations (METHOD.md): each changes one choice of the default configuration.
ABLATIONS = {
    "answers not detached": {"detach": False},
    "importance: binary target": {"importance_target": "binary"},
    "importance: none (α = 1)": {"importance_target": "none"},
    "module lr 3x the student's": {"module_lr": 3 * STUDENT.lr},
    "injection: replace": {"injection": "replace"},
}


def committee_of(teachers: dict, names, injection: str) -> Committee:
    """MLP teachers are hooked afresh (their injection mode may differ per run); a
    prepared teacher object (the LM) is used as it is."""
    return Committee([teachers[n] if isinstance(teachers[n], Teacher)
                      else as_teacher(n, teachers[n], mode=injection) for n in names])


def distill_run(ml, split, teachers: dict, names, cfg: DiverseDistillConfig, seed: int,
                run_dir: Path, injection: str, progress: bool, method=None):
    committee = committee_of(teachers, names, injection)
    before = committee.fingerprint()
    student_model = build(ml, split, STUDENT, seed)
    train, val, test = loaders(ml, split, STUDENT.batch_size, seed)
    student, method = as_student(student_model), method or DiverseDistill(cfg)
    result = fit(student, method, committee, train, val, test,
                 STUDENT.train_config(seed, progress=progress), run_dir, clamp=ml.rating_scale)
    if committee.fingerprint() != before:  # cheap, and the whole method rests on it
        raise RuntimeError("a teacher's weights changed during distillation")
    if isinstance(method, DiverseDistill) and result.rank == 0:  # fit restored the best epoch
        save_importance(method, student, sample_batch(test), committee.names,
                        Path(run_dir) / "importance.csv")
    return student_model, result


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
                        resume: bool = False) -> list[ResultRow]:
    """``lm=None`` leaves the language-model teacher and its rows out. Seeds run from
    ``first_seed`` (so that seeds can be spread over processes or machines and their
    results.csv summarized together); ``committees`` (e.g. ``["lm", "lm+mlp-l"]``) keeps
    only the rows whose teachers are one of them, ``methods`` (e.g. ``["fd"]``) only the
    distillation rows of these methods (references, teachers and the student alone always
    run: they are what gap recovered is measured against). ``tables`` runs the comparison tables'
    protocol (:mod:`diversedistill.search`) instead of those rows and writes the tables
    (:mod:`diversedistill.tables`). ``tau_sweep`` runs DiverseDistill at each of these
    gating thresholds instead, on the committee LM + MLP-L + MLP-M (MLP-M + MLP-L without
    the LM; or the one committee named in ``committees``), and writes ``sweep.csv``
    (:mod:`diversedistill.sweep`). ``resume`` (with ``tables``) keeps the rows already in
    ``out``/results.csv and search.csv and runs only what is missing."""
    out = Path(out)
    cfg = cfg or DiverseDistillConfig()
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
    rows: list[ResultRow] = []
    previous_search = None
    if resume:
        if tables is None:
            raise ConfigError("--resume continues a 'reproduce movielens --tables' run only")
        if (out / "results.csv").is_file():
            rows = read_results(out / "results.csv")
        if (out / "search.csv").is_file():
            previous_search = read_search(out / "search.csv")
        log(f"resuming {out}: {len(rows)} result rows and "
            f"{len(previous_search or [])} search rows kept")

    def record(row: ResultRow) -> None:
        # a run recorded again (a resumed reproduction) replaces its row: one row per run
        key = (row.method, row.teachers, row.seed)
        rows[:] = [r for r in rows if (r.method, r.teachers, r.seed) != key] + [row]
        write_csv(out / "results.csv", rows)
        val = "   -  " if math.isnan(row.val_mse) else f"{row.val_mse:.4f}"
        log(f"  seed {row.seed}  {row.method:<28} {row.teachers:<18} val {val}  "
            f"test {row.test_mse:.4f}  ({row.seconds:.0f}s)")

    # One split and one set of teachers; the seeds vary the students (initialization and
    # shuffling). Every method is then compared on the same test ratings against the same
    # frozen teachers, so the spread is the distillation's own, not the split's.
    part = make_split(ml, split, split_seed)
    log(part.describe())
    teachers = {}
    for name, recipe in TEACHERS.items():
        log(f"teacher {name}: training (or reading it from {cache_root})")
        model, metrics, _ = train_or_load_teacher(ml, part, name, recipe, split_seed,
                                                  cache_root, progress, log=log)
        teachers[name] = (model, metrics)
    if lm is not None:
        log(f"teacher lm: {lm.model} (fine-tuned once, then read from {lm_cache})")
        teachers["lm"] = prepare_language_teacher(ml, part, lm, lm_cache, split_seed, progress, log)
    teacher_models = {name: model for name, (model, _) in teachers.items()}
    protocol = None
    if tables is not None:  # frozen teachers: their own passes are computed once, then reused
        cached = {n: CachedOwnPass(m if isinstance(m, Teacher) else as_teacher(n, m, injection))
                  for n, m in teacher_models.items()}
        protocol = TableProtocol(
            lambda names, method, seed, run_dir: distill_run(
                ml, part, cached, names, cfg, seed, run_dir, injection, progress, method)[1],
            cfg, seeds, out, tables.merged(), log=log, teachers=cached,
            # --committees splits the tables over processes: each runs the cells of its
            # committees; `summarize --tables` joins their directories
            cells=[c for c in table_cells() if committees is None or c[1] in committees],
            done=list(rows), done_search=previous_search)
        log(protocol.describe())
    references = reference_mse(part.train, part.test, ml.n_users, ml.n_items, ml.rating_scale)

    def wanted(names) -> bool:
        return committees is None or "+".join(names) in committees

    def method_wanted(label: str) -> bool:
        return methods is None or label in methods

    own_passes: dict = {}
    sweep_rows: list[SweepRow] = []
    for seed in range(first_seed, first_seed + seeds):
        for name, mse in references.items():
            record(ResultRow("reference", name, seed, float("nan"), mse, 0.0))
        for name, (_, metrics) in teachers.items():
            record(ResultRow("teacher alone", name, seed, metrics["val_mse"], metrics["test_mse"],
                             metrics["seconds"]))
        student = build(ml, part, STUDENT, seed)
        result = train_alone(ml, part, student, STUDENT, seed, out / "runs" / f"student-{seed}",
                             progress)
        record(ResultRow("student alone", "mlp-s", seed, result.val_mse, result.test_mse,
                         result.seconds))
        if protocol is not None:
            protocol.run_seed(seed, record)
            continue
        if tau_sweep:
            names = sweep_committee(committees, lm is not None)
            for tau in tau_sweep:
                run_dir = out / "runs" / f"diversedistill-tau{tau:g}-{'+'.join(names)}-{seed}"
                _, result = distill_run(ml, part, teacher_models, names, replace(cfg, tau=tau),
                                        seed, run_dir, injection, progress)
                record(ResultRow(f"diversedistill τ={tau:g}", "+".join(names), seed,
                                 result.val_mse, result.test_mse, result.seconds))
                sweep_rows.append(SweepRow(tau, seed, result.val_mse, result.test_mse,
                                           result.epochs, result.seconds / max(result.epochs, 1),
                                           skipped_fractions(run_dir)))
                write_sweep(out / "sweep.csv", sweep_rows)
            continue
        if ablations:  # the committee only: the default, then one change at a time
            variants = {"diversedistill": ({}, COMMITTEES[-1:])}
            variants.update({f"dd ablation: {k}": (v, COMMITTEES[-1:]) for k, v in ABLATIONS.items()})
        else:
            variants = {"diversedistill": ({}, COMMITTEES + (LM_COMMITTEES if lm else ()))}
        for label, (change, chosen) in variants.items():
            if not method_wanted(label):
                continue
            change = dict(change)
            mode = change.pop("injection", injection)
            for names in filter(wanted, chosen):
                run_dir = out / "runs" / f"{label.replace(' ', '_')}-{'+'.join(names)}-{seed}"
                _, result = distill_run(ml, part, teacher_models, names, replace(cfg, **change),
                                        seed, run_dir, mode, progress)
                record(ResultRow(label, "+".join(names), seed, result.val_mse, result.test_mse,
                                 result.seconds))
        for method_name, chosen in ({} if ablations else BASELINE_ROWS).items():
            for names in filter(wanted, chosen if method_wanted(method_name) else ()):
                if method_name not in METHODS or any(n not in teacher_models for n in names):
                    continue
                run_dir = out / "runs" / f"{method_name}-{'+'.join(names)}-{seed}"
                # a baseline reads only the teachers' own passes: computed once, then served
                own = {n: own_passes.setdefault(n, CachedOwnPass(
                    m if isinstance(m, Teacher) else as_teacher(n, m, injection)))
                    for n, m in teacher_models.items() if n in names}
                _, result = distill_run(ml, part, own, names, cfg, seed, run_dir,
                                        injection, progress, method=METHODS[method_name]())
                record(ResultRow(method_name, "+".join(names), seed, result.val_mse,
                                 result.test_mse, result.seconds))
    summary, best = summarize(rows)
    write_summary_csv(out / "summary.csv", summary)
    log("\n" + format_table(summary, best))
    if protocol is not None:
        log("\n" + write_tables(out))
    if sweep_rows:
        log("\n" + format_sweep(sweep_rows))
    return rows


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
