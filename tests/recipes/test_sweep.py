"""The importance-gating sweep: skipped fractions read back, τ chosen on validation, CLI."""

from __future__ import annotations

import csv

import pytest

from diversedistill_recipes.cli import main
from diversedistill_recipes.comparison.gating_claim import decide_gating_claim, format_gating_claim
from diversedistill_recipes.comparison.results import ResultRow, summarize
from diversedistill_recipes.comparison.sweep import (
    SweepRow,
    choose_tau,
    format_sweep,
    skipped_fractions,
    sweep_csv_text,
    sweep_label,
)


def test_skipped_fractions_average_the_logged_epochs(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.csv").write_text(
        "epoch,step,train/skipped/lm,train/skipped/mlp-l,val_mse\n"
        "0,10,,,0.9\n0,10,0.0,0.0,\n1,20,,,0.88\n1,20,0.6,0.2,\n2,30,0.9,0.4,\n")
    got = skipped_fractions(tmp_path)
    assert got == pytest.approx({"lm": 0.5, "mlp-l": 0.2})


def rows(val_by_tau: dict[float, list[float]]) -> list[SweepRow]:
    # asked because α > τ: all but 5% of the asked rows (the rest explored at random)
    return [SweepRow(tau, seed, val, val + 0.01, 10, 20.0 * (1 - tau / 2),
                     {"lm": tau, "mlp-l": tau / 2},
                     {"lm": 1 - tau - 0.05 * (tau > 0), "mlp-l": 1 - tau / 2 - 0.05 * (tau > 0)})
            for tau, vals in val_by_tau.items() for seed, val in enumerate(vals)]


def test_chosen_tau_is_the_largest_within_the_tau0_spread_on_validation():
    # τ = 0: mean 0.84, std 0.01 -> threshold 0.85
    sweep = rows({0.0: [0.83, 0.85], 0.5: [0.84, 0.86], 0.7: [0.85, 0.87], 0.8: [0.86, 0.88]})
    assert choose_tau(sweep) == 0.5  # 0.85 ≤ 0.85; 0.7's mean 0.86 is outside
    assert choose_tau(rows({0.0: [0.84], 0.3: [0.80]})) == 0.3  # one seed: the mean itself
    assert choose_tau(rows({0.5: [0.84]})) is None  # no τ = 0 runs to compare against


def test_sweep_table_and_csv_report_skips_and_time_saved():
    sweep = rows({0.0: [0.84, 0.84], 0.6: [0.84, 0.84]})
    table = format_sweep(sweep)
    assert "| 0.6 | 2 | 60.0% | 30.0% | 45.0% | 50.0% / 5.0% | 14.0 | 30.0% |" in table
    assert ("τ chosen on validation (largest τ with mean val MSE ≤ the τ = 0 mean + std): 0.6"
            in table)
    lines = list(csv.DictReader(sweep_csv_text(sweep).splitlines()))
    assert lines[2]["tau"] == "0.6" and float(lines[2]["skipped/lm"]) == 0.6
    assert float(lines[2]["asked_by_alpha/lm"]) == pytest.approx(0.35)
    assert read_back_equal(sweep)


def test_claim_5_holds_where_gating_saves_passes_and_time_by_alpha_with_no_real_loss():
    # τ = 0.6 (the paper's, and chosen): skips 45% of passes, 30% of the time, by α
    claim = decide_gating_claim(rows({0.0: [0.84, 0.85], 0.6: [0.845, 0.855]}))
    assert claim.verdict == "holds" and len(claim.evidence) == 1
    assert format_gating_claim(claim).startswith("Claim 5: holds. Importance gating at τ = 0.6")
    assert claim.evidence[0].startswith("τ = 0.6 (the paper's): skips 45.0% of teacher passes, "
                                        "saves 30.0% of epoch time; of all rows, 50.0% asked "
                                        "because α > τ and 5.0% by the random exploration")


def test_claim_5_fails_on_a_real_loss_at_either_tau():
    # the paper's τ = 0.6 is really worse on test; the chosen τ = 0.3 is fine
    claim = decide_gating_claim(rows({0.0: [0.84, 0.85], 0.3: [0.845, 0.85], 0.6: [0.90, 0.91]}))
    assert claim.verdict == "does not hold"
    assert [e.split(":")[0] for e in claim.evidence] == ["τ = 0.6 (the paper's)",
                                                         "τ = 0.3 (chosen on validation)"]
    assert claim.evidence[0].endswith("really worse")
    assert claim.evidence[1].endswith("no real loss")


def test_claim_5_fails_where_the_rows_asked_are_mostly_explored_at_random():
    sweep = rows({0.0: [0.84, 0.85], 0.6: [0.845, 0.855]})
    for r in sweep:
        if r.tau == 0.6:  # of all rows: 55% asked, 5% by α, 50% explored
            r.by_alpha = {t: 0.05 for t in r.by_alpha}
            r.skipped = {t: 0.45 for t in r.skipped}
    claim = decide_gating_claim(sweep)
    assert claim.verdict == "does not hold"
    assert claim.evidence[0].endswith("the rows asked are mostly the random exploration's")


