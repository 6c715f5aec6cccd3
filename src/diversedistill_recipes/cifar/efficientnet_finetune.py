"""EfficientNet-Lite0 fine-tuned on the task, as a teacher recipe builds, caches and reloads
it (image_recipes.py, ``kind: efficientnet``).

The ImageNet network gets a new classifier for the task's classes (the 1000-class ``_fc``
is dropped) and trains whole, on images resized and normalized by its own spec. During
training the model is a :class:`LiteClassifier` seen through a ``HookedStudent`` (the
training loop's view of any model); afterwards its network becomes an
:class:`~diversedistill_recipes.cifar.cnn_teacher.EfficientNetTeacher`. A fine-tuned
network is saved as its own state dict (safetensors), the names of
:class:`~diversedistill_recipes.cifar.efficientnet_lite.EfficientNetLite0`, and read back
strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from diversedistill.interface import HookedStudent
from diversedistill_recipes.cifar.efficientnet_lite import (
    FEATURE_WIDTH,
    EfficientNetLite0,
    lite_spec,
    pretrained_lite0,
)
from diversedistill_recipes.cifar.vit import ImageSpec

WEIGHTS = "efficientnet.safetensors"
PRETRAINED = ("imagenet",)  # what ``pretrained:`` may name for this kind (None: random init)


class LiteClassifier(nn.Module):
    """The network on [B, 3, H, W] images in [0, 1]: resized and normalized, then classified."""

    def __init__(self, net: EfficientNetLite0, spec: ImageSpec):
        super().__init__()
        self.net, self.spec = net, spec

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.spec.prepare(images))


def build_lite_classifier(num_classes: int, size: int, pretrained: str | None,
                          seed: int) -> LiteClassifier:
    """ImageNet weights (``pretrained="imagenet"``) or a random start, with a new head
    of ``num_classes`` drawn from ``seed``."""
    torch.manual_seed(seed)
    net = pretrained_lite0() if pretrained else EfficientNetLite0()
    net._fc = nn.Linear(FEATURE_WIDTH, num_classes)
    return LiteClassifier(net, lite_spec(size)).train()


def lite_student(model: LiteClassifier) -> HookedStudent:
    """What the training loop trains: the pooled feature (after the dropout, [B, 1280]) is
    both its "question point" and the head's input; training alone reads neither."""
    return HookedStudent(model, question_at="net._dropout", head="net._fc",
                         call=lambda m, b: m(b["image"]))


def save_lite(model: LiteClassifier, directory: Path) -> None:
    from safetensors.torch import save_file

    from diversedistill.runs.atomic import atomic_path

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(tmp))


def load_lite(directory: Path, num_classes: int, size: int) -> LiteClassifier:
    """A saved fine-tune, strictly: a missing or unexpected tensor is an error."""
    from safetensors.torch import load_file

    net = EfficientNetLite0(num_classes=num_classes)
    net.load_state_dict(load_file(str(directory / WEIGHTS)), strict=True)
    return LiteClassifier(net, lite_spec(size)).eval()
