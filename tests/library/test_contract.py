"""The contract a user's batches, student and task must meet: each usual mistake gets one
sentence before the first step (never a KeyError mid-epoch or a silently wrong metric),
and any transformer is asked at one token of any layer without a subclass."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError, ModelError
from diversedistill.interface import HookedStudent, HookedTeacher
from diversedistill.loop.contract import NamedRows, metric_for
from diversedistill.methods import DiverseDistill, StudentOnly
from diversedistill.training import TrainConfig, fit


class TinyNet(nn.Module):
    def __init__(self, outputs: int, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, width), nn.ReLU())
        self.head = nn.Linear(width, outputs)

    def forward(self, x):
        out = self.head(self.body(x))
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def student(outputs: int) -> HookedStudent:
    return HookedStudent(TinyNet(outputs), "body", "head", call=lambda m, b: m(b["x"]))


def rows(n: int = 32, classes: int | None = None) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() if classes else x[:, 0] * 2.0
    return TensorDataset(x, y)


def named_loader(data, batch_size: int = 8, names=("x", "target")) -> DataLoader:
    return DataLoader(NamedRows(data, names), batch_size=batch_size)


FAST = TrainConfig(max_epochs=1, progress=False)


def run(tmp_path, model, train, **kw):
    return fit(model, StudentOnly(), None, train, train, None, kw.pop("cfg", FAST),
               tmp_path / "run", **kw)


def test_tuple_batches_get_one_sentence_naming_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"yields list batches \(as a TensorDataset does\).*"
                                          r"NamedRows"):
        run(tmp_path, student(1), DataLoader(rows(), batch_size=8))
    assert not (tmp_path / "run").exists()


def test_a_target_under_another_name_is_named_with_the_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"batches have keys \['x', 'y'\] but no 'target'"):
        data = [{"x": x, "y": y} for x, y in rows()]  # a user's own dict dataset
        run(tmp_path, student(1), DataLoader(data, batch_size=8))


def test_named_rows_refuses_names_without_a_target():
    with pytest.raises(ConfigError, match="one of them must be 'target'"):
        NamedRows(rows(), ("x", "y"))


@pytest.mark.parametrize("batch_size", [2, 8])
def test_classification_is_read_from_integer_targets(tmp_path, batch_size):
    """Before: a classifier without metric="accuracy" failed after an epoch, or with
    batch size 2 reported a mean squared error of logits against labels."""
    result = run(tmp_path, student(2), named_loader(rows(classes=2), batch_size))
    assert result.metric == "accuracy" and 0.0 <= result.val_accuracy <= 1.0


def test_a_metric_that_contradicts_the_target_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"metric='mse' scores regression, but the batches' "
                                          r"'target' holds integer class labels"):
        run(tmp_path, student(2), named_loader(rows(classes=2)), metric="mse")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_regression_stays_regression(tmp_path):
    assert run(tmp_path, student(1), named_loader(rows())).metric == "mse"
    assert metric_for(torch.zeros(3), None) == "mse"
    assert metric_for(torch.zeros(3, dtype=torch.long), None) == "accuracy"


def test_a_classifier_with_one_output_is_named(tmp_path):
    with pytest.raises(ModelError, match=r"classification, which needs \(8, classes\)"):
        run(tmp_path, student(1), named_loader(rows(classes=2)))


def test_a_batch_size_the_loader_does_not_use_is_refused(tmp_path):
    """Before: TrainConfig.batch_size was silently ignored."""
    with pytest.raises(ConfigError, match=r"TrainConfig.batch_size is 64 but the training "
                                          r"loader yields batches of 8"):
        run(tmp_path, student(1), named_loader(rows()),
            cfg=TrainConfig(max_epochs=1, progress=False, batch_size=64))


class TokenNet(nn.Module):
    """A model whose question point holds token states [B, T, D]."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 3 * 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        tokens = self.mix(self.embed(x).view(-1, 3, 8))
        return self.head(tokens[:, 0]).squeeze(-1)


def test_a_token_state_as_question_point_asks_for_a_token(tmp_path):
    call = lambda m, b: m(b["x"])  # noqa: E731
    teacher = Committee([HookedTeacher("t", TinyNet(1), "body", "head",
                                       call=lambda m, b: m(b["x"]))])
    with pytest.raises(ModelError, match=r"question point 'mix' has shape \(8, 3, 8\).*token="):
        fit(HookedStudent(TokenNet(), "mix", "head", call=call), DiverseDistill(), teacher,
            named_loader(rows()), None, None, FAST, tmp_path / "run")
    picked = HookedStudent(TokenNet(), "mix", "head", call=call, token=0)
    result = fit(picked, DiverseDistill(), teacher, named_loader(rows()), named_loader(rows()),
                 None, FAST, tmp_path / "run2")
    assert result.metric == "mse"


