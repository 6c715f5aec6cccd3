"""Validation searches behind the MovieLens defaults (docs/movielens.md). Slow: minutes per row.

    python scripts/tune_movielens.py recipes --data-dir ../shared/data/ml-100k
    python scripts/tune_movielens.py lambda --data-dir ../shared/data/ml-100k --lams 0.1 1 5 10 20
    python scripts/tune_movielens.py lambda --data-dir ../shared/data/ml-100k --lams 3 30 --no-detach

``recipes`` trains each model size with each training recipe on the seed-0 split and prints
validation (and test) MSE; ``lambda`` distills MLP-S from the cached MLP-M + MLP-L teachers
for each λ. Choices are made on the validation column only.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

from diversedistill.data import load_movielens, locate_movielens, make_split
from diversedistill.data.locate import cache_dir
from diversedistill.methods import DiverseDistillConfig
from diversedistill.recsys import TEACHERS, ModelRecipe, build, train_alone, train_or_load_teacher
from diversedistill.ml_runs import distill_run
from diversedistill.reproduce import COMMITTEES

RECIPES = {  # (learning rate, {dropout, embedding_dropout})
    "simple": (1e-3, {}),
    "simple, lr 3e-4": (3e-4, {}),
    "heavy dropout": (1e-3, {"dropout": 0.5, "embedding_dropout": 0.2}),
    "heavy dropout, lr 3e-4": (3e-4, {"dropout": 0.5, "embedding_dropout": 0.2}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("search", choices=("recipes", "lambda"))
    parser.add_argument("--data-dir")
    parser.add_argument("--sizes", nargs="+", default=["mlp-s", "mlp-m", "mlp-l"])
    parser.add_argument("--lams", nargs="+", type=float, default=[0.1, 1, 5, 10, 20])
    parser.add_argument("--no-detach", action="store_true", help="open choice 1 off")
    parser.add_argument("--module-lr", type=float, default=DiverseDistillConfig.module_lr)
    parser.add_argument("--out", default="results/tuning")
    args = parser.parse_args()
    ml = load_movielens(locate_movielens("ml-100k", args.data_dir))
    split = make_split(ml, "random", 0)
    out = Path(args.out)
    if args.search == "recipes":
        for size, (name, (lr, over)) in itertools.product(args.sizes, RECIPES.items()):
            recipe = ModelRecipe(size, over, lr=lr)
            result = train_alone(ml, split, build(ml, split, recipe, 0), recipe, 0,
                                 out / f"{size}-{name.replace(' ', '_')}")
            print(f"{size:6} {name:24} val {result.val_mse:.4f}  test {result.test_mse:.4f}  "
                  f"epochs {result.epochs}", flush=True)
        return
    teachers = {n: train_or_load_teacher(ml, split, n, r, 0, cache_dir() / "teachers")[0]
                for n, r in TEACHERS.items()}
    for lam in args.lams:
        cfg = replace(DiverseDistillConfig(), lam=lam, detach=not args.no_detach,
                      module_lr=args.module_lr)
        _, result = distill_run(ml, split, teachers, COMMITTEES[-1], cfg, 0,
                                out / f"lambda-{lam}", "add", progress=False)
        print(f"lambda {lam:<6g} val {result.val_mse:.4f}  test {result.test_mse:.4f}", flush=True)


if __name__ == "__main__":
    main()
