"""Distillation under Lightning's DDP: 2 CPU processes (gloo, localhost) against 1 process.

Tolerance: the 2-process run must match the 1-process run to ``TOLERANCE`` in validation and
test MSE. Each global batch of 32 rows is cut into two halves of 16, and DDP averages the
two halves' gradients, which is the full batch's gradient up to float rounding; the
student has no dropout here (processes draw different masks by design, data/order.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_child import ReportWrapping
from conftest import child_env, distill_command, write_tiny_committee

import diversedistill_recipes.movielens.rating_recipes as recsys
from diversedistill_recipes.cli import main

CHILD = Path(__file__).resolve().parents[1] / "cli_child.py"
TOLERANCE = 1e-4  # absolute, on val_mse and test_mse (MSE ≈ 1.2 here)
RUN = ["--no-progress", "--batch-size", "32", "--max-epochs", "3", "--patience", "2",
       "--d1", "4", "--d2", "8", "--hidden", "16"]


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    return write_tiny_committee(tmp_path_factory.mktemp("committee"))


def distill_args(committee, out: Path, *extra: str) -> list[str]:
    return distill_command(committee, out, *RUN, *extra)


@pytest.fixture
def clean_environment():
    """In-process DDP leaves rank and port variables in os.environ and its process group
    open until exit; later tests get neither."""
    import torch.distributed as dist

    saved = dict(os.environ)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)


def test_two_processes_match_one_and_keep_teachers_out_of_ddp(committee, tmp_path, capsys,
                                                               monkeypatch):
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, str(CHILD), *distill_args(committee, tmp_path / "ddp"),
         "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
        capture_output=True, text=True, timeout=600,
        env=child_env(DD_TEST_NO_DROPOUT="1", DD_TEST_REPORT_DIR=str(reports)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout.strip().splitlines()[-1])

    monkeypatch.setattr(recsys, "STUDENT", recsys.RecommenderRecipe("mlp-s", {"dropout": 0.0}))
    capsys.readouterr()
    assert main(distill_args(committee, tmp_path / "single")) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    print(f"2 processes vs 1: val_mse {two['val_mse']!r} vs {one['val_mse']!r}, "
          f"test_mse {two['test_mse']!r} vs {one['test_mse']!r}", file=sys.stderr)
    assert (two["epochs"], two["best_epoch"]) == (one["epochs"], one["best_epoch"])
    assert abs(two["val_mse"] - one["val_mse"]) <= TOLERANCE
    assert abs(two["test_mse"] - one["test_mse"]) <= TOLERANCE

    ranks = [json.loads((reports / f"rank-{r}.json").read_text()) for r in range(2)]
    for rank in ranks:
        assert rank["ddp"] and rank["world_size"] == 2
        assert rank["teacher_parameters"] > 0 and rank["teacher_parameters_in_wrapper"] == 0
        assert rank["teacher_parameters_with_grad"] == 0
        assert rank["steps"] == 3 * 15  # the same optimizer steps as one process takes
    # only rank 0 exports; the other process wrote nothing of its own
    assert (tmp_path / "ddp" / "student" / "model.safetensors").is_file()


def test_gated_teachers_under_ddp_are_not_an_unused_parameter_error(
        committee, tmp_path, capsys, monkeypatch, clean_environment):
    """After warm-up, τ = 0.9 with no exploration skips every teacher pass, so the answer and
    question MLPs get no gradient: DDP must be told to expect unused parameters. The real
    Lightning DDP wrapper, in one process (in-process, fast)."""
    import functools

    import diversedistill.training as training

    report = ReportWrapping(str(tmp_path / "report"))
    monkeypatch.setattr(training, "fit", functools.partial(training.fit, callbacks=[report]))
    args = distill_args(committee, tmp_path / "run", "--strategy", "ddp", "--max-epochs", "2",
                        "--tau", "0.9", "--explore", "0", "--warmup-epochs", "1")
    assert main(args) == 0
    seen = json.loads((tmp_path / "report" / "rank-0.json").read_text())
    assert seen["ddp"] and seen["teacher_parameters_in_wrapper"] == 0 and seen["steps"] == 30
    logged = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()
    header = logged[0].split(",")
    last = dict(zip(header, logged[-1].split(",")))
    assert float(last["train/skipped/ta"]) == 1.0  # epoch 2: no teacher was asked