# --- any transformer as a teacher, at one token of any layer --------------------------

def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, num_labels=3)
    batch = {"input_ids": torch.randint(0, 50, (4, 6)), "target": torch.tensor([0, 1, 2, 0])}
    return (BertForSequenceClassification(config), "bert.encoder.layer.0", "classifier",
            lambda m, b: m(input_ids=b["input_ids"]).logits, batch)


def tiny_vit():
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32, num_labels=3)
    batch = {"image": torch.rand(4, 3, 8, 8), "target": torch.tensor([0, 1, 2, 0])}
    return (ViTForImageClassification(config), "vit.layers.1", "classifier",
            lambda m, b: m(pixel_values=b["image"]).logits, batch)


class ClipTowerClassifier(nn.Module):
    """CLIP's image tower with a linear head on its pooled [CLS]."""

    def __init__(self):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        self.tower = CLIPVisionModel(CLIPVisionConfig(
            image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=32))
        self.head = nn.Linear(16, 3)

    def forward(self, images):
        return self.head(self.tower(pixel_values=images).pooler_output)


def tiny_clip():
    batch = {"image": torch.rand(4, 3, 8, 8), "target": torch.tensor([0, 1, 2, 0])}
    return (ClipTowerClassifier(), "tower.encoder.layers.0", "head",
            lambda m, b: m(b["image"]), batch)


def tiny_t5():
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=12, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                      num_decoder_layers=2, num_heads=2, decoder_start_token_id=0)
    batch = {"input_ids": torch.randint(1, 12, (4, 5)), "target": torch.tensor([3, 4, 5, 6])}

    def call(m, b):  # one decoder step: the logits of the first generated token
        start = torch.zeros(b["input_ids"].shape[0], 1, dtype=torch.long)
        return m(input_ids=b["input_ids"], decoder_input_ids=start).logits[:, 0]

    return T5ForConditionalGeneration(config), "decoder.block.0", "lm_head", call, batch


@pytest.mark.parametrize("build", [tiny_bert, tiny_vit, tiny_clip, tiny_t5],
                         ids=["bert", "vit", "clip-image-tower", "t5-decoder"])
def test_any_transformer_is_asked_at_a_token_without_a_subclass(build):
    torch.manual_seed(0)
    model, inject_at, head, call, batch = build()
    teacher = HookedTeacher("t", model.eval(), inject_at, head, call=call, token=0)
    Committee([teacher]).probe(batch)  # freezes it and finds the widths
    assert teacher.question_width == 16 and teacher.answer_width == 16
    own = teacher.answer(None, teacher.context(batch))
    zero = teacher.answer(torch.zeros(4, 16), teacher.context(batch))
    # a zero question (DiverseDistill's at initialization) leaves the teacher as trained
    torch.testing.assert_close(zero.hidden, own.hidden, rtol=0, atol=0)
    torch.testing.assert_close(zero.prediction, own.prediction, rtol=0, atol=0)
    question = torch.randn(4, 16, requires_grad=True)
    asked = teacher.answer(question, teacher.context(batch))
    assert not torch.allclose(asked.hidden, own.hidden)
    # the answer depends on the question: gradients reach it (a weighted sum: the plain sum
    # of a LayerNorm's output, CLIP's pooled [CLS], does not depend on its input)
    (asked.hidden * torch.randn_like(asked.hidden)).sum().backward()
    assert question.grad is not None and question.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())  # the teacher stays frozen


