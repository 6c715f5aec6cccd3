"""Loss functions shared by every method (pure functions, no state)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(prediction: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared error for ratings (float targets), cross-entropy for class labels (long)."""
    if target.is_floating_point():
        return F.mse_loss(prediction, target, reduction=reduction)
    return F.cross_entropy(prediction, target, reduction=reduction)


def squared_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row squared L2 distance ‖a − b‖² -> [B] (METHOD.md's D)."""
    return (a - b).pow(2).sum(-1)
