"""The one training loop, for every method: a LightningModule around (student, method).

Lightning's Trainer supplies the progress bar, checkpointing, loggers, early stopping and
devices. A method only computes its loss dict; the loop backpropagates ``loss``, logs the
rest, stops early on the task's validation metric (``val_mse`` for ratings,
``val_accuracy`` for classes: :data:`METRICS`) and restores the best epoch's weights.

The committee is held outside the module tree (a plain attribute, not a submodule), so
checkpoints and the optimizer see only what is trained: the student and the method's own
parameters.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError
from diversedistill.interface import HookedStudent
from diversedistill.methods.base import Method


@dataclass
class TrainConfig:
    max_epochs: int = 40  # upper bound; early stopping usually ends sooner
    patience: int = 4  # epochs without a better validation MSE before stopping
    batch_size: int = 512
    lr: float = 1e-3  # the student's learning rate (AdamW)
    weight_decay: float = 1e-4  # AdamW decoupled weight decay of the student
    seed: int = 0
    accelerator: str = "cpu"  # "cpu", "gpu", "auto"
    devices: int = 1
    progress: bool = True  # Lightning's progress bar
    schedule: str = "constant"  # learning rate per step: "constant", or "cosine" decay to 0
    warmup_epochs: float = 0.0  # linear warm-up before the schedule (in epochs)

    def __post_init__(self):
        for name in ("max_epochs", "batch_size", "devices"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be non-negative, got {self.warmup_epochs}")


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
    metric: str = "mse"

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
        self.student, self.method, self.cfg, self.clamp = student, method, cfg, clamp
        self.metric = metric
        self.__dict__["committee"] = committee  # not a submodule: never checkpointed or synced

    def on_fit_start(self) -> None:
        if self.committee is not None:
            self.committee.to(self.device)

    def on_train_epoch_start(self) -> None:
        self.method.epoch = self.current_epoch

    def training_step(self, batch, batch_idx):
        out = self.method(self.student, self.committee, batch)
        size = batch["target"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in out.items() if k != "loss"},
                      on_step=False, on_epoch=True, batch_size=size)
        self.log("train/loss", out["loss"].detach(), on_step=False, on_epoch=True, batch_size=size,
                 prog_bar=True)
        return out["loss"]

    def on_train_epoch_end(self) -> None:
        for name, value in self.method.epoch_stats().items():
            self.log(f"train/{name}", value)

    def predict_ratings(self, batch) -> torch.Tensor:
        prediction = self.student.predict(batch)
        return prediction.clamp(*self.clamp) if self.clamp else prediction

    def validation_step(self, batch, batch_idx):
        score = METRICS[self.metric][1](self.predict_ratings(batch), batch["target"]).mean()
        self.log(f"val_{self.metric}", score, on_epoch=True, batch_size=batch["target"].shape[0],
                 prog_bar=True)

    def configure_optimizers(self):
        groups = [{"params": list(self.student.parameters()), "lr": self.cfg.lr,
                   "weight_decay": self.cfg.weight_decay}]
        own = [p for p in self.method.parameters() if p.requires_grad]
        if own:
            groups.append({"params": own, "lr": self.method.learning_rate() or self.cfg.lr,
                           "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups)
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


@torch.no_grad()
def evaluate(task: DistillationTask, loader: DataLoader) -> float:
    """The task's metric (mean over rows) of the student's predictions over a whole loader."""
    task.eval()
    score = METRICS[task.metric][1]
    total, count = 0.0, 0
    for batch in loader:
        batch = {k: v.to(task.device) for k, v in batch.items()}
        total += float(score(task.predict_ratings(batch), batch["target"]).sum())
        count += batch["target"].shape[0]
    return total / count


def evaluate_mse(task: DistillationTask, loader: DataLoader) -> float:
    """Mean squared error of the (clamped) student predictions over a whole loader."""
    if task.metric != "mse":
        raise ConfigError(f"this task reports {task.metric}, not mse")
    return evaluate(task, loader)


def fit(student: HookedStudent, method: Method, committee: Committee | None,
        train: DataLoader, val: DataLoader, test: DataLoader | None, cfg: TrainConfig,
        run_dir: str | Path, clamp: tuple[float, float] | None = None,
        metric: str = "mse") -> FitResult:
    """Train ``student`` with ``method`` until the validation ``metric`` (:data:`METRICS`)
    stops improving; restore the best epoch; report the metric on validation and test."""
    run_dir = Path(run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    example = next(iter(train))
    if method.needs_teachers:
        if committee is None or len(committee) == 0:
            raise ConfigError(f"method {method.name!r} needs at least one teacher")
        committee.probe(example)
    method.setup(student, committee, example)
    task = DistillationTask(student, method, committee, cfg, clamp, metric)
    monitor, mode = f"val_{metric}", METRICS[metric][0]
    # a new run in an old directory starts from nothing (no stale best checkpoint or log)
    for stale in (run_dir / "checkpoints", run_dir / "logs"):
        shutil.rmtree(stale, ignore_errors=True)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best",
                                 monitor=monitor, mode=mode, save_top_k=1)
    stopper = EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices,
        callbacks=[checkpoint, stopper], logger=CSVLogger(run_dir, name="logs", version=""),
        enable_progress_bar=cfg.progress, enable_model_summary=False, deterministic=True,
        num_sanity_val_steps=0, log_every_n_steps=50,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        # Lightning 2.6 still calls a torch pytree API that torch 2.13 deprecates
        warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)
        trainer.fit(task, train_dataloaders=train, val_dataloaders=val)
    seconds = time.perf_counter() - start
    best = torch.load(checkpoint.best_model_path, map_location=task.device, weights_only=True)
    task.load_state_dict(best["state_dict"])
    return FitResult(
        val=evaluate(task, val),
        test=evaluate(task, test) if test is not None else None,
        seconds=seconds, epochs=trainer.current_epoch, best_epoch=int(best["epoch"]),
        run_dir=run_dir, metric=metric,
    )
