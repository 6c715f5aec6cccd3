"""Early stopping past the constant prediction: epochs at the best constant's score do not
count toward patience, and a student that learns stops exactly as under plain patience."""

from __future__ import annotations

import csv

import pytest
import torch
from test_contract import named_loader, rows, student
from torch import nn

from diversedistill.interface import HookedStudent
from diversedistill.loop.constant_plateau import ValidationTargets, learned_share
from diversedistill.methods import StudentOnly
from diversedistill.training import TrainConfig, fit


class ConstantNet(nn.Module):
    """Predicts ``value`` whatever its input (its layer is multiplied by zero), so its
    validation metric is the constant's in every epoch."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(8, value.shape[-1] if value.dim() else 1)
        self.register_buffer("value", value)

    def forward(self, x):
        out = self.value + 0.0 * self.head(self.body(x))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def train(tmp_path, model, data, past_constant: bool, name: str, lr: float = 1e-3,
          max_epochs: int = 6, patience: int = 1):
    cfg = TrainConfig(max_epochs=max_epochs, patience=patience, progress=False, lr=lr,
                      patience_past_constant=past_constant)
    loader = named_loader(data)
    model = HookedStudent(model, "body", "head", call=lambda m, b: m(b["x"]))
    return fit(model, StudentOnly(), None, loader, loader, None, cfg, tmp_path / name)


def test_the_constant_score_is_the_targets_variance_or_majority_share():
    targets = ValidationTargets()
    values = torch.tensor([1.0, 2.0, 4.0, 5.0])
    targets.update(values, values[:2])
    targets.update(values, values[2:])
    assert targets.score("mse") == pytest.approx(float(values.var(unbiased=False)))
    classes = ValidationTargets()
    classes.update(torch.zeros(5, 3), torch.tensor([2, 2, 0, 2, 1]))
    assert classes.score("accuracy") == pytest.approx(0.6)
    assert ValidationTargets().score("mse") is None
    assert learned_share("mse", 0.5, 2.0) == pytest.approx(0.75)
    assert learned_share("accuracy", 0.6, 0.6) == pytest.approx(0.0)
    assert learned_share("accuracy", 1.0, 1.0) is None  # a perfect constant: nothing to learn


@pytest.mark.parametrize("classes", [None, 2])
def test_epochs_at_the_constant_do_not_count_toward_patience(tmp_path, capsys, classes):
    data = rows(classes=classes)
    target = data.tensors[1]
    if classes:  # the majority class, always
        value = torch.zeros(classes)
        value[int(torch.bincount(target).argmax())] = 5.0
    else:  # the targets' mean, always: exactly the best constant
        value = target.mean()
    plain = train(tmp_path, ConstantNet(value), data, False, "plain")
    assert plain.epochs == 2 and plain.epochs_at_constant == 0  # patience 1 ran out
    past = train(tmp_path, ConstantNet(value), data, True, "past")
    assert past.epochs == 6 and past.epochs_at_constant == 6  # waited up to max_epochs
    assert "never did better than a constant prediction" in capsys.readouterr().err


def test_a_student_that_learns_stops_as_under_plain_patience(tmp_path):
    data = rows()
    torch.manual_seed(0)
    plain = train(tmp_path, student(1).model, data, False, "plain", lr=0.05)
    torch.manual_seed(0)
    past = train(tmp_path, student(1).model, data, True, "past", lr=0.05)
    assert past.epochs_at_constant == 0
    assert (past.epochs, past.best_epoch, past.val) == (plain.epochs, plain.best_epoch, plain.val)
    assert plain.val < 0.5 * float(data.tensors[1].var(unbiased=False))  # it did learn


def test_a_run_that_max_epochs_cuts_while_improving_says_so(tmp_path, capsys):
    torch.manual_seed(0)
    cut = train(tmp_path, student(1).model, rows(), True, "cut", lr=0.05, max_epochs=3,
                patience=2)
    assert (cut.epochs, cut.best_epoch) == (3, 2)  # its last epoch was its best
    assert "max_epochs 3 ended the run while it was still improving" in capsys.readouterr().err
    data = rows()
    stopped = train(tmp_path, ConstantNet(data.tensors[1].mean()), data, False, "stopped")
    assert stopped.epochs == 2  # early stopping ended it: nothing was cut
    assert "still improving" not in capsys.readouterr().err


def test_every_epoch_logs_the_constant_score_beside_the_metric(tmp_path):
    """metrics.csv carries val_<metric>_constant, so a reader can tell the plateau without
    the data: here the targets' variance (MSE) in each of the 6 epochs."""
    data = rows()
    target = data.tensors[1]
    train(tmp_path, ConstantNet(target.mean()), data, True, "logged")
    with open(tmp_path / "logged" / "logs" / "metrics.csv", newline="") as f:
        logged = [float(r["val_mse_constant"]) for r in csv.DictReader(f)
                  if r.get("val_mse_constant")]
    assert logged == pytest.approx([float(target.var(unbiased=False))] * 6, rel=1e-5)
