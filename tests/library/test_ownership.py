"""The tool owns exactly what it wrote (issue 39): a directory's marker lists the entries the
tool wrote there, clearing removes only those, and every command that writes a folder
(distill, train-teacher, export, report, summarize, reproduce) follows the same rule.

Each test fails on a version that cleared a marked directory whole, accepted any
model-marked directory as an export target, wrote reports into any folder, or followed a
symlinked lock.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import distill_command, write_tiny_committee

from diversedistill.errors import ConfigError
from diversedistill.runs import rundir
from diversedistill.runs.atomic import write_text_atomic
from diversedistill_recipes.cli import main
from diversedistill_recipes.comparison.results import MSE
from diversedistill_recipes.jobs import ResultBook

RUN = ["--no-progress", "--batch-size", "32", "--max-epochs", "1", "--patience", "1",
       "--d1", "4", "--d2", "8", "--hidden", "16"]


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    return write_tiny_committee(tmp_path_factory.mktemp("committee"))


@pytest.fixture(scope="module")
def finished(committee, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(distill_command(committee, out, *RUN)) == 0
    return out


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_the_marker_lists_what_a_run_wrote(finished):
    marker = json.loads((finished / rundir.MARKER).read_text())
    assert marker["kind"] == "run"
    assert {"checkpoints", "logs", "student", "served", "run.json", "result.json"} \
        <= set(marker["wrote"])


def test_a_fresh_run_never_deletes_a_users_notes_beside_its_outputs(committee, finished,
                                                                    tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "notes.md").write_text("what I tried")
    (out / "mine").mkdir()
    (out / "mine" / "plot.png").write_bytes(b"png")
    before = snapshot(out)
    assert main(distill_command(committee, out, *RUN)) == 2
    error = one_error(capsys)
    assert "mine/, notes.md" in error and "diversedistill did not write" in error
    assert snapshot(out) == before  # the previous run and the user's files, all as they were


def test_a_copied_marker_never_costs_a_folder_its_git_and_src(committee, finished, tmp_path,
                                                              capsys):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "src").mkdir()
    (project / "src" / "model.py").write_text("import torch\n")
    shutil.copy(finished / rundir.MARKER, project / rundir.MARKER)
    before = snapshot(project)
    assert main(distill_command(committee, project, *RUN)) == 2
    assert ".git/, src/" in one_error(capsys)
    assert snapshot(project) == before


def test_a_marker_of_an_older_version_clears_only_the_names_it_wrote(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / rundir.MARKER).write_text('{"written_by": "diversedistill", "kind": "run"}\n')
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"old")
    (folder / "run.json").write_text("{}")
    rundir.clear(folder)
    assert sorted(p.name for p in folder.iterdir()) == [rundir.MARKER]
    (folder / "thesis.tex").write_text("mine")
    with pytest.raises(ConfigError, match="thesis.tex"):
        rundir.clear(folder)
    assert (folder / "thesis.tex").read_text() == "mine"


def test_an_atomic_write_never_replaces_a_file_the_tool_did_not_write(tmp_path):
    folder = rundir.mark(tmp_path / "owned")
    (folder / "results.csv").write_text("the user's own")
    with pytest.raises(ConfigError, match="not written by diversedistill"):
        write_text_atomic(folder / "results.csv", "ours")
    assert (folder / "results.csv").read_text() == "the user's own"
    write_text_atomic(folder / "summary.csv", "ours")  # a new file is the tool's, and listed
    write_text_atomic(folder / "summary.csv", "ours again")
    assert "summary.csv" in rundir.listed(folder)


@pytest.fixture(scope="module")
def teacher(committee, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "mlp-s"
    assert main(["train-teacher", "--size", "mlp-s", "--data-dir", str(committee[0]), "--out",
                 str(out), "--no-progress", "--max-epochs", "1"]) == 0
    return out


def test_export_never_writes_over_a_teacher_or_a_runs_student(teacher, finished, tmp_path,
                                                             capsys):
    for target in (teacher, finished / "student", finished / "served"):
        before = snapshot(target)
        assert main(["export", str(finished), "--out", str(target)]) == 2
        assert "not an exported model" in one_error(capsys)
        assert snapshot(target) == before
    assert main(["export", str(finished), "--out", str(tmp_path / "mine")]) == 0
    assert main(["export", str(finished), "--out", str(tmp_path / "mine")]) == 0  # its own


def test_train_teacher_never_writes_over_an_export_or_a_runs_student(committee, finished,
                                                                    tmp_path, capsys):
    data = committee[0]
    export = tmp_path / "export"
    assert main(["export", str(finished), "--out", str(export)]) == 0
    capsys.readouterr()
    for target in (finished / "student", export):
        before = snapshot(target)
        assert main(["train-teacher", "--size", "mlp-s", "--data-dir", str(data), "--out",
                     str(target), "--no-progress", "--max-epochs", "1"]) == 2
        assert "not a trained teacher" in one_error(capsys)
        assert snapshot(target) == before


@pytest.mark.parametrize("command", ["report", "summarize"])
def test_report_and_summarize_never_write_into_a_users_folder(finished, tmp_path, capsys,
                                                              command):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("report.md", "results.csv", "summary.csv"):
        (mine / name).write_text("the user's own")
    before = snapshot(mine)
    assert main([command, str(finished), "--out", str(mine)]) == 2
    assert "not a diversedistill directory" in one_error(capsys)
    assert snapshot(mine) == before
    assert main([command, str(finished), "--out", str(tmp_path / "new")]) == 0
    assert main([command, str(finished), "--out", str(tmp_path / "new")]) == 0  # its own


def test_a_reproduction_never_writes_its_results_into_a_users_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("the user's own")
    with pytest.raises(ConfigError, match="not a diversedistill directory"):
        ResultBook(mine, MSE)
    assert (mine / "results.csv").read_text() == "the user's own"
    book = ResultBook(tmp_path / "new", MSE, log=lambda _: None)
    book.record(MSE.row("student alone", "mlp-s", 0, 1.0, 1.1, 3.0))
    assert "results.csv" in rundir.listed(tmp_path / "new")


def test_a_symlinked_lock_is_refused_and_its_target_untouched(committee, tmp_path, capsys):
    out = rundir.mark(tmp_path / "run")
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate me")
    (out / rundir.LOCK).symlink_to(precious)
    assert main(distill_command(committee, out, *RUN)) == 2
    assert "is a symbolic link" in one_error(capsys)
    assert precious.read_text() == "do not truncate me"


# ----------------------------------------------------------------- validate, then clear


@pytest.mark.parametrize("flag,value", [("--lam", "1e308"), ("--module-lr", "1e30"),
                                        ("--answer-pull", "1e30"), ("--lam", "nan")])
def test_a_value_training_cannot_survive_is_refused_before_the_old_run_is_cleared(
        committee, finished, tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out)
    assert main(distill_command(committee, out, *RUN, flag, value)) == 2
    assert "must be" in one_error(capsys)
    assert snapshot(out) == before


@pytest.mark.parametrize("lr", [1e30, 0.0, float("nan")])
def test_a_learning_rate_training_cannot_survive_is_refused(lr):
    from diversedistill.training import TrainConfig

    with pytest.raises(ConfigError, match="lr must be"):
        TrainConfig(lr=lr)


def test_a_run_that_fails_in_its_first_steps_puts_the_previous_run_back(
        committee, finished, tmp_path, monkeypatch):
    from diversedistill.methods.diversedistill import DiverseDistill

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = {p: b for p, b in snapshot(out).items() if p.name != rundir.MARKER}
    calls = []

    def breaks_on_the_second_step(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the student broke")
        return original(self, *args)

    original = DiverseDistill.loss_parts
    monkeypatch.setattr(DiverseDistill, "loss_parts", breaks_on_the_second_step)
    with pytest.raises(RuntimeError, match="the student broke"):
        main(distill_command(committee, out, *RUN, "--lam", "1"))
    assert {p: b for p, b in snapshot(out).items() if p.name != rundir.MARKER} == before
    assert rundir.listed(out) == rundir.listed(finished)
    assert main(["export", str(out), "--out", str(tmp_path / "served")]) == 0  # still whole
