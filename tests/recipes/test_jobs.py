"""What every data set's reproduction shares (jobs.py): one job, one results book, one
teacher cache key, used by MovieLens and CIFAR alike."""

from __future__ import annotations

import math

from diversedistill_recipes import jobs
from diversedistill_recipes.cifar import reproduce_cifar
from diversedistill_recipes.comparison.results import ACCURACY, MSE, read_results
from diversedistill_recipes.jobs import Job, ResultBook, cache_entry
from diversedistill_recipes.movielens import reproduce_movielens, runs


def test_both_reproductions_use_the_one_job_and_book():
    assert reproduce_cifar.Job is jobs.Job and reproduce_movielens.Job is jobs.Job
    assert runs.Job is jobs.Job
    assert reproduce_cifar.ResultBook is reproduce_movielens.ResultBook is jobs.ResultBook


def test_a_job_names_its_run_directory_and_splits_out_the_injection(tmp_path):
    job = Job("dd ablation: replace", 2, ("mlp-m", "mlp-l"),
              values=(("injection", "replace"), ("lam", 3.0)))
    assert job.committee == "mlp-m+mlp-l"
    assert job.run_dir(tmp_path) == tmp_path / "runs" / "dd_ablation:_replace-mlp-m+mlp-l-2"
    assert job.split_values() == ({"lam": 3.0}, "replace")
    assert Job("ld", 0, ("lm",), "ld", run_name="ld-0").run_dir(tmp_path) == (
        tmp_path / "runs" / "ld-0")
    assert Job("student alone", 1).committee == ""


def test_the_book_keeps_one_row_per_run_and_a_resume_reads_them_back(tmp_path):
    lines = []
    book = ResultBook(tmp_path, MSE, lines.append)
    book.record(MSE.row("ld", "lm", 0, 0.85, 0.86, 1.0))
    book.record(MSE.row("ld", "lm", 1, 0.84, 0.85, 1.0))
    book.record(MSE.row("ld", "lm", 0, 0.83, 0.84, 2.0))  # recorded again: replaces seed 0
    book.record(MSE.row("reference", "global mean", 0, math.nan, 1.27, 0.0))
    saved = read_results(tmp_path / "results.csv")
    assert [(r.seed, r.test) for r in saved if r.method == "ld"] == [(1, 0.85), (0, 0.84)]
    assert "val    -  " in lines[-1] and "val 0.8300  test 0.8400" in lines[2]
    again = ResultBook(tmp_path, MSE, lines.append)
    assert again.resume() is None  # no search.csv there
    assert again.kept() == {("ld", "lm", 0), ("ld", "lm", 1), ("reference", "global mean", 0)}


def test_the_book_names_the_jobs_whose_rows_it_lacks(tmp_path):
    book, pair = ResultBook(tmp_path, MSE, lambda line: None), ("mlp-m", "mlp-l")
    book.record(MSE.row("student alone", "mlp-s", 0, 0.86, 0.87, 1.0))
    book.record(MSE.row("dd ablation: x", "mlp-m+mlp-l", 0, 0.83, 0.84, 1.0))
    jobs = [Job("student alone", 0), Job("student alone", 1),
            Job("dd ablation: x", 0, pair), Job("dd ablation: x", 1, pair),
            Job("dd ablation: y", 0, pair)]
    assert book.missing(jobs, "mlp-s") == [jobs[1], jobs[3], jobs[4]]
    # the student alone's row is found by the student's name
    assert book.missing(jobs, "other student") == [jobs[0], jobs[1], jobs[3], jobs[4]]


def test_the_book_logs_accuracy_rows_too(tmp_path):
    lines = []
    ResultBook(tmp_path, ACCURACY, lines.append).record(
        ACCURACY.row("fd", "clip", 0, 0.61, 0.62, 3.0))
    assert "val 0.6100  test 0.6200  (3s)" in lines[0]


def test_a_teacher_cache_entry_changes_with_anything_that_decides_its_weights(tmp_path):
    entry, key = cache_entry(tmp_path, "mlp-l", {"data": "abc", "seed": 0})
    assert entry == tmp_path / f"mlp-l-{key}" and len(key) == 16
    assert cache_entry(tmp_path, "mlp-l", {"seed": 0, "data": "abc"})[1] == key  # key order
    assert cache_entry(tmp_path, "mlp-l", {"data": "abc", "seed": 1})[1] != key
