"""Any student exports and loads back predicting identically: a user's own ``nn.Module``
through a named factory, and any Hugging Face model (whose export directory
``from_pretrained`` also reads)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from diversedistill.errors import ModelError
from diversedistill.export import CONFIG, WEIGHTS, export_model, load_model, model_factory
from diversedistill.interface import HookedStudent


class UserStudent(nn.Module):
    """A user's model, defined outside the library, built from keyword arguments."""

    def __init__(self, inputs: int, hidden: int, outputs: int = 1):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x):
        return self.head(self.body(x)).squeeze(-1)


@model_factory
def make_student(width: int) -> nn.Module:
    return UserStudent(3, width)


def not_a_factory(width: int) -> nn.Module:
    return UserStudent(3, width)


def test_a_user_module_exports_and_loads_back_predicting_identically(tmp_path):
    torch.manual_seed(0)
    model = UserStudent(3, 5)
    wrapped = HookedStudent(model, "body", "head", call=lambda m, b: m(b["x"]))
    out = export_model(wrapped, tmp_path / "m", factory=f"{__name__}:UserStudent",
                       arguments={"inputs": 3, "hidden": 5})
    config = json.loads((out / CONFIG).read_text())
    assert config["architecture"] == "factory"
    assert config["model"]["arguments"] == {"inputs": 3, "hidden": 5}
    loaded = load_model(out, factory=UserStudent)  # the caller's own class rebuilds it
    x = torch.randn(7, 3)
    assert isinstance(loaded, UserStudent) and not loaded.training
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


def test_a_marked_factory_function_builds_the_model(tmp_path):
    model = make_student(4)
    out = export_model(model, tmp_path / "m", factory=f"{__name__}:make_student",
                       arguments={"width": 4})
    x = torch.randn(2, 3)
    for opt_in in ({"factory": f"{__name__}:make_student"}, {"trust_code": True}):
        torch.testing.assert_close(load_model(out, **opt_in)(x), model.eval()(x), rtol=0,
                                   atol=0)


def test_factories_that_do_not_rebuild_the_model_are_refused_at_export(tmp_path):
    with pytest.raises(ModelError, match="differs from the model factory"):
        export_model(UserStudent(3, 5), tmp_path / "m", factory=f"{__name__}:UserStudent",
                     arguments={"inputs": 3, "hidden": 6})
    with pytest.raises(ModelError, match="cannot build the model"):
        export_model(UserStudent(3, 5), tmp_path / "m", factory=f"{__name__}:UserStudent",
                     arguments={"width": 5})
    with pytest.raises(ModelError, match="arguments must be JSON values"):
        export_model(UserStudent(3, 5), tmp_path / "m", factory=f"{__name__}:UserStudent",
                     arguments={"inputs": torch.tensor(3), "hidden": 5})
    assert not (tmp_path / "m").exists()  # nothing half-written


def test_a_config_naming_something_that_is_not_a_model_builder_is_never_called(tmp_path):
    out = export_model(make_student(4), tmp_path / "m", factory=f"{__name__}:make_student",
                       arguments={"width": 4})
    config = json.loads((out / CONFIG).read_text())
    for target, why in ((f"{__name__}:not_a_factory", "not an nn.Module class or a function "
                         "marked"), ("os:system", "not an nn.Module class"),
                        ("no_such_package_xyz:Model", "cannot import 'no_such_package_xyz'")):
        config["model"]["factory"] = target
        (out / CONFIG).write_text(json.dumps(config))
        with pytest.raises(ModelError, match=why):  # even trusted, only builders are called
            load_model(out, trust_code=True)


def test_an_unexportable_module_names_the_factory_way():
    with pytest.raises(ModelError, match=r"pass factory='package.module:UserStudent'"):
        export_model(UserStudent(3, 5), "/nonexistent/never-written")


def tiny_bert_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, num_labels=3)
    return BertForSequenceClassification(config).eval()


def test_a_hugging_face_student_exports_as_a_save_pretrained_directory(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = tiny_bert_classifier()
    student = HookedStudent(model, "bert.pooler", "classifier",
                            call=lambda m, b: m(input_ids=b["input_ids"]).logits)
    out = export_model(student, tmp_path / "m", class_names=["neg", "mid", "pos"])
    assert {p.name for p in out.iterdir()} == {CONFIG, WEIGHTS}
    config = json.loads((out / CONFIG).read_text())
    assert config["architecture"] == "hf-pretrained"
    assert config["model_type"] == "bert"  # Hugging Face's own keys at the top
    ids = torch.randint(0, 40, (3, 5))
    expected = model(input_ids=ids).logits
    ours = load_model(out)
    torch.testing.assert_close(ours(input_ids=ids).logits, expected, rtol=0, atol=0)
    theirs = AutoModelForSequenceClassification.from_pretrained(out).eval()
    torch.testing.assert_close(theirs(input_ids=ids).logits, expected, rtol=0, atol=0)
    assert theirs.config.id2label[2] == "pos"


def test_a_damaged_hugging_face_export_is_refused(tmp_path):
    out = export_model(tiny_bert_classifier(), tmp_path / "m")
    config = json.loads((out / CONFIG).read_text())
    config["model"]["class"] = "print"
    (out / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelError, match="not a transformers model class"):
        load_model(out)
