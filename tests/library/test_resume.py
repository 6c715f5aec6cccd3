"""A run killed with SIGKILL resumes from its last checkpoint and ends bit-identical to a run
that was never interrupted (CPU, deterministic settings)."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
import torch
from conftest import distill_command, start_paused_child, write_tiny_committee
from safetensors.torch import load_file

from diversedistill.runs.batch_order import EpochBatches
from diversedistill.runs.rundir import mark
from diversedistill_recipes.cli import main

# 480 training rows in batches of 32: 15 steps per epoch, 60 in all; last.ckpt every 4 steps
# and after every epoch.
RUN = ["--no-progress", "--batch-size", "32", "--max-epochs", "4", "--patience", "2",
       "--checkpoint-every-n-steps", "4", "--d1", "4", "--d2", "8", "--hidden", "16"]


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    return write_tiny_committee(tmp_path_factory.mktemp("committee"))


def distill_args(committee, out: Path, *extra: str) -> list[str]:
    return distill_command(committee, out, *RUN, *extra)


def run_in_process(args, capsys) -> dict:
    capsys.readouterr()
    assert main(args) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def uninterrupted(committee, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(distill_args(committee, out)) == 0
    return out


def val_column(run: Path) -> list[str]:
    with (run / "logs" / "metrics.csv").open(newline="") as f:
        return [(r["epoch"], r["val_mse"]) for r in csv.DictReader(f) if r["val_mse"]]


def final_metrics(run: Path) -> dict:
    config = json.loads((run / "student" / "config.json").read_text())
    return {k: v for k, v in config["metrics"].items() if k != "seconds"}


def kill_when_paused(args: list[str], marker: Path, **pause: str) -> str:
    """Start the CLI in a child process, wait until it pauses where asked, SIGKILL it."""
    proc = start_paused_child(args, marker, **pause)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return marker.read_text()


@pytest.mark.parametrize("pause, where", [
    ({"DD_TEST_PAUSE_AT_STEP": "22"}, "step 22, epoch 1"),  # mid-epoch; last.ckpt is step 20
    ({"DD_TEST_PAUSE_AT_STEP": "31"}, "step 31, epoch 2"),  # last.ckpt is epoch 1's end
    ({"DD_TEST_PAUSE_IN_SAVE": "6"}, "inside write 6"),  # a half-renamed checkpoint
], ids=["mid-epoch", "after-epoch-end-checkpoint", "inside-checkpoint-write"])
def test_killed_run_resumes_bit_identical(committee, uninterrupted, tmp_path, capsys, pause, where):
    out = tmp_path / "run"
    seen = kill_when_paused(distill_args(committee, out), tmp_path / "paused", **pause)
    assert where in seen
    assert not (out / "student").exists()  # killed before it finished
    if "DD_TEST_PAUSE_IN_SAVE" in pause:  # the killed write left its temporary file
        assert list((out / "checkpoints").glob(".last.ckpt.*.tmp"))

    resumed = run_in_process(distill_args(committee, out, "--resume"), capsys)

    expected = final_metrics(uninterrupted)
    assert {k: v for k, v in resumed.items() if k != "seconds"} == expected
    assert final_metrics(out) == expected
    ours, theirs = load_file(str(out / "student" / "model.safetensors")), \
        load_file(str(uninterrupted / "student" / "model.safetensors"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert val_column(out) == val_column(uninterrupted)  # the log continues where it stopped
    assert not list(out.rglob("*.tmp"))


def test_resuming_a_finished_run_trains_nothing_more(committee, tmp_path, capsys):
    out = tmp_path / "run"
    # on the tiny release the student stays within 1% of the constant prediction's error
    # (with patience counted past it, this run trains all 30 epochs): plain patience here
    args = distill_args(committee, out, "--max-epochs", "30", "--patience", "0",
                        "--batch-size", "96", "--no-patience-past-constant")
    first = run_in_process(args, capsys)
    assert first["epochs"] < 30  # early stopping ended it: its decision is in last.ckpt
    before = (out / "checkpoints" / "last.ckpt").stat().st_mtime_ns, val_column(out)
    again = run_in_process([*args, "--resume"], capsys)
    assert {k: v for k, v in again.items() if k != "seconds"} == \
        {k: v for k, v in first.items() if k != "seconds"}
    assert ((out / "checkpoints" / "last.ckpt").stat().st_mtime_ns, val_column(out)) == before


def test_resume_refuses_a_checkpoint_of_other_settings(committee, tmp_path, capsys):
    out = tmp_path / "run"
    run_in_process(distill_args(committee, out, "--max-epochs", "1"), capsys)
    snapshot = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code = main(distill_args(committee, out, "--max-epochs", "1", "--lam", "0.123", "--resume"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    from diversedistill.methods import DiverseDistillConfig

    default = DiverseDistillConfig().lam
    assert ("last.ckpt: cannot resume, the run was started with "
            f"diversedistill.lam={default}") in err[0]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == snapshot  # nothing touched


def test_resume_refuses_a_corrupt_checkpoint_and_starts_fresh_without_one(committee, tmp_path,
                                                                           capsys):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    mark(out)  # a run directory of the tool's, whose checkpoint was replaced
    (out / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    code = main(distill_args(committee, out, "--max-epochs", "1", "--resume"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "last.ckpt: not a readable checkpoint" in err[0]
    (out / "checkpoints" / "last.ckpt").unlink()
    run_in_process(distill_args(committee, out, "--max-epochs", "1", "--resume"), capsys)
    assert (out / "student" / "model.safetensors").is_file()


def test_batch_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    a, b = EpochBatches(10, 3, shuffle=True, seed=7), EpochBatches(10, 3, shuffle=True, seed=7)
    b.set_epoch(1)
    list(b)
    b.set_epoch(2)
    a.set_epoch(2)  # b went through epoch 1 first; a did not
    assert list(a) == list(b)
    assert sorted(r for batch in a for r in batch) == list(range(10))
    it = iter(a)
    seen = [next(it), next(it)]
    state = a.state_dict()
    assert state == {"epoch": 2, "batches_done": 2}
    fresh = EpochBatches(10, 3, shuffle=True, seed=7)
    fresh.load_state_dict(state)
    fresh.set_epoch(2)
    assert seen + list(fresh) == list(a)
    fresh.set_epoch(3)  # the saved position belongs to epoch 2 only
    assert len(list(fresh)) == 4


def test_processes_share_each_batch_and_drop_a_last_batch_too_small_to_share(monkeypatch):
    import diversedistill.runs.batch_order as order

    single = list(EpochBatches(9, 4, shuffle=True, seed=0, shard=True))  # 4 + 4 + 1 rows
    shards = []
    for rank in range(2):
        monkeypatch.setattr(order, "process_rank_and_count", lambda r=rank: (r, 2))
        shards.append(list(EpochBatches(9, 4, shuffle=True, seed=0, shard=True)))
    assert len(shards[0]) == len(shards[1]) == 2  # the 1-row batch cannot feed 2 processes
    assert [x + y for x, y in zip(*shards)] == single[:2]
