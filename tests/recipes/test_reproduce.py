import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_lm import tiny_bert_dir

from diversedistill_recipes.cli import main
from diversedistill_recipes.comparison.results import ResultRow, gap_recovered, summarize


def test_gap_recovered_is_signed_so_improvement_is_positive():
    assert gap_recovered(0.86, 0.88, 0.84) == pytest.approx(0.5)
    assert gap_recovered(0.83, 0.88, 0.84) == pytest.approx(1.25)  # beats the teacher
    assert gap_recovered(0.90, 0.88, 0.84) == pytest.approx(-0.5)
    assert gap_recovered(0.95, 0.90, 0.95) == pytest.approx(1.0)  # accuracy-like, higher better


def test_summary_uses_the_best_teacher_and_per_seed_spread():
    rows = [ResultRow("student alone", "mlp-s", s, 0, 0.88 + 0.01 * s, 0) for s in range(2)]
    rows += [ResultRow("teacher alone", "mlp-l", s, 0, 0.84, 0) for s in range(2)]
    rows += [ResultRow("teacher alone", "mlp-m", s, 0, 0.85, 0) for s in range(2)]
    rows += [ResultRow("diversedistill", "mlp-l", s, 0, 0.86 + 0.01 * s, 0) for s in range(2)]
    summary, best = summarize(rows)
    assert best == "mlp-l"
    dd = next(r for r in summary if r.method == "diversedistill")
    assert dd.gap_recovered == pytest.approx((0.865 - 0.885) / (0.84 - 0.885))
    assert dd.gap_recovered_std > 0


def test_reproduce_writes_results_and_summary(ml100k_dir, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    lm = tiny_bert_dir(tmp_path / "tiny-bert")
    config = tmp_path / "lm.yaml"
    config.write_text("lm:\n  epochs: 1\n")
    args = ["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--seeds", "2", "--out",
            str(out), "--cache-dir", str(cache), "--no-progress", "--hidden", "16",
            "--lm", str(lm), "--config", str(config)]
    # every kind of row once: an MLP committee, the LM committee, FD from the LM alone
    assert main(args + ["--committees", "mlp-m+mlp-l", "lm+mlp-l", "lm"]) == 0
    printed = capsys.readouterr().out
    assert "| diversedistill | mlp-m+mlp-l | 2 |" in printed
    assert "| diversedistill | lm+mlp-l | 2 |" in printed
    assert "| fd | lm | 2 |" in printed
    assert "| teacher alone | lm | 2 |" in printed
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["method", "teachers", "seed", "val_mse", "test_mse", "seconds"]
    methods = {(r["method"], r["teachers"]) for r in rows}
    assert {("student alone", "mlp-s"), ("teacher alone", "mlp-l"), ("diversedistill", "lm"),
            ("diversedistill", "mlp-m+mlp-l"), ("reference", "user + item biases")} <= methods
    assert ("diversedistill", "mlp-m") not in methods  # left out by --committees
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert {"test_mse_mean", "test_mse_std", "gap_recovered"} <= set(summary[0])
    entries = sorted(p for p in cache.iterdir() if (p / "model.safetensors").is_file())
    assert [p.name.split("-")[1] for p in entries] == ["l", "m"]  # both teachers cached ...
    written = {p: (p / "model.safetensors").stat().st_mtime_ns for p in entries}
    assert main(args + ["--seeds", "1", "--committees", "mlp-l"]) == 0  # ... and reused:
    # the second run rewrites neither
    assert {p: (p / "model.safetensors").stat().st_mtime_ns for p in entries} == written


def test_seeds_spread_over_runs_are_summarized_together(ml100k_dir, tmp_path, capsys):
    common = ["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--seeds", "1",
              "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--hidden", "16",
              "--lm", "none", "--committees", "mlp-l"]
    assert main(common + ["--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--out", str(tmp_path / "b"), "--first-seed", "1"]) == 0
    capsys.readouterr()
    with open(tmp_path / "b" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["seed"] for r in rows} == {"1"}
    assert {(r["method"], r["teachers"]) for r in rows if r["method"] == "diversedistill"} == {
        ("diversedistill", "mlp-l")}
    assert main(["summarize", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "all")]) == 0
    assert "| diversedistill | mlp-l | 2 |" in capsys.readouterr().out
    assert (tmp_path / "all" / "summary.csv").is_file()
    assert main(["summarize", str(tmp_path / "nothing")]) == 2
    # a DiverseDistill run saves α on the first test rows, and `report` reads both seeds
    with open(tmp_path / "a" / "runs" / "diversedistill-mlp-l-0" / "importance.csv") as f:
        alpha = list(csv.reader(f))
    assert alpha[0] == ["sample", "mlp-l"] and 1 < len(alpha) <= 1 + 64  # 60 test rows here
    assert all(0 <= float(line[1]) <= 1 for line in alpha[1:])
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "report")]) == 0
    assert "importance.png" in capsys.readouterr().out
    assert "| diversedistill | mlp-l | 2 |" in (tmp_path / "report" / "report.md").read_text()


