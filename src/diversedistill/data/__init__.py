"""MovieLens data: official release layouts, splits and batches."""

from diversedistill.data.batches import RatingBatches, global_mean, rating_loader
from diversedistill.data.locate import locate_movielens
from diversedistill.data.movielens import Field, MovieLens, Ratings, load_movielens
from diversedistill.data.splits import OFFICIAL_FOLDS, RatingSplit, make_split, random_split

__all__ = [
    "OFFICIAL_FOLDS", "Field", "MovieLens", "RatingBatches", "RatingSplit", "Ratings",
    "global_mean", "load_movielens", "locate_movielens", "make_split", "random_split",
    "rating_loader",
]
