"""The divergence guard: a loss term that turns non-finite or explodes stops the run with
one sentence naming the term, the epoch, the step and the setting, and leaves the run's
last good checkpoint whole."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diversedistill.interface import HookedStudent
from diversedistill.loop.contract import NamedRows
from diversedistill.loop.divergence import Diverged, DivergenceGuard
from diversedistill.losses import task_loss
from diversedistill.methods.base import Method
from diversedistill.training import TrainConfig, fit


class Blowing(Method):
    """The student alone, plus a 'distill' term that is tame until ``at`` steps and then
    ``value`` (NaN, or far above the whole first epoch's loss)."""

    needs_teachers = False
    name = "blowing"

    def __init__(self, at: int, value: float):
        super().__init__()
        self.at, self.value, self.steps = at, value, 0

    def forward(self, student, committee, batch):
        task = task_loss(student.predict(batch), batch["target"])
        self.steps += 1
        distill = torch.tensor(0.05 if self.steps <= self.at else self.value)
        return {"loss": task + 0 * distill, "task": task.detach(), "distill": distill}


def loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    rows = NamedRows(TensorDataset(x, x.sum(1)), ("x", "target"))
    return (DataLoader(rows, batch_size=16, shuffle=True, generator=g),
            DataLoader(rows, batch_size=64), None)


def student():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))
    return HookedStudent(model, "0", "2", call=lambda m, b: m(b["x"]))


@pytest.mark.parametrize("value, how", [(float("nan"), "non-finite"),
                                        (1e5, "x the first epoch's mean loss")])
def test_a_diverging_term_stops_the_run_naming_term_epoch_step_and_setting(tmp_path, value,
                                                                            how):
    train, val, _ = loaders()
    cfg = TrainConfig(max_epochs=5, patience=5, progress=False, checkpoint_every_n_steps=0)
    with pytest.raises(Diverged) as err:  # 4 steps an epoch: step 9 is epoch 2's second
        fit(student(), Blowing(at=9, value=value), None, train, val, None, cfg, tmp_path / "r")
    message = str(err.value)
    assert "the distill loss diverged at epoch 2, step 9" in message
    assert how in message and "lam" in message and "\n" not in message
    checkpoints = tmp_path / "r" / "checkpoints"
    kept = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert kept["epoch"] == 1  # the end of the last good epoch, whole and loadable
    assert not list(checkpoints.glob(".*.tmp"))  # nothing half-written


def test_a_term_tame_in_its_own_units_passes_and_a_resumed_guard_judges_as_before():
    guard = DivergenceGuard()
    for step in range(4):
        guard.check({"task": 40.0, "importance": 1e-4, "alpha": 1e9}, 0, step)
    # 5000x its own start, but small against the loss (40): a term that grew, not one
    # that diverged
    guard.check({"task": 30.0, "importance": 0.5}, 1, 4)
    resumed = DivergenceGuard()
    resumed.restore(guard.state())
    with pytest.raises(Diverged, match="the task loss diverged at epoch 3, step 9.*lr"):
        resumed.check({"task": 4.1e4}, 3, 9)
    resumed.check({"task": 3.9e4}, 3, 10)  # just under 1000x 40: still training
