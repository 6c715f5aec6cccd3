"""What a batch, a student and a task must be, checked on the first batch before any step.

The training loop reads ``batch["target"]``, calls the student on the whole batch and
scores its predictions with the task's metric. A batch that breaks that contract used to
fail deep inside a step (``KeyError: 'target'``), after a whole epoch (a classifier scored
by squared error), or not at all (a [B, C] prediction minus a [B] target broadcasts to
a number). :func:`check_first_batch` turns each of those into one sentence in the
library's words before training starts.

The task is read from the target: floating-point targets are regression (one number per
row, scored by ``mse``), integer targets are classes (``[B, classes]`` logits, scored by
``accuracy``). A stated metric that contradicts the target is refused, never trusted.
:class:`NamedRows` turns a dataset of tuples (``TensorDataset``) into one of dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from diversedistill.errors import ConfigError, ModelError

TARGET = "target"
# the task each metric scores: a metric for regression or one for classification
TASK_OF_METRIC = {"mse": "regression", "accuracy": "classification"}


def task_of(target: torch.Tensor) -> str:
    """ "regression" for floating-point targets, "classification" for integer ones."""
    if target.dtype == torch.bool:
        return "classification"
    return "regression" if target.is_floating_point() else "classification"


def metric_for(target: torch.Tensor, metric: str | None) -> str:
    """The metric to score this target with: ``metric`` when it fits the task the target
    implies, the task's own metric when ``metric`` is None."""
    task = task_of(target)
    if metric is None:
        return "mse" if task == "regression" else "accuracy"
    if metric not in TASK_OF_METRIC:
        raise ConfigError(f"unknown metric {metric!r}; known: {sorted(TASK_OF_METRIC)}")
    if TASK_OF_METRIC[metric] != task:
        kind = "integer class labels" if task == "classification" else "floating-point numbers"
        fix = ("a floating-point target for regression" if task == "classification"
               else "integer (long) class labels for classification")
        raise ConfigError(f"metric={metric!r} scores {TASK_OF_METRIC[metric]}, but the batches' "
                          f"{TARGET!r} holds {kind} ({target.dtype}), which means "
                          f"{task}; leave metric unset to score {task}, or give {fix}")
    return metric


def check_batch(batch: Any, where: str = "the training loader") -> None:
    """A batch is a dict of tensors holding a [B] ``"target"``."""
    if isinstance(batch, (tuple, list)):
        raise ConfigError(
            f"{where} yields {type(batch).__name__} batches (as a TensorDataset does); the "
            f"library needs a dict per batch with a {TARGET!r} key. Wrap the dataset: "
            f"diversedistill.NamedRows(dataset, ('x', {TARGET!r})) names the columns")
    if not isinstance(batch, Mapping):
        raise ConfigError(f"{where} yields {type(batch).__name__} batches; the library needs a "
                          f"dict per batch with a {TARGET!r} key")
    if TARGET not in batch:
        raise ConfigError(f"{where}: batches have keys {sorted(map(str, batch))} but no "
                          f"{TARGET!r}; the library reads the value to predict from "
                          f"batch[{TARGET!r}] (rename the key, or use NamedRows)")
    target = batch[TARGET]
    if not isinstance(target, torch.Tensor) or target.dim() != 1:
        shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ConfigError(f"{where}: batch[{TARGET!r}] is {shape}; it must be a tensor with "
                          "one value per row ([batch]): a number to regress or a class index")


def check_prediction(who: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
    """A regression model returns one number per row ([B]); a classifier [B, classes]."""
    rows = target.shape[0]
    if task_of(target) == "regression":
        ok, want = tuple(prediction.shape) == (rows,), f"({rows},): one number per row"
    else:
        ok = prediction.dim() == 2 and prediction.shape[0] == rows and prediction.shape[1] > 1
        want = f"({rows}, classes): one logit per class"
    if not ok:
        raise ModelError(f"{who} returns predictions of shape {tuple(prediction.shape)}; the "
                         f"targets ({tuple(target.shape)}, {target.dtype}) make this "
                         f"{task_of(target)}, which needs {want}")


def first_pass(who: str, call: Callable[[], Any], batch: Mapping[str, Any]) -> Any:
    """``call()`` (a model's first pass over the first batch), with a shape error from
    inside the model (a ``Linear`` built for 8 features fed 10 columns) turned into one
    sentence that names the model and what the batch holds, instead of a torch traceback
    from its depths."""
    try:
        return call()
    except (RuntimeError, ValueError, IndexError) as err:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items()
                           if isinstance(v, torch.Tensor) and k != TARGET)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"{who} cannot read the first batch ({shapes}): {first}; check that "
                         "its input width matches the data") from None


def check_head(who: str, path: str, head_of_z: Callable[[], torch.Tensor],
               prediction: torch.Tensor) -> None:
    """The named head is the layer that makes the prediction: applied to ``z`` (its input)
    it gives the prediction's shape. A head named one layer too early (``body.0``) trains
    without an error otherwise, distilling the wrong vector and answering through the
    wrong layer."""
    try:
        shape = tuple(head_of_z().shape)
    except (RuntimeError, ValueError, IndexError) as err:
        shape = None
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
    else:
        why = f"it gives shape {shape}"
    if shape != tuple(prediction.shape):
        raise ModelError(f"{who}: its head {path!r} is not the layer that makes its prediction "
                         f"({tuple(prediction.shape)}): applied to its own input {why}; name "
                         "the final layer as head")


def check_vectors(who: str, **points: tuple[str, torch.Tensor]) -> None:
    """Question and answer points carry one vector per row: [batch, width]."""
    for what, (path, tensor) in points.items():
        if tensor.dim() != 2:
            raise ModelError(
                f"{who}: its {what} {path!r} has shape {tuple(tensor.shape)}; DiverseDistill "
                "needs [batch, width] there. For token states [batch, tokens, width] pick "
                "one token with token=... (e.g. token=0, the [CLS])")


class NamedRows(torch.utils.data.Dataset[dict[str, Any]]):
    """A dataset of tuples (``TensorDataset``, most ``torch.utils.data`` datasets) as one of
    dicts: ``NamedRows(TensorDataset(x, y), ("x", "target"))`` yields
    ``{"x": x[i], "target": y[i]}``, which the default collate stacks into dict batches."""

    def __init__(self, dataset: Sequence[Any], names: Sequence[str]):
        self.dataset, self.names = dataset, tuple(names)
        if TARGET not in self.names:
            raise ConfigError(f"NamedRows names {list(self.names)}: one of them must be "
                              f"{TARGET!r}, the value to predict")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.dataset[index]
        if len(row) != len(self.names):
            raise ConfigError(f"NamedRows: row {index} has {len(row)} fields but "
                              f"{len(self.names)} names were given ({list(self.names)})")
        return dict(zip(self.names, row))
