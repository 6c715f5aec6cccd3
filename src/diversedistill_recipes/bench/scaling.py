"""``diversedistill bench scaling``: one full training epoch on synthetic MovieLens-shaped data
of 100K, 1M and 10M ratings; prints seconds per million training ratings and peak memory.

Each size runs in its own process, so that its peak resident memory is its own (memory a
process has held is not returned reliably). Within a size every method streams the same
batches from the loader; nothing is materialised per epoch, so memory should stay bounded
by the data arrays (a few bytes per rating), the batch and the models, and time per million
ratings should stay flat. The teachers are MLP-M and MLP-L freshly initialised: a pass
costs the same whatever the weights.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from diversedistill.errors import ConfigError
from diversedistill.methods import DiverseDistill, StudentOnly
from diversedistill_recipes.bench.timing import rss_bytes, time_epoch
from diversedistill_recipes.movielens.rating_recipes import (
    STUDENT,
    TEACHERS,
    as_teacher,
    build,
    loaders,
)
from diversedistill_recipes.movielens.releases import Field, MovieLens, Ratings
from diversedistill_recipes.movielens.splits import random_split

# the users and items of the real releases with these numbers of ratings
SHAPES = {100_000: (943, 1_682), 1_000_000: (6_040, 3_706), 10_000_000: (69_878, 10_677)}
N_GENRES, N_YEARS, N_AGES, N_OCCUPATIONS = 19, 80, 7, 21
METHODS = {"student alone": StudentOnly, "DiverseDistill, MLP-M + MLP-L": DiverseDistill}


def parse_size(text: str) -> int:
    """'100k', '1m', '10M', '250000' -> number of ratings."""
    t = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        value = int(float(t[:-1] if factor > 1 else t) * factor)
    except ValueError:
        raise ConfigError(f"--sizes: {text!r} is not a number of ratings "
                          "(e.g. 100k, 1m, 10m)") from None
    if value < 10_000:
        raise ConfigError(f"--sizes: {text!r} is too small (at least 10k ratings)")
    return value


def shape_for(n_ratings: int) -> tuple[int, int]:
    if n_ratings in SHAPES:
        return SHAPES[n_ratings]
    scale = n_ratings / 100_000  # users grow faster than items in the real releases
    return max(50, int(943 * scale ** 0.87)), max(50, int(1_682 * scale ** 0.4))


def synthetic_movielens(n_ratings: int, seed: int = 0) -> MovieLens:
    """Ratings 1..5 from user and item biases plus noise, with ML-100K's side fields
    (age group, gender, occupation, year, genres)."""
    n_users, n_items = shape_for(n_ratings)
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n_ratings)
    item = np.minimum(rng.zipf(1.3, n_ratings) - 1, n_items - 1)  # popular items, long tail
    bias = rng.normal(0, 0.5, n_users)[user] + rng.normal(0, 0.5, n_items)[item]
    rating = np.clip(np.rint(3.5 + bias + rng.normal(0, 0.9, n_ratings)), 1, 5).astype(np.float32)
    genres = (rng.random((n_items, N_GENRES)) < 0.1).astype(np.float32)
    user_features = {"age": rng.integers(1, N_AGES + 1, n_users),
                     "gender": rng.integers(1, 3, n_users),
                     "occupation": rng.integers(1, N_OCCUPATIONS + 1, n_users)}
    item_features = {"year": rng.integers(1, N_YEARS + 1, n_items)}
    fields = [Field("user", "user", n_users + 1), Field("item", "item", n_items + 1),
              Field("age", "user", N_AGES + 1), Field("gender", "user", 3),
              Field("occupation", "user", N_OCCUPATIONS + 1), Field("year", "item", N_YEARS + 1),
              Field("genres", "item", N_GENRES, multi_hot=True)]
    return MovieLens(name=f"synthetic-{n_ratings}", path=Path("synthetic"),
                     ratings=Ratings(user.astype(np.int64), item.astype(np.int64), rating),
                     user_ids=np.arange(1, n_users + 1), item_ids=np.arange(1, n_items + 1),
                     rating_scale=(1.0, 5.0), fields=fields, user_features=user_features,
                     item_features=item_features, genres=genres,
                     genre_names=[f"g{k}" for k in range(N_GENRES)])


def measure_size(n_ratings: int, seed: int = 0, methods: list[str] | None = None) -> dict:
    """One epoch of every method (or of ``methods``) on ``n_ratings`` synthetic ratings,
    in this process."""
    start = time.perf_counter()
    ml = synthetic_movielens(n_ratings, seed)
    split = random_split(ml, seed)
    data_mib = sum(a.nbytes for a in (ml.ratings.user, ml.ratings.item, ml.ratings.rating)) / 2**20
    figures = {"ratings": n_ratings, "train rows": len(split.train), "data MiB": data_mib,
               "generate s": time.perf_counter() - start, "methods": {}}
    teachers = [as_teacher(n, build(ml, split, TEACHERS[n], seed), mode="add")
                for n in ("mlp-m", "mlp-l")]
    for label, make in METHODS.items():
        if methods is not None and label not in methods:
            continue
        train, _, _ = loaders(ml, split, STUDENT.batch_size, seed)
        r = time_epoch(make(), build(ml, split, STUDENT, seed),
                       [] if label == "student alone" else teachers, train, None, STUDENT.lr)
        figures["methods"][label] = {"epoch s": r["epoch"], "rows/s": r["rows/s"],
                                     "s per M rows": 1e6 / r["rows/s"], "peak MiB": r["peak MiB"]}
    figures["rss MiB"] = rss_bytes() / 2**20
    figures["max rss MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def bench_scaling(sizes: list[int], seed: int = 0, distill_up_to: int = 1_000_000,
                  log=print) -> list[dict]:
    """``distill_up_to``: DiverseDistill's epoch is timed up to this size (at 10M ratings
    one epoch takes the better part of an hour on a 2-core CPU); student alone at every
    size, so the data pipeline's scaling is measured all the way."""
    results = []
    for n in sizes:
        methods = list(METHODS) if n <= distill_up_to else ["student alone"]
        log(f"{n:,} ratings: generating and training one epoch of {', '.join(methods)} "
            f"(own process) ...")
        done = subprocess.run([sys.executable, "-m", "diversedistill_recipes.bench.scaling", str(n),
                               str(seed), *methods], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"scaling benchmark at {n:,} ratings failed:\n{done.stderr[-2000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(figures)
        for label, r in figures["methods"].items():
            log(f"  {label:<32} {r['epoch s']:8.1f} s/epoch  {r['s per M rows']:6.1f} s per M rows")
    log("\n" + format_scaling(results))
    return results


def format_scaling(results: list[dict]) -> str:
    labels = list(dict.fromkeys(m for r in results for m in r["methods"]))
    head = " | ".join(f"{m}: s / epoch | {m}: s per M rows" for m in labels)
    lines = [f"| ratings | train rows | {head} | rating arrays (MiB) | peak memory (MiB) |",
             "|---|---|" + "---|---|" * len(labels) + "---|---|"]
    for r in results:
        cells = " | ".join(f"{r['methods'][m]['epoch s']:.1f} | "
                           f"{r['methods'][m]['s per M rows']:.1f}"
                           if m in r["methods"] else "not timed | not timed" for m in labels)
        lines.append(f"| {r['ratings']:,} | {r['train rows']:,} | {cells} | {r['data MiB']:.0f} | "
                     f"{r['max rss MiB']:,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # one size, in a process of its own: python -m ... N SEED [METHOD ...]
    print(json.dumps(measure_size(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:] or None)))
