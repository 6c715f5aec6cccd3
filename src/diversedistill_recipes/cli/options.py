"""The groups of flags that several commands share, each a dataclass: one field per flag,
documented under ``Attributes:`` (the command's ``--help`` shows it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from diversedistill.errors import ConfigError
from diversedistill_recipes.cli.typed import Flag


@dataclass(frozen=True)
class MovieLensData:
    """MovieLens data

    Attributes:
        data_dir: MovieLens directory (default: $DIVERSEDISTILL_DATA, then the user cache,
            downloading if needed)
        release: MovieLens release (ml-100k, ml-1m, ...)
        split: 'random' (seeded 80/10/10) or an official ML-100K fold (u1..u5, ua, ub)
        split_seed: seed of the random split
    """

    data_dir: str | None = None
    release: str = "ml-100k"
    split: str = "random"
    split_seed: int = 0


@dataclass(frozen=True)
class Training:
    """training (defaults: the MovieLens recipe)

    Attributes:
        max_epochs: upper bound on epochs (default 40)
        patience: epochs without a better validation MSE (default 4)
        patience_past_constant: count patience only once the student does better than a
            constant prediction (default on; off: plain early stopping, see docs/design.md)
        batch_size: rows per optimizer step, over all processes
        checkpoint_every_n_steps: save checkpoints/last.ckpt every N steps and after every
            epoch (default 50; 0: after every epoch only)
        resume: continue from the run directory's last checkpoint, if it has one
        tensorboard: TensorBoard event files in <out>/tensorboard/ beside the CSV (default
            off; needs tensorboardX)
    """

    max_epochs: int | None = None
    patience: int | None = None
    patience_past_constant: bool | None = None
    batch_size: int | None = None
    checkpoint_every_n_steps: int | None = None
    resume: bool = False
    tensorboard: bool | None = None

    def overrides(self) -> dict:
        """The training settings given, for ``recipe.train_config(...)``."""
        names = ("max_epochs", "patience", "patience_past_constant", "checkpoint_every_n_steps",
                 "tensorboard")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def recipe(self, recipe):
        """The recipe with the command line's batch size, if it gave one."""
        from dataclasses import replace

        if self.batch_size is None:
            return recipe
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        return replace(recipe, batch_size=self.batch_size)


@dataclass(frozen=True)
class Devices:
    """devices (see README: several GPUs)

    Attributes:
        accelerator: cpu (default), gpu or auto
        devices: processes per node, one device each (default 1)
        num_nodes: machines taking part (default 1)
        strategy: auto (default: DDP when devices x nodes > 1) or ddp
    """

    accelerator: str | None = None
    devices: int | None = None
    num_nodes: int | None = None
    strategy: str | None = None

    def overrides(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class Reproduction:
    """reproduction

    Attributes:
        seeds: number of seeds
        committees: only the rows of these committees, e.g. lm+mlp-l or vit-l+clip
            (default: all)
        methods: only the distillation rows of these methods, e.g. fd (default: all; the
            reference, teacher and student rows always run)
        workers: students trained at a time, each in a single-threaded process (2 on a
            2-core CPU)
        resume: continue an interrupted run (tables, ablations, gating sweep or plain): keep
            the runs already in --out (results.csv, search.csv, sweep.csv) and run only the
            missing ones
        out: results directory (default results/<experiment>)
        cache_dir: teacher cache (default: the user cache directory)
        ablations: the ablations of DiverseDistill's choices on the committees (movielens:
            MLP-M + MLP-L and LM + MLP-L; cifar: vit-l+clip), new defaults against the first
            implementation's
        tables: the paper's comparison tables (movielens: Tables 3-5, claims 1-4; cifar:
            Tables 3 and 4, which plain 'reproduce cifar10' also runs, with --seeds): a
            validation search per method on seed 0, one knob at a time, then --table-seeds
            seeds; writes table*.md/.csv, raw.md/.csv, claims.md, search.csv/.md
        table_seeds: seeds of --tables (used instead of --seeds)
        no_progress: hide the progress bars
    """

    seeds: int = 3
    committees: Annotated[list[str] | None, Flag(metavar="TEACHERS")] = None
    methods: Annotated[list[str] | None, Flag(metavar="METHOD")] = None
    workers: int = 1
    resume: bool = False
    out: str | None = None
    cache_dir: str | None = None
    ablations: bool = False
    tables: bool = False
    table_seeds: int = 5
    no_progress: bool = False

    def check(self) -> None:
        """The counts, refused before anything runs (an empty --out or a file too)."""
        if self.out is not None:
            from diversedistill.runs.rundir import check_out

            check_out(self.out)
        for flag, value in (("--seeds", self.seeds), ("--workers", self.workers)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if self.tables and self.ablations:
            raise ConfigError("--tables and --ablations are separate runs: choose one")
        if self.tables and self.table_seeds < 1:
            raise ConfigError(f"--table-seeds must be at least 1, got {self.table_seeds}")
