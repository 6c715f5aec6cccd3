"""The one training loop, for every method: a LightningModule around (student, method).

Lightning's Trainer supplies the progress bar, checkpointing, loggers, early stopping and
devices. A method only computes its loss dict; the loop backpropagates ``loss``, logs the
rest, stops early on validation MSE and restores the best epoch's weights.

The committee is held outside the module tree (a plain attribute, not a submodule), so
checkpoints and the optimizer see only what is trained: the student and the method's own
parameters.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
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

    def __post_init__(self):
        for name in ("max_epochs", "batch_size", "devices"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")


@dataclass
class FitResult:
    val_mse: float
    test_mse: float | None
    seconds: float  # wall time of training (all epochs, validation included)
    epochs: int  # epochs run
    best_epoch: int
    run_dir: Path


class DistillationTask(L.LightningModule):
    def __init__(self, student: HookedStudent, method: Method, committee: Committee | None,
                 cfg: TrainConfig, clamp: tuple[float, float] | None = None):
        super().__init__()
        self.student, self.method, self.cfg, self.clamp = student, method, cfg, clamp
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
        error = (self.predict_ratings(batch) - batch["target"]).pow(2).mean()
        self.log("val_mse", error, on_epoch=True, batch_size=batch["target"].shape[0], prog_bar=True)

    def configure_optimizers(self):
        groups = [{"params": list(self.student.parameters()), "lr": self.cfg.lr,
                   "weight_decay": self.cfg.weight_decay}]
        own = [p for p in self.method.parameters() if p.requires_grad]
        if own:
            groups.append({"params": own, "lr": self.method.learning_rate() or self.cfg.lr,
                           "weight_decay": 0.0})
        return torch.optim.AdamW(groups)


@torch.no_grad()
def evaluate_mse(task: DistillationTask, loader: DataLoader) -> float:
    """Mean squared error of the (clamped) student predictions over a whole loader."""
    task.eval()
    total, count = 0.0, 0
    for batch in loader:
        batch = {k: v.to(task.device) for k, v in batch.items()}
        total += float((task.predict_ratings(batch) - batch["target"]).pow(2).sum())
        count += batch["target"].shape[0]
    return total / count


def fit(student: HookedStudent, method: Method, committee: Committee | None,
        train: DataLoader, val: DataLoader, test: DataLoader | None, cfg: TrainConfig,
        run_dir: str | Path, clamp: tuple[float, float] | None = None) -> FitResult:
    """Train ``student`` with ``method`` until validation MSE stops improving; restore the
    best epoch; report validation and test MSE."""
    run_dir = Path(run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    example = next(iter(train))
    if method.needs_teachers:
        if committee is None or len(committee) == 0:
            raise ConfigError(f"method {method.name!r} needs at least one teacher")
        committee.probe(example)
    method.setup(student, committee, example)
    task = DistillationTask(student, method, committee, cfg, clamp)
    # a new run in an old directory starts from nothing (no stale best checkpoint or log)
    for stale in (run_dir / "checkpoints", run_dir / "logs"):
        shutil.rmtree(stale, ignore_errors=True)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best",
                                 monitor="val_mse", mode="min", save_top_k=1)
    stopper = EarlyStopping(monitor="val_mse", mode="min", patience=cfg.patience)
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
        val_mse=evaluate_mse(task, val),
        test_mse=evaluate_mse(task, test) if test is not None else None,
        seconds=seconds, epochs=trainer.current_epoch, best_epoch=int(best["epoch"]),
        run_dir=run_dir,
    )
