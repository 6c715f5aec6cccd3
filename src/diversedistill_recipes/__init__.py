"""The paper's experiments on top of the diversedistill library, and the command line.

- ``movielens/``: MovieLens data, the recommender student and teachers, the language-model
  teacher, ``reproduce movielens``;
- ``cifar/``: CIFAR data, the ViT student, the ViT and CLIP-style teachers, ``reproduce cifar10``;
- ``comparison/``: the comparison tables of both domains: search on validation, tables,
  claims, result rows, the importance-gating sweep;
- ``bench/``, ``report.py``, ``cli.py``, ``user_run.py`` (``distill`` / ``train-teacher`` on
  your own data from a YAML file).

The library (``diversedistill``) never imports this package (tests/library/test_layout.py).
"""
