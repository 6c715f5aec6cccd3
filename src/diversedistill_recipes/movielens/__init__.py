"""MovieLens: the official releases, splits, the recommender student and teachers, the
language-model teacher, and the ``reproduce movielens`` experiment."""
