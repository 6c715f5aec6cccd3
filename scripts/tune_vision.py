"""Validation search behind the vision default of DiverseDistill's λ (docs/vision.md).

    python scripts/tune_vision.py --data-dir ../shared/data/cifar10 --lams 0.3 3 10

Distills the CPU experiment's ViT student from its committee (``--committee``) on seed 0:
DiverseDistill with its defaults, plus one row per λ, ``--workers`` students at a time
(the teachers are trained first, or read from the cache). Choose on the validation column.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diversedistill_recipes.cifar.reproduce_cifar import experiment_for, reproduce_vision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--config", help="a vision experiment YAML (default: the CPU experiment)")
    parser.add_argument("--lams", nargs="+", type=float, default=[0.3, 3, 10])
    parser.add_argument("--committee", default="vit-l+clip")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/tuning-vision")
    args = parser.parse_args()
    exp, _ = experiment_for(args.dataset, args.config)
    reproduce_vision(exp, args.data_dir, seeds=1, out=Path(args.out), progress=False,
                     workers=args.workers, methods=["diversedistill"],
                     committees=[args.committee],
                     variants={f"lam {lam:g}": {"lam": lam} for lam in args.lams})


if __name__ == "__main__":
    main()
