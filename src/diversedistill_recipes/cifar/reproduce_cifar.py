"""``diversedistill reproduce cifar10`` (and ``cifar100``): the paper's vision experiment.

One seeded, stratified validation hold-out; the teachers trained on the rest once (then
read from the cache) and evaluated alone; then per seed: the student alone, and every method of
``exp.methods`` found in :data:`diversedistill.methods.METHODS` on the committees it applies to
(:data:`diversedistill_recipes.cifar.image_recipes.METHOD_COMMITTEES`): the single-teacher baselines
(LD, FD) on each teacher, the multi-teacher ones (MT, AEKD) on the committee, DiverseDistill on each
teacher and on the committee. A method not registered is skipped with a note, so baselines plug in
by name. Reported: test accuracy, mean ± std over seeds,
and the gap recovered between the student alone and the best teacher alone. Rows are
written after every run, so an interrupted reproduction keeps what it measured.

``--tables`` reproduces the paper's comparison instead (:func:`reproduce_vision` with
``tables``): Tables 3 and 4 on the experiment's teachers, every cell searched on validation
by the fair protocol (:mod:`diversedistill_recipes.comparison.search`,
:data:`~diversedistill_recipes.comparison.search.VISION_GRIDS`: λ and, where a softened prediction
is all a method distills, the temperature T), then run on every seed; written by
:mod:`diversedistill_recipes.comparison.tables` like MovieLens's.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from diversedistill.committee import Committee
from diversedistill.config import load_yaml
from diversedistill.errors import ConfigError
from diversedistill.loop.cached_teacher import CachedContext, CachedOwnPass
from diversedistill.loop.parallel import run_jobs, worker_state
from diversedistill.methods import METHODS, DiverseDistillConfig
from diversedistill_recipes.cifar.image_recipes import (
    CPU_EXPERIMENT,
    ImageRecipe,
    VisionExperiment,
    committees_for,
    describe,
    load_experiment,
    make_parts,
    train_or_load_teacher,
)
from diversedistill_recipes.cifar.images import load_cifar, locate_cifar
from diversedistill_recipes.comparison.results import (
    ACCURACY,
    ResultRow,
    format_table,
    summarize,
    write_summary_csv,
)
from diversedistill_recipes.comparison.search import (
    VISION_GRIDS,
    TableProtocol,
    TableRun,
    TablesConfig,
    make_method,
)
from diversedistill_recipes.comparison.tables import (
    TableLayout,
    table_cells,
    vision_layout,
    write_layout,
    write_tables,
)
from diversedistill_recipes.jobs import Job, ResultBook, train_student
from diversedistill_recipes.locate import cache_dir

# The MovieLens ablations (reproduce.ABLATIONS) with the vision committee's first-
# implementation choices: λ = 0.003 (summed squared L2, chosen on validation then) and the
# question replacing the towers' [CLS] token.
VISION_LEGACY = {"lam": 0.003, "injection": "replace"}


def vision_ablations(student_lr: float) -> dict[str, dict]:
    """The ablation variants for a vision student trained at ``student_lr``: the MovieLens
    ones, with the vision λ of the summed distance and a module learning rate that is 3x
    this student's (the MovieLens entry is 3x the recommender's)."""
    from diversedistill_recipes.movielens.reproduce_movielens import ABLATIONS

    out = {}
    for label, changes in ABLATIONS.items():
        if label.startswith("first implementation"):
            changes = {**changes, **VISION_LEGACY}
        elif label.startswith("distance: sum"):
            label, changes = "distance: sum, lam 0.003", {"distance": "sum", "lam": 0.003}
        elif label.startswith("module lr"):
            changes = {"module_lr": 3 * student_lr}
        out[label] = changes
    return out


def committee_for(teachers: dict, names, injection: str = "") -> Committee:
    """The committee of ``names``, each teacher taking questions the run's way (``injection``;
    "" = "add"): the held teachers are shared by the runs of a worker."""
    committee = Committee([teachers[n] for n in names])
    for teacher in committee:
        if hasattr(teacher, "injection"):
            teacher.injection = injection or "add"
    return committee


def student_job(seed: int) -> Job:
    return Job("student alone", seed, run_name=f"student-{seed}")


def _prepare_worker(exp: VisionExperiment, data_dir, split_seed: int, cache_root: Path,
                    cfg: DiverseDistillConfig, out: Path, progress: bool,
                    resume: bool = False) -> dict:
    """A worker's state: the data split once; teachers loaded when a job first needs them;
    ``resume``: the students' runs continue from their last checkpoints."""
    data = load_cifar(locate_cifar(exp.dataset, data_dir), exp.dataset)
    return {"exp": exp, "parts": make_parts(data, exp, split_seed), "split_seed": split_seed,
            "cache_root": cache_root, "cfg": cfg, "out": out, "progress": progress,
            "resume": resume, "teachers": {}, "own": {}, "contexts": {}}


