"""The vision command: ``reproduce cifar10`` and ``reproduce cifar100``."""

from __future__ import annotations

from dataclasses import replace

from diversedistill.config import from_dict, load_yaml
from diversedistill.errors import ConfigError
from diversedistill_recipes.cli import config_file
from diversedistill_recipes.cli.movielens_commands import DDFlags
from diversedistill_recipes.cli.options import Reproduction


def vision_tables(run: Reproduction, config: str | None):
    """The tables' protocol, with the experiment file's 'tables:' section (its grids replace
    the vision grids of the methods it names): what ``reproduce cifar10`` runs unless it is
    asked for ablations or for some methods' rows only (--methods)."""
    if not run.tables and (run.ablations or run.methods):
        return None
    if run.table_seeds < 1:
        raise ConfigError(f"--table-seeds must be at least 1, got {run.table_seeds}")
    data = load_yaml(config) if config else {}
    return config_file.tables_config(config, data if isinstance(data, dict) else {})


def reproduce_cifar(*, dataset: str, data_dir: str | None = None, split_seed: int = 0,
                    train_size: int | None = None, config: str | None = None,
                    run: Reproduction, diversedistill: DDFlags) -> int:
    """Classification on CIFAR (ViT student; ViT and CLIP-style teachers).

    Without --ablations or --methods it runs the comparison tables (Tables 3 and 4) with
    --seeds seeds. A config file is an experiment (docs/vision.md): its keys are the
    experiment's (its teachers, its committees), not this command's flags.

    Args:
        dataset: cifar10 or cifar100 (the subcommand)
        data_dir: directory of the CIFAR python batches or .npz (default:
            $DIVERSEDISTILL_DATA)
        split_seed: seed of the stratified validation hold-out
        train_size: use only this many training images (smoke runs)
        config: YAML experiment file: teachers, student, training, diversedistill:, tables:
        run: what to run and where
        diversedistill: DiverseDistill's settings over the experiment's
    """
    from diversedistill.methods import DiverseDistillConfig
    from diversedistill_recipes.cifar.reproduce_cifar import (
        experiment_for,
        reproduce_vision,
        vision_ablations,
    )

    run.check()
    tables = vision_tables(run, config)
    exp, dd = experiment_for(dataset, config)
    if train_size is not None:
        exp = replace(exp, train_size=train_size)
    dd.update(diversedistill)
    cfg = from_dict(DiverseDistillConfig, dd, config or "flags")
    # --tables names its seeds with --table-seeds; the default vision run with --seeds
    seeds = run.table_seeds if run.tables else run.seeds
    reproduce_vision(exp, data_dir, seeds, run.out, cfg, run.cache_dir, not run.no_progress,
                     split_seed=split_seed, workers=run.workers, methods=run.methods,
                     committees=run.committees,
                     variants=vision_ablations(exp.student.lr) if run.ablations else None,
                     tables=tables, resume=run.resume)
    return 0
