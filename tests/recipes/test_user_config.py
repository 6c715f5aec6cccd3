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
          - {{name: wide, export_dir: teachers/wide, inject_at: body.0, head: head}}
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
    served = load_model(out / "student")  # rebuilt by the user's class, weights checked
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
    wide = load_model(teacher)  # the user's class, rebuilt from its export
    assert type(wide).__name__ == "Wide" and wide.body[0].out_features == 16
    assert main(["distill", "--config", config, "--out", str(tmp_path / "runs" / "x"),
                 "--no-progress"]) == 0
    assert "val_accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
