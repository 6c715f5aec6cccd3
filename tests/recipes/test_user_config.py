"""``diversedistill distill --config my.yaml``: the user's own table, student class and
exported teachers, named in YAML, checked before anything loads."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch

from diversedistill.export import export_model, load_model
from diversedistill_recipes.cli import main

MODELS = '''
from torch import nn


class Student(nn.Module):
    def __init__(self, features=3, width=8, classes=2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, width), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x))


class Wide(nn.Module):
    def __init__(self, features=3, width=32, classes=2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, width), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x))
'''


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A user's folder: their models module (importable), a CSV and an exported teacher."""
    module = f"user_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).round(4)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = ["f0,f1,f2,label"] + [f"{a},{b},{c},{t}" for (a, b, c), t in zip(x, y)]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    wide = __import__(module).Wide()
    export_model(wide, tmp_path / "teachers" / "wide", factory=f"{module}:Wide")
    yield tmp_path, module
    sys.modules.pop(module, None)


def write_config(tmp_path, module, **changes) -> str:
    text = textwrap.dedent(f"""\
        data: {{file: rows.csv, features: [f0, f1, f2], target: label, batch_size: 32}}
        student: {{class_path: {module}.Student, init_args: {{width: 8}},
                  question_at: body.0, head: head}}
        teachers:
          - {{name: wide, export_dir: teachers/wide, class_path: {module}.Wide,
             inject_at: body.0, head: head}}
        diversedistill: {{lam: 1.0, hidden: 16}}
        train: {{max_epochs: 2}}
        """)
    for old, new in changes.items():
        text = text.replace(old, new)
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def test_distill_from_a_yaml_on_a_user_table_with_a_user_student_class(workspace, capsys):
    tmp_path, module = workspace
    out = tmp_path / "runs" / "x"
    assert main(["distill", "--config", write_config(tmp_path, module), "--out", str(out),
                 "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and 0.0 <= metrics["test_accuracy"] <= 1.0
    # rebuilt by the user's class, passed in (the directory alone never picks code)
    served = load_model(out / "student", factory=f"{module}:Student")
    assert type(served).__name__ == "Student"
    assert served(torch.randn(4, 3)).shape == (4, 2)


@pytest.mark.parametrize("change, message", [
    ({"diversedistill:": "dataset:"}, r"unknown top-level key 'dataset'"),
    ({"target: label": "target: y"}, r"column 'y' is not in .*rows.csv"),
    ({"Student,": "Nope,"}, r"student.class_path: '.*Nope' is not an nn.Module class"),
    ({"teachers/wide": "teachers/none"}, r"teachers\[0\].export_dir 'teachers/none': no "
                                         r"exported model there"),
    ({"max_epochs: 2": "max_epoch: 2"}, r"train: unknown key 'max_epoch'"),
])
def test_a_bad_yaml_is_one_sentence_before_anything_loads(workspace, capsys, change, message):
    tmp_path, module = workspace
    out = tmp_path / "runs" / "x"
    assert main(["distill", "--config", write_config(tmp_path, module, **change), "--out",
                 str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pytest.importorskip("re").search(message, err[0]), err
    assert not (out / "checkpoints").exists()


def test_a_cell_that_is_not_a_number_names_the_file_line_and_column(workspace, capsys):
    tmp_path, module = workspace
    rows = (tmp_path / "rows.csv").read_text().splitlines()
    rows[5] = "0.1,oops,0.3,1"
    (tmp_path / "rows.csv").write_text("\n".join(rows) + "\n")
    assert main(["distill", "--config", write_config(tmp_path, module), "--out",
                 str(tmp_path / "runs" / "x"), "--no-progress"]) == 2
    assert "rows.csv, line 6: column 'f1' holds 'oops', not a number" in capsys.readouterr().err


def replace_row(tmp_path, number: int, text: str, encoding: str = "utf-8") -> None:
    """Line ``number`` of rows.csv (1 is the header) becomes ``text``."""
    rows = (tmp_path / "rows.csv").read_text().splitlines()
    rows[number - 1] = text
    (tmp_path / "rows.csv").write_bytes(("\n".join(rows) + "\n").encode(encoding))


def a_pipe(tmp_path) -> str:
    """A named pipe as the config; should a reader block on it, a thread feeds it a line
    after a few seconds, so the test fails instead of hanging."""
    import os
    import threading
    import time

    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)

    def unblock_a_reader() -> None:
        for _ in range(60):
            time.sleep(0.5)
            try:
                fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)  # fails while none reads
            except OSError:
                continue
            os.write(fd, b"train: {max_epochs: 1}\n")
            os.close(fd)
            return

    threading.Thread(target=unblock_a_reader, daemon=True).start()
    return str(pipe)


# (changes to the YAML, an edit of the folder returning the config to pass or None, the
# error): each used to end in a stack trace, a hang or a run on the wrong input
ISSUE_39_CASES = [
    pytest.param({"batch_size: 32}": "batch_size: 32, split_seed: -1}"}, None,
                 r"run\.yaml: data: split_seed must be an integer in 0\.\.4294967295, got -1$",
                 id="negative-split-seed"),
    pytest.param({"max_epochs: 2": "max_epochs: 2, seed: 100000000000000000000000"}, None,
                 r"run\.yaml: train: seed must be an integer in 0\.\.4294967295, got 1000",
                 id="huge-seed"),
    pytest.param({}, lambda tmp: replace_row(tmp, 6, "0.1,inf,0.3,1"),
                 r"rows\.csv, line 6: column 'f1' holds inf, not a finite number$",
                 id="infinite-cell"),
    pytest.param({}, lambda tmp: replace_row(tmp, 6, "0.1,0.2,0.3,caf\xe9", "latin-1"),
                 r"rows\.csv, line 6: not valid UTF-8 text \(byte \d+\); save the table as "
                 r"UTF-8$", id="latin-1-table"),
    pytest.param({"features: [f0, f1, f2]": "features: []"}, None,
                 r"run\.yaml: data\.features is empty; list the columns the model reads$",
                 id="no-features"),
    pytest.param({}, lambda tmp: replace_row(tmp, 6, "0.1,0.2,0.3,2"),
                 r"run\.yaml: teachers\[0\] \('wide'\) answers 2 classes but column 'label' "
                 r"of rows\.csv holds 3 \(0, 1, 2\); give it one output per class$",
                 id="label-past-the-logits"),
    pytest.param({}, a_pipe, r"pipe\.yaml: not a regular file \(a pipe, socket or device\); "
                             r"save the config as a file$", id="config-is-a-pipe"),
]


@pytest.mark.parametrize("change, edit, message", ISSUE_39_CASES)
def test_a_bad_table_seed_or_config_file_is_one_sentence(workspace, capsys, change, edit,
                                                         message):
    import re

    tmp_path, module = workspace
    config = write_config(tmp_path, module, **change)
    config = (edit(tmp_path) if edit else None) or config
    out = tmp_path / "runs" / "x"
    assert distill(config, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not out.exists()


def test_train_teacher_from_the_same_yaml_then_distill_from_it(workspace, capsys):
    tmp_path, module = workspace
    config = write_config(tmp_path, module, **{
        "teachers/wide": "teachers/trained",
        "diversedistill:": f"model: {{class_path: {module}.Wide, init_args: {{width: 16}}}}\n"
                           "diversedistill:"})
    teacher = tmp_path / "teachers" / "trained"
    assert main(["train-teacher", "--config", config, "--out", str(teacher),
                 "--no-progress"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.5 < trained["val_accuracy"] <= 1.0  # a learnable rule: better than chance
    wide = load_model(teacher, factory=f"{module}:Wide")  # the user's class rebuilds it
    assert type(wide).__name__ == "Wide" and wide.body[0].out_features == 16
    assert main(["distill", "--config", config, "--out", str(tmp_path / "runs" / "x"),
                 "--no-progress"]) == 0
    assert "val_accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def distill(config, out, *flags) -> int:
    return main(["distill", "--config", config, "--out", str(out), "--no-progress", *flags])


def test_flags_win_over_the_yaml_and_an_unknown_method_is_refused(workspace, capsys):
    tmp_path, module = workspace
    config, out = write_config(tmp_path, module), tmp_path / "runs" / "x"
    assert distill(config, out, "--method", "ld", "--max-epochs", "1") == 0
    assert last_json(capsys)["epochs"] == 1
    assert json.loads((out / "student" / "config.json").read_text())["method"] == "ld"
    assert distill(config, out, "--lam", "0.5") == 0  # DiverseDistill, at the flag's λ
    capsys.readouterr()
    saved = json.loads((out / "student" / "config.json").read_text())
    assert saved["method"] == "diversedistill" and saved["distillation"]["lam"] == 0.5
    assert distill(config, out, "--method", "kd") == 2
    assert "--method: unknown method 'kd'; known: [" in capsys.readouterr().err
    assert distill(write_config(tmp_path, module, **{"diversedistill:": "method: kd\n"
                                                     "diversedistill:"}), out) == 2
    assert "method: unknown method 'kd'" in capsys.readouterr().err


def test_resume_continues_the_run_and_a_fresh_run_says_what_it_replaces(workspace, capsys):
    tmp_path, module = workspace
    config, out = write_config(tmp_path, module), tmp_path / "runs" / "x"
    assert distill(config, out) == 0
    first = last_json(capsys)
    assert distill(config, out, "--resume") == 0  # finished: nothing left to train
    captured = capsys.readouterr()
    resumed = json.loads(captured.out.strip().splitlines()[-1])
    assert resumed["epochs"] == first["epochs"] == 2
    assert resumed["val_accuracy"] == first["val_accuracy"] and "replaces" not in captured.err
    assert distill(config, out) == 0
    err = capsys.readouterr().err
    assert f"note: {out} held an earlier run (" in err and "student/" in err
    assert "this run replaces it" in err


def test_the_same_config_twice_gives_identical_figures(workspace, capsys):
    tmp_path, module = workspace
    config = write_config(tmp_path, module)
    figures = []
    for name in ("a", "b"):
        assert distill(config, tmp_path / "runs" / name) == 0
        figures.append(last_json(capsys))
        figures[-1].pop("seconds")
    assert figures[0] == figures[1]
    first, second = (load_model(tmp_path / "runs" / n / "student", trust_code=True)
                     for n in ("a", "b"))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                  second.state_dict().values()))


def test_the_student_alone_from_yaml(workspace, capsys):
    tmp_path, module = workspace
    config = write_config(tmp_path, module, **{"diversedistill:": "method: student\n"
                                               "diversedistill:"})
    assert distill(config, tmp_path / "runs" / "alone") == 0
    assert 0.0 <= last_json(capsys)["val_accuracy"] <= 1.0
    saved = json.loads((tmp_path / "runs" / "alone" / "student" / "config.json").read_text())
    assert saved["method"] == "student alone"


@pytest.mark.parametrize("change, message", [
    ({"init_args: {width: 8}": "init_args: {width: 8, features: 8}"},
     r"^diversedistill distill: error: the student cannot read the first batch \(x \(32, 3\)\)"),
    ({"head: head}": "head: body.0}"},
     r"the student: its head .body.0. is not the layer that makes its prediction \(\(32, 2\)\): "
     r"applied to its own input it gives shape \(32, 8\)"),
])
def test_a_student_that_does_not_fit_is_one_sentence_and_leaves_no_run_folder(
        workspace, capsys, change, message):
    tmp_path, module = workspace
    out = tmp_path / "runs" / "x"
    assert distill(write_config(tmp_path, module, **change), out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and pytest.importorskip("re").search(message, err[0]), err
    assert not out.exists()


def test_a_class_path_beside_the_yaml_imports_without_pythonpath(tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "beside_models.py").write_text(MODELS)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 3)).round(4)
    lines = ["f0,f1,f2,label"] + [f"{a},{b},{c},{int(a > 0) + 1}" for a, b, c in x]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")  # labels 1 and 2: two classes
    (folder / "run.yaml").write_text(textwrap.dedent("""\
        data: {file: rows.csv, features: [f0, f1, f2], target: label, batch_size: 32}
        student: {class_path: beside_models.Student, question_at: body.0, head: head}
        teachers:
          - {name: wide, export_dir: wide, class_path: beside_models.Wide, inject_at: body.0,
             head: head}
        model: {class_path: beside_models.Wide}
        train: {max_epochs: 1}
        """))
    try:
        assert main(["train-teacher", "--config", str(folder / "run.yaml"), "--out",
                     str(folder / "wide"), "--no-progress"]) == 0
        assert distill(str(folder / "run.yaml"), tmp_path / "out") == 0
        assert 0 <= last_json(capsys)["val_accuracy"] <= 1
        saved = json.loads((folder / "wide" / "config.json").read_text())
        assert saved["class_names"] == ["1", "2"]
    finally:
        sys.modules.pop("beside_models", None)


@pytest.mark.parametrize("change, message", [
    ({"features: [f0, f1, f2]": "features: [f0, f1, label]"},
     r"the target 'label' is also listed in data.features"),
    ({"features: [f0, f1, f2], target: label": "features: [f1, f2], target: f0, "
                                                "task: classification"},
     r"rows.csv, line 2: column 'f0' holds .*, not a class label"),
])
def test_a_leaking_or_truncated_target_is_refused(workspace, capsys, change, message):
    tmp_path, module = workspace
    assert distill(write_config(tmp_path, module, **change), tmp_path / "runs" / "x") == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


@pytest.mark.parametrize("command", ["distill", "train-teacher"])
def test_a_yamls_own_table_inside_out_is_refused_and_kept(workspace, capsys, command):
    tmp_path, module = workspace
    from diversedistill.runs import rundir

    out = rundir.mark(tmp_path / "out", "run" if command == "distill" else "teacher")
    (tmp_path / "rows.csv").rename(out / "rows.csv")
    config = write_config(tmp_path, module, **{
        "file: rows.csv": "file: out/rows.csv",
        "diversedistill:": f"model: {{class_path: {module}.Wide, init_args: {{width: 16}}}}\n"
                           "diversedistill:"})
    target = out if command == "distill" else out / "run"
    assert main([command, "--config", config, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.file" in err[0] and "lies inside --out" in err[0], err
    assert (out / "rows.csv").is_file() and not (target / "checkpoints").exists()


def test_a_teacher_is_rebuilt_only_by_the_class_the_yaml_names_or_trusted_code(workspace,
                                                                                capsys):
    tmp_path, module = workspace
    out = tmp_path / "runs" / "x"
    unnamed = write_config(tmp_path, module, **{f"class_path: {module}.Wide,": ""})
    assert distill(unnamed, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"names factory '{module}:Wide'" in err[0], err
    assert "teachers[0].class_path" in err[0] and "--trust-code" in err[0]
    assert not (out / "checkpoints").exists()
    assert distill(unnamed, out, "--trust-code", "--max-epochs", "1") == 0  # opted in
    capsys.readouterr()
    other = write_config(tmp_path, module, **{f"class_path: {module}.Wide,":
                                              f"class_path: {module}.Student,"})
    assert distill(other, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"names factory '{module}:Wide', not '{module}:Student'" in err[0]


def test_export_of_a_table_run_runs_the_students_class_only_with_trust_code(workspace,
                                                                             capsys):
    tmp_path, module = workspace
    run = tmp_path / "runs" / "x"
    assert distill(write_config(tmp_path, module), run, "--max-epochs", "1") == 0
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"names factory '{module}:Student'" in err[0], err
    assert "--trust-code" in err[0] and not (tmp_path / "a").exists()
    assert main(["export", str(run), "--out", str(tmp_path / "a"), "--trust-code"]) == 0
    served = load_model(tmp_path / "a", factory=f"{module}:Student")
    assert type(served).__name__ == "Student"
