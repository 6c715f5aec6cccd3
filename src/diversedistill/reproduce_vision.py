"""``diversedistill reproduce cifar10`` (and ``cifar100``): the paper's vision experiment.

One seeded, stratified validation hold-out; the teachers trained on the rest once (then
read from the cache) and evaluated alone; then per seed: the student alone, and every
method of ``exp.methods`` found in :data:`diversedistill.methods.METHODS` on the committees
it applies to (:data:`diversedistill.vision.METHOD_COMMITTEES`): the single-teacher
baselines (LD, FD) on each teacher, the multi-teacher ones (MT, AEKD) on the committee,
DiverseDistill on each teacher and on the committee. A method not registered is skipped
with a note, so baselines plug in by name. Reported: test accuracy, mean ± std over seeds,
and the gap recovered between the student alone and the best teacher alone. Rows are
written after every run, so an interrupted reproduction keeps what it measured.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path

from diversedistill.committee import Committee
from diversedistill.config import from_dict, load_yaml
from diversedistill.data.cifar import load_cifar, locate_cifar
from diversedistill.data.locate import cache_dir
from diversedistill.errors import ConfigError
from diversedistill.importance import sample_batch, save_importance
from diversedistill.methods import METHODS, DiverseDistill, DiverseDistillConfig, method_class
from diversedistill.results import (
    ACCURACY, AccuracyRow, format_table, summarize, write_csv, write_summary_csv,
)
from diversedistill.training import fit
from diversedistill.vision import (
    CPU_EXPERIMENT, VisionExperiment, as_student, build_vit, committees_for, describe,
    load_experiment, loaders, make_parts, train_alone, train_or_load_teacher,
)


def make_method(name: str, cfg: DiverseDistillConfig):
    return DiverseDistill(cfg) if name == "diversedistill" else method_class(name)()


def distill_run(parts, exp: VisionExperiment, teachers: dict, names, method: str,
                cfg: DiverseDistillConfig, seed: int, run_dir: Path, progress: bool):
    committee = Committee([teachers[n] for n in names])
    before = committee.fingerprint()
    student_model = build_vit(exp.student, len(parts.class_names), seed)
    train, val, test = loaders(parts, exp, exp.student.batch_size, seed)
    student, distiller = as_student(student_model, exp.student), make_method(method, cfg)
    result = fit(student, distiller, committee, train, val, test,
                 exp.student.train_config(seed, exp.accelerator, progress), run_dir,
                 metric="accuracy")
    if committee.fingerprint() != before:  # cheap, and the whole method rests on it
        raise RuntimeError("a teacher's weights changed during distillation")
    if isinstance(distiller, DiverseDistill) and result.rank == 0:  # fit restored the best epoch
        save_importance(distiller, student, sample_batch(test), committee.names,
                        Path(run_dir) / "importance.csv")
    return student_model, result


def reproduce_vision(exp: VisionExperiment, data_dir=None, seeds: int = 3,
                     out: str | Path | None = None, cfg: DiverseDistillConfig | None = None,
                     cache: str | Path | None = None, progress: bool = True, split_seed: int = 0,
                     log=print) -> list[AccuracyRow]:
    out = Path(out or f"results/{exp.dataset}")
    cfg = cfg or DiverseDistillConfig(**exp.diversedistill)
    cache_root = Path(cache) if cache else cache_dir() / "teachers"
    start = time.perf_counter()
    data = load_cifar(locate_cifar(exp.dataset, data_dir), exp.dataset)
    log(data.summary())
    parts = make_parts(data, exp, split_seed)
    log(parts.describe())
    rows: list[AccuracyRow] = []

    def record(row: AccuracyRow) -> None:
        rows.append(row)
        write_csv(out / "results.csv", rows)
        log(f"  seed {row.seed}  {row.method:<20} {row.teachers:<14} val {row.val_accuracy:.4f}  "
            f"test {row.test_accuracy:.4f}  ({row.seconds:.0f}s)")

    # One split and one set of teachers; the seeds vary the students (initialization,
    # shuffling, augmentation), so every method meets the same frozen teachers.
    teachers, teacher_metrics = {}, {}
    for name, recipe in exp.teachers.items():
        log(f"teacher {name}: {describe(recipe)}: training (or reading it from {cache_root})")
        teacher, metrics, cached = train_or_load_teacher(parts, exp, name, recipe, split_seed,
                                                         cache_root, progress)
        teachers[name], teacher_metrics[name] = teacher, metrics
        log(f"  {'cached' if cached else 'trained'}: {metrics['parameters'] / 1e6:.2f}M "
            f"parameters, val {metrics['val_accuracy']:.4f}, test {metrics['test_accuracy']:.4f}")
    methods = [m for m in exp.methods if m in METHODS]
    for missing in [m for m in exp.methods if m not in METHODS]:
        log(f"method {missing!r} is not registered in diversedistill.methods.METHODS: skipped")

    for seed in range(seeds):
        for name, metrics in teacher_metrics.items():
            record(AccuracyRow("teacher alone", name, seed, metrics["val_accuracy"],
                               metrics["test_accuracy"], metrics["seconds"]))
        student = build_vit(exp.student, len(parts.class_names), seed)
        result = train_alone(as_student(student, exp.student), parts, exp, exp.student, seed,
                             out / "runs" / f"student-{seed}", progress)
        record(AccuracyRow("student alone", exp.student_name, seed, result.val, result.test,
                           result.seconds))
        for method in methods:
            for names in committees_for(method, exp.committees):
                run_dir = out / "runs" / f"{method}-{'+'.join(names)}-{seed}"
                _, result = distill_run(parts, exp, teachers, names, method, cfg, seed, run_dir,
                                        progress)
                record(AccuracyRow(method, "+".join(names), seed, result.val, result.test,
                                   result.seconds))
    summary, best = summarize(rows, ("student alone", exp.student_name), metric=ACCURACY)
    write_summary_csv(out / "summary.csv", summary, ACCURACY)
    log("\n" + format_table(summary, best, ACCURACY))
    log(f"\ntotal {time.perf_counter() - start:.0f}s")
    return rows


def experiment_for(name: str, config: str | None) -> tuple[VisionExperiment, dict]:
    """The experiment (the CPU recipe, or a YAML file's) and its DiverseDistill section."""
    if config is None:
        exp = copy.deepcopy(CPU_EXPERIMENT)
        exp.dataset = name
        return exp, dict(exp.diversedistill)
    exp = load_experiment(load_yaml(config), config)
    if exp.dataset != name:
        raise ConfigError(f"{config}: its dataset is {exp.dataset!r}, not {name!r}")
    return exp, dict(exp.diversedistill or {})


def cmd_reproduce_vision(args) -> int:
    """The CLI's ``reproduce cifar10|cifar100``."""
    if args.injection is not None or args.ablations or args.tau_sweep or args.methods:
        raise ConfigError("--injection, --ablations, --tau-sweep and --methods apply to "
                          "reproduce movielens only")
    exp, dd = experiment_for(args.experiment, args.config)
    if args.train_size is not None:
        exp = replace(exp, train_size=args.train_size)
    dd.update({k[3:]: v for k, v in vars(args).items() if k.startswith("dd_") and v is not None})
    cfg = from_dict(DiverseDistillConfig, dd, args.config or "flags")
    reproduce_vision(exp, args.data_dir, args.seeds, args.out, cfg, args.cache_dir,
                     not args.no_progress, split_seed=args.split_seed)
    return 0
