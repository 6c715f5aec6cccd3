"""Train / validation / test splits: a seeded 80/10/10 shuffle, or the official folds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from diversedistill.errors import ConfigError, DataError
from diversedistill_recipes.movielens.releases import (
    MovieLens,
    Ratings,
    encode_ratings,
    read_100k_ratings,
)

OFFICIAL_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


@dataclass
class RatingSplit:
    name: str
    train: Ratings
    val: Ratings
    test: Ratings

    def describe(self) -> str:
        return (f"split {self.name}: train {len(self.train):,} / val {len(self.val):,} / "
                f"test {len(self.test):,}")


def random_split(ml: MovieLens, seed: int, fractions=(0.8, 0.1, 0.1)) -> RatingSplit:
    """Shuffle all ratings with ``seed`` and cut them 80/10/10 (by default)."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise ConfigError("split fractions must be three positive numbers summing to 1, "
                          f"got {fractions}")
    n = len(ml.ratings)
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    parts = np.split(order, [n_train, n_train + n_val])
    if min(len(p) for p in parts) == 0:
        raise DataError(f"{ml.path}: {n} ratings are too few for a {fractions} split")
    return RatingSplit(f"random-{seed}", *(ml.ratings.subset(p) for p in parts))


def official_fold(ml: MovieLens, fold: str, seed: int, val_fraction: float = 0.1) -> RatingSplit:
    """ML-100K's official ``u1..u5`` / ``ua``, ``ub`` folds.

    The fold's ``.test`` file is the test part; a seeded ``val_fraction`` of its ``.base``
    file is held out for validation (early stopping never looks at the test part).
    """
    if fold not in OFFICIAL_FOLDS:
        raise ConfigError(f"unknown fold {fold!r}; the official ML-100K folds are {OFFICIAL_FOLDS}")
    base_file, test_file = ml.path / f"{fold}.base", ml.path / f"{fold}.test"
    if not base_file.is_file() or not test_file.is_file():
        raise DataError(f"{ml.path}: fold {fold} needs {base_file.name} and {test_file.name}")
    test_frame = read_100k_ratings(test_file)
    base = encode_ratings(read_100k_ratings(base_file), base_file, ml.user_ids, ml.item_ids)
    test = encode_ratings(test_frame, test_file, ml.user_ids, ml.item_ids)
    _check_disjoint(base, test, test_frame, len(ml.item_ids), base_file, test_file)
    order = np.random.default_rng(seed).permutation(len(base))
    n_val = int(round(val_fraction * len(base)))
    return RatingSplit(f"{fold}-{seed}", base.subset(order[n_val:]), base.subset(order[:n_val]),
                       test)


def _check_disjoint(base: Ratings, test: Ratings, test_frame: pd.DataFrame, n_items: int,
                    base_file: Path, test_file: Path) -> None:
    """A fold's test pairs must not be trained on: a pair in both files would be scored on a
    rating the model has seen, and the test error would look better than it is."""
    def pairs(r: Ratings) -> np.ndarray:
        return r.user * n_items + r.item  # codes are < n_users, n_items: no overflow here

    shared = np.isin(pairs(test), pairs(base))
    if shared.any():
        row = int(np.argmax(shared))
        user, item = test_frame["user"].iat[row], test_frame["item"].iat[row]
        raise DataError(
            f"{test_file}, line {test_frame['_line'].iat[row]}: user {user}, item {item} is "
            f"also in {base_file.name}; {int(shared.sum())} (user, item) pairs of this test "
            "file are in its training file too; a fold's two files must not share a pair"
        )


# The student's training batches carry this boolean column when the teachers were trained
# without part of the training split (teacher_holdout): DiverseDistill's importance then
# learns from those rows only (DiverseDistillConfig.importance_rows).
UNSEEN_COLUMN = "teacher_unseen"


def check_holdout(fraction: float) -> None:
    if not 0 <= fraction < 1:
        raise ConfigError(f"teacher_holdout is a share of the training split in [0, 1), "
                          f"got {fraction:g}")


def teacher_holdout(split: RatingSplit, fraction: float, seed: int
                    ) -> tuple[RatingSplit, np.ndarray | None]:
    """The split the teachers train on, and the student's rows they never saw.

    With ``fraction`` 0 that is ``split`` itself and None. Otherwise a seeded ``fraction``
    of ``split.train`` is left out of the teachers' training (validation and test are
    unchanged) and returned as a boolean mask over ``split.train``. Why: α learns which
    teacher helps on a row by comparing the answers there, and on rows a teacher trained
    on, the answer of the teacher that memorized more looks better than it will on new
    rows (docs/movielens.md, "Why α prefers the teacher that helps less")."""
    check_holdout(fraction)
    if fraction == 0:
        return split, None
    n = len(split.train)
    # its own stream: the same seed must not pick the rows the split itself was cut from
    order = np.random.default_rng([seed, 1]).permutation(n)
    unseen = np.zeros(n, dtype=bool)
    unseen[order[:int(round(fraction * n))]] = True
    if unseen.all() or not unseen.any():
        what = "leaves the teachers no rating" if unseen.all() else "holds out no rating"
        raise DataError(f"teacher_holdout {fraction:g} of {n} training ratings {what}")
    held = RatingSplit(f"{split.name}-holdout-{fraction:g}", split.train.subset(~unseen),
                       split.val, split.test)
    return held, unseen


def make_split(ml: MovieLens, split: str, seed: int) -> RatingSplit:
    """``split`` is ``random`` (80/10/10 by seed) or an official fold name."""
    if split == "random":
        return random_split(ml, seed)
    return official_fold(ml, split, seed)
