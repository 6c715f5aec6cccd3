"""Convolutional tokenization for small ViTs trained from scratch.

A ViT cuts the image into patches with one strided convolution; trained from scratch on a
few thousand images it learns slowly, since nothing in it knows that neighbouring pixels
belong together. Compact transformers (Hassani et al., 2021, "Escaping the Big Data
Paradigm with Compact Transformers") replace the patchify step by a few small convolutions
with max-pooling: the same token grid, a locality prior in front of the attention layers.
:func:`install_conv_stem` puts such a tokenizer in place of the patch embedding of a Hugging
Face ViT or CLIP vision tower, so every other part of the model (position embeddings,
[CLS], the layers the question enters, the head) stays the library's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from diversedistill.errors import ConfigError


class ConvTokenizer(nn.Module):
    """``len(channels) + 1`` blocks of conv 3×3 → ReLU → max-pool 3×3 stride 2; the last
    conv outputs the transformer's width. [B, 3, H, W] -> [B, width, H / 2^k, W / 2^k], the
    layout of the patch convolution it replaces (patch size 2^k)."""

    def __init__(self, channels: Sequence[int], width: int, in_channels: int = 3):
        super().__init__()
        widths = [in_channels, *channels, width]
        blocks = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.ReLU(),
                       nn.MaxPool2d(3, stride=2, padding=1)]
        self.blocks = nn.Sequential(*blocks)

    @property
    def weight(self) -> torch.Tensor:
        # CLIP's embeddings read the input dtype from ``patch_embedding.weight``
        return self.blocks[0].weight

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.blocks(pixels)


def check_stem(channels: Sequence[int], patch_size: int, where: str = "stem") -> None:
    """The tokenizer halves the resolution once per block: it can only stand in for a patch
    size of 2^(blocks)."""
    blocks = len(channels) + 1
    if patch_size != 2 ** blocks:
        raise ConfigError(f"{where}: {len(channels)} intermediate width(s) make {blocks} "
                          f"pooling blocks, a patch size of {2 ** blocks}; the model's "
                          f"patch_size is {patch_size} (give {max(patch_size.bit_length() - 2, 0)} "
                          "widths, or change patch_size)")
    if any(int(c) < 1 for c in channels):
        raise ConfigError(f"{where}: widths must be positive, got {list(channels)}")


def install_conv_stem(model: nn.Module, channels: Sequence[int]) -> nn.Module:
    """Replace the patch embedding of a Hugging Face ViT (``...embeddings.patch_embeddings
    .projection``) or CLIP vision tower (``...embeddings.patch_embedding``) by a
    :class:`ConvTokenizer` of the same output width; returns ``model``."""
    for name, module in model.named_modules():
        if name.endswith("embeddings.patch_embeddings"):  # ViT
            conv, owner, attr = module.projection, module, "projection"
            break
        if hasattr(module, "patch_embedding") and isinstance(module.patch_embedding, nn.Conv2d):
            conv, owner, attr = module.patch_embedding, module, "patch_embedding"  # CLIP
            break
    else:
        raise ConfigError(f"{type(model).__name__}: no patch embedding to replace with a conv stem")
    check_stem(channels, conv.kernel_size[0])
    setattr(owner, attr, ConvTokenizer(channels, conv.out_channels, conv.in_channels))
    return model
