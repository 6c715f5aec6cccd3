"""Validation pilot behind the language-model teacher's fine-tuning recipe
(docs/language-model.md, "Choosing the fine-tuning recipe").

    python scripts/tune_lm.py --data-dir ../shared/data/ml-100k --ratings 20000 \
        --recipe pooling=cls --recipe pooling=mean --recipe pooling=mean,epochs=1,schedule=cosine

Fine-tunes the LM teacher once per ``--recipe`` (comma-separated ``LMConfig`` fields over
the defaults) on a seeded subsample of ``--ratings`` ratings, split 80/10/10, with the
history built from the subsample's training part: a fifth of ML-100K costs a fifth of an
epoch. Prints each recipe's validation MSE; the per-epoch curve is in the fine-tuning
run's ``run/logs/metrics.csv`` under ``--cache-dir``. Test MSE is not printed: choose here,
report on the full data.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import yaml

from diversedistill_recipes.locate import locate_movielens
from diversedistill_recipes.movielens.lm.prepare import LMConfig, prepare_language_teacher
from diversedistill_recipes.movielens.rating_recipes import history_reference, reference_mse
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split


def parse_recipe(text: str) -> dict:
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    return {key: yaml.safe_load(value) for key, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--ratings", type=int, default=20_000)
    parser.add_argument("--recipe", action="append", default=[],
                        help="LMConfig fields, e.g. pooling=mean,epochs=1 (repeatable)")
    parser.add_argument("--cache-dir", default="results/tuning-lm/cache")
    args = parser.parse_args()
    ml = load_movielens(locate_movielens("ml-100k", args.data_dir))
    pick = np.sort(np.random.default_rng(0).permutation(len(ml.ratings))[:args.ratings])
    sub = dataclasses.replace(ml, ratings=ml.ratings.subset(pick))
    split = make_split(sub, "random", 0)
    print(split.describe())
    biases = reference_mse(split.train, split.val, ml.n_users, ml.n_items, ml.rating_scale)
    history = history_reference(split, ml.n_users, ml.n_items, ml.rating_scale)
    print(f"val MSE: user + item biases {biases['user + item biases']:.4f}, "
          f"biases + history means {history['val']:.4f}")
    for text in args.recipe or [""]:
        started = time.perf_counter()
        cfg = LMConfig(context_cache="none", **parse_recipe(text))
        _, metrics = prepare_language_teacher(sub, split, cfg, args.cache_dir, 0, False, print)
        print(f"recipe {text or 'defaults'}: val MSE {metrics['val_mse']:.4f} after "
              f"{metrics['epochs']} epoch(s), {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
