"""--teacher-holdout: the teachers train without a seeded share of the training split, and
DiverseDistill's importance learns from those rows only."""

import json

import numpy as np
import pytest

from diversedistill.errors import ConfigError, DataError
from diversedistill_recipes.cli import main
from diversedistill_recipes.movielens.batches import RatingBatches
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import UNSEEN_COLUMN, make_split, teacher_holdout


def test_the_holdout_leaves_a_seeded_share_of_training_out_and_keeps_val_and_test(ml100k_dir):
    ml = load_movielens(ml100k_dir)
    split = make_split(ml, "random", 0)
    taught, unseen = teacher_holdout(split, 0.25, 0)
    assert unseen.dtype == bool and len(unseen) == len(split.train)
    assert unseen.sum() == round(0.25 * len(split.train))
    assert len(taught.train) == len(split.train) - unseen.sum()
    np.testing.assert_array_equal(taught.train.rating, split.train.rating[~unseen])
    assert taught.val is split.val and taught.test is split.test
    np.testing.assert_array_equal(teacher_holdout(split, 0.25, 0)[1], unseen)  # seeded
    assert not np.array_equal(teacher_holdout(split, 0.25, 1)[1], unseen)
    assert teacher_holdout(split, 0.0, 0) == (split, None)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_a_holdout_outside_zero_to_one_is_refused(ml100k_dir, fraction):
    split = make_split(load_movielens(ml100k_dir), "random", 0)
    with pytest.raises(ConfigError, match="teacher_holdout .* in \\[0, 1\\)"):
        teacher_holdout(split, fraction, 0)


def test_the_command_refuses_a_bad_holdout_before_writing_anything(ml100k_dir, tmp_path, capsys):
    out = tmp_path / "o"
    code = main(["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--out", str(out),
                 "--lm", "none", "--teacher-holdout", "1"])
    assert code != 0 and not out.exists()
    assert "teacher_holdout is a share of the training split in [0, 1), got 1" in (
        capsys.readouterr().err)


def test_a_holdout_too_small_for_the_split_says_so(ml100k_dir):
    split = make_split(load_movielens(ml100k_dir), "random", 0)
    with pytest.raises(DataError, match="holds out no rating"):
        teacher_holdout(split, 1e-9, 0)


def test_the_batches_carry_each_rows_own_flag(ml100k_dir):
    ml = load_movielens(ml100k_dir)
    split = make_split(ml, "random", 0)
    _, unseen = teacher_holdout(split, 0.5, 0)
    rows = [7, 3, 11, 0, 5]
    batch = RatingBatches(split.train, ml, {UNSEEN_COLUMN: unseen})[rows]
    assert batch[UNSEEN_COLUMN].tolist() == unseen[rows].tolist()
    with pytest.raises(ValueError, match="'short' has 2 rows"):
        RatingBatches(split.train, ml, {"short": unseen[:2]})


def test_a_holdout_reproduction_trains_other_teachers_and_alpha_on_the_held_rows(
        ml100k_dir, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["reproduce", "movielens", "--data-dir", str(ml100k_dir), "--cache-dir", str(cache),
            "--lm", "none", "--no-progress", "--seeds", "1", "--hidden", "16",
            "--committees", "mlp-m+mlp-l", "--methods", "diversedistill"]
    assert main(args + ["--out", str(tmp_path / "plain")]) == 0
    assert main(args + ["--out", str(tmp_path / "held"), "--teacher-holdout", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "teachers train on" in printed and "the rows importance learns from" in printed
    # two teacher entries each: those of the whole training split and of the held-out one
    assert sorted(p.name.split("-")[1] for p in cache.iterdir()) == ["l", "l", "m", "m"]
    held = json.loads((tmp_path / "held/runs/diversedistill-mlp-m+mlp-l-0/run.json").read_text())
    plain = json.loads((tmp_path / "plain/runs/diversedistill-mlp-m+mlp-l-0/run.json")
                       .read_text())
    assert held["diversedistill.importance_rows"] == UNSEEN_COLUMN
    assert plain["diversedistill.importance_rows"] is None
