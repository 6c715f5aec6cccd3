"""The CIFAR ViT student as an export entry, ``vit-classifier`` (registered through the
``diversedistill.architectures`` entry point, see :mod:`diversedistill.export`).

A Hugging Face ``ViTForImageClassification``, exported bare or from its
:class:`~diversedistill_recipes.cifar.vit.ViTStudent` adapter. Its description holds the
``ViTConfig`` (``to_dict()``), the image size and normalization the adapter applies, the
question layer, ``num_labels``, the class names when known and the widths of a
convolutional tokenizer (``stem``, :mod:`diversedistill_recipes.cifar.conv_stem`) when one
replaced the patch convolution; it is rebuilt with ``ViTConfig(**d)`` +
``ViTForImageClassification(config)`` (+ the experiment's own ``install_conv_stem``), never
from the hub.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import torch
from torch import nn

from diversedistill.errors import ModelError
from diversedistill.models.export_generic import check_rebuilds_same


class ViTClassifierArchitecture:
    """A ``ViTForImageClassification``, bare or in its ``ViTStudent`` adapter."""

    def owns(self, model):
        # A ViT can only exist once its module is imported: looking in sys.modules keeps
        # exporting (and importing) an MLP free of transformers' seconds-long import.
        vision = sys.modules.get("diversedistill_recipes.cifar.vit")
        if vision is not None and isinstance(model, vision.ViTStudent):
            return True
        hf = sys.modules.get("transformers")
        return hf is not None and isinstance(model, hf.ViTForImageClassification)

    def served(self, model):
        from diversedistill_recipes.cifar.vit import ViTStudent

        return model.model if isinstance(model, ViTStudent) else model

    def describe(self, model, class_names=None):
        from diversedistill_recipes.cifar.vit import ViTStudent

        # a bare model: the adapter's defaults (its own size, the google/vit-* statistics)
        student = model if isinstance(model, ViTStudent) else ViTStudent(model)
        vit, spec = student.model, student.spec
        # to_json_string: to_dict() with every value JSON-ready (dtypes as names)
        config = json.loads(vit.config.to_json_string(use_diff=False))
        names = _class_names(vit.config, class_names)
        if names is not None:  # served with readable labels: config.id2label[i]
            config["id2label"] = {str(i): n for i, n in enumerate(names)}
            config["label2id"] = {n: i for i, n in enumerate(names)}
        description = {"vit_config": config, "num_labels": int(vit.config.num_labels),
                       "stem": _stem_of(vit),
                       "image": {"size": spec.size, "mean": list(spec.mean),
                                 "std": list(spec.std)},
                       "question_layer": student.layer, "class_names": names,
                       "parameters": sum(p.numel() for p in vit.parameters())}
        self._check_rebuildable(vit, description)
        return description

    def _check_rebuildable(self, model: nn.Module, description: dict) -> None:
        """The description must cover the whole model: a submodule replaced after the
        model was built (another tokenizer than the conv stem, another activation) would be
        rebuilt as the plain ViT and load weights meant for something else, so it is
        refused at export, not discovered when serving."""
        with torch.device("meta"):  # structure and shapes only: no memory, no random numbers
            plain = self.rebuild(description)
        check_rebuilds_same(model, plain, "the ViT its config describes",
                            "this architecture cannot rebuild it, register an entry of its own "
                            "(diversedistill.export.register_architecture)")

    def rebuild(self, description):
        from transformers import ViTConfig, ViTForImageClassification

        config = ViTConfig(**description["vit_config"])
        if config.num_labels != int(description["num_labels"]):
            raise ValueError(f"vit_config has {config.num_labels} labels, num_labels says "
                             f"{description['num_labels']}")
        model = ViTForImageClassification(config)
        stem = description.get("stem")
        if stem is not None:  # the tokenizer the experiment's build_vit installs, by its builder
            from diversedistill_recipes.cifar.conv_stem import install_conv_stem

            install_conv_stem(model, [int(c) for c in stem])
        return model

    def as_student(self, model, description):
        from diversedistill_recipes.cifar.vit import ImageSpec, ViTStudent

        image = description["image"]
        spec = ImageSpec(int(image["size"]), tuple(image["mean"]), tuple(image["std"]))
        return ViTStudent(model, layer=description["question_layer"], spec=spec)


def _class_names(config, given: Sequence[str] | None) -> list[str] | None:
    """The names given, else the config's own labels unless they are Hugging Face's
    placeholders (LABEL_0, LABEL_1, ...)."""
    if given is not None:
        names = [str(n) for n in given]
        if len(names) != config.num_labels:
            raise ModelError(f"{len(names)} class names for a classifier of "
                             f"{config.num_labels} classes")
        return names
    names = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
    return None if names == [f"LABEL_{i}" for i in range(config.num_labels)] else names


def _stem_of(model: nn.Module) -> list[int] | None:
    """The intermediate widths of the model's convolutional tokenizer (None without one),
    read from its convolutions: the model itself, not a recipe that may have been edited
    since, says what to rebuild; the structure check then proves the reading right."""
    if "diversedistill_recipes.cifar.conv_stem" not in sys.modules:  # no tokenizer was ever built
        return None
    from diversedistill_recipes.cifar.conv_stem import ConvTokenizer

    tokenizers = [m for m in model.modules() if isinstance(m, ConvTokenizer)]
    if not tokenizers:
        return None
    convs = [m for m in tokenizers[0].modules() if isinstance(m, nn.Conv2d)]
    return [c.out_channels for c in convs[:-1]]  # the last conv gives the model's width


VIT_CLASSIFIER = ViTClassifierArchitecture()
