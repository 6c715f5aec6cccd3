"""The MovieLens models as export entries (registered through the
``diversedistill.architectures`` entry point, see :mod:`diversedistill.export`).

- ``mlp-recommender``: :class:`~diversedistill_recipes.movielens.recommender.MLPRecommender`;
- ``movielens-rating-server``: the recommender with its release's id encoders and side
  tables (:class:`~diversedistill_recipes.movielens.rating_server.RatingServer`):
  ``predict(user_id, movie_id)`` from raw ids, clamped to the rating scale.
"""

from __future__ import annotations

import sys

from diversedistill_recipes.movielens.recommender import MLPRecommender


class MLPRecommenderArchitecture:
    def owns(self, model):
        return isinstance(model, MLPRecommender)

    def served(self, model):
        return model

    def describe(self, model, class_names=None):
        return model.describe()

    def rebuild(self, description):
        return MLPRecommender.from_description(description)

    def as_student(self, model, description):
        from diversedistill_recipes.movielens.rating_recipes import (
            as_student,  # rating_recipes imports this module
        )

        return as_student(model)


class RatingServerArchitecture:
    """A recommender with its release's id encoders: predicts from raw MovieLens ids."""

    def owns(self, model):
        server = sys.modules.get("diversedistill_recipes.movielens.rating_server")
        return server is not None and isinstance(model, server.RatingServer)

    def served(self, model):
        return model

    def describe(self, model, class_names=None):
        return model.describe()

    def rebuild(self, description):
        from diversedistill_recipes.movielens.rating_server import RatingServer

        return RatingServer.from_description(description)

    def as_student(self, model, description):
        return model


MLP_RECOMMENDER = MLPRecommenderArchitecture()
RATING_SERVER = RatingServerArchitecture()
