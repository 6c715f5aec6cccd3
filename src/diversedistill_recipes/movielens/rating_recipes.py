"""MovieLens building blocks shared by the CLI commands: loaders, recommenders as
students and teachers, cached teacher training, and the simple reference predictors."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from diversedistill.errors import ModelError
from diversedistill.export import export_model, load_model, read_config
from diversedistill.interface import HookedStudent, HookedTeacher
from diversedistill.methods import StudentOnly
from diversedistill.training import FitResult, TrainConfig, fit
from diversedistill_recipes.comparison.results import MSE, Metric
from diversedistill_recipes.jobs import cache_entry
from diversedistill_recipes.movielens.batches import global_mean, rating_loader
from diversedistill_recipes.movielens.history import build_histories, shown_star_mean
from diversedistill_recipes.movielens.recommender import MLPRecommender, build_recommender
from diversedistill_recipes.movielens.releases import MovieLens, Ratings
from diversedistill_recipes.movielens.splits import UNSEEN_COLUMN, RatingSplit

EVAL_BATCH = 8192
# Part of every teacher-cache key. Bump it when a change to training alters what a cached
# teacher would be (2: batch order from (seed, epoch), per-step random streams).
CACHE_FORMAT = 2


@dataclass
class RecommenderRecipe:
    """A recommender size plus the training recipe that goes with it."""

    size: str = "mlp-s"  # mlp-s | mlp-m | mlp-l
    overrides: dict = field(default_factory=dict)  # RecommenderConfig fields to change
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 512

    def train_config(self, seed: int, **kw) -> TrainConfig:
        return TrainConfig(lr=self.lr, weight_decay=self.weight_decay,
                           batch_size=self.batch_size, seed=seed, **kw)


# Teacher recipes, chosen on validation MSE of seed 0 (see docs/movielens.md): the larger
# MLPs overfit 80K ratings with the student's recipe, so they get heavier dropout on the
# hidden layers and on the embeddings. The student keeps the simple recipe.
STUDENT = RecommenderRecipe("mlp-s")
TEACHERS = {
    "mlp-m": RecommenderRecipe("mlp-m", {"dropout": 0.5, "embedding_dropout": 0.2}, lr=3e-4),
    "mlp-l": RecommenderRecipe("mlp-l", {"dropout": 0.5, "embedding_dropout": 0.2}, lr=3e-4),
}


def loaders(ml: MovieLens, split: RatingSplit, batch_size: int, seed: int,
            unseen: np.ndarray | None = None):
    """Train, validation and test loaders; ``unseen`` (a mask over the training rows, from
    :func:`~diversedistill_recipes.movielens.splits.teacher_holdout`) becomes the training
    batches' ``teacher_unseen`` column."""
    columns = None if unseen is None else {UNSEEN_COLUMN: unseen}
    return (rating_loader(split.train, ml, batch_size, shuffle=True, seed=seed, columns=columns),
            rating_loader(split.val, ml, EVAL_BATCH, shuffle=False),
            rating_loader(split.test, ml, EVAL_BATCH, shuffle=False))


def build(ml: MovieLens, split: RatingSplit, recipe: RecommenderRecipe,
          seed: int) -> MLPRecommender:
    torch.manual_seed(seed)
    return build_recommender(ml.fields, recipe.size, global_mean(split.train), **recipe.overrides)


def as_student(model: MLPRecommender) -> HookedStudent:
    # question point: the concatenated embeddings; z: the head's input
    return HookedStudent(model, question_at="embed", head="head")


def as_teacher(name: str, model: MLPRecommender, mode: str = "add", device=None,
               dtype=None) -> HookedTeacher:
    # injection point: right after the embedding tables (METHOD.md, MLP recommender teacher)
    return HookedTeacher(name, model, inject_at="embed", head="head", mode=mode, device=device,
                         dtype=dtype)


def split_fingerprint(ml: MovieLens, split: RatingSplit) -> str:
    digest = hashlib.sha256(ml.name.encode())
    for part in (split.train, split.val, split.test):
        for array in (part.user, part.item, part.rating):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def train_or_load_teacher(ml: MovieLens, split: RatingSplit, name: str, recipe: RecommenderRecipe,
                          seed: int, cache_root: Path, progress: bool = False, log=print):
    """Return (model, metrics, from_cache) for a teacher trained on ``split.train``.

    A cache entry is reused only when its key (data, split, recipe, seed, cache format)
    matches and its weights match the checksum in its config; otherwise it is trained
    again and overwritten, and ``log`` says why. Weights and config are each written
    atomically, config last, so a killed write is a missing or mismatched entry, never a
    half one."""
    key_data = {"format": CACHE_FORMAT, "data": split_fingerprint(ml, split),
                "recipe": asdict(recipe), "seed": seed}
    entry, key = cache_entry(cache_root, name, key_data)
    if (entry / "config.json").is_file():
        try:
            config = read_config(entry)
            if config.get("cache_key") != key:
                raise ModelError(f"{entry}: its key {config.get('cache_key')!r} is not {key!r}")
            return load_model(entry), config["metrics"], True
        except (ModelError, KeyError) as err:
            log(f"teacher cache entry not used, training again: {err}")
    model = build(ml, split, recipe, seed)
    if entry.is_dir():  # a cache entry is the tool's own: an older run there may be cleared
        from diversedistill.runs import rundir

        rundir.mark(entry / "run")
    result = train_alone(ml, split, model, recipe, seed, entry / "run", progress)
    metrics = {"val_mse": result.val_mse, "test_mse": result.test_mse, "seconds": result.seconds}
    export_model(model, entry, {"cache_key": key, "key": key_data, "metrics": metrics})
    return model.eval(), metrics, False