def test_two_workers_give_the_rows_of_one_process(ml100k_dir, tmp_path):
    """Students spread over two spawned single-threaded workers: the same rows."""
    rows = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        assert main(["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--seeds", "2",
                     "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
                     "--hidden", "16", "--lm", "none", "--committees", "mlp-l", "mlp-m+mlp-l",
                     "--workers", str(workers)]) == 0
        with open(out / "results.csv") as f:
            rows[workers] = sorted((r["method"], r["teachers"], r["seed"], r["val_mse"],
                                    r["test_mse"]) for r in csv.DictReader(f))
    assert {(m, t) for m, t, *_ in rows[1]} >= {("diversedistill", "mlp-m+mlp-l"),
                                                ("student alone", "mlp-s")}
    assert rows[2] == rows[1]


@pytest.mark.parametrize("experiment, flag", [
    ("cifar10", ["--tau-sweep", "0"]), ("cifar10", ["--lm", "none"]),
    ("cifar100", ["--injection", "add"]), ("cifar10", ["--first-seed", "1"]),
    ("movielens", ["--train-size", "100"]),
])
def test_each_experiment_offers_only_its_own_flags(experiment, flag, capsys):
    """A flag of another experiment is an argparse error before anything runs."""
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", experiment, *flag])
    assert stop.value.code == 2
    assert f"unrecognized arguments: {' '.join(flag)}" in capsys.readouterr().err


def test_every_experiment_lists_its_flags_in_help(capsys):
    for experiment, own, foreign in [("movielens", "--tau-sweep", "--train-size"),
                                     ("cifar10", "--train-size", "--tau-sweep")]:
        with pytest.raises(SystemExit):
            main(["reproduce", experiment, "--help"])
        text = capsys.readouterr().out
        assert own in text and foreign not in text


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _started_from(log: Path) -> dict[str, int]:
    """run directory name -> the step its training started from (cli_child's start log)."""
    lines = log.read_text().split("\n") if log.is_file() else []
    return {name: int(step) for name, step in (line.split() for line in lines if line)}


def test_a_signal_to_a_reproduction_stops_every_worker_at_a_checkpoint_and_resume_continues(
        ml100k_dir, tmp_path):
    """SIGTERM to the parent of ``--workers 2``: each worker's run saves at its next step and
    ends, the parent ends within seconds (143, one line), no worker is left, and --resume
    continues the two interrupted runs from their checkpoints (the queued one never began)."""
    from conftest import CLI_CHILD, child_env

    from diversedistill.runs.checkpoints import read_checkpoint

    out, marker = tmp_path / "out", tmp_path / "paused"
    # one seed: the student alone runs in the parent; three runs (DiverseDistill on two
    # committees, LD) on two workers, each of which pauses after step 3 (2 steps an epoch)
    command = [sys.executable, str(CLI_CHILD), "reproduce", "movielens", "--data-dir",
               str(ml100k_dir), "--seeds", "1", "--out", str(out), "--cache-dir",
               str(tmp_path / "cache"), "--no-progress", "--hidden", "16", "--lm", "none",
               "--committees", "mlp-l", "mlp-m+mlp-l", "--workers", "2"]
    log = tmp_path / "first.log"
    with log.open("w") as f:
        parent = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=child_env(
            DD_TEST_MARKER=str(marker), DD_TEST_WORKER_PAUSE_AT_STEP="3"))
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("paused.*"))) < 2:  # both workers inside a run
        assert parent.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the workers never reached the pause"
        time.sleep(0.1)
    workers = [int(p.suffix[1:]) for p in tmp_path.glob("paused.*")]
    children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True,
                              text=True).stdout.split()
    assert set(workers) <= {int(c) for c in children}

    signalled = time.monotonic()
    parent.send_signal(signal.SIGTERM)
    try:
        assert parent.wait(timeout=60) == 143
    finally:  # a parent that did not end takes its workers with it (PR_SET_PDEATHSIG)
        parent.kill()
    assert time.monotonic() - signalled < 20  # not once the runs in flight have finished
    assert log.read_text().strip().splitlines()[-1] == (
        "diversedistill reproduce: interrupted; continue with --resume")
    time.sleep(0.5)  # an ended worker is reaped by init once its parent is gone
    assert not [p for p in map(int, children) if _running(p)]
    # the two paused runs are unfinished, each with its checkpoint: a step's own, or (a
    # signal on an epoch's last step, as here: one step an epoch) the epoch before's
    interrupted = {run.name: read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
                   for run in (out / "runs").iterdir() if not (run / "result.json").exists()}
    assert sorted(interrupted) == ["diversedistill-mlp-l-0", "diversedistill-mlp-m+mlp-l-0"]
    assert all(step >= 2 for step in interrupted.values())
    with open(out / "results.csv") as f:
        recorded = {(r["method"], r["teachers"]) for r in csv.DictReader(f)}
    assert ("diversedistill", "mlp-l") not in recorded

    starts = tmp_path / "starts.log"
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                             env=child_env(DD_TEST_START_LOG=str(starts)), timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    started = _started_from(starts)
    assert {name: started[name] for name in interrupted} == interrupted  # from the checkpoints
    assert started["ld-mlp-l-0"] == 0  # queued when the signal came: it had never begun
    with open(out / "results.csv") as f:
        rows = {(r["method"], r["teachers"]) for r in csv.DictReader(f)}
    assert {("diversedistill", "mlp-l"), ("diversedistill", "mlp-m+mlp-l"),
            ("ld", "mlp-l")} <= rows