def _memoized(state: dict, store: str, name: str, teacher):
    """``teacher`` wrapped once per worker in the memo ``store`` names, keyed by (image,
    fixed view): "own" (``CachedOwnPass``: the own pass a baseline reads) or "contexts"
    (``CachedContext``: the states below the injection point, so a DiverseDistill step runs
    only the layers above; rows × tokens × width floats per teacher). A frozen teacher on a
    fixed view gives the same result every time; without fixed views an augmented image is
    new each time, and nothing is kept."""
    if not state["exp"].views or not state["exp"].augment:
        return teacher
    wrap = CachedOwnPass if store == "own" else CachedContext
    if name not in state[store]:
        state[store][name] = wrap(teacher, key_fields=("index", "view"))
    return state[store][name]


def _teacher(state: dict, name: str):
    if name not in state["teachers"]:
        exp = state["exp"]
        state["teachers"][name] = train_or_load_teacher(
            state["parts"], exp, name, exp.teachers[name], state["split_seed"],
            state["cache_root"], state["progress"])
    return state["teachers"][name]


def run_job(job: Job):
    """Run ``job`` in this process (a worker, or the parent): (metrics, from cache) for a
    teacher, a :class:`~diversedistill_recipes.jobs.JobResult` for a student."""
    state = worker_state()
    exp, out, progress = state["exp"], state["out"], state["progress"]
    if job.kind == "teacher":
        _, metrics, cached = _teacher(state, job.names[0])
        return metrics, cached
    recipe = ImageRecipe(state["parts"], exp)
    if not job.names:
        return train_student(recipe, job, None, None, out, progress,
                             resume=state.get("resume", False))
    teachers = {n: _teacher(state, n)[0] for n in job.names}
    # a baseline reads only the teachers' own passes; DiverseDistill asks questions, so
    # only what lies below the injection point is kept
    store = "contexts" if job.method == "diversedistill" else "own"
    teachers = {n: _memoized(state, store, n, t) for n, t in teachers.items()}
    changes, injection = job.split_values()
    distiller = make_method(job.method, changes, state["cfg"])
    return train_student(recipe, job, distiller, committee_for(teachers, job.names, injection),
                         out, progress, resume=state.get("resume", False))


