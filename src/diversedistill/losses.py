"""Loss functions shared by every method (pure functions, no state)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(prediction: torch.Tensor, target: torch.Tensor,
              reduction: str = "mean") -> torch.Tensor:
    """Squared error for ratings (float targets), cross-entropy for class labels (long)."""
    if target.is_floating_point():
        return F.mse_loss(prediction, target, reduction=reduction)
    return F.cross_entropy(prediction, target, reduction=reduction)


def squared_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row squared L2 distance ‖a − b‖² -> [B] (METHOD.md's D)."""
    return (a - b).pow(2).sum(-1)


def normalized_squared_error(a: torch.Tensor, b: torch.Tensor,
                             mean_square: torch.Tensor) -> torch.Tensor:
    """Per-row squared error per dimension, relative to ``b``'s own size -> [B]::

        D(a, z) = (1/d') Σ_k (a_k − z_k)² / m,     m = E[(1/d') Σ_k z_k²]

    ``mean_square`` is m: the mean square of ``z`` per dimension over samples (a running
    estimate, detached). Why: the summed squared L2 of METHOD.md grows with the width of
    ``z`` and with its scale, so the λ that suits one student does nothing (or everything)
    for another — validation chose λ = 10 for a post-ReLU 64-wide MovieLens ``z`` and 0.003
    for a layer-normed ViT ``z``. Divided by the width and by ``z``'s size, D is free of
    both: scaling ``a`` and ``z`` together by c scales m by c² and leaves D unchanged; D = 1
    is an answer as far from ``z`` as ``z`` is from zero. Why the mean square and not the
    variance: when the distance also trains the answers, the answers and ``z`` can drift
    together towards one constant vector; the variance then shrinks, 1/variance grows and
    speeds the drift up — measured on ML-100K: the student collapsed to the global mean at
    λ = 0.3 — while the mean square of a constant vector stays put."""
    return (a - b).pow(2).mean(-1) / mean_square.clamp_min(torch.finfo(b.dtype).tiny)


def task_score(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row task metric [B]: squared error for ratings (float targets, lower is better),
    correct (1.0) or not (0.0) for class labels (higher is better)."""
    if target.is_floating_point():
        return (prediction - target).pow(2)
    return (prediction.argmax(-1) == target).float()
