"""``diversedistill compare`` and the suite: every method on a user's table under the
tables' protocol, resumable; the suite's tasks prepared and compared (a tiny version: the
suite itself is a benchmark, docs/suite.md)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from diversedistill.export import export_model
from diversedistill_recipes.cli import main
from diversedistill_recipes.comparison.results import read_results
from diversedistill_recipes.tabular.suite import TASKS, SuiteSettings, run_suite
from diversedistill_recipes.tabular.suite_models import FeatureTokenTransformer, TableMLP

MODELS = "diversedistill_recipes.tabular.suite_models"


@pytest.fixture
def project(tmp_path):
    """A table, two untrained teachers of different architectures, the YAML."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4)).round(4)
    y = x[:, 0] * x[:, 1] + x[:, 2]
    lines = ["a,b,c,d,y"] + [",".join(map(str, [*row, round(t, 4)])) for row, t in zip(x, y)]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    export_model(TableMLP(4, 1, width=16), tmp_path / "wide", factory=f"{MODELS}:TableMLP",
                 arguments={"features": 4, "outputs": 1, "width": 16})
    export_model(FeatureTokenTransformer(4, 1, dim=8, heads=2), tmp_path / "tokens",
                 factory=f"{MODELS}:FeatureTokenTransformer",
                 arguments={"features": 4, "outputs": 1, "dim": 8, "heads": 2})
    (tmp_path / "run.yaml").write_text(textwrap.dedent(f"""\
        data: {{file: rows.csv, features: [a, b, c, d], target: y, batch_size: 32}}
        student: {{class_path: {MODELS}.TableMLP, init_args: {{features: 4, width: 8}},
                  question_at: body.1, head: head}}
        teachers:
          - {{name: wide, export_dir: wide, class_path: {MODELS}.TableMLP, inject_at: body.1,
             head: head}}
          - {{name: tokens, export_dir: tokens, class_path: {MODELS}.FeatureTokenTransformer,
             inject_at: encoder.layers.0, head: head, token: 0}}
        diversedistill: {{hidden: 16}}
        train: {{max_epochs: 1}}
        """))
    return tmp_path


def compare(project, *flags) -> int:
    return main(["compare", "--config", str(project / "run.yaml"), "--out",
                 str(project / "cmp"), "--no-progress", "--seeds", "2", *flags])


def test_compare_runs_every_row_a_user_weighs_and_resumes_without_training(project, capsys):
    assert compare(project, "--methods", "ld", "diversedistill") == 0
    printed = capsys.readouterr().out
    rows = read_results(project / "cmp" / "results.csv")
    keys = {(r.method, r.teachers) for r in rows}
    assert keys == {("teacher alone", "wide"), ("teacher alone", "tokens"),
                    ("student alone", "student"), ("ld", "wide"), ("ld", "tokens"),
                    ("diversedistill", "wide+tokens")}
    assert all(sorted(r.seed for r in rows if (r.method, r.teachers) == k) == [0, 1]
               for k in keys)
    assert all(r.metric == "mse" and np.isfinite(r.test) for r in rows)
    search = (project / "cmp" / "search.csv").read_text().splitlines()
    assert len(search) - 1 >= 3 * 3  # three cells, at least three λ each, on seed 0
    table = (project / "cmp" / "comparison.md").read_text()
    assert "| diversedistill | wide+tokens | 2 |" in table and "Chosen on validation" in table
    assert (project / "cmp" / "comparison.csv").is_file()
    assert (project / "cmp" / "report" / "report.md").is_file()
    assert "test MSE" in printed and "wrote " in printed

    assert compare(project, "--methods", "ld", "diversedistill", "--resume") == 0
    again = capsys.readouterr().out
    assert "resuming" in again and "search ld" in again and " val " in again
    assert "[1/" not in again  # nothing trained: every run was kept
    def key(r):
        return r.method, r.teachers, r.seed
    assert sorted(read_results(project / "cmp" / "results.csv"), key=key) == sorted(rows, key=key)


def test_compare_refuses_an_unknown_method_before_anything_trains(project, capsys):
    assert compare(project, "--methods", "kd") == 2
    assert "unknown method 'kd'" in capsys.readouterr().err
    assert not (project / "cmp" / "results.csv").exists()


def test_a_tiny_suite_prepares_its_task_trains_its_teachers_and_tabulates(tmp_path):
    settings = SuiteSettings(seeds=1, max_epochs=1, teacher_epochs=1, rows=240,
                             methods=["ld", "diversedistill"], wide={"width": 16, "depth": 2},
                             transformer={"dim": 8, "layers": 1, "heads": 2})
    table = run_suite(tmp_path, ["tertiles"], settings, log=lambda _: None)
    folder = tmp_path / "tertiles"
    assert (folder / "task.yaml").is_file() and (folder / "teachers" / "wide" /
                                                  "config.json").is_file()
    line = next(x for x in table.splitlines() if x.startswith("| tertiles |"))
    assert "| accuracy |" in line and line.count("±") == 4  # student, teacher, LD, DD
    assert line.rstrip(" |").split(" | ")[-3] in ("yes", "tied", "no")


def test_the_real_tables_ship_inside_statsmodels():
    pytest.importorskip("statsmodels")
    shapes = {name: TASKS[name].rows(0).shape for name in ("fair-affairs", "fair-rating",
                                                           "randhie")}
    assert shapes == {"fair-affairs": (6366, 9), "fair-rating": (6366, 9),
                      "randhie": (20190, 10)}
    assert set(TASKS["fair-rating"].rows(0)["target"]) == {1, 2, 3, 4, 5}