class TinyCNN(nn.Module):
    """Two conv blocks (conv, batch norm, ReLU), global average pool, linear head: the
    layout of a ResNet or an EfficientNet, whose block outputs are [B, C, H, W] maps."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(
            *(nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                            nn.ReLU()) for c_in, c_out in ((3, 6), (6, 8))))
        self.fc = nn.Linear(8, 3)

    def forward(self, images):
        return self.fc(self.blocks(images).mean(dim=(-2, -1)))


@pytest.mark.parametrize("mode", ["add", "replace"])
def test_a_cnn_is_asked_with_a_per_channel_offset_at_a_block(mode):
    torch.manual_seed(0)
    model = TinyCNN()
    model.blocks[0][1].running_mean.uniform_(-1, 1)  # trained-looking statistics
    batch = {"image": torch.rand(4, 3, 8, 8), "target": torch.tensor([0, 1, 2, 0])}
    teacher = HookedTeacher("cnn", model.eval(), "blocks.0", "fc", mode=mode,
                            call=lambda m, b: m(b["image"]), per_channel=True)
    Committee([teacher]).probe(batch)
    assert teacher.question_width == 6 and teacher.answer_width == 8  # channels; pooled
    own = teacher.answer(None, teacher.context(batch))
    with torch.no_grad():
        plain = model(batch["image"])
        pooled = model.blocks(batch["image"]).mean(dim=(-2, -1))
    torch.testing.assert_close(own.prediction, plain, rtol=0, atol=0)
    torch.testing.assert_close(own.hidden, pooled, rtol=0, atol=0)
    if mode == "add":  # a zero offset is the plain model, to the bit
        zero = teacher.answer(torch.zeros(4, 6), teacher.context(batch))
        torch.testing.assert_close(zero.hidden, pooled, rtol=0, atol=0)
        torch.testing.assert_close(zero.prediction, plain, rtol=0, atol=0)
    question = torch.randn(4, 6, requires_grad=True)
    asked = teacher.answer(question, teacher.context(batch))
    assert not torch.allclose(asked.hidden, own.hidden)
    (asked.hidden * torch.randn_like(asked.hidden)).sum().backward()
    assert question.grad is not None and question.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ModelError, match=r"one offset per channel"):
        teacher.answer(torch.zeros(4, 6, 8, 8), teacher.context(batch))


def test_a_feature_map_without_per_channel_is_named():
    teacher = HookedTeacher("cnn", TinyCNN().eval(), "blocks.0", "fc",
                            call=lambda m, b: m(b["image"]))
    with pytest.raises(ModelError, match=r"'blocks.0' outputs a feature map \(4, 6, 8, 8\); "
                                         r".*per_channel=True"):
        Committee([teacher]).probe({"image": torch.rand(4, 3, 8, 8)})
    with pytest.raises(ModelError, match=r"give one of them"):
        HookedTeacher("cnn", TinyCNN(), "blocks.0", "fc", token=0, per_channel=True)
    flat = HookedTeacher("mlp", TinyNet(3), "body.0", "head", call=lambda m, b: m(b["x"]),
                         per_channel=True)
    with pytest.raises(ModelError, match=r"per_channel=True needs a feature map"):
        Committee([flat]).probe({"x": torch.randn(4, 4)})


def test_a_token_state_without_a_token_is_named():
    model, inject_at, head, call, batch = tiny_bert()
    teacher = HookedTeacher("bert", model.eval(), inject_at, head, call=call)
    with pytest.raises(ModelError, match=r"teacher 'bert': its injection point "
                                         r"'bert.encoder.layer.0' has shape \(4, 6, 16\).*token="):
        Committee([teacher]).probe(batch)


def test_tensorboard_event_files_beside_the_csv_when_asked(tmp_path, monkeypatch):
    pytest.importorskip("tensorboardX")  # in the test extras
    cfg = TrainConfig(max_epochs=1, progress=False, tensorboard=True)
    run(tmp_path, student(1), named_loader(rows()), cfg=cfg)
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()
    # without the package: one sentence, before the run directory is touched
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"needs the tensorboard or tensorboardX package"):
        run(tmp_path / "b", student(1), named_loader(rows()), cfg=cfg)


def test_a_student_built_for_other_columns_is_one_sentence_before_the_first_step(tmp_path):
    x = torch.randn(32, 6)  # six columns; TinyNet reads four
    rows = NamedRows(TensorDataset(x, x.sum(1)), ("x", "target"))
    train = DataLoader(rows, batch_size=16)
    teacher = HookedTeacher("wide", nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1),
                                                  nn.Flatten(0)), "0", "2",
                            call=lambda m, b: m(b["x"]))
    for method, committee in ((StudentOnly(), None), (DiverseDistill(), Committee([teacher]))):
        student = HookedStudent(TinyNet(1), "body", "head", call=lambda m, b: m(b["x"]))
        with pytest.raises(ModelError) as err:
            fit(student, method, committee, train, train, None,
                TrainConfig(max_epochs=1, progress=False), tmp_path / "run")
        message = str(err.value)
        assert message.startswith("the student cannot read the first batch (x (16, 6)): ")
        assert "\n" not in message and "input width" in message