def train_alone(ml, split, model, recipe: RecommenderRecipe, seed: int, run_dir: Path,
                progress: bool = False, resume: bool = False, provenance: dict | None = None,
                **train_overrides) -> FitResult:
    train, val, test = loaders(ml, split, recipe.batch_size, seed)
    cfg = recipe.train_config(seed, progress=progress, **train_overrides)
    return fit(as_student(model), StudentOnly(), None, train, val, test, cfg, run_dir,
               clamp=ml.rating_scale, resume=resume, provenance=provenance)


class MovieLensRecipe:
    """The ratings as a :class:`~diversedistill_recipes.jobs.DataSetRecipe`: the MLP
    recommender student (``recipe``, :data:`STUDENT` when None) on ``split``, scored by MSE
    with predictions clamped to the release's rating scale. ``unseen`` marks the training
    rows the teachers never trained on (the batches' ``teacher_unseen`` column)."""

    metric: Metric = MSE

    def __init__(self, ml: MovieLens, split: RatingSplit,
                 recipe: RecommenderRecipe | None = None, unseen: np.ndarray | None = None):
        self.ml, self.split, self.unseen = ml, split, unseen
        self.recipe = recipe or STUDENT  # read now: tests swap the module's STUDENT
        self.student_name = self.recipe.size
        self.clamp: tuple[float, float] | None = ml.rating_scale

    def new_student(self, seed: int) -> HookedStudent:
        return as_student(build(self.ml, self.split, self.recipe, seed))

    def loaders(self, seed: int):
        return loaders(self.ml, self.split, self.recipe.batch_size, seed, self.unseen)

    def train_config(self, seed: int, progress: bool) -> TrainConfig:
        return self.recipe.train_config(seed, progress=progress)

    def finish(self, student: HookedStudent, result: FitResult, info: dict) -> None:
        """Nothing to leave: a MovieLens run keeps its checkpoint; ``export RUN`` reads it."""


# --------------------------------------------------------------------------- references


def fit_biases(train: Ratings, n_users: int, n_items: int, reg: float = 10.0):
    """Regularized user + item biases by alternating least squares: a function
    (user, item) -> unclipped prediction."""
    mu = float(train.rating.mean())
    b_u, b_i = np.zeros(n_users), np.zeros(n_items)
    for _ in range(10):
        r = train.rating - mu - b_i[train.item]
        b_u = np.bincount(train.user, r, n_users) / (np.bincount(train.user, None, n_users) + reg)
        r = train.rating - mu - b_u[train.user]
        b_i = np.bincount(train.item, r, n_items) / (np.bincount(train.item, None, n_items) + reg)
    return lambda user, item: mu + b_u[user] + b_i[item]


def reference_mse(train: Ratings, test: Ratings, n_users: int, n_items: int,
                  scale: tuple[float, float], reg: float = 10.0) -> dict[str, float]:
    """Test MSE of the global mean and of regularized user + item biases (alternating
    least squares, a few sweeps) — the floor any recommender must clear."""
    mu = float(train.rating.mean())
    bias_prediction = np.clip(fit_biases(train, n_users, n_items, reg)(test.user, test.item),
                              *scale)
    return {
        "global mean": float(np.mean((test.rating - mu) ** 2)),
        "user + item biases": float(np.mean((test.rating - bias_prediction) ** 2)),
    }


HISTORY_REFERENCE = "biases + history means"


def history_reference(split: RatingSplit, n_users: int, n_items: int,
                      scale: tuple[float, float], k: int = 3) -> dict[str, float]:
    """What the statistics a language model is handed give without it: a linear
    combination of the user + item biases and the text's history numbers (the user's and
    the item's means, the mean of the ``k`` shown stars), its 5 weights fitted on the
    validation split by least squares (so the training rows' own ratings, which the
    biases have seen, do not inflate the biases' weight). Val and test MSE."""
    biases = fit_biases(split.train, n_users, n_items)
    mu = float(split.train.rating.mean())

    def features(part: Ratings) -> np.ndarray:
        h = build_histories(split.train, part.user, part.item, n_items, k)
        columns = [biases(part.user, part.item), h.mean, h.item_mean, shown_star_mean(h)]
        return np.stack([np.ones(len(part))] + [np.where(np.isnan(c), mu, c) for c in columns], 1)

    x = {"val": features(split.val), "test": features(split.test)}
    weights = np.linalg.lstsq(x["val"], split.val.rating.astype(np.float64), rcond=None)[0]
    return {name: float(np.mean((part.rating - np.clip(x[name] @ weights, *scale)) ** 2))
            for name, part in (("val", split.val), ("test", split.test))}


def references(ml: MovieLens, split: RatingSplit, history_k: int | None = None
               ) -> dict[str, tuple[float, float]]:
    """Name -> (val MSE, test MSE) of the simple references (val NaN where none is
    computed); with ``history_k`` also the biases + history means, what a language
    model's text hands it (:func:`history_reference`)."""
    rows = {name: (float("nan"), mse) for name, mse in reference_mse(
        split.train, split.test, ml.n_users, ml.n_items, ml.rating_scale).items()}
    if history_k is not None:
        fitted = history_reference(split, ml.n_users, ml.n_items, ml.rating_scale, history_k)
        rows[HISTORY_REFERENCE] = (fitted["val"], fitted["test"])
    return rows
