"""A user's table, read once and split once: its feature columns as the ``"x"`` every model
reads, its target as ``"target"`` (float for regression, class indices for classification),
and loaders of its training, validation and test rows for any seed.

The split is drawn from ``data.split_seed`` only, so every run on the table (a teacher
trained by ``train-teacher``, each of ``compare``'s students) sees the same rows; a run's
own seed orders its training batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from diversedistill.config import short
from diversedistill.errors import DataError
from diversedistill.loop.contract import NamedRows
from diversedistill_recipes.tabular.spec import TableData, not_utf8, resolve

EVAL_BATCH = 256  # validation and test batches: scoring only, so larger is just faster


@dataclass
class Table:
    x: torch.Tensor  # [rows, features] float32
    y: torch.Tensor  # [rows]: float32 (regression) or int64 class indices
    parts: dict[str, torch.Tensor]  # "train" / "val" / "test" -> row indices
    class_names: list[str] | None  # the label of each class index (None: regression)
    batch_size: int

    @property
    def classes(self) -> bool:
        return self.class_names is not None

    def loaders(self, seed: int) -> tuple[DataLoader, DataLoader, DataLoader | None]:
        """(train, val, test); ``seed`` orders the training batches."""
        named = {k: NamedRows(TensorDataset(self.x[rows], self.y[rows]), ("x", "target"))
                 for k, rows in self.parts.items()}
        train = DataLoader(named["train"], batch_size=self.batch_size, shuffle=True,
                           generator=torch.Generator().manual_seed(seed))
        size = max(self.batch_size, EVAL_BATCH)
        test = DataLoader(named["test"], batch_size=size) if len(self.parts["test"]) else None
        return train, DataLoader(named["val"], batch_size=size), test


def read_table(data: TableData, where: Path) -> Table:
    """The table ``data`` names, every cell of its columns checked (file and line named)."""
    import pandas as pd

    path = resolve(data.file, where)
    separator = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        table = pd.read_csv(path, sep=separator)
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except pd.errors.ParserError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"{path}: not a readable CSV table ({first})") from None
    for column in [*data.features, data.target]:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            raise DataError(f"{path}, line {int(bad[0]) + 2}: column {column!r} holds "
                            f"{short(table[column].iloc[bad[0]])}, not a number")
        # 'inf' parses as a number, then turns every loss and gradient it touches into NaN
        infinite = np.flatnonzero(np.isinf(values.to_numpy(dtype=np.float64)))
        if len(infinite):
            raise DataError(f"{path}, line {int(infinite[0]) + 2}: column {column!r} holds "
                            f"{values.iloc[infinite[0]]}, not a finite number")
    x = torch.tensor(table[data.features].to_numpy(dtype=np.float32))
    target = pd.to_numeric(table[data.target]).to_numpy()
    classes = data.task == "classification" or (
        data.task == "auto" and np.issubdtype(target.dtype, np.integer))
    class_names = None
    if classes:
        fractional = np.flatnonzero(target != np.round(target))
        if len(fractional):  # never truncated into a class
            raise DataError(f"{path}, line {int(fractional[0]) + 2}: column {data.target!r} "
                            f"holds {target[fractional[0]]}, not a class label (an integer); "
                            "for a numeric target set data.task: regression")
        labels, index = np.unique(target.astype(np.int64), return_inverse=True)
        if len(labels) < 2:
            raise DataError(f"{path}: column {data.target!r} holds one class only "
                            f"({labels[0]}); classification needs two or more")
        # any integer labels (1..5, -1/1) become class indices 0..C-1, in sorted order
        y = torch.tensor(index.astype(np.int64))
        class_names = [str(v) for v in labels]
    else:
        y = torch.tensor(target.astype(np.float32))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(data.split_seed))
    n_val, n_test = round(len(y) * data.val_fraction), round(len(y) * data.test_fraction)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test],
             "train": order[n_val + n_test:]}
    if min(len(parts["train"]), len(parts["val"])) == 0:
        raise DataError(f"{path}: {len(y)} rows leave no training or validation rows")
    return Table(x, y, parts, class_names, data.batch_size)
