"""The convolutional tokenizer (cifar/conv_stem.py) in ViT and CLIP towers."""

import pytest
import torch
from vision_tiny import image_batch, tiny_clip, tiny_vit

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError
from diversedistill_recipes.cifar.conv_stem import ConvTokenizer, install_conv_stem
from diversedistill_recipes.cifar.image_recipes import ImageModelRecipe, build_vit
from diversedistill_recipes.cifar.vit import ViTTeacher

pytest.importorskip("transformers")


def test_tokenizer_keeps_the_patch_grid_of_the_convolution_it_replaces():
    model = tiny_vit(image_size=16)  # patch 4: a 4x4 grid
    patchify = model.vit.embeddings.patch_embeddings.projection
    pixels = torch.rand(2, 3, 16, 16)
    before = patchify(pixels).shape
    install_conv_stem(model, [8])
    tokenizer = model.vit.embeddings.patch_embeddings.projection
    assert isinstance(tokenizer, ConvTokenizer) and tokenizer(pixels).shape == before
    assert model(pixel_values=pixels).logits.shape == (2, 3)


def test_a_stem_vit_teacher_answers_like_its_model():
    model = install_conv_stem(tiny_vit(seed=1), [8]).eval()
    teacher = ViTTeacher("vit", model)
    batch = image_batch()
    Committee([teacher]).probe(batch)
    with torch.no_grad():
        own = teacher.answer(None, teacher.context(batch)).prediction
        direct = model(pixel_values=teacher.spec.prepare(batch["image"])).logits
    torch.testing.assert_close(own, direct)


def test_clip_tower_takes_the_stem():
    clip = tiny_clip()  # image 24, patch 6: not a power of two
    with pytest.raises(ConfigError, match="patch size of 4; the model's patch_size is 6"):
        install_conv_stem(clip.vision_model, [8])


def test_stem_and_patch_size_must_agree_in_the_recipe():
    config = {"image_size": 16, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 2,
              "num_attention_heads": 2, "intermediate_size": 32}
    with pytest.raises(ConfigError, match="patch_size is 8 \\(give 2 widths"):
        ImageModelRecipe("vit", config=config, stem=[8])
    model = build_vit(ImageModelRecipe("vit", config=config, stem=[8, 8]), 3, seed=0)
    assert model(pixel_values=torch.rand(1, 3, 16, 16)).logits.shape == (1, 3)
    with pytest.raises(ConfigError, match="pretrained"):
        ImageModelRecipe("vit", pretrained="somewhere", stem=[8])
