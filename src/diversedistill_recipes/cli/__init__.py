"""The ``diversedistill`` command line: one typed, documented function per subcommand
(:mod:`.typed` builds the parser from its signature and docstring).

    diversedistill train-teacher --size mlp-l --out teachers/mlp-l
    diversedistill distill --teacher teachers/mlp-m --teacher teachers/mlp-l --out runs/dd
    diversedistill export runs/dd --out student/
    diversedistill reproduce movielens --data-dir ../shared/data/ml-100k --seeds 3
    diversedistill reproduce cifar10 --data-dir ../shared/data/cifar10 --seeds 3
    diversedistill report results/lm-s0 results/lm-s1 --out report/
    diversedistill compare --config my.yaml --out results/mine --seeds 3

Every user error (bad data, bad config, widths that do not fit) prints one line and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from diversedistill.errors import DiverseDistillError
from diversedistill_recipes.cli import typed
from diversedistill_recipes.cli.bench_command import bench
from diversedistill_recipes.cli.compare_command import compare, reproduce_suite
from diversedistill_recipes.cli.movielens_commands import (
    distill,
    reproduce_movielens,
    train_teacher,
)
from diversedistill_recipes.cli.result_commands import export, report, summarize
from diversedistill_recipes.cli.vision_commands import reproduce_cifar

# the commands whose config file may also set their flags (top-level keys: seeds: 5); the
# vision experiment file's keys are the experiment's own (its committees, its teachers)
CONFIG_SETS_FLAGS = (reproduce_movielens,)


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
    typed.add_command(sub, "train-teacher", train_teacher)
    typed.add_command(sub, "distill", distill)
    typed.add_command(sub, "export", export)
    typed.add_command(sub, "compare", compare)
    p = sub.add_parser("reproduce", help="reproduce the paper's experiments")
    # one parser per experiment: each offers only the flags it accepts
    experiments = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    typed.add_command(experiments, "movielens", reproduce_movielens)
    for name in ("cifar10", "cifar100"):
        typed.add_command(experiments, name, reproduce_cifar, fixed={"dataset": name},
                          help=f"{name.upper()} classification (ViT student; ViT and "
                               "CLIP-style teachers)")
    typed.add_command(experiments, "suite", reproduce_suite,
                      help="tables no recipe was tuned on: compare on each (docs/suite.md)")
    typed.add_command(sub, "summarize", summarize)
    typed.add_command(sub, "report", report)
    typed.add_command(sub, "bench", bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from diversedistill.runs import interrupt, rundir

    args = build_parser().parse_args(argv)
    prefix = f"diversedistill {args.command}"
    try:
        with rundir.session(), interrupt.handle_signals():
            return typed.call(args, config_sets_flags=args._command in CONFIG_SETS_FLAGS)
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
    reason = reasons.get(err.errno or 0, err.strerror or str(err) or type(err).__name__)
    where = err.filename if err.filename is not None else None
    return f"{where}: {reason}" if where is not None else reason
