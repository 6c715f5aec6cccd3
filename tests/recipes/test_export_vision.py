"""Exporting a ViT student: rebuilt from its config alone, refused when damaged or unknown,
and ``diversedistill export`` on a vision run directory.

Every model is a tiny one built in-process (width 16, patch 4, 16×16 images); no network,
no real data.
"""

import json

import pytest
import torch
from torch import nn
from vision_tiny import CLASSES, image_batch

from diversedistill.errors import ModelError
from diversedistill.export import (
    ARCHITECTURES,
    CONFIG,
    WEIGHTS,
    export_model,
    file_sha256,
    load_model,
    load_student,
    read_config,
)
from diversedistill_recipes.cli import main

pytest.importorskip("transformers")


def tiny_student(seed=0, layers=2, dropout=0.1):
    """A ViT student whose adapter normalizes with statistics of its own (not the 0.5 /
    0.5 default) and whose dropout makes train and eval mode differ."""
    from transformers import ViTConfig, ViTForImageClassification

    from diversedistill_recipes.cifar.vit import ImageSpec, ViTStudent

    torch.manual_seed(seed)
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=layers,
                       num_attention_heads=2, intermediate_size=32, num_labels=len(CLASSES),
                       hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    spec = ImageSpec(16, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
    return ViTStudent(ViTForImageClassification(config).train(), layer=1, spec=spec)


@torch.no_grad()
def predictions(student, batch):
    student.eval()
    return student.predict(batch)


def flip(path, n=16):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + n] = bytes(b ^ 0xFF for b in data[middle:middle + n])
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- the round trip


def test_a_vit_student_loads_back_with_identical_predictions(tmp_path):
    from transformers import ViTForImageClassification

    student = tiny_student()
    out = export_model(student, tmp_path / "m", {"note": "x"}, class_names=CLASSES)
    config = read_config(out)
    assert config["architecture"] == "vit-classifier" and config["note"] == "x"
    assert config["weights_sha256"] == file_sha256(out / WEIGHTS)
    described = config["model"]
    assert described["num_labels"] == 3 and described["class_names"] == list(CLASSES)
    assert described["image"] == {"size": 16, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]}
    assert described["question_layer"] == 1 and described["stem"] is None
    assert described["vit_config"]["hidden_size"] == 16

    model = load_model(out)  # the bare Hugging Face model, in eval mode
    assert type(model) is ViTForImageClassification and not model.training
    assert model.config.id2label == dict(enumerate(CLASSES))
    served = load_student(out)  # in its adapter: resized and normalized as recorded
    assert served.spec == student.spec and served.layer == student.layer
    batch = image_batch(5, size=32)  # another resolution: the recorded resize runs too
    assert torch.equal(predictions(served, batch), predictions(student, batch))
    pixels = student.spec.prepare(batch["image"])
    with torch.no_grad():
        assert torch.equal(model(pixel_values=pixels).logits,
                           student.model(pixel_values=pixels).logits)


def test_a_bare_vit_is_exported_with_the_adapters_defaults(tmp_path):
    from vision_tiny import tiny_vit

    out = export_model(tiny_vit(layers=2, image_size=16), tmp_path / "m")
    described = read_config(out)["model"]
    # Hugging Face's LABEL_0.. placeholders are no class names
    assert described["class_names"] is None and described["question_layer"] == 1
    assert described["image"] == {"size": 16, "mean": [0.5] * 3, "std": [0.5] * 3}
    batch = image_batch(3, size=16)
    from diversedistill_recipes.cifar.vit import ViTStudent

    assert torch.equal(predictions(load_student(out), batch),
                       predictions(ViTStudent(tiny_vit(layers=2, image_size=16)), batch))


def test_a_conv_stem_student_is_rebuilt_by_the_experiments_own_builder(tmp_path):
    conv_stem = pytest.importorskip("diversedistill_recipes.cifar.conv_stem")
    student = tiny_student()
    conv_stem.install_conv_stem(student.model, [8])
    out = export_model(student, tmp_path / "m")
    assert read_config(out)["model"]["stem"] == [8]
    served = load_student(out)
    assert isinstance(served.model.vit.embeddings.patch_embeddings.projection,
                      conv_stem.ConvTokenizer)
    batch = image_batch(4, size=16)
    assert torch.equal(predictions(served, batch), predictions(student, batch))


def test_a_submodule_its_config_does_not_describe_is_never_exported(tmp_path):
    student = tiny_student()
    embeddings = student.model.vit.embeddings.patch_embeddings
    embeddings.projection = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.ReLU())
    with pytest.raises(ModelError, match="differs from the ViT its config describes"):
        export_model(student, tmp_path / "m")
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- refusals


def test_a_damaged_weights_file_is_refused_naming_it(tmp_path):
    out = export_model(tiny_student(), tmp_path / "m")
    flip(out / WEIGHTS)
    for load in (load_model, load_student):
        with pytest.raises(ModelError, match=f"{out / WEIGHTS}: checksum differs from "
                                             f"{CONFIG}"):
            load(out)


