"""A linear probe: how much of a task a frozen network's features already hold.

Features are computed once (no gradient), standardized with the training rows' statistics,
and a multinomial logistic regression is fitted on them with full-batch L-BFGS. Its L2
penalty is chosen on a seeded fifth of the training rows, then the probe is refitted on
all of them and scored on the validation rows, which the choice never saw. The same
protocol for every network compared (e.g. pretrained against randomly initialized) makes
the accuracies comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diversedistill_recipes.cifar.images import Images, image_loader

PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@torch.no_grad()
def image_features(embed: Callable[[torch.Tensor], torch.Tensor], images: Images,
                   batch_size: int = 100) -> torch.Tensor:
    """``embed`` ([B, 3, H, W] floats in [0, 1] -> [B, d]) on every image, in order."""
    rows = [embed(batch["image"]).float()
            for batch in image_loader(images, batch_size, shuffle=False)]
    return torch.cat(rows)


@dataclass
class ProbeResult:
    accuracy: float  # on the validation rows
    train_accuracy: float
    penalty: float  # the L2 strength chosen on the held-out fifth of the training rows


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, penalty: float,
                 steps: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression, mean cross-entropy + ``penalty`` · ‖W‖², full-batch
    L-BFGS for at most ``steps`` iterations."""
    torch.manual_seed(0)  # the start does not matter (convex), but runs stay identical
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=steps, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), y) + penalty * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear


def _accuracy(linear: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((linear(x).argmax(-1) == y).float().mean())


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor,
                 val_y: torch.Tensor, num_classes: int,
                 penalties: Sequence[float] = PENALTIES, steps: int = 200,
                 seed: int = 0) -> ProbeResult:
    """Fit on the training features, choose the penalty on a held-out fifth of them,
    score on the validation features."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    # a feature constant over the training rows (std clamped) says nothing: it stays 0
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
    held, kept = order[: len(order) // 5], order[len(order) // 5:]

    def held_out_accuracy(penalty: float) -> float:
        fitted = fit_logistic(train_x[kept], train_y[kept], num_classes, penalty, steps)
        return _accuracy(fitted, train_x[held], train_y[held])

    penalty = max(penalties, key=held_out_accuracy)  # first of equals: the weakest penalty
    linear = fit_logistic(train_x, train_y, num_classes, penalty, steps)
    return ProbeResult(_accuracy(linear, val_x, val_y), _accuracy(linear, train_x, train_y),
                       penalty)
