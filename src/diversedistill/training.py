"""The one training loop, for every method: a LightningModule around (student, method).

Lightning's Trainer supplies the progress bar, checkpointing, loggers, early stopping and
devices. A method only computes its loss dict; the loop backpropagates ``loss``, logs the
rest, stops early on the task's validation metric (``val_mse`` for ratings,
``val_accuracy`` for classes: :data:`METRICS`) and restores the best epoch's weights.

The committee is held outside the module tree (a plain attribute, not a submodule), so
checkpoints, the optimizer and DDP see only what is trained: the student and the method's
own parameters. Each process moves its own committee to its own device.

Resuming (``fit(..., resume=True)``) continues from ``checkpoints/last.ckpt`` and ends with
the same weights and metrics as a run that was never interrupted: the batch order is a
function of (seed, epoch) and its position is in the checkpoint (``batch_order.py``), and
the random numbers of every training step (dropout, exploration) come from a generator
seeded with (seed, step, process), so nothing depends on what happened before the kill.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from diversedistill.committee import Committee
from diversedistill.diversedistill_config import MAX_LR
from diversedistill.errors import ConfigError
from diversedistill.interface import HookedStudent
from diversedistill.loop.constant_plateau import PastConstantStopping, ValidationTargets
from diversedistill.loop.contract import (
    check_batch,
    check_head,
    check_prediction,
    check_vectors,
    first_pass,
    metric_for,
)
from diversedistill.loop.divergence import SETTINGS as GUARDED
from diversedistill.loop.divergence import DivergenceGuard
from diversedistill.loop.epoch_lines import EpochLines, wants_lines
from diversedistill.methods.base import Method
from diversedistill.runs import interrupt, rundir
from diversedistill.runs.atomic import write_text_atomic
from diversedistill.runs.batch_order import mix_seed
from diversedistill.runs.checkpoints import (
    BEST,
    LAST,
    AtomicCheckpointIO,
    BestCheckpoint,
    LastCheckpoint,
    RunLogger,
    check_same_settings,
    read_checkpoint,
)

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
RUN_FILE = "run.json"  # the provenance of a run
RESULT_FILE = "result.json"  # a finished run's figures
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
STRATEGIES = ("auto", "ddp")  # auto: one process, or DDP when devices × nodes > 1


@dataclass
class TrainConfig:
    max_epochs: int = 40  # upper bound; early stopping usually ends sooner
    patience: int = 4  # epochs without a better validation MSE before stopping
    # patience counts only the epochs after the student has left the best constant
    # prediction (constant_plateau.py); False: Lightning's plain early stopping
    patience_past_constant: bool = True
    # the loaders decide the batch size; set, it is checked against the training loader's
    # (and recorded by the recipes that build loaders from it)
    batch_size: int | None = None
    lr: float = 1e-3  # the student's learning rate (AdamW)
    weight_decay: float = 1e-4  # AdamW decoupled weight decay of the student
    seed: int = 0
    accelerator: str = "cpu"  # "cpu", "gpu", "auto"
    devices: int = 1  # processes (one device each) per node
    num_nodes: int = 1
    strategy: str = "auto"  # "auto" or "ddp"
    checkpoint_every_n_steps: int = 50  # checkpoints/last.ckpt; 0: only at the end of epochs
    progress: bool = True  # Lightning's progress bar
    schedule: str = "constant"  # learning rate per step: "constant", or "cosine" decay to 0
    warmup_epochs: float = 0.0  # linear warm-up before the schedule (in epochs)
    # Lightning's precision: "32-true", or "bf16-mixed" (autocast to bfloat16 where safe,
    # weights and optimizer state in float32: the GPU setting of configs/vision/)
    precision: str = "32-true"
    # TensorBoard event files in run_dir/tensorboard/ beside logs/metrics.csv (needs the
    # tensorboard or tensorboardX package: pip install "diversedistill[tensorboard]")
    tensorboard: bool = False

    # settings that may change between a run and its resume (where and how it runs)
    PLACEMENT = ("accelerator", "devices", "num_nodes", "strategy", "checkpoint_every_n_steps",
                 "progress", "precision", "tensorboard")

    def __post_init__(self):
        for name in ("max_epochs", "batch_size", "devices", "num_nodes"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "warmup_epochs"):  # NaN passes every comparison
            if not math.isfinite(float(getattr(self, name))):
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not 0 < self.lr <= MAX_LR:
            raise ConfigError(f"lr must be in (0, {MAX_LR:g}], got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must not be negative, got {self.weight_decay}")
        if self.patience < 0 or self.checkpoint_every_n_steps < 0:
            raise ConfigError("patience and checkpoint_every_n_steps must not be negative")
        if self.accelerator not in ACCELERATORS:
            raise ConfigError(f"unknown accelerator {self.accelerator!r}; "
                              f"choose one of {ACCELERATORS}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose one of {STRATEGIES}")

        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be non-negative, got {self.warmup_epochs}")

    @property
    def processes(self) -> int:
        return self.devices * self.num_nodes


# name -> (better, per-row score of predictions against targets). The loop monitors
# ``val_<name>``; "mse" is for ratings (predictions [B]), "accuracy" for classes (logits [B, C]).
METRICS: dict[str, tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "mse": ("min", lambda prediction, target: (prediction - target).pow(2)),
    "accuracy": ("max", lambda prediction, target: (prediction.argmax(-1) == target).float()),
}


@dataclass
class FitResult:
    val: float  # the metric on the validation part, at the best epoch
    test: float | None
    seconds: float  # wall time of training (all epochs, validation included)
    epochs: int  # epochs run
    best_epoch: int
    run_dir: Path
    rank: int = 0  # under DDP only rank 0 evaluates and reports; other ranks get NaNs
    metric: str = "mse"
    epochs_at_constant: int = 0  # epochs whose validation metric was the constant prediction's

    def summary(self) -> dict[str, float | int | None]:
        """The figures a run reports (printed by ``distill``, recorded in its export)."""
        return {f"val_{self.metric}": self.val, f"test_{self.metric}": self.test,
                "seconds": self.seconds, "epochs": self.epochs, "best_epoch": self.best_epoch}

    def _named(self, name: str, value):
        if self.metric != name:
            raise AttributeError(f"this run reports {self.metric}, not {name}")
        return value

    @property
    def val_mse(self) -> float:
        return self._named("mse", self.val)

    @property
    def test_mse(self) -> float | None:
        return self._named("mse", self.test)

    @property
    def val_accuracy(self) -> float:
        return self._named("accuracy", self.val)

    @property
    def test_accuracy(self) -> float | None:
        return self._named("accuracy", self.test)


class DistillationTask(L.LightningModule):
    def __init__(self, student: HookedStudent, method: Method, committee: Committee | None,
                 cfg: TrainConfig, clamp: tuple[float, float] | None = None, metric: str = "mse"):
        super().__init__()
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
        self.metric = metric
        self.student, self.method, self.cfg, self.clamp = student, method, cfg, clamp
        self.__dict__["committee"] = committee  # not a submodule: never checkpointed or synced
        self.settings: dict = {}  # what a resumed run must share with this one (run_settings)
        # the best constant prediction's validation score, from the first validation pass
        self.val_targets: ValidationTargets | None = ValidationTargets()
        self.constant: float | None = None
        self.guard = DivergenceGuard()  # a non-finite or exploding term stops the run

    def on_fit_start(self) -> None:
        if self.committee is not None:  # in every process, to that process's device
            self.committee.to(self.device)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Set per step, not per epoch: a run resumed mid-epoch never sees an epoch start.
        self.method.epoch = self.current_epoch
        # The step's random numbers depend on (seed, step, process) only, so a resumed run
        # draws what the uninterrupted run drew, and DDP processes draw different masks.
        torch.manual_seed(mix_seed(self.cfg.seed, self.global_step, self.global_rank))

    def training_step(self, batch, batch_idx):
        out = self.method(self.student, self.committee, batch)
        # before the optimizer steps on it: the weights stay those of the last good step
        self.guard.check(self._terms(out), self.current_epoch, self.global_step)
        size = batch["target"].shape[0]
        # sync_dist: under DDP the logged figure is the mean over processes (logging only)
        self.log_dict({f"train/{k}": v for k, v in out.items() if k != "loss"},
                      on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        self.log("train/loss", out["loss"].detach(), on_step=False, on_epoch=True, batch_size=size,
                 prog_bar=True, sync_dist=True)
        return out["loss"]

    def _terms(self, out: dict) -> dict[str, float]:
        """The step's loss terms as numbers, read in one transfer; under DDP their mean over
        the processes (a NaN anywhere reaches every process), so that every process stops
        at the same step rather than one waiting for the others forever."""
        names = [k for k in out if k in GUARDED]
        if not names:
            return {}
        values = torch.stack([out[k].detach().float().reshape(()) for k in names])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(values)
            values = values / torch.distributed.get_world_size()
        return dict(zip(names, values.tolist()))

    def on_train_epoch_end(self) -> None:
        for name, value in self.method.epoch_stats().items():
            self.log(f"train/{name}", value, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["run_settings"] = self.settings
        checkpoint["constant_score"] = self.constant
        checkpoint["divergence_guard"] = self.guard.state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.constant = checkpoint.get("constant_score")
        self.guard.restore(checkpoint.get("divergence_guard"))
        if self.constant is not None:  # known: the resumed run does not count targets again
            self.val_targets = None

    def constant_score(self) -> float | None:
        """The best constant prediction's validation metric (None before the first
        validation pass has ended)."""
        if self.constant is None and self.val_targets is not None:
            return self.val_targets.score(self.metric)
        return self.constant

    def served_prediction(self, batch) -> torch.Tensor:
        prediction = self.student.predict(batch)
        return prediction.clamp(*self.clamp) if self.clamp else prediction

    def validation_step(self, batch, batch_idx):
        prediction = self.served_prediction(batch)
        if self.val_targets is not None:  # the first pass only: the targets never change
            self.val_targets.update(prediction, batch["target"])
        score = METRICS[self.metric][1](prediction, batch["target"]).mean()
        # every process scores the whole validation set (it is not sharded), so the mean
        # over processes is the same number: early stopping agrees everywhere
        self.log(f"val_{self.metric}", score, on_epoch=True, batch_size=batch["target"].shape[0],
                 prog_bar=True, sync_dist=True)
        self.method.observe_validation(self.student, self.committee, batch)

    def on_validation_epoch_end(self) -> None:
        if self.val_targets is not None:
            self.constant, self.val_targets = self.val_targets.score(self.metric), None
        if self.constant is not None:
            # the best constant prediction's score beside val_<metric> in every epoch's row:
            # a reader of metrics.csv (the tables, the report) can then tell the epochs a
            # student sat at the constant, without the data (constant_plateau.py)
            self.log(f"val_{self.metric}_constant", self.constant, sync_dist=True)
        # the method's own diagnostics (DiverseDistill: what each teacher's answer carries);
        # every process saw the same validation rows: the mean over processes is the value
        for name, value in self.method.validation_stats().items():
            self.log(name, value, sync_dist=True)

    def configure_optimizers(self):
        optimizer = make_optimizer(self.student, self.method, self.cfg.lr, self.cfg.weight_decay)
        if self.cfg.schedule == "constant" and not self.cfg.warmup_epochs:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.cfg.warmup_epochs * total / self.cfg.max_epochs)
        cosine = self.cfg.schedule == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


FUSED_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW kernel


def make_optimizer(student: torch.nn.Module, method: Method, lr: float,
                   weight_decay: float) -> torch.optim.AdamW:
    """One AdamW, two groups: the student at ``lr`` with ``weight_decay``; the method's own
    trainable parameters (DiverseDistill's module) at the method's rate, without decay.

    Fused (one kernel for every parameter) wherever torch has the kernel: the same update
    rule, and on CPU about 7× cheaper per step than the per-tensor loop. That matters for a
    method that trains 0.8M module parameters next to a 0.14M-parameter student."""
    groups: list[dict[str, Any]] = [{"params": list(student.parameters()), "lr": lr,
                                     "weight_decay": weight_decay}]
    own = [p for p in method.parameters() if p.requires_grad]
    if own:
        groups.append({"params": own, "lr": method.learning_rate() or lr, "weight_decay": 0.0})
    params = [p for g in groups for p in g["params"]]
    fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, fused=fused or None)


@torch.no_grad()
def evaluate(task: DistillationTask, loader: DataLoader) -> float:
    """The task's metric (mean over rows) of the student's predictions over a whole loader."""
    task.eval()
    score = METRICS[task.metric][1]
    total, count = 0.0, 0
    for batch in loader:
        batch = {k: v.to(task.device) for k, v in batch.items()}
        total += float(score(task.served_prediction(batch), batch["target"]).sum())
        count += batch["target"].shape[0]
    return total / count


def run_settings(cfg: TrainConfig, method: Method, committee: Committee | None,
                 train: DataLoader, val: DataLoader) -> dict:
    """Everything that decides a run's result; a checkpoint resumes only a run that matches."""
    settings = {f"train.{k}": v for k, v in dataclasses.asdict(cfg).items()
                if k not in TrainConfig.PLACEMENT}
    settings.update({"method": method.name,
                     # the student alone learns from no teacher, whatever it was handed
                     "teachers": "+".join(committee.names)
                     if committee and method.needs_teachers else "",
                     "train rows": len(train.dataset),  # type: ignore[arg-type]
                     "train batch": getattr(train.sampler, "batch_size", train.batch_size),
                     "val rows": len(val.dataset)})  # type: ignore[arg-type]
    method_cfg = getattr(method, "cfg", None)
    if dataclasses.is_dataclass(method_cfg) and not isinstance(method_cfg, type):
        settings.update({f"{method.name}.{k}": v
                         for k, v in dataclasses.asdict(method_cfg).items()})
    return settings


def is_global_zero() -> bool:
    """Rank 0 of the whole job, judged from the launcher's environment: a DDP process
    started by Lightning or torchrun has a rank in it before any process group exists."""
    return all(int(os.environ.get(k, "0")) == 0
               for k in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"))


def fit(student: HookedStudent, method: Method, committee: Committee | None,
        train: DataLoader, val: DataLoader, test: DataLoader | None, cfg: TrainConfig,
        run_dir: str | Path, clamp: tuple[float, float] | None = None, resume: bool = False,
        callbacks: Sequence[Callback] = (), metric: str | None = None,
        provenance: dict | None = None, notices: Sequence[str] = ()) -> FitResult:
    """Train ``student`` with ``method`` until the validation ``metric`` (:data:`METRICS`)
    stops improving; restore the best epoch; report the metric on validation and test.

    Batches are dicts of tensors with a [B] ``"target"``: floating-point for regression
    (predictions [B], ``metric`` "mse"), integer class labels for classification
    (predictions [B, classes], "accuracy"). ``metric`` None takes the target's; the first
    batch is checked against this contract before the first step
    (:mod:`diversedistill.loop.contract`).

    ``resume``: continue from ``run_dir/checkpoints/last.ckpt`` when there is one (a fresh
    start otherwise). Without it, a run in an old directory starts from nothing.
    """
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    writer = is_global_zero()  # the other DDP processes never write here
    if writer:  # before anything else: a directory of the user's own files is never touched
        rundir.check_owned(run_dir, kind="run")
        if not (resume and (checkpoints / LAST).is_file()):  # a fresh run will clear it
            rundir.check_clearable(run_dir)
    batch_size = getattr(train.sampler, "batch_size", train.batch_size)
    if batch_size is not None and batch_size < cfg.processes:  # every process needs rows
        raise ConfigError(f"a batch of {batch_size} rows cannot be shared by {cfg.processes} "
                          "processes; use a batch size of at least the number of processes")
    if cfg.batch_size is not None and batch_size is not None and cfg.batch_size != batch_size:
        raise ConfigError(f"TrainConfig.batch_size is {cfg.batch_size} but the training loader "
                          f"yields batches of {batch_size}; the loader decides, so leave "
                          "batch_size unset or make the two agree")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    example = next(iter(train))
    check_batch(example)  # before anything runs: one sentence, not a KeyError mid-epoch
    metric = metric_for(example["target"], metric)
    with torch.no_grad():  # in eval mode: no dropout, so no random number is drawn here
        student.eval()
        if method.needs_teachers:  # the question point and z are read: one vector per row
            out = first_pass("the student", lambda: student(example), example)
            check_vectors("the student", **{
                "question point": (getattr(student, "question_at", "h"), out.h),
                "head input": (getattr(student, "head_path", "z"), out.z)})
            prediction = out.prediction
            check_head("the student", getattr(student, "head_path", "head"),
                       lambda: student.frozen_head(out.z), prediction)
        else:  # the student alone: only its prediction is ever read
            prediction = first_pass("the student", lambda: student.predict(example), example)
        check_prediction("the student", prediction, example["target"])
        student.train()
    if method.needs_teachers:
        if committee is None or len(committee) == 0:
            raise ConfigError(f"method {method.name!r} needs at least one teacher")
        committee.probe(example)  # a teacher that cannot read the batch says so itself
    method.setup(student, committee, example)  # type: ignore[arg-type]  # None: no teachers
    task = DistillationTask(student, method, committee, cfg, clamp, metric)
    monitor, mode = f"val_{metric}", METRICS[metric][0]
    task.settings = {**run_settings(cfg, method, committee, train, val), **(provenance or {})}

    last = checkpoints / LAST
    resume_from = last if resume and last.is_file() else None
    keep_log_rows = None
    if resume_from is not None:  # checked before anything is written
        saved = read_checkpoint(resume_from)
        check_same_settings(resume_from, saved.get("run_settings"), task.settings)
        keep_log_rows = int(saved.get("log_rows", 0))
        del saved

    best = BestCheckpoint(dirpath=checkpoints, filename=BEST.removesuffix(".ckpt"),
                           monitor=monitor, mode=mode, save_top_k=1)
    if cfg.patience_past_constant:
        stopper: EarlyStopping = PastConstantStopping(
            metric, DistillationTask.constant_score, mode=mode, patience=cfg.patience)
    else:
        stopper = EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # a bar written to a file or pipe shows nothing until the end: plain lines instead
    lines = wants_lines(cfg.progress)
    if lines:
        callbacks = [*callbacks, EpochLines(metric)]
    try:  # built before anything is removed: a Trainer that cannot run deletes nothing
        trainer = L.Trainer(
            max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices,
            num_nodes=cfg.num_nodes, strategy=_strategy(cfg, method),
            precision=cfg.precision,  # type: ignore[arg-type]  # checked by TrainConfig
            plugins=[AtomicCheckpointIO()],
            callbacks=[stopper, best, LastCheckpoint(last, cfg.checkpoint_every_n_steps),
                       *callbacks],
            logger=[RunLogger(run_dir, keep_rows=keep_log_rows), *_tensorboard(cfg, run_dir)],
            # every process walks its own shard of each batch (batch_order.py): no sampler swap
            use_distributed_sampler=False,
            enable_progress_bar=cfg.progress and not lines, enable_model_summary=False,
            deterministic=True,
            num_sanity_val_steps=0, log_every_n_steps=50,
        )
    except (MisconfigurationException, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot run on --accelerator {cfg.accelerator} with "
                          f"--devices {cfg.devices}: {first}") from None
    aside = None  # the previous run's outputs, kept until this run has a checkpoint
    with contextlib.ExitStack() as stack:
        if writer:
            stack.enter_context(rundir.locked(run_dir))
            if resume_from is None:  # a new run in an old directory starts from nothing
                replaced = rundir.previous_outputs(run_dir)
                if replaced:  # never without a word: the old student goes with it
                    shown = ", ".join(replaced[:6]) + (", ..." if len(replaced) > 6 else "")
                    print(f"note: {run_dir} held an earlier run ({shown}); this run replaces "
                          "it (--resume / resume=True continues it instead)", file=sys.stderr)
                aside = rundir.set_aside(run_dir)
            elif checkpoints.is_dir():
                for partial in checkpoints.glob(".*.tmp"):  # a write cut short by the kill
                    partial.unlink(missing_ok=True)
            # what Lightning writes itself, without atomic.py recording it (logs/metrics.csv)
            rundir.claim_names(run_dir, RUN_FILE, "checkpoints", "logs", "tensorboard",
                               "result.json", "importance.csv", "student")
            # what this run was made from, readable without a checkpoint; `export` checks
            # that the best checkpoint belongs to it
            write_text_atomic(run_dir / RUN_FILE, json.dumps(task.settings, indent=2))
            for line in notices:
                print(line, file=sys.stderr)
        try:
            result = _train(trainer, task, train, val, test, resume_from, best, run_dir, metric)
        except BaseException:
            # failed in its first steps (a value training cannot survive, a student that
            # breaks): nothing of this run is worth more than the run it would replace
            if aside is not None and not any(checkpoints.glob("*.ckpt")):
                rundir.restore(run_dir, aside)
                print(f"note: {run_dir}: the earlier run was put back", file=sys.stderr)
            raise
        finally:
            if aside is not None:
                rundir.discard(aside)
        if writer and result.rank == 0:
            _leave_result(result, method, student, committee, test if test is not None else val)
    at_constant_throughout = False
    if isinstance(stopper, PastConstantStopping):
        result.epochs_at_constant = stopper.epochs_at_constant
        # only where plain patience would have ended the run: a short run is not a failure
        at_constant_throughout = stopper.epochs_at_constant >= result.epochs > cfg.patience
        if writer and at_constant_throughout:
            print(f"warning: {run_dir}: the student never did better than a constant "
                  f"prediction (val_{metric} {result.val:.4f} after {result.epochs} epochs); "
                  "check its learning rate, inputs and the method's weights", file=sys.stderr)
    # max_epochs is a budget, counted from the first epoch (the plateau at the constant
    # included): a run whose last epoch was still its best may have been cut short. A budget
    # no longer than patience is a short run asked for, not a cut.
    if (writer and not at_constant_throughout and result.epochs >= cfg.max_epochs > cfg.patience
            and result.best_epoch == result.epochs - 1):
        print(f"warning: {run_dir}: max_epochs {cfg.max_epochs} ended the run while it was "
              f"still improving (best epoch {result.best_epoch}); a larger max_epochs may "
              "give a better student", file=sys.stderr)
    return result


def _train(trainer, task, train, val, test, resume_from, best, run_dir, metric) -> FitResult:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        # Lightning 2.6 still calls a torch pytree API that torch 2.13 deprecates
        warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)
        # a resumed run's directory holds its own checkpoints (a fresh run's was emptied)
        warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
        # an epoch of fewer steps than the logging interval: the epoch's means are logged
        # anyway (on_epoch=True), so the warning tells the user nothing
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        try:  # a signal is only noted here; LastCheckpoint saves and stops after the step
            with interrupt.deferred():
                trainer.fit(task, train_dataloaders=train, val_dataloaders=val,
                            ckpt_path=resume_from, weights_only=True)
        except SIGTERMException:  # Lightning's own stop (in validation): not a success
            raise interrupt.Interrupted(signal.SIGTERM, trainer.current_epoch,
                                        trainer.global_step) from None
    signum = interrupt.pending()
    if signum is not None:  # after the last step: the run is complete on disk
        raise interrupt.Interrupted(signum, trainer.current_epoch, trainer.global_step)
    seconds = time.perf_counter() - start
    # epochs trained: counted from the loop's progress, which a resumed run restores even
    # when it has nothing left to train (``current_epoch`` would be one short then)
    epochs = trainer.fit_loop.epoch_progress.current.processed
    if trainer.global_rank != 0:  # rank 0 evaluates and reports; it may be the only one
        nan = math.nan            # that can read the checkpoints (multi-node, local disks)
        return FitResult(nan, nan, seconds, epochs, -1, run_dir, trainer.global_rank, metric)
    best_state = read_checkpoint(best.best_model_path, map_location=task.device)
    # the best checkpoint must be this run's: not one copied in from another run
    check_same_settings(Path(best.best_model_path), best_state.get("run_settings"), task.settings)
    task.load_state_dict(best_state["state_dict"])
    return FitResult(
        val=evaluate(task, val),
        test=evaluate(task, test) if test is not None else None,
        seconds=seconds, epochs=epochs, best_epoch=int(best_state["epoch"]),
        run_dir=run_dir, metric=metric,
    )


def _leave_result(result: FitResult, method: Method, student: HookedStudent,
                  committee: Committee | None, rows: DataLoader) -> None:
    """What a finished run leaves beside its checkpoints, whichever path trained it (the
    command line, a reproduction or a user's own ``fit``): ``result.json`` (its figures,
    which ``report`` and ``summarize`` read) and, for DiverseDistill, ``importance.csv``
    (α on fixed rows of ``rows``, the test loader when there is one)."""
    from diversedistill.methods.importance import record_importance

    run_dir = Path(result.run_dir)
    write_text_atomic(run_dir / RESULT_FILE, json.dumps(
        {**result.summary(), "metric": result.metric}, indent=2))
    record_importance(method, student, result, rows, committee.names if committee else [],
                      run_dir)


def _tensorboard(cfg: TrainConfig, run_dir: Path) -> list:
    """Lightning's TensorBoard logger when asked for; its package missing is one sentence,
    said before the run directory is touched."""
    if not cfg.tensorboard:
        return []
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        raise ConfigError("tensorboard=True needs the tensorboard or tensorboardX package: "
                          'pip install "diversedistill[tensorboard]"')
    from lightning.pytorch.loggers import TensorBoardLogger

    return [TensorBoardLogger(str(run_dir), name="tensorboard", version="")]


def _strategy(cfg: TrainConfig, method: Method):
    if cfg.processes == 1 and cfg.strategy == "auto":
        return "auto"
    # DDP wraps the student and the method's parameters only (the committee is not in the
    # module tree), so teachers get no gradient buckets and no synchronisation.
    return DDPStrategy(find_unused_parameters=not method.uses_every_parameter())
