"""Runs a user can trust with their files (issue 17): the tool deletes only what it owns,
checkpoints are verified before they are resumed or exported, teachers' data provenance
is checked, and signals end a run with a checkpoint, one line and the right exit status.

Each test builds its inputs from tiny generated data; a finished run is made once per
module and copied for the tests that damage it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import child_env, distill_command, write_tiny_committee
from diversedistill.cli import main

CHILD = Path(__file__).resolve().parent / "cli_child.py"
# 480 training rows in batches of 32: 15 steps per epoch; last.ckpt every 4 steps
RUN = ["--no-progress", "--batch-size", "32", "--max-epochs", "2", "--patience", "2",
       "--checkpoint-every-n-steps", "4", "--d1", "4", "--d2", "8", "--hidden", "16"]


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    return write_tiny_committee(tmp_path_factory.mktemp("committee"))


def distill_args(committee, out, *extra: str) -> list[str]:
    return distill_command(committee, Path(out) if out else out, *RUN, *extra)


@pytest.fixture(scope="module")
def finished(committee, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(distill_args(committee, out)) == 0
    return out


def copy_run(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def snapshot(root: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def start_child(args: list[str], marker: Path, **env: str) -> subprocess.Popen:
    """The CLI in a child process, paused after an optimizer step (cli_child.py)."""
    log = marker.with_suffix(".log")
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=out,
                                stderr=subprocess.STDOUT,
                                env=child_env(DD_TEST_MARKER=str(marker), **env))
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended before pausing:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never reached the pause")
        time.sleep(0.05)
    return proc


# ---------------------------------------------------------------- 1. own what you delete


def test_an_empty_out_is_refused_and_the_current_directory_untouched(committee, tmp_path,
                                                                     capsys, monkeypatch):
    for name in ("checkpoints", "logs"):  # the user's own directories of these names
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert main(distill_args(committee, "")) == 2
    assert "--out is empty" in one_error(capsys)
    assert snapshot(tmp_path) == before


def test_an_out_that_is_a_file_is_refused(committee, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert main(distill_args(committee, target)) == 2
    assert "notes.txt (--out): is a file, not a directory" in one_error(capsys)
    assert target.read_text() == "mine"


@pytest.mark.parametrize("command", ["distill", "train-teacher", "export"])
def test_a_directory_of_the_users_own_files_is_never_touched(committee, finished, tmp_path,
                                                             capsys, command):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)  # names the tool uses, but not its files
    (mine / "checkpoints" / "last.ckpt").write_text("my own")
    (mine / "model.safetensors").write_text("my own")
    before = snapshot(tmp_path)
    data, _ = committee
    args = {"distill": distill_args(committee, mine),
            "train-teacher": ["train-teacher", "--size", "mlp-s", "--data-dir", str(data),
                              "--out", str(mine), "--no-progress", "--max-epochs", "1"],
            "export": ["export", str(finished), "--out", str(mine)]}[command]
    assert main(args) == 2
    assert "not a diversedistill directory" in one_error(capsys)
    assert snapshot(tmp_path) == before


def test_a_run_that_cannot_start_deletes_nothing(committee, finished, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    out = copy_run(finished, tmp_path)
    before = snapshot(out)
    assert main(distill_args(committee, out, "--accelerator", "gpu")) == 2
    assert "cannot run on --accelerator gpu" in one_error(capsys)
    assert snapshot(out) == before


def test_a_second_run_on_the_same_directory_is_refused_while_the_first_runs(committee, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    proc = start_child(distill_args(committee, out), tmp_path / "paused",
                       DD_TEST_PAUSE_AT_STEP="5")
    try:
        before = snapshot(out)
        assert main(distill_args(committee, out)) == 2
        assert "another diversedistill command is using this directory" in one_error(capsys)
        assert snapshot(out) == before  # the first run's files are untouched
    finally:
        proc.kill()
        proc.wait()
    assert main(distill_args(committee, out, "--resume")) == 0  # the lock ended with it


def test_a_fresh_run_clears_every_output_of_the_previous_one(committee, finished, tmp_path,
                                                            capsys):
    out = copy_run(finished, tmp_path)
    assert (out / "student").is_dir() and (out / "importance.csv").is_file()
    proc = start_child(distill_args(committee, out, "--lam", "3"), tmp_path / "paused",
                       DD_TEST_PAUSE_AT_STEP="5")
    proc.kill()
    proc.wait()
    left = sorted(p.name for p in out.iterdir())
    assert "student" not in left and "importance.csv" not in left, left
    assert main(["export", str(out), "--out", str(tmp_path / "served")]) == 2
    assert "the run has not finished" in one_error(capsys)
    assert not (tmp_path / "served").exists()


# ------------------------------------------------------ 2. verified checkpoints and exports


def flip(path: Path, n: int) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = bytes(b ^ 0xFF for b in data[middle:middle + n])
    path.write_bytes(bytes(data))


def test_a_damaged_last_checkpoint_is_refused_on_resume(committee, finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    flip(out / "checkpoints" / "last.ckpt", 64)
    before = snapshot(out)
    assert main(distill_args(committee, out, "--resume")) == 2
    assert "last.ckpt: checksum differs from last.ckpt.sha256" in one_error(capsys)
    assert snapshot(out) == before


def test_a_damaged_best_checkpoint_is_refused_on_export(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    flip(out / "checkpoints" / "best.ckpt", 32)
    assert main(["export", str(out), "--out", str(tmp_path / "served")]) == 2
    assert "best.ckpt: checksum differs from best.ckpt.sha256" in one_error(capsys)
    assert not (tmp_path / "served").exists()


def test_a_checkpoint_without_its_checksum_is_refused(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    (out / "checkpoints" / "best.ckpt.sha256").unlink()
    assert main(["export", str(out), "--out", str(tmp_path / "served")]) == 2
    assert "best.ckpt: no checksum beside it" in one_error(capsys)


def test_non_finite_weights_are_never_exported(finished, tmp_path, capsys):
    from diversedistill.checkpoints import read_checkpoint, save_verified
    from diversedistill.errors import ModelError
    from diversedistill.export import export_model
    from tiny import tiny_recommender

    out = copy_run(finished, tmp_path)
    best = out / "checkpoints" / "best.ckpt"
    state = read_checkpoint(best)
    key = next(k for k in state["state_dict"] if k.startswith("student.model."))
    state["state_dict"][key].view(-1)[0] = float("inf")  # under a valid checksum
    save_verified(state, best)
    assert main(["export", str(out), "--out", str(tmp_path / "served")]) == 2
    assert "holds 1 non-finite value(s)" in one_error(capsys)
    assert not (tmp_path / "served").exists()

    model = tiny_recommender()
    with torch.no_grad():
        next(iter(model.parameters())).view(-1)[0] = float("nan")
    with pytest.raises(ModelError, match="non-finite"):
        export_model(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_checksums_follow_every_checkpoint_and_survive_a_cut_write(tmp_path):
    from diversedistill.checkpoints import read_checkpoint, save_verified, verify_checkpoint

    target = tmp_path / "last.ckpt"
    save_verified({"w": torch.ones(2)}, target)
    old = target.read_bytes()
    save_verified({"w": torch.zeros(2)}, target)
    verify_checkpoint(target)
    target.write_bytes(old)  # as if the kill fell between the checksum's and the file's rename
    assert torch.equal(read_checkpoint(target)["w"], torch.ones(2))


def test_every_checkpoint_of_a_run_has_its_checksum(finished):
    from diversedistill.checkpoints import verify_checkpoint

    for name in ("last.ckpt", "best.ckpt"):
        verify_checkpoint(finished / "checkpoints" / name)
    assert json.loads((finished / "run.json").read_text())["data.release"] == "ml-100k"
    assert os.path.isfile(finished / ".diversedistill")
