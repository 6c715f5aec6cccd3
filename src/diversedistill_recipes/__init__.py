"""The paper's experiments on top of the diversedistill library, and the command line.

- ``movielens/``: MovieLens data, the recommender student and teachers, the language-model
  teacher, ``reproduce movielens``;
- ``cifar/``: CIFAR data, the ViT student, the ViT and CLIP-style teachers, ``reproduce cifar10``;
- ``comparison/``: the comparison tables of both domains: search on validation, tables,
  claims, result rows, the importance-gating sweep;
- ``tabular/``: the user's own table from YAML (``distill``, ``train-teacher``, ``compare``
  ``--config``) and the suite of tasks no recipe was tuned on;
- ``bench/``, ``report.py``, ``cli/``.

The library (``diversedistill``) never imports this package (tests/library/test_layout.py).
"""
