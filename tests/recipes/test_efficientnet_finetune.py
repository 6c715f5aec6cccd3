"""An EfficientNet-Lite0 teacher recipe: fine-tuned once, cached, read back as the same
teacher, asked at its block."""

from __future__ import annotations

import pytest
import torch
from vision_tiny import image_batch

from diversedistill.errors import ConfigError
from diversedistill_recipes.cifar.cnn_teacher import EfficientNetTeacher
from diversedistill_recipes.cifar.image_recipes import (
    ImageModelRecipe,
    Parts,
    VisionExperiment,
    train_or_load_teacher,
)
from diversedistill_recipes.cifar.images import Images


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return Images(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                  torch.arange(n) % 3)


def test_a_fine_tuned_efficientnet_is_cached_and_read_back_as_the_same_teacher(tmp_path):
    # random weights (no download): the recipe path is the one ImageNet weights take
    recipe = ImageModelRecipe("efficientnet", config={"image_size": 32}, layer=7, epochs=1,
                              batch_size=8, warmup_epochs=0.0)
    exp = VisionExperiment(teachers={"lite": recipe}, views=None, augment=False,
                           eval_batch_size=8)
    parts = Parts(images(16, 0), images(8, 1), images(8, 2), ("a", "b", "c"))
    teacher, metrics, cached = train_or_load_teacher(parts, exp, "lite", recipe, 0, tmp_path)
    assert not cached and 0 <= metrics["val_accuracy"] <= 1
    assert isinstance(teacher, EfficientNetTeacher) and teacher.question_width == 80
    again, metrics_again, cached = train_or_load_teacher(parts, exp, "lite", recipe, 0, tmp_path)
    assert cached and metrics_again == metrics
    batch = image_batch(4)
    torch.testing.assert_close(again.predict(batch), teacher.predict(batch), rtol=0, atol=0)
    assert teacher.predict(batch).shape == (4, 3)


@pytest.mark.parametrize("fields, message", [
    ({"pretrained": "imagenet-21k"}, r"'pretrained' is one of \['imagenet'\]"),
    ({"pretrained": "imagenet", "train": False}, r"needs 'train: true'"),
    ({"config": {"patch_size": 4}}, r"only config.image_size, got \['patch_size'\]"),
])
def test_an_efficientnet_recipe_it_cannot_build_is_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        ImageModelRecipe("efficientnet", **fields)