def test_an_unknown_architecture_is_one_error_naming_the_file_and_the_key(tmp_path):
    out = export_model(tiny_student(), tmp_path / "m")
    config = json.loads((out / CONFIG).read_text())
    (out / CONFIG).write_text(json.dumps({**config, "architecture": "vit-giant"}))
    with pytest.raises(ModelError) as err:
        load_model(out)
    assert str(err.value) == (f"{out / CONFIG}: key 'architecture' is 'vit-giant', not one this "
                              "version can rebuild (mlp-recommender, movielens-rating-server, "
                              "vit-classifier, hf-pretrained, factory)")
    # a known architecture whose description lacks a part: the key named, nothing built
    del config["model"]["vit_config"]
    (out / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelError, match=f"{out / CONFIG}: key 'model' does not describe a "
                                         "vit-classifier"):
        load_model(out)


def test_another_architecture_plugs_in_with_one_registry_entry(tmp_path, monkeypatch):
    class Scaler(nn.Linear):
        pass

    class ScalerArchitecture:
        def owns(self, model):
            return isinstance(model, Scaler)

        def served(self, model):
            return model

        def describe(self, model, class_names=None):
            return {"width": model.in_features}

        def rebuild(self, description):
            return Scaler(description["width"], description["width"])

        def as_student(self, model, description):
            return model

    monkeypatch.setitem(ARCHITECTURES, "scaler", ScalerArchitecture())
    model = Scaler(4, 4)
    out = export_model(model, tmp_path / "m")
    x = torch.randn(2, 4)
    assert read_config(out)["architecture"] == "scaler"
    assert torch.equal(load_model(out)(x), model(x))
    with pytest.raises(ModelError, match="Conv1d: no export architecture"):
        export_model(nn.Conv1d(1, 1, 1), tmp_path / "other")


# --------------------------------------------------------------------------- the CLI on runs


@pytest.fixture(scope="module")
def vision_runs(tmp_path_factory):
    """A reproduction's output directory with two tiny runs made by its own job runner: the
    student alone, and DiverseDistill from one ViT teacher (1 epoch, 16 random images)."""
    from vision_tiny import tiny_vit

    from diversedistill.committee import Committee
    from diversedistill.loop.parallel import run_jobs
    from diversedistill.methods import DiverseDistillConfig
    from diversedistill_recipes.cifar.image_recipes import ImageModelRecipe, Parts, VisionExperiment
    from diversedistill_recipes.cifar.images import Images
    from diversedistill_recipes.cifar.reproduce_cifar import Job, run_job, student_job
    from diversedistill_recipes.cifar.vit import ViTTeacher

    root = tmp_path_factory.mktemp("vision")
    vit = {"image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 2,
           "num_attention_heads": 2, "intermediate_size": 32}
    exp = VisionExperiment(student=ImageModelRecipe("vit", config=vit, epochs=1, batch_size=8),
                           teachers={"vit": ImageModelRecipe("vit", config=vit)}, augment=False,
                           eval_batch_size=8, diversedistill={"hidden": 16, "d2": 8})
    g = torch.Generator().manual_seed(0)

    def images(n):
        return Images(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g),
                      torch.arange(n) % len(CLASSES))

    teacher = ViTTeacher("vit", tiny_vit(seed=1, layers=2, image_size=16))
    Committee([teacher]).probe(image_batch(2, size=16))
    state = {"exp": exp, "parts": Parts(images(16), images(8), images(8), CLASSES),
             "out": root, "progress": False, "split_seed": 0, "cache_root": root / "cache",
             "cfg": DiverseDistillConfig(**exp.diversedistill),
             "teachers": {"vit": (teacher, {}, True)}}  # held: never trained here
    jobs = [student_job(0), Job("diversedistill", 0, ("vit",))]
    run_jobs(jobs, run_job, lambda _job, _row: None, state=state)
    return root


@pytest.mark.parametrize("run, method", [("student-0", "student alone"),
                                         ("diversedistill-vit-0", "diversedistill")])
def test_cli_exports_the_student_of_a_vision_run(vision_runs, run, method, tmp_path, capsys):
    run_dir = vision_runs / "runs" / run
    assert main(["export", str(run_dir), "--out", str(tmp_path / "served")]) == 0
    assert "(vit-classifier)" in capsys.readouterr().out
    served, recorded = read_config(tmp_path / "served"), read_config(run_dir / "student")
    assert served["model"] == recorded["model"] and served["method"] == method
    assert served["model"]["class_names"] == list(CLASSES)
    assert served["metrics"]["best_epoch"] == 0 and "val_accuracy" in served["metrics"]
    # the best checkpoint's student is the one the run ended with
    batch = image_batch(4, size=16)
    assert torch.equal(predictions(load_student(tmp_path / "served"), batch),
                       predictions(load_student(run_dir / "student"), batch))


def test_cli_export_names_what_a_vision_run_lacks(vision_runs, tmp_path, capsys):
    import shutil

    assert main(["export", str(vision_runs), "--out", str(tmp_path / "a")]) == 2
    assert "a reproduction's directory: export one of its runs, e.g. " in capsys.readouterr().err
    run = tmp_path / "old"  # a run from before runs recorded their student
    shutil.copytree(vision_runs / "runs" / "student-0", run)
    shutil.rmtree(run / "student")
    assert main(["export", str(run), "--out", str(tmp_path / "b")]) == 2
    assert ("no student/config.json; the run has not finished, or was written by a version "
            "that did not record its student") in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