def reproduce_vision(exp: VisionExperiment, data_dir=None, seeds: int = 3,
                     out: str | Path | None = None, cfg: DiverseDistillConfig | None = None,
                     cache: str | Path | None = None, progress: bool = True, split_seed: int = 0,
                     log=print, workers: int = 1, methods: list[str] | None = None,
                     committees: list[str] | None = None,
                     variants: dict[str, dict] | None = None,
                     tables: TablesConfig | None = None,
                     resume: bool = False) -> list[ResultRow]:
    """``workers`` > 1 runs that many runs at a time, each in its own single-threaded
    process (:mod:`diversedistill.loop.parallel`); the teachers first, then every student.
    ``methods`` / ``committees`` (e.g. ``["vit-l+clip"]``) keep only those distillation
    rows; ``variants`` (label -> changes to ``cfg``, ``injection`` included) adds a
    DiverseDistill row per variant on the multi-teacher committees (the ablations).
    ``tables`` runs the comparison tables' protocol (:func:`tables_layout`) instead of the
    experiment's ``methods`` and writes the tables; ``resume`` keeps the rows already in
    ``out``/results.csv and search.csv and runs only what is missing (the tables, the
    ablations or a plain run alike)."""
    out = Path(out or f"results/{exp.dataset}")
    cfg = cfg or DiverseDistillConfig(**exp.diversedistill)
    cache_root = Path(cache) if cache else cache_dir() / "teachers"
    start = time.perf_counter()
    data = load_cifar(locate_cifar(exp.dataset, data_dir), exp.dataset)
    log(data.summary())
    log(make_parts(data, exp, split_seed).describe())
    del data
    book = ResultBook(out, ACCURACY, log)
    previous_search = book.resume() if resume else None
    rows = book.rows  # the book's own list: every recorded row lands in it
    if resume:
        log(f"resuming {out}: {len(rows)} result rows and {len(previous_search or [])} search "
            "rows kept")
    # bars from several processes would interleave: workers report by lines only
    init = (exp, data_dir, split_seed, cache_root, cfg, out, progress and workers <= 1, resume)
    record = book.record

    def execute(jobs: list[Job]) -> None:
        # the committees' runs first (the dearest): the last ones to finish are then short
        jobs = sorted(jobs, key=lambda j: -len(j.names))
        log(f"{len(jobs)} student runs, {max(workers, 1)} at a time")
        run_jobs(jobs, run_job, lambda job, result: book.record_run(job, result, exp.student_name),
                 workers, _prepare_worker, init)

    # One split and one set of teachers; the seeds vary the students (initialization,
    # shuffling, augmentation), so every method meets the same frozen teachers.
    teacher_metrics = train_teachers(exp, cache_root, workers, init, log)
    for seed in range(seeds):
        for name in exp.teachers:
            metrics = teacher_metrics[name]
            record(ACCURACY.row("teacher alone", name, seed, metrics["val_accuracy"],
                               metrics["test_accuracy"], metrics["seconds"]))
    if tables is not None:
        layout = tables_layout(exp)
        protocol = table_protocol(exp, layout, tables, cfg, seeds, out, methods, committees,
                                  rows, previous_search, workers, init, log)
        log(protocol.describe())
        execute(book.missing([student_job(seed) for seed in range(seeds)], exp.student_name))
        alone = [r.seconds for r in rows if r.method == "student alone"]
        if alone and not previous_search:
            log(protocol.estimate(sum(alone) / len(alone), "the student alone's, and a "
                                  "distillation run adds the teachers' passes", at_least=True))
        protocol.run_seeds(range(seeds), record)
    else:
        execute(book.missing(default_jobs(exp, seeds, methods, committees, variants, log),
                             exp.student_name))
    summary, best = summarize(rows, ("student alone", exp.student_name), metric=ACCURACY)
    write_summary_csv(out / "summary.csv", summary, ACCURACY)
    log("\n" + format_table(summary, best, ACCURACY))
    if tables is not None:
        write_layout(out, layout)
        log("\n" + write_tables(out, layout))
    log(f"\ntotal {time.perf_counter() - start:.0f}s")
    return rows


def train_teachers(exp: VisionExperiment, cache_root: Path, workers: int, init: tuple,
                   log) -> dict[str, dict]:
    """Every teacher trained (or read from the cache): name -> its metrics alone."""
    for name, recipe in exp.teachers.items():
        log(f"teacher {name}: {describe(recipe)}: training (or reading it from {cache_root})")
    teacher_metrics = {}

    def teacher_done(job: Job, result) -> None:
        metrics, cached = result
        teacher_metrics[job.names[0]] = metrics
        log(f"  {job.names[0]} {'cached' if cached else 'trained'}: "
            f"{metrics['parameters'] / 1e6:.2f}M parameters, val {metrics['val_accuracy']:.4f}, "
            f"test {metrics['test_accuracy']:.4f}")

    run_jobs([Job("teacher alone", names=(n,), kind="teacher") for n in exp.teachers], run_job,
             teacher_done, workers, _prepare_worker, init)
    return teacher_metrics


