"""Validation searches behind the MovieLens defaults (docs/movielens.md). Slow: minutes per row.

    python scripts/tune_movielens.py recipes --data-dir ../shared/data/ml-100k
    python scripts/tune_movielens.py lambda --data-dir ../shared/data/ml-100k --lams 0.3 1 3 10

``recipes`` trains each model size with each training recipe on the seed-0 split and prints
validation (and test) MSE; ``lambda`` distills MLP-S from the cached MLP-M + MLP-L teachers
(``--committee``) with DiverseDistill's defaults at each λ, ``--workers`` students at a time,
and prints the reproduction's table. Choices are made on the validation column only.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from diversedistill_recipes.locate import locate_movielens
from diversedistill_recipes.movielens.rating_recipes import RecommenderRecipe, build, train_alone
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.reproduce_movielens import reproduce_movielens
from diversedistill_recipes.movielens.splits import make_split

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
    parser.add_argument("--lams", nargs="+", type=float, default=[0.3, 1, 3, 10])
    parser.add_argument("--committee", default="mlp-m+mlp-l")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/tuning")
    args = parser.parse_args()
    ml = load_movielens(locate_movielens("ml-100k", args.data_dir))
    split = make_split(ml, "random", 0)
    out = Path(args.out)
    if args.search == "recipes":
        for size, (name, (lr, over)) in itertools.product(args.sizes, RECIPES.items()):
            recipe = RecommenderRecipe(size, over, lr=lr)
            result = train_alone(ml, split, build(ml, split, recipe, 0), recipe, 0,
                                 out / f"{size}-{name.replace(' ', '_')}")
            print(f"{size:6} {name:24} val {result.val_mse:.4f}  test {result.test_mse:.4f}  "
                  f"epochs {result.epochs}", flush=True)
        return
    reproduce_movielens(args.data_dir, seeds=1, out=out / "lambda", lm=None, ablations=True,
                        committees=[args.committee], workers=args.workers, progress=False,
                        variants={f"lam {lam:g}": {"lam": lam} for lam in args.lams})


if __name__ == "__main__":
    main()
