"""The benchmark suite's measuring parts: epoch timing, peak memory, synthetic data, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_batch, tiny_recommender

from diversedistill.errors import ConfigError
from diversedistill.methods import DiverseDistill, StudentOnly
from diversedistill.methods.diversedistill import DiverseDistillConfig
from diversedistill_recipes.bench.scaling import (
    SHAPES,
    measure_size,
    parse_size,
    shape_for,
    synthetic_movielens,
)
from diversedistill_recipes.bench.throughput import GATED, RUN_EPOCHS, mt_verdict
from diversedistill_recipes.bench.timing import PeakMemory, time_epoch
from diversedistill_recipes.cli import main
from diversedistill_recipes.movielens.rating_recipes import as_teacher
from diversedistill_recipes.movielens.recommender import InteractionMLP, RecommenderConfig


def test_time_epoch_streams_a_generator_and_counts_every_timed_row():
    batches = (tiny_batch(16, seed=k) for k in range(5))  # a generator: read once, not listed
    teachers = [as_teacher("t", tiny_recommender(hidden=(16, 8), seed=1), mode="add")]
    figures = time_epoch(DiverseDistill(), tiny_recommender(), teachers, batches, None, 1e-3)
    assert figures["rows/s"] > 0 and figures["epoch"] > 0
    # 4 timed batches of 16 rows (the first sets up and is not timed)
    assert figures["rows/s"] * figures["epoch"] == pytest.approx(64, rel=1e-6)
    assert figures["teacher"] > 0 and figures["module"] > 0


def test_time_epoch_scales_to_the_epoch_and_leaves_teachers_untouched():
    teacher = tiny_recommender(hidden=(16, 8), seed=1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batches = [tiny_batch(8, seed=k) for k in range(3)]
    figures = time_epoch(StudentOnly(), tiny_recommender(), [], batches, 100, 1e-3)
    assert figures["epoch"] == pytest.approx(figures["rows/s"] ** -1 * 16 * 50, rel=1e-6)
    time_epoch(DiverseDistill(), tiny_recommender(), [as_teacher("t", teacher, mode="add")],
               batches, None, 1e-3)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())


def test_time_epoch_needs_a_timed_batch():
    with pytest.raises(ValueError, match="at least two batches"):
        time_epoch(StudentOnly(), tiny_recommender(), [], [tiny_batch()], None, 1e-3)


def test_peak_memory_sees_an_allocation_inside_the_block():
    with PeakMemory(interval=0.001) as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        block.add_(1)
        del block
    assert memory.added_mib >= 48


def test_pairwise_interactions_are_the_dot_products_of_every_field_pair():
    trunk = InteractionMLP(4, 3, RecommenderConfig(hidden=[5], embedding_dim=3)).eval()
    flat = torch.randn(2, 12)
    v = flat.view(2, 4, 3)
    expected = torch.stack([(v[:, i] * v[:, j]).sum(-1)
                            for i in range(4) for j in range(i + 1, 4)], 1)
    first = trunk.mlp[0]
    got = trunk(flat)
    want = torch.relu(first(torch.cat([flat, expected], 1)))
    assert torch.allclose(got, want, atol=1e-6)


def test_synthetic_movielens_has_the_releases_shape_and_valid_codes():
    ml = synthetic_movielens(100_000)
    assert (ml.n_users, ml.n_items) == SHAPES[100_000] and len(ml.ratings) == 100_000
    assert set(np.unique(ml.ratings.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ml.ratings.user.max() < ml.n_users and ml.ratings.item.max() < ml.n_items
    for f in ml.fields:  # every code fits its embedding table
        table = ml.user_features.get(f.name, ml.item_features.get(f.name))
        if table is not None:
            assert table.max() < f.cardinality
    assert ml.genres.shape == (ml.n_items, 19)
    a, b = synthetic_movielens(20_000, seed=3), synthetic_movielens(20_000, seed=3)
    assert np.array_equal(a.ratings.rating, b.ratings.rating)  # seeded


def test_sizes_parse_and_grow():
    assert [parse_size(s) for s in ("100k", "1M", "10m", "250000")] == [
        100_000, 1_000_000, 10_000_000, 250_000]
    assert shape_for(2_000_000)[0] > shape_for(1_000_000)[0] // 2
    for bad in ("lots", "5k", ""):
        with pytest.raises(ConfigError, match="--sizes"):
            parse_size(bad)


def test_measure_size_trains_a_full_epoch_of_each_method():
    figures = measure_size(20_000)
    assert figures["train rows"] == 16_000
    for r in figures["methods"].values():
        assert (r["epoch s"] > 0
                and r["rows/s"] * r["epoch s"] == pytest.approx(16_000 - 512, rel=1e-3))
    assert figures["max rss MiB"] >= figures["methods"]["student alone"]["peak MiB"] - 1


def test_cli_rejects_a_bad_size_in_one_line(capsys):
    assert main(["bench", "scaling", "--sizes", "huge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'huge' is not a number of ratings" in err[0]


def test_cli_rejects_a_threshold_outside_zero_one_before_loading_anything(capsys, tmp_path):
    # no data directory exists: the threshold is checked first
    assert main(["bench", "throughput", "--tau", "1.5", "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tau must be in [0, 1], got 1.5" in err[0]


def test_scaling_runs_each_size_in_its_own_process_and_tables_it():
    from diversedistill_recipes.bench.scaling import bench_scaling

    lines = []
    results = bench_scaling([20_000, 30_000], distill_up_to=20_000, log=lines.append)
    assert [r["ratings"] for r in results] == [20_000, 30_000]
    assert set(results[1]["methods"]) == {"student alone"}  # above distill_up_to
    table = lines[-1]
    assert "| 30,000 | 24,000 |" in table and "not timed" in table


def test_time_epoch_takes_its_timing_wrappers_off_the_question_augmenter():
    batches = [tiny_batch(16, seed=k) for k in range(3)]
    teachers = [as_teacher("t", tiny_recommender(hidden=(16, 8), seed=1), mode="add")]
    method = DiverseDistill()
    time_epoch(method, tiny_recommender(), teachers, batches, None, 1e-3)
    assert not {"ask", "states_and_logits"} & set(vars(method.module.questions))


def test_a_gated_epoch_is_timed_after_its_warm_up_and_counts_the_passes_it_skipped():
    teachers = [as_teacher("t", tiny_recommender(hidden=(16, 8), seed=1), mode="add")]
    warmup = [tiny_batch(16, seed=k) for k in range(3)]
    timed = [tiny_batch(16, seed=10 + k) for k in range(4)]
    gated = DiverseDistill(DiverseDistillConfig(tau=1.0, explore=0.0))  # α < 1: nothing asked
    figures = time_epoch(gated, tiny_recommender(), teachers, timed, None, 1e-3, warmup=warmup)
    assert gated.epoch == 1  # past the default single warm-up epoch
    assert figures["skipped/t"] == 1.0 and figures.get("teacher", 0.0) == 0.0
    assert figures["module"] > 0  # no answer was asked: this is the question augmenter's time
    every = time_epoch(DiverseDistill(), tiny_recommender(), teachers, timed, None, 1e-3)
    assert every["skipped/t"] == 0.0 and every["teacher"] > 0


def test_the_mt_verdict_judges_the_gated_epoch_and_prints_the_whole_run():
    rows = {"MT": {"epoch": 2.0}, "DiverseDistill": {"epoch": 5.0},
            GATED.format(0.6): {"epoch": 2.4}}
    text = mt_verdict(rows, 0.6)
    assert "every row asked (τ = 0, the warm-up epoch): 2.50x" in text
    assert "gated at τ = 0.6: 1.20x" in text
    run = (5.0 + (RUN_EPOCHS - 1) * 2.4) / (RUN_EPOCHS * 2.0)
    assert f"run (1 warm-up epoch, then gated at τ = 0.6): {run:.2f}x" in text
    assert text.endswith("a gated epoch at most 1.3x MT's: met")
    rows[GATED.format(0.6)]["epoch"] = 2.8
    assert mt_verdict(rows, 0.6).endswith("NOT met")
    del rows[GATED.format(0.6)]
    assert mt_verdict(rows, 0.0).endswith("an epoch asking every row at most 1.3x MT's: NOT met")


def test_the_gpu_check_runs_its_cpu_fallback_and_prints_each_check(capsys):
    from diversedistill_recipes.bench.gpu_check import bench_gpu

    figures = bench_gpu(ratings=10_000)
    out = capsys.readouterr().out
    assert "device: CPU (no GPU found" in out or "GPU(s)" in out
    assert {(r["method"], r["precision"]) for r in figures["runs"]} == {
        (m, p) for m in ("student alone", "MT", "DiverseDistill")
        for p in ("32-true", "bf16-mixed")}
    assert all(r["rows/s"] > 0 and 0 < r["val_mse"] < 10 for r in figures["runs"])
    assert abs(figures["bf16 - fp32"]) < 0.05  # bf16 autocast changes rounding, not the run
    assert "error" not in figures["ddp"], figures["ddp"]
    assert abs(figures["ddp - single"]) < 0.05 and "DDP on 2" in out
