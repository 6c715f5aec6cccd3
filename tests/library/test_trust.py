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
from pathlib import Path

import pytest
import torch
from conftest import distill_command, start_paused_child, write_tiny_committee

from diversedistill_recipes.cli import main

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
    proc = start_paused_child(distill_args(committee, out), tmp_path / "paused",
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
    proc = start_paused_child(distill_args(committee, out, "--lam", "3"), tmp_path / "paused",
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
    from tiny import tiny_recommender

    from diversedistill.errors import ModelError
    from diversedistill.export import export_model
    from diversedistill.runs.checkpoints import read_checkpoint, save_verified

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
    from diversedistill.runs.checkpoints import read_checkpoint, save_verified, verify_checkpoint

    target = tmp_path / "last.ckpt"
    save_verified({"w": torch.ones(2)}, target)
    old = target.read_bytes()
    save_verified({"w": torch.zeros(2)}, target)
    verify_checkpoint(target)
    target.write_bytes(old)  # as if the kill fell between the checksum's and the file's rename
    assert torch.equal(read_checkpoint(target)["w"], torch.ones(2))


def test_every_checkpoint_of_a_run_has_its_checksum(finished):
    from diversedistill.runs.checkpoints import verify_checkpoint

    for name in ("last.ckpt", "best.ckpt"):
        verify_checkpoint(finished / "checkpoints" / name)
    assert json.loads((finished / "run.json").read_text())["data.release"] == "ml-100k"
    assert os.path.isfile(finished / ".diversedistill")


# ---------------------------------------------------------------------------- 3. provenance


def train_teacher(data: Path, out: Path, *extra: str) -> Path:
    assert main(["train-teacher", "--size", "mlp-s", "--data-dir", str(data), "--out", str(out),
                 "--no-progress", "--max-epochs", "1", *extra]) == 0
    return out


def test_a_teacher_trained_on_the_runs_test_rows_is_refused(committee, tmp_path, capsys):
    data, _ = committee
    teacher = train_teacher(data, tmp_path / "t1", "--split-seed", "1")
    config = json.loads((teacher / "config.json").read_text())
    assert config["data"]["release"] == "ml-100k" and config["data"]["split"]["name"] == "random-1"
    assert [f["name"] for f in config["data"]["fields"]][:2] == ["user", "item"]
    capsys.readouterr()
    args = ["distill", "--teacher", str(teacher), "--data-dir", str(data), "--out",
            str(tmp_path / "run"), *RUN]
    assert main(args) == 2
    error = one_error(capsys)
    assert "teacher 't1' was trained on" in error and "validation and test ratings" in error
    assert "(its split random-1, this run's random-0)" in error
    assert not (tmp_path / "run").exists()

    assert main([*args, "--allow-teacher-overlap", "--max-epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: teacher 't1' was trained on" in err and "--allow-teacher-overlap" in err

    same = train_teacher(data, tmp_path / "t0")  # the run's own split: accepted, no warning
    capsys.readouterr()
    assert main(["distill", "--teacher", str(same), "--data-dir", str(data), "--out",
                 str(tmp_path / "run0"), *RUN, "--max-epochs", "1"]) == 0
    assert "warning" not in capsys.readouterr().err
    student = json.loads((tmp_path / "run0" / "student" / "config.json").read_text())
    assert student["data"]["data_sha256"] == config["data"]["data_sha256"]
    assert student["teacher_weights"] == {"t0": json.loads(
        (same / "config.json").read_text())["weights_sha256"]}


def test_a_teacher_of_another_release_or_other_ratings_is_refused(committee, tmp_path, capsys):
    from conftest import write_ml1m

    from diversedistill.export import export_model
    from diversedistill_recipes.movielens.provenance import data_record
    from diversedistill_recipes.movielens.recommender import build_recommender
    from diversedistill_recipes.movielens.releases import load_movielens
    from diversedistill_recipes.movielens.splits import RatingSplit

    data, _ = committee
    ml1m = load_movielens(write_ml1m(tmp_path / "ml-1m"))  # 4 ratings: every part holds all
    parts = RatingSplit("random-0", ml1m.ratings, ml1m.ratings, ml1m.ratings)
    record = data_record(ml1m, parts, "ml-1m", "random", 0)
    export_model(build_recommender(ml1m.fields, "mlp-s", 3.5, hidden=[8], embedding_dim=4),
                 tmp_path / "other", {"data": record})
    assert main(["distill", "--teacher", str(tmp_path / "other"), "--data-dir", str(data),
                 "--out", str(tmp_path / "run"), *RUN]) == 2
    assert "teacher 'other' was trained on ml-1m with other fields" in one_error(capsys)

    changed = tmp_path / "changed"  # the same release, one rating changed
    shutil.copytree(data, changed)
    lines = (changed / "u.data").read_text().splitlines()
    user, item, rating, stamp = lines[0].split("\t")
    lines[0] = "\t".join([user, item, "1" if rating != "1" else "2", stamp])
    (changed / "u.data").write_text("\n".join(lines) + "\n")
    assert main(distill_command(committee, tmp_path / "run", *RUN)[:-2] +
                ["--data-dir", str(changed), "--out", str(tmp_path / "run")]) == 2
    assert "was trained on other ratings" in one_error(capsys)


def test_release_decides_which_files_are_read(committee, tmp_path, capsys):
    from conftest import write_ml100k, write_ml_csv

    from diversedistill_recipes.locate import locate_movielens
    from diversedistill_recipes.movielens.releases import load_movielens

    both = write_ml100k(tmp_path / "both")
    write_ml_csv(both)
    assert load_movielens(locate_movielens("ml-latest-small", both), "ml-latest-small") \
        .rating_scale == (0.5, 5.0)
    assert load_movielens(locate_movielens("ml-100k", both), "ml-100k").rating_scale == (1.0, 5.0)
    assert main(distill_args(committee, tmp_path / "run", "--release", "ml-100")) == 2
    assert "unknown MovieLens release 'ml-100'; known: ml-100k" in one_error(capsys)
    assert main(distill_args(committee, tmp_path / "run", "--release", "ml-1m")) == 2
    assert "MovieLens ml-1m is not in" in one_error(capsys)
    assert not (tmp_path / "run").exists()


def test_resume_refuses_other_ratings_or_another_teacher_of_the_same_name(committee, finished,
                                                                         tmp_path, capsys):
    from diversedistill.export import export_model, load_model, read_config

    data, teachers = committee
    out = copy_run(finished, tmp_path)
    changed = tmp_path / "changed"
    shutil.copytree(data, changed)
    lines = (changed / "u.data").read_text().splitlines()
    user, item, rating, stamp = lines[0].split("\t")
    lines[0] = "\t".join([user, item, "1" if rating != "1" else "2", stamp])
    (changed / "u.data").write_text("\n".join(lines) + "\n")
    before = snapshot(out)
    args = distill_args(committee, out, "--resume", "--allow-teacher-overlap")
    args[args.index("--data-dir") + 1] = str(changed)
    assert main(args) == 2
    assert "cannot resume, the run was started with data.sha256=" in one_error(capsys)

    other = tmp_path / "elsewhere" / "ta"  # a teacher of the same name, other weights
    model = load_model(teachers[0])
    with torch.no_grad():
        next(iter(model.parameters())).add_(1.0)
    export_model(model, other, {"data": read_config(teachers[0])["data"]})
    args = distill_args(committee, out, "--resume")
    args[args.index(str(teachers[0]))] = str(other)
    assert main(args) == 2
    assert "cannot resume, the run was started with teacher ta.weights_sha256=" in one_error(capsys)
    assert snapshot(out) == before


# ------------------------------------------------------------------------------- 5. signals


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_run_with_a_checkpoint_one_line_and_its_exit_status(
        committee, finished, tmp_path, capsys, signum, code):
    out = tmp_path / "run"
    proc = start_paused_child(distill_args(committee, out), tmp_path / "paused",
                       DD_TEST_PAUSE_AT_STEP="7")  # mid-epoch; the last checkpoint is step 4
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == code
    lines = (tmp_path / "paused.log").read_text().strip().splitlines()
    assert lines[-1] == ("diversedistill distill: interrupted at epoch 0 step 7; "
                         "continue with --resume")
    assert not (out / "student").exists()

    assert main(distill_args(committee, out, "--resume")) == 0  # exact, as if never stopped
    ours = json.loads((out / "student" / "config.json").read_text())["metrics"]
    theirs = json.loads((finished / "student" / "config.json").read_text())["metrics"]
    ours.pop("seconds"), theirs.pop("seconds")
    assert ours == theirs
    from safetensors.torch import load_file

    a = load_file(str(out / "student" / "model.safetensors"))
    b = load_file(str(finished / "student" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------- 6. one line instead of a traceback


def test_a_full_disk_is_named_in_one_line(committee, tmp_path, capsys, monkeypatch):
    import diversedistill.runs.checkpoints as checkpoints

    def full(obj, f, *a, **k):  # what torch's C++ writer raises when the disk fills up
        Path(f).write_bytes(b"PK\x03\x04")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . "
                           "unexpected pos 4416 vs 4310")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    assert main(distill_args(committee, tmp_path / "run")) == 2
    error = one_error(capsys)
    assert error.endswith("last.ckpt: disk full (no space left on device)"), error
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_os_errors_are_one_line_naming_the_file(committee, tmp_path, capsys, monkeypatch):
    import errno

    import diversedistill.runs.rundir as rundir

    def denied(path, kind="run"):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(rundir, "mark", denied)  # as on a read-only --out
    assert main(distill_args(committee, tmp_path / "run")) == 2
    assert one_error(capsys).endswith("/run: permission denied")
    monkeypatch.undo()

    (tmp_path / "t" / "config.json").mkdir(parents=True)  # a directory where a file belongs
    assert main(distill_args(committee, tmp_path / "run", "--teacher", str(tmp_path / "t"))) == 2
    assert one_error(capsys).endswith("t/config.json: is a directory, not a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its mode")
def test_an_unreadable_config_or_read_only_out_is_one_line(committee, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("diversedistill:\n  lam: 1\n")
    config.chmod(0)
    assert main(distill_args(committee, tmp_path / "run", "--config", str(config))) == 2
    assert "c.yaml: permission denied" in one_error(capsys)
    locked_out = tmp_path / "ro"
    locked_out.mkdir()
    locked_out.chmod(0o555)
    assert main(distill_args(committee, locked_out)) == 2
    assert "ro: permission denied; the run cannot write there" in one_error(capsys)


def write_results(path: Path, rows: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.csv").write_text(
        "method,teachers,seed,val_mse,test_mse,seconds\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("command", ["summarize", "report"])
def test_report_and_summarize_refuse_duplicate_or_non_finite_rows(tmp_path, capsys, command):
    good = ["student alone,mlp-s,0,1.0,1.1,3", "teacher alone,mlp-l,0,0.9,0.95,3",
            "reference,global mean,0,nan,1.27,0"]
    twice = write_results(tmp_path / "twice", [*good, "student alone,mlp-s,0,1.0,1.2,3"])
    assert main([command, str(twice), "--out", str(tmp_path / "o1")]) == 2
    assert "line 5: student alone / mlp-s / seed 0 is listed twice (first at line 2)" \
        in one_error(capsys)
    infinite = write_results(tmp_path / "inf", [*good, "diversedistill,mlp-l,0,0.9,inf,3"])
    assert main([command, str(infinite), "--out", str(tmp_path / "o2")]) == 2
    assert "line 5: test_mse is inf, not a finite number" in one_error(capsys)
    nan = write_results(tmp_path / "nan", [*good, "diversedistill,mlp-l,0,0.9,nan,3"])
    assert main([command, str(nan), "--out", str(tmp_path / "o3")]) == 2
    assert "line 5: test_mse is nan, not a finite number" in one_error(capsys)


@pytest.mark.parametrize("command", ["summarize", "report"])
def test_report_and_summarize_refuse_an_empty_or_file_out(tmp_path, capsys, command):
    good = write_results(tmp_path / "good", ["student alone,mlp-s,0,1.0,1.1,3"])
    assert main([command, str(good), "--out", ""]) == 2
    assert "--out is empty" in one_error(capsys)
    (tmp_path / "f").write_text("mine")
    assert main([command, str(good), "--out", str(tmp_path / "f")]) == 2
    assert "f (--out): is a file, not a directory" in one_error(capsys)
    assert (tmp_path / "f").read_text() == "mine"


def test_a_signal_outside_training_is_one_line_too(committee, tmp_path, capsys, monkeypatch):
    import diversedistill_recipes.cli.movielens_commands as commands

    real = commands.load_data

    def interrupted_while_loading(*args):
        result = real(*args)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(commands, "load_data", interrupted_while_loading)
    assert main(distill_args(committee, tmp_path / "run")) == 143
    assert one_error(capsys) == "diversedistill distill: interrupted; continue with --resume"
    assert not (tmp_path / "run").exists()


def test_a_run_never_clears_a_teacher_or_an_input_inside_its_directory(committee, finished,
                                                                        tmp_path, capsys):
    data, teachers = committee
    trained = train_teacher(data, tmp_path / "mlp-s")  # carries the tool's marker: an export
    before = snapshot(trained)
    capsys.readouterr()
    assert main(distill_args(committee, trained)) == 2  # a teacher is an export, not a run
    assert "holds a trained teacher, not a run" in one_error(capsys)
    assert snapshot(trained) == before
    out = copy_run(finished, tmp_path)
    inside = out / "teachers" / "ta"
    shutil.copytree(teachers[0], inside)
    args = distill_args(committee, out)
    args[args.index(str(teachers[0]))] = str(inside)
    assert main(args) == 2
    assert "lies inside --out" in one_error(capsys) and inside.is_dir()


def test_export_refuses_a_best_checkpoint_of_another_run(committee, finished, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(distill_args(committee, other, "--lam", "3", "--max-epochs", "1")) == 0
    out = copy_run(finished, tmp_path)
    for name in ("best.ckpt", "best.ckpt.sha256"):  # a valid checkpoint, but not this run's
        shutil.copy(other / "checkpoints" / name, out / "checkpoints" / name)
    capsys.readouterr()
    assert main(["export", str(out), "--out", str(tmp_path / "served")]) == 2
    assert "best.ckpt: belongs to another run than" in one_error(capsys)


# ------------------------------------------------------- 7. a run is its directory, wherever


def test_a_copied_run_exports_and_resumes_its_own_checkpoints(committee, tmp_path, capsys):
    from safetensors.torch import load_file

    original, copy = tmp_path / "original", tmp_path / "copy"
    assert main(distill_args(committee, original)) == 0
    shutil.copytree(original, copy)
    flip(original / "checkpoints" / "best.ckpt", 32)  # read from the original: refused
    before = snapshot(original)
    capsys.readouterr()

    assert main(distill_args(committee, copy, "--resume")) == 0  # finished: trains nothing
    assert main(["export", str(copy), "--out", str(tmp_path / "served")]) == 0
    served = load_file(str(tmp_path / "served" / "model.safetensors"))
    own = load_file(str(copy / "student" / "model.safetensors"))
    assert served.keys() == own.keys() and all(torch.equal(served[k], own[k]) for k in own)
    assert snapshot(original) == before  # nothing there read into the copy, or written


def relocatable_run_args(committee, out: Path, *extra: str) -> list[str]:
    """A run whose last epoch is worse than the one before (early stopping ends it there):
    480 rows in batches of 96, 5 steps per epoch; patience 1, past the constant not counted."""
    return distill_command(committee, out, "--no-progress", "--batch-size", "96",
                           "--max-epochs", "30", "--patience", "1",
                           "--no-patience-past-constant", "--checkpoint-every-n-steps", "4",
                           "--d1", "4", "--d2", "8", "--hidden", "16", *extra)


def test_a_run_moved_after_a_kill_resumes_in_its_new_place_as_if_never_moved(committee,
                                                                             tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    assert main(relocatable_run_args(committee, uninterrupted)) == 0
    metrics = json.loads((uninterrupted / "student" / "config.json").read_text())["metrics"]
    assert metrics["best_epoch"] == metrics["epochs"] - 2  # the last epoch was worse
    # killed in the last epoch, one step after its checkpoint (steps 76-80; last.ckpt at 76)
    old, new = tmp_path / "old" / "run", tmp_path / "new" / "run"
    kill_at = 5 * (metrics["epochs"] - 1) + 2
    proc = start_paused_child(relocatable_run_args(committee, old), tmp_path / "paused",
                              DD_TEST_PAUSE_AT_STEP=str(kill_at))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    new.parent.mkdir()
    shutil.move(old, new)

    assert main(relocatable_run_args(committee, new, "--resume")) == 0

    resumed = json.loads((new / "student" / "config.json").read_text())["metrics"]
    assert {k: v for k, v in resumed.items() if k != "seconds"} == \
        {k: v for k, v in metrics.items() if k != "seconds"}  # the same best epoch
    assert not old.exists()  # nothing written where the run used to be
    for name in ("last.ckpt", "best.ckpt"):  # and no path in its checkpoints names a place
        held = (new / "checkpoints" / name).read_bytes()
        assert str(old).encode() not in held and str(new).encode() not in held