def test_claim_5_is_not_decided_on_one_seed_or_without_tau_0():
    assert decide_gating_claim(rows({0.0: [0.84], 0.6: [0.84]})).verdict.startswith(
        "not decided (fewer than 2 seeds")
    assert decide_gating_claim(rows({0.6: [0.84, 0.85]})).verdict.startswith("not decided")


def read_back_equal(sweep) -> bool:
    import tempfile
    from pathlib import Path

    from diversedistill_recipes.comparison.sweep import read_sweep, write_sweep

    with tempfile.TemporaryDirectory() as d:
        write_sweep(Path(d) / "sweep.csv", sweep)
        back = read_sweep(Path(d) / "sweep.csv")
    return all(a.by_alpha == pytest.approx(b.by_alpha) and a.skipped == pytest.approx(b.skipped)
               for a, b in zip(sweep, back))


def test_cli_refuses_a_bad_sweep_before_training(ml100k_dir, tmp_path, capsys):
    base = ["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--out", str(tmp_path / "o"),
            "--cache-dir", str(tmp_path / "c"), "--lm", "none", "--no-progress"]
    assert main(base + ["--tau-sweep", "0", "1.5"]) == 2
    assert "in [0, 1), got 1.5" in capsys.readouterr().err
    assert main(base + ["--tau-sweep", "0", "--committees", "lm+mlp-l"]) == 2
    assert "absent teacher 'lm'" in capsys.readouterr().err
    assert main(base + ["--tau-sweep", "0", "--committees", "mlp-l", "mlp-m"]) == 2
    assert "runs one committee" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing trained


def test_sweep_runs_each_tau_and_writes_sweep_csv(ml100k_dir, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--out", str(out),
            "--cache-dir", str(tmp_path / "c"), "--lm", "none", "--no-progress", "--seeds", "1",
            "--hidden", "16", "--committees", "mlp-m+mlp-l", "--tau-sweep", "0", "0.6"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "τ chosen on validation" in printed
    with open(out / "sweep.csv") as f:
        sweep = list(csv.DictReader(f))
    assert [r["tau"] for r in sweep] == ["0", "0.6"]
    assert float(sweep[0]["skipped/mlp-m"]) == 0.0  # τ = 0 asks every row
    assert all(0 <= float(r["skipped/mlp-l"]) <= 1 for r in sweep)
    with open(out / "results.csv") as f:
        labels = {r["method"] for r in csv.DictReader(f)}
    assert {"diversedistill τ=0", "diversedistill τ=0.6", "student alone"} <= labels


def test_a_resumed_sweep_keeps_its_rows_and_runs_only_the_missing_thresholds(
        ml100k_dir, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--out", str(out),
            "--cache-dir", str(tmp_path / "c"), "--lm", "none", "--no-progress", "--seeds", "1",
            "--hidden", "16", "--committees", "mlp-m+mlp-l", "--tau-sweep"]
    assert main(args + ["0"]) == 0
    first = (out / "sweep.csv").read_text()
    capsys.readouterr()
    assert main(args + ["0", "0.6", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "1 sweep rows kept" in printed
    ran = [line.split()[3] for line in printed.splitlines()
           if line.startswith("  seed 0  diversedistill")]
    assert ran == ["τ=0.6"]  # τ = 0 was kept, not run again
    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[1] == first.splitlines()[1] and lines[2].startswith("0.6,0,")


def test_a_resumed_ablation_run_trains_only_the_rows_it_lacks(ml100k_dir, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--out", str(out),
            "--cache-dir", str(tmp_path / "c"), "--lm", "none", "--no-progress", "--seeds", "1",
            "--hidden", "16", "--committees", "mlp-m+mlp-l", "--ablations", "--methods"]
    assert main(args + ["dd ablation: answers detached"]) == 0
    with open(out / "results.csv") as f:
        first = {(r["method"], r["seed"]): r["test_mse"] for r in csv.DictReader(f)}
    capsys.readouterr()
    assert main(args + ["dd ablation: answers detached", "diversedistill", "--resume"]) == 0
    printed = capsys.readouterr().out
    trained = [line.split()[2] for line in printed.splitlines()
               if line.startswith("  seed 0  ") and "mlp-m+mlp-l" in line]
    assert trained == ["diversedistill"]  # the ablation row and the student alone were kept
    assert "1 run(s)" in printed
    with open(out / "results.csv") as f:
        again = {(r["method"], r["seed"]): r["test_mse"] for r in csv.DictReader(f)}
    kept = ("dd ablation: answers detached", "0")
    assert again[kept] == first[kept] and ("diversedistill", "0") in again


def test_the_summary_lists_a_sweep_by_tau_whatever_order_its_runs_finished_in():
    finished = ["student alone", sweep_label(0.5), sweep_label(0), "teacher alone",
                sweep_label(0.65), sweep_label(0.55)]
    rows = [ResultRow(m, "mlp-s" if m == "student alone" else "lm+mlp-l", 0, 0.9,
                      0.85 if m == "teacher alone" else 0.9, 1.0) for m in finished]
    summary, _ = summarize(rows)
    assert [r.method for r in summary] == [
        "student alone", sweep_label(0), sweep_label(0.5), "teacher alone", sweep_label(0.55),
        sweep_label(0.65)]
