"""`diversedistill report`: small generated results directories, no training."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib.image
import pytest
import torch
from tiny import tiny_batch, tiny_recommender

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError, DataError
from diversedistill.interface import HookedStudent, HookedTeacher
from diversedistill.methods import DiverseDistill, DiverseDistillConfig
from diversedistill.methods.importance import sample_batch, save_importance
from diversedistill.runs import rundir
from diversedistill.runs.atomic import write_text_atomic
from diversedistill_recipes.cli import main
from diversedistill_recipes.comparison.results import ACCURACY, MSE, ResultRow, write_csv
from diversedistill_recipes.report import PLOTS, run_name, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DISTILLED = [("diversedistill", "mlp-m+mlp-l"), ("diversedistill", "mlp-l"), ("fd", "mlp-l"),
             ("dd ablation: answers not detached", "mlp-m+mlp-l")]


def write_rows(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def results_dir(root: Path, seeds=(0, 1), vision=False, runs=True, importance=True,
                sweep=True) -> Path:
    """A results directory as `reproduce` (and the τ sweep) leave it, with made-up numbers:
    MovieLens (MSE, lower is better) or vision (accuracy, higher is better)."""
    metric, row, student = (("accuracy", ACCURACY.row, "vit-s") if vision
                            else ("mse", MSE.row, "mlp-s"))
    good = (lambda x: 0.6 + 0.1 * x) if vision else (lambda x: 0.90 - 0.05 * x)  # x: 0 bad, 1 good
    rows = []
    for seed in seeds:
        wobble = 0.01 * seed
        if not vision:
            rows.append(row("reference", "global mean", seed, float("nan"), 1.27, 0.0))
        rows += [row("teacher alone", "mlp-m", seed, good(1), good(1), 9.0),
                 row("teacher alone", "mlp-l", seed, good(0.9), good(0.9), 9.0),
                 row("student alone", student, seed, good(0), good(0) + wobble, 1.0)]
        rows += [row(m, t, seed, good(0.5), good(0.5 + k / 10) + wobble, 3.0)
                 for k, (m, t) in enumerate(DISTILLED)]
    write_csv(root / "results.csv", rows)
    for r in rows:
        if runs and r.method not in ("reference", "teacher alone"):
            run = root / "runs" / run_name(r)
            header = ["epoch", "step", "train/loss", f"val_{metric}"]
            # a DiverseDistill run of this version also logs its diagnostics per epoch
            diag = [f"diag/{t}/{k}" for t in r.teachers.split("+") for k in (
                "teacher_own", "teacher_asked", "head_on_answer", "alpha_mean", "alpha_std",
                "along_head")] if importance and r.method == "diversedistill" else []
            header += diag + (["diag/head_on_z"] if diag else [])
            lines = []
            for epoch in range(3 + r.seed):  # seeds stop at different epochs
                values = [good(epoch / 4) * (1 + k / 50) for k in range(len(diag))]
                lines += [[epoch, 10 * epoch, "", good(epoch / 4), *values,
                           *([good(0.1)] if diag else [])],
                          [epoch, 10 * epoch, 1.0, "", *([""] * (len(diag) + bool(diag)))]]
            write_rows(run / "logs" / "metrics.csv", header, lines)
            if importance and r.method.startswith(("diversedistill", "dd ")):
                names = r.teachers.split("+")
                write_rows(run / "importance.csv", ["sample", *names],
                           [[i, *((i * (j + 1) % 7) / 6 for j in range(len(names)))]
                            for i in range(64)])
    if sweep:
        write_rows(root / "sweep.csv",
                   ["tau", "seed", f"val_{metric}", f"test_{metric}", "epoch_seconds",
                    "skipped/mlp-m", "skipped/mlp-l"],
                   [[tau, seed, good(1 - tau), good(1 - tau) + 0.01 * seed, 2 - tau + seed,
                     tau, tau / 2] for tau in (0.0, 0.25, 0.5, 0.75) for seed in seeds])
    return root


def check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # something drawn, not a blank canvas


def test_report_writes_every_plot_and_references_it(tmp_path):
    source = results_dir(tmp_path / "results")
    path, inputs, plots = write_report([source], tmp_path / "out")
    assert sorted(plots) == sorted(PLOTS)
    text = path.read_text()
    for name in PLOTS:
        check_png(tmp_path / "out" / name)
        assert f"]({name})" in text
    assert "| diversedistill | mlp-m+mlp-l | 2 |" in text  # the summary table, both seeds
    assert "Missing inputs" not in text and not inputs.notes
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no temporary file left behind


def test_report_is_deterministic_and_reads_several_directories(tmp_path):
    dirs = [results_dir(tmp_path / f"s{s}", seeds=(s,)) for s in (0, 1, 2)]
    first, _, _ = write_report(dirs, tmp_path / "a")
    _, inputs, _ = write_report(dirs, tmp_path / "b")
    assert {r.seed for r in inputs.rows} == {0, 1, 2} and len(inputs.sweep) == 12
    assert "| student alone | mlp-s | 3 |" in first.read_text()
    for name in ["report.md", *PLOTS]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_vision_results(tmp_path):
    path, _, plots = write_report([results_dir(tmp_path / "cifar10", vision=True)])
    assert path == tmp_path / "cifar10" / "report" / "report.md"  # the default place
    assert sorted(plots) == sorted(PLOTS)
    text = path.read_text()
    assert "test accuracy (higher is better)" in text
    # gap recovered against the vision student (vit-s, 0.605) and the best teacher (0.70,
    # the highest accuracy): (0.655 - 0.605) / (0.70 - 0.605)
    assert "| diversedistill | mlp-m+mlp-l | 2 | 0.6550 ± 0.0071 | 52.6% ± 3.9 |" in text
    for name in plots:
        check_png(path.parent / name)


def test_missing_optional_inputs_are_named_not_fatal(tmp_path):
    bare = results_dir(tmp_path / "bare", runs=False, sweep=False)
    out = rundir.own(tmp_path / "out", "report")
    write_text_atomic(out / "sweep.png", "an older report's plot")  # written by the tool
    path, _, plots = write_report([bare], out)
    assert sorted(plots) == ["gap_recovered.png", "test_metric.png"]
    text = path.read_text()
    assert "no sweep.csv" in text and "no runs/ directories" in text
    assert "learning_curves.png" not in text and not (out / "sweep.png").exists()

    no_alpha = results_dir(tmp_path / "old", importance=False, sweep=False)
    (no_alpha / "runs" / "student-0" / "logs" / "metrics.csv").unlink()
    (no_alpha / "runs" / "diversedistill-mlp-l-7").mkdir()  # a run with no row: unfinished
    path, _, plots = write_report([no_alpha])
    text = path.read_text()
    assert "learning_curves.png" in plots and "importance.png" not in plots
    assert "no importance.csv in any DiverseDistill run" in text
    assert "no validation curve (logs/metrics.csv) for 1 run(s): student-0" in text
    assert "without a results.csv row (unfinished?) left out: diversedistill-mlp-l-7" in text


def test_missing_results_csv_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match=str(tmp_path / "empty")):
        write_report([tmp_path / "empty"])
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results.csv" in err and str(tmp_path / "empty") in err


def test_cli_report(tmp_path, capsys):
    source = results_dir(tmp_path / "results", sweep=False)
    assert main(["report", str(source), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'out' / 'report.md'}" in out and "missing: no sweep.csv" in out


def test_malformed_inputs_name_the_file(tmp_path):
    bad = tmp_path / "bad"
    write_rows(bad / "results.csv", ["method", "teachers", "seed", "val_mse"], [["x", "y", 0, 1.0]])
    with pytest.raises(DataError, match="results.csv: expected a test_mse"):
        write_report([bad])
    mixed = [results_dir(tmp_path / "ml"), results_dir(tmp_path / "img", vision=True)]
    with pytest.raises(ConfigError, match="measure different things"):
        write_report(mixed)


def test_summarize_refuses_to_put_accuracy_rows_into_an_mse_table(tmp_path, capsys):
    mixed = [results_dir(tmp_path / "ml"), results_dir(tmp_path / "img", vision=True)]
    assert main(["summarize", *map(str, mixed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test mse" in err and "test accuracy" in err


def test_gap_recovered_is_undefined_when_the_teachers_are_no_better_than_the_student():
    from diversedistill_recipes.comparison.results import format_table, summarize

    # MSE: the teacher alone (0.95) is worse than the student alone (0.90); the distilled
    # student (0.92) is worse than the student too: no "+20%" (or "+677%") may be printed
    rows = [MSE.row(method, teachers, seed, 0.0, score + 0.001 * seed, 1.0)
            for seed in range(3) for method, teachers, score in
            (("student alone", "mlp-s", 0.90), ("teacher alone", "mlp-l", 0.95),
             ("diversedistill", "mlp-l", 0.92))]
    summary, best = summarize(rows)
    assert all(r.gap_recovered is None and r.gap_undefined for r in summary)
    table = format_table(summary, best)
    assert "%" not in table.split("\n\n")[0] and "undefined" in table
    assert "is not better than the student alone (0.9010)" in table
    better = [r if r.method != "teacher alone" else MSE.row(r.method, r.teachers, r.seed,
                                                              0.0, 0.80, 1.0) for r in rows]
    summary, _ = summarize(better)  # a real gap: the figure is back, signed as before
    dd = next(r for r in summary if r.method == "diversedistill")
    assert not dd.gap_undefined and dd.gap_recovered == pytest.approx(-0.19, abs=0.01)


def tiny_distill(cfg: DiverseDistillConfig | None = None):
    student = HookedStudent(tiny_recommender(dropout=0.5), "embed", "head")
    committee = Committee([
        HookedTeacher("m", tiny_recommender((16, 8), 6, seed=1), "embed", "head"),
        HookedTeacher("l", tiny_recommender((32, 12), 8, seed=2), "embed", "head")])
    batch = tiny_batch(24)
    committee.probe(batch)
    method = DiverseDistill(cfg or DiverseDistillConfig(d1=3, d2=5, hidden=7))
    method.setup(student, committee, batch)
    return student, committee, method, batch


def read_importance_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_save_importance_writes_alpha_per_sample_and_teacher(tmp_path):
    student, committee, method, batch = tiny_distill()
    student.train()
    path = save_importance(method, student, batch, committee.names, tmp_path / "importance.csv")
    lines = read_importance_csv(path)
    assert lines[0] == ["sample", "m", "l"]
    assert [int(x[0]) for x in lines[1:]] == list(range(24))
    alpha = torch.tensor([[float(v) for v in x[1:]] for x in lines[1:]])
    assert alpha.shape == (24, 2) and ((alpha >= 0) & (alpha <= 1)).all()
    assert alpha.std() > 0  # per-sample values, not one constant
    assert student.training and method.training  # the caller's modes are left as they were
    # eval mode: dropout off, so the same rows give the same file
    again = save_importance(method, student, batch, committee.names, tmp_path / "again.csv")
    assert again.read_text() == path.read_text()


def test_save_importance_without_importance_is_one(tmp_path):
    student, committee, method, batch = tiny_distill(
        DiverseDistillConfig(d1=3, d2=5, hidden=7, importance_target="none"))
    path = save_importance(method, student, batch, committee.names, tmp_path / "i.csv")
    assert all(v == "1.000000" for x in read_importance_csv(path)[1:] for v in x[1:])


def test_sample_batch_is_the_first_rows_of_the_first_batch():
    batches = [tiny_batch(100, seed=s) for s in range(3)]
    first = sample_batch(batches, 64)
    assert all(torch.equal(v, batches[0][k][:64]) for k, v in first.items())


def test_the_tables_seed_0_run_is_read_from_its_chosen_search_run(tmp_path):
    from diversedistill_recipes.report import load_inputs

    root = results_dir(tmp_path / "r", importance=False, sweep=False)
    # the tables keep a cell's seed-0 result in runs/search/<method>-<teachers>-<trial>
    seed0 = root / "runs" / run_name(ResultRow("fd", "mlp-l", 0, 0, 0, 0))
    chosen = root / "runs" / "search" / "fd-mlp-l-1"
    chosen.parent.mkdir(parents=True)
    seed0.rename(chosen)
    (root / "runs" / "search" / "fd-mlp-l-0").mkdir()  # the value not chosen
    write_rows(root / "search.csv", ["method", "teachers", "seed", "trial", "config", "val_mse",
                                     "seconds", "chosen"],
               [["fd", "mlp-l", 0, 0, '{"lam": 1.0}', 0.9, 1.0, False],
                ["fd", "mlp-l", 0, 1, '{"lam": 3.0}', 0.8, 1.0, True]])
    inputs = load_inputs([root])
    assert inputs.runs[("fd", "mlp-l", 0)] == chosen
    assert not any("without a results.csv row" in n for n in inputs.notes)


def test_a_tau_sweep_run_is_found_under_its_ascii_directory(tmp_path):
    from diversedistill_recipes.comparison.sweep import sweep_label
    from diversedistill_recipes.report import load_inputs

    root = tmp_path / "r"
    row = ResultRow(sweep_label(0.5), "mlp-m+mlp-l", 2, 0.85, 0.86, 10.0)
    write_csv(root / "results.csv", [ResultRow("student alone", "mlp-s", 2, 0.9, 0.9, 1.0), row])
    run = root / "runs" / "diversedistill-tau0.5-mlp-m+mlp-l-2"  # what reproduce --tau-sweep writes
    write_rows(run / "logs" / "metrics.csv", ["epoch", "step", "val_mse"], [[0, 1, 0.9]])
    inputs = load_inputs([root])
    assert inputs.runs[(row.method, row.teachers, 2)] == run
    assert not any("without a results.csv row" in n for n in inputs.notes)


def test_report_on_one_distill_run_plots_its_curves_and_diagnostics(tmp_path):
    """A single ``fit`` run directory is a results directory of one row."""
    from torch.utils.data import DataLoader, TensorDataset

    from diversedistill.committee import Committee
    from diversedistill.interface import HookedStudent, HookedTeacher
    from diversedistill.loop.contract import NamedRows
    from diversedistill.methods import DiverseDistill
    from diversedistill.training import TrainConfig, fit
    from diversedistill_recipes.report import write_report

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    rows = NamedRows(TensorDataset(x, (x[:, 0] > 0).long()), ("x", "target"))
    loader = DataLoader(rows, batch_size=16)
    net = lambda width: torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(),  # noqa: E731
                                            torch.nn.Linear(width, 2))
    call = lambda m, b: m(b["x"])  # noqa: E731
    committee = Committee([HookedTeacher("wide", net(16), "0", "2", call=call)])
    fit(HookedStudent(net(8), "0", "2", call=call), DiverseDistill(), committee, loader, loader,
        None, TrainConfig(max_epochs=2, progress=False), tmp_path / "run")
    path, inputs, plots = write_report([tmp_path / "run"], tmp_path / "report")
    assert [(r.method, r.teachers, r.seed) for r in inputs.rows] == [
        ("diversedistill λ=3", "wide", 0)]  # its λ named: runs at other λ are other rows
    assert 0.0 <= inputs.rows[0].val <= 1.0
    assert {"learning_curves.png", "diagnostics.png"} <= set(plots)
    assert "| diversedistill λ=3 | wide | 1 |" in path.read_text()


def test_the_report_names_runs_that_sat_at_the_constant_prediction(tmp_path):
    """One run's metrics.csv logs the constant's score and sits there 6 epochs: the report
    names it under the learning curves; the runs without the column are not named."""
    source = results_dir(tmp_path / "results")
    run = source / "runs" / "fd-mlp-l-0"
    write_rows(run / "logs" / "metrics.csv", ["epoch", "val_mse", "val_mse_constant"],
               [[e, 1.27 if e < 6 else 0.85, 1.2759] for e in range(9)])
    path, inputs, _ = write_report([source], tmp_path / "out")
    assert inputs.stalled == ["`fd-mlp-l-0`: 6 epochs"]
    assert "for more than 4 epochs: `fd-mlp-l-0`: 6 epochs." in path.read_text()
    write_rows(run / "logs" / "metrics.csv", ["epoch", "val_mse", "val_mse_constant"],
               [[e, 1.27 if e < 2 else 0.85, 1.2759] for e in range(9)])  # within patience
    path, inputs, _ = write_report([source], tmp_path / "out")
    assert not inputs.stalled and "constant prediction" not in path.read_text()


def test_report_and_summarize_read_runs_of_a_users_own_fit(tmp_path, capsys):
    """Runs trained by ``fit`` from Python: finite test figures, one row per λ, the student
    alone named as such even when handed a committee, importance.csv written by fit."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from diversedistill import (
        Committee,
        DiverseDistill,
        DiverseDistillConfig,
        HookedStudent,
        HookedTeacher,
        NamedRows,
        StudentOnly,
        TrainConfig,
        fit,
    )
    from diversedistill_recipes.cli import main
    from diversedistill_recipes.report import load_inputs

    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, generator=g)
    rows = NamedRows(TensorDataset(x, x.sum(1)), ("x", "target"))
    loader = DataLoader(rows, batch_size=32)

    def mlp(width):
        return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 1), nn.Flatten(0))

    call = lambda m, b: m(b["x"])  # noqa: E731
    committee = Committee([HookedTeacher("wide", mlp(16), "1", "2", call=call)])
    runs = {"alone": StudentOnly(), "lam1": DiverseDistill(DiverseDistillConfig(lam=1.0)),
            "lam3": DiverseDistill(DiverseDistillConfig(lam=3.0))}
    for name, method in runs.items():
        fit(HookedStudent(mlp(4), "1", "2", call=call), method, committee, loader, loader,
            loader, TrainConfig(max_epochs=1, progress=False), tmp_path / name)
    inputs = load_inputs([tmp_path / n for n in runs])
    assert sorted((r.method, r.teachers) for r in inputs.rows) == [
        ("diversedistill λ=1", "wide"), ("diversedistill λ=3", "wide"),
        ("student alone", "student")]
    assert all(math.isfinite(r.test) for r in inputs.rows)
    assert (tmp_path / "lam1" / "importance.csv").is_file()
    assert main(["summarize", str(tmp_path / "lam1"), str(tmp_path / "alone")]) == 0
    printed = capsys.readouterr().out
    assert "diversedistill λ=1" in printed and "nan" not in printed
