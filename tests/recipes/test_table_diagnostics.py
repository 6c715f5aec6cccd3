"""DiverseDistill's place in each line of the tables, with what its module diagnostics say,
read back from the runs' metrics.csv (comparison/diagnostics.py)."""

from __future__ import annotations

import json

from diversedistill_recipes.comparison.diagnostics import (
    LONG_PLATEAU,
    describe,
    epochs_at_constant,
    last_epoch,
    read_training_answers,
)
from diversedistill_recipes.comparison.results import MSE
from diversedistill_recipes.comparison.tables import build_tables, search_row, search_run_dir


def write_metrics(run, rows: list[dict]) -> None:
    logs = run / "logs"
    logs.mkdir(parents=True)
    header = sorted({k for r in rows for k in r})
    lines = [",".join(header)] + [",".join(str(r.get(k, "")) for k in header) for r in rows]
    (logs / "metrics.csv").write_text("\n".join(lines) + "\n")


def diag_rows(on_answer: float, on_z: float) -> list[dict]:
    # epoch 0, then the last epoch (1) whose values count; a training line without them
    return [{"epoch": 0, "diag/mlp-l/head_on_answer": 0.99, "diag/head_on_z": 0.99},
            {"epoch": 1, "train/loss": 0.5},
            {"epoch": 1, "diag/mlp-l/head_on_answer": on_answer, "diag/head_on_z": on_z,
             "diag/mlp-l/teacher_asked": 0.84, "diag/mlp-l/teacher_own": 0.85,
             "diag/mlp-l/alpha_mean": 0.6, "diag/mlp-l/alpha_std": 0.02,
             "diag/mlp-l/along_head": 0.9}]


def test_the_training_rows_answers_are_read_per_teacher_and_epoch(tmp_path):
    write_metrics(tmp_path / "a", [
        {"epoch": 0, "train/head_on_answer/mlp-m": 0.72, "train/head_on_answer/mlp-l": 0.67,
         "train/head_on_z": 0.80},
        {"epoch": 0, "diag/mlp-m/head_on_answer": 0.81},
        {"epoch": 1, "train/head_on_answer/mlp-m": 0.66, "train/head_on_answer/mlp-l": 0.61,
         "train/head_on_answer_unseen/mlp-m": 0.79}])
    curves = read_training_answers(tmp_path / "a" / "logs" / "metrics.csv")
    assert curves == {"mlp-m/train_head_on_answer": {0: 0.72, 1: 0.66},
                      "mlp-l/train_head_on_answer": {0: 0.67, 1: 0.61},
                      "mlp-m/unseen_head_on_answer": {1: 0.79}}


def test_last_epoch_diagnostics_are_averaged_over_the_runs_that_logged_them(tmp_path):
    write_metrics(tmp_path / "a", diag_rows(0.80, 0.86))
    write_metrics(tmp_path / "b", diag_rows(0.82, 0.88))
    values, runs = last_epoch([tmp_path / "a", tmp_path / "b", tmp_path / "missing"])
    assert runs == 2 and abs(values["mlp-l/head_on_answer"] - 0.81) < 1e-12
    text = describe([tmp_path / "a"], ["mlp-l"], "MSE")
    assert text.startswith("validation MSE at the last epoch, mean over 1 run(s): **mlp-l**: "
                           "the teacher asked the question 0.8400 against its own pass 0.8500;")
    assert "head on its answer 0.8000 against on z 0.8600" in text and "90% of the distance" in text
    assert describe([tmp_path / "missing"], ["mlp-l"], "MSE") == ""


def test_the_tables_state_diverse_distills_place_and_its_diagnostics(tmp_path):
    """DiverseDistill second of four from MLP-L: the line names the first method and reads
    seed 0 from the search's chosen trial, seed 1 from its own run."""
    means = {"ld": 0.84, "fd": 0.86, "sckd": 0.87, "diversedistill": 0.85}
    rows = [MSE.row(m, "mlp-l", seed, v, v + 0.001 * seed, 1.0)
            for m, v in means.items() for seed in (0, 1)]
    search = [search_row(MSE, "diversedistill", "mlp-l", 0, 2, "lam", json.dumps({"lam": 3.0}),
                         0.85, 1.0, True)]
    write_metrics(search_run_dir(tmp_path, "diversedistill", "mlp-l", 2), diag_rows(0.80, 0.86))
    write_metrics(tmp_path / "runs" / "diversedistill-mlp-l-1", diag_rows(0.82, 0.88))
    table = build_tables(rows, search, out=tmp_path)["table3.md"]
    line = next(x for x in table.splitlines() if x.startswith("- from MLP-L"))
    assert line.startswith("- from MLP-L: **2nd of 4** (first: LD, 0.8405 against 0.8505)")
    assert "mean over 2 run(s)" in line and "head on its answer 0.8100 against on z 0.8700" in line
    # without the results directory (tables rebuilt from rows alone) only the place is given
    plain = build_tables(rows, search)["table3.md"]
    assert "- from MLP-L: **2nd of 4**" in plain and "diagnostics" not in plain


def plateau_rows(constant: float, scores: list[float]) -> list[dict]:
    return [{"epoch": e, "val_mse": v, "val_mse_constant": constant} for e, v in enumerate(scores)]


def test_epochs_at_the_constant_are_counted_from_the_logged_constant(tmp_path):
    # closing under 1% of the gap to a perfect score counts (1.27 of 1.2759 closes 0.5%)
    write_metrics(tmp_path / "a", plateau_rows(1.2759, [1.2760, 1.27, 1.20, 0.90, 0.88]))
    assert epochs_at_constant(tmp_path / "a" / "logs" / "metrics.csv", "mse") == 2
    write_metrics(tmp_path / "old", [{"epoch": 0, "val_mse": 1.2760}])  # before the column
    assert epochs_at_constant(tmp_path / "old" / "logs" / "metrics.csv", "mse") is None


def test_the_tables_name_every_cell_whose_runs_sat_at_the_constant(tmp_path):
    """LD from MLP-L: seed 1 sat 6 epochs at the constant; seed 0 (the search's chosen
    trial) 2 epochs, within patience: only the long one is named, under the table."""
    rows = [MSE.row(m, "mlp-l", seed, 0.85, 0.86, 1.0)
            for m in ("ld", "fd") for seed in (0, 1)]
    search = [search_row(MSE, "ld", "mlp-l", 0, 1, "lam", json.dumps({"lam": 3.0}), 0.85, 1.0,
                         True)]
    stuck, fine = [1.276] * 6 + [0.9, 0.86], [1.276] * 2 + [0.9, 0.86]
    write_metrics(search_run_dir(tmp_path, "ld", "mlp-l", 1), plateau_rows(1.2759, fine))
    write_metrics(tmp_path / "runs" / "ld-mlp-l-1", plateau_rows(1.2759, stuck))
    for seed in (0, 1):
        write_metrics(tmp_path / "runs" / f"fd-mlp-l-{seed}", plateau_rows(1.2759, fine))
    table = build_tables(rows, search, out=tmp_path)["table3.md"]
    assert ("- LD from MLP-L: 1 of 2 run(s) sat at the constant prediction for more than "
            f"{LONG_PLATEAU} epochs (6 epochs)") in table
    assert "FD from MLP-L" not in table
    # no long plateau anywhere: nothing is said
    write_metrics(tmp_path / "calm" / "runs" / "ld-mlp-l-1", plateau_rows(1.2759, fine))
    assert "constant prediction" not in build_tables(rows, out=tmp_path / "calm")["table3.md"]
