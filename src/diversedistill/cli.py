"""The ``diversedistill`` command line.

    diversedistill train-teacher --size mlp-l --out teachers/mlp-l
    diversedistill distill --teacher teachers/mlp-m --teacher teachers/mlp-l --out runs/dd
    diversedistill export runs/dd --out student/
    diversedistill reproduce movielens --data-dir ../shared/data/ml-100k --seeds 3
    diversedistill reproduce cifar10 --data-dir ../shared/data/cifar10 --seeds 3

Every user error (bad data, bad config, widths that do not fit) prints one line and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

from diversedistill.config import from_dict, load_yaml
from diversedistill.errors import ConfigError, DiverseDistillError

COMMANDS = ("train-teacher", "distill", "export", "reproduce")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="MovieLens directory (default: $DIVERSEDISTILL_DATA, "
                                      "then the user cache, downloading if needed)")
    p.add_argument("--release", default="ml-100k", help="MovieLens release (ml-100k, ml-1m, ...)")
    p.add_argument("--split", default="random",
                   help="'random' (seeded 80/10/10) or an official ML-100K fold (u1..u5, ua, ub)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the random split")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization and shuffling")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _add_dd_args(p: argparse.ArgumentParser) -> None:
    from diversedistill.methods.diversedistill import DiverseDistillConfig

    p.add_argument("--config", help="YAML file with a 'diversedistill:' section (flags win)")
    group = p.add_argument_group("DiverseDistill")
    for f in fields(DiverseDistillConfig):
        kind = {"bool": _bool, "int": int, "float": float}.get(str(f.type), str)
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"dd_{f.name}", type=kind,
                           default=None, metavar=f.name.upper(), help=f"default {f.default}")
    p.add_argument("--injection", choices=("add", "replace"), default=None,
                   help="how a question enters an MLP teacher (default add; see docs)")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _dd_config(args):
    from diversedistill.methods.diversedistill import DiverseDistillConfig

    base = load_yaml(args.config) if args.config else {}
    unknown = set(base) - {"diversedistill", "injection"}
    if unknown:
        raise ConfigError(f"{args.config}: unknown top-level key {sorted(unknown)[0]!r}; "
                          "known: diversedistill, injection")
    values = dict(base.get("diversedistill") or {})
    values.update({k[3:]: v for k, v in vars(args).items() if k.startswith("dd_") and v is not None})
    injection = args.injection or base.get("injection", "add")
    return from_dict(DiverseDistillConfig, values, args.config or "flags"), injection


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diversedistill",
        description="Distill a committee of diverse frozen teachers into a compact student.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-teacher", help="train an MLP recommender teacher and export it")
    _add_data_args(p)
    p.add_argument("--size", default="mlp-l", help="mlp-s, mlp-m or mlp-l")
    p.add_argument("--out", required=True, help="directory for the exported teacher")

    p = sub.add_parser("distill", help="distill a student from exported teachers")
    _add_data_args(p)
    p.add_argument("--teacher", action="append", required=True, metavar="DIR",
                   help="an exported teacher (repeat for a committee)")
    p.add_argument("--method", default="diversedistill", help="distillation method")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, student/)")
    _add_dd_args(p)

    p = sub.add_parser("export", help="write the plain student of a distill run")
    p.add_argument("run", help="run directory written by 'distill'")
    p.add_argument("--out", required=True, help="directory for model.safetensors + config.json")

    p = sub.add_parser("reproduce", help="reproduce the paper's experiments")
    p.add_argument("experiment", choices=("movielens", "cifar10", "cifar100"))
    _add_data_args(p)
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--out", help="results directory (default results/<experiment>)")
    p.add_argument("--cache-dir", help="teacher cache (default: the user cache directory)")
    p.add_argument("--ablations", action="store_true",
                   help="run the open-choice ablations on the committee instead of the "
                        "single-teacher rows")
    p.add_argument("--train-size", type=int,
                   help="cifar: use only this many training images (smoke runs)")
    _add_dd_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except DiverseDistillError as err:
        print(f"diversedistill {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _load_data(args):
    from diversedistill.data import load_movielens, locate_movielens, make_split

    ml = load_movielens(locate_movielens(args.release, args.data_dir))
    split = make_split(ml, args.split, args.split_seed)
    print(ml.summary())
    print(split.describe())
    return ml, split


def cmd_train_teacher(args) -> int:
    from diversedistill.export import export_model
    from diversedistill.recsys import STUDENT, TEACHERS, build, train_alone

    ml, split = _load_data(args)
    recipe = TEACHERS.get(args.size) or (STUDENT if args.size == "mlp-s" else None)
    if recipe is None:
        raise ConfigError(f"unknown size {args.size!r}; choose mlp-s, mlp-m or mlp-l")
    model = build(ml, split, recipe, args.seed)
    result = train_alone(ml, split, model, recipe, args.seed, Path(args.out) / "run",
                         progress=not args.no_progress)
    metrics = {"val_mse": result.val_mse, "test_mse": result.test_mse, "seconds": result.seconds}
    export_model(model, args.out, {"metrics": metrics, "recipe": asdict(recipe)})
    print(json.dumps(metrics))
    return 0


def cmd_distill(args) -> int:
    from diversedistill.committee import Committee
    from diversedistill.export import export_model, load_model
    from diversedistill.methods import method_class
    from diversedistill.recsys import STUDENT, as_student, as_teacher, build, loaders
    from diversedistill.training import fit

    ml, split = _load_data(args)
    cfg, injection = _dd_config(args)
    cls = method_class(args.method)
    method = cls(cfg) if args.method == "diversedistill" else cls()
    committee = Committee([as_teacher(Path(d).name, load_model(d), mode=injection)
                           for d in args.teacher])
    student_model = build(ml, split, STUDENT, args.seed)
    train, val, test = loaders(ml, split, STUDENT.batch_size, args.seed)
    result = fit(as_student(student_model), method, committee, train, val, test,
                 STUDENT.train_config(args.seed, progress=not args.no_progress), args.out,
                 clamp=ml.rating_scale)
    metrics = {"val_mse": result.val_mse, "test_mse": result.test_mse, "seconds": result.seconds,
               "epochs": result.epochs, "best_epoch": result.best_epoch}
    export_model(student_model, Path(args.out) / "student",
                 {"metrics": metrics, "method": args.method, "teachers": committee.names,
                  "distillation": asdict(cfg)})
    print(json.dumps(metrics))
    return 0


def cmd_export(args) -> int:
    from diversedistill.export import export_from_checkpoint

    path = export_from_checkpoint(args.run, args.out)
    print(f"wrote {path}")
    return 0


def cmd_reproduce(args) -> int:
    from diversedistill.reproduce import reproduce_movielens

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    if args.experiment != "movielens":  # cifar10, cifar100: the config file is an experiment's
        from diversedistill.reproduce_vision import cmd_reproduce_vision

        return cmd_reproduce_vision(args)
    cfg, injection = _dd_config(args)
    reproduce_movielens(args.data_dir, args.seeds, args.out or "results/movielens", args.split,
                        args.release, cfg,
                        injection, args.ablations, args.cache_dir, not args.no_progress,
                        split_seed=args.split_seed)
    return 0


HANDLERS = {"train-teacher": cmd_train_teacher, "distill": cmd_distill, "export": cmd_export,
            "reproduce": cmd_reproduce}

if __name__ == "__main__":
    sys.exit(main())