def default_jobs(exp: VisionExperiment, seeds: int, methods: list[str] | None,
                 committees: list[str] | None, variants: dict[str, dict] | None,
                 log) -> list[Job]:
    """The runs of a reproduction without --tables: the student alone, every method of
    ``exp.methods`` with its defaults on the committees it applies to, and the variants."""
    for missing in [m for m in (methods or exp.methods) if m not in METHODS]:
        log(f"method {missing!r} is not registered in diversedistill.methods.METHODS: skipped")
    methods = [m for m in (exp.methods if methods is None else methods) if m in METHODS]

    def wanted(names) -> bool:
        return committees is None or "+".join(names) in committees

    jobs = [student_job(seed) for seed in range(seeds)]
    jobs += [Job(method, seed, tuple(names), method) for seed in range(seeds)
             for method in methods for names in committees_for(method, exp.committees)
             if wanted(names)]
    jobs += [Job(f"dd ablation: {label}", seed, tuple(names), values=tuple(sorted(v.items())))
             for seed in range(seeds) for label, v in (variants or {}).items()
             for names in exp.committees if len(names) > 1 and wanted(names)]
    return jobs


# --------------------------------------------------------------------------- the tables


def tables_layout(exp: VisionExperiment) -> TableLayout:
    """Tables 3 and 4 on the experiment's teachers: the committee is its first committee
    of two or more teachers (all the teachers if it names none), the foundation model its
    CLIP teacher (the first of the committee if none is a CLIP)."""
    committee = next((c for c in exp.committees if len(c) > 1), list(exp.teachers))
    if len(committee) < 2:
        raise ConfigError("--tables compares single teachers with a committee: the experiment "
                          f"needs two teachers, it has {list(exp.teachers)}")
    clip = next((n for n in committee if exp.teachers[n].kind == "clip"), None)
    return vision_layout(committee, exp.student_name, clip)


def table_protocol(exp: VisionExperiment, layout: TableLayout, tables: TablesConfig,
                   cfg: DiverseDistillConfig, seeds: int, out: Path, methods, committees, rows,
                   previous_search, workers: int, init: tuple, log) -> TableProtocol:
    """The fair protocol on the vision grids, its runs trained as :class:`Job` s."""
    cells = [(m, t) for m, t in table_cells(layout.tables)
             if (methods is None or m in methods) and (committees is None or t in committees)]
    for method in dict.fromkeys(m for m, _ in cells if m not in METHODS):
        log(f"method {method!r} is not registered in diversedistill.methods.METHODS: skipped")

    def execute(runs: list[TableRun], on_result) -> None:
        jobs = {Job(r.method, r.seed, tuple(r.teachers.split("+")), r.method,
                    tuple(sorted(json.loads(r.values).items())),
                    run_name=str(r.run_dir.relative_to(out / "runs"))): r for r in runs}
        # the committees' runs first (the dearest): the last ones to finish are then short
        order = sorted(jobs, key=lambda j: -len(j.names))
        log(f"{len(order)} run(s), {max(workers, 1)} at a time")
        run_jobs(order, run_job, lambda job, row: on_result(jobs[job], row), workers,
                 _prepare_worker, init)

    return TableProtocol(None, cfg, seeds, out, tables.merged(VISION_GRIDS),
                         [c for c in cells if c[0] in METHODS], log=log,
                         teachers=dict.fromkeys(exp.teachers), done=list(rows),
                         done_search=previous_search, execute=execute, metric=ACCURACY,
                         workers=workers)


def experiment_for(name: str, config: str | None) -> tuple[VisionExperiment, dict]:
    """The experiment (the CPU recipe, or a YAML file's) and its DiverseDistill section."""
    if config is None:
        exp = copy.deepcopy(CPU_EXPERIMENT)
        exp.dataset = name
        return exp, dict(exp.diversedistill)
    data = load_yaml(config)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "tables"}  # read by vision_tables
    exp = load_experiment(data, config)
    if exp.dataset != name:
        raise ConfigError(f"{config}: its dataset is {exp.dataset!r}, not {name!r}")
    return exp, dict(exp.diversedistill or {})
