"""The linear probe scores features by what a linear classifier reads from them."""

from __future__ import annotations

import torch

from diversedistill_recipes.cifar.images import Images
from diversedistill_recipes.cifar.linear_probe import image_features, linear_probe


def clusters(n, informative, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 20, generator=g)
    if informative:  # class means apart in a few directions, buried in noise columns
        x[:, :4] += 2.0 * torch.nn.functional.one_hot(y, 4)
    return x, y


def test_informative_features_score_far_above_chance_and_noise_does_not():
    for informative, low, high in ((True, 0.8, 1.0), (False, 0.0, 0.45)):
        train_x, train_y = clusters(600, informative, 0)
        val_x, val_y = clusters(400, informative, 1)
        result = linear_probe(train_x, train_y, val_x, val_y, 4, steps=50)
        assert low <= result.accuracy <= high, (informative, result)


def test_features_are_computed_in_order_on_images_in_zero_one():
    images = Images(torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 3, 2, 2)
                    .contiguous(), torch.zeros(5, dtype=torch.long))
    features = image_features(lambda x: x.flatten(1)[:, :1], images, batch_size=2)
    torch.testing.assert_close(features, torch.arange(5.0).view(5, 1) / 255)
