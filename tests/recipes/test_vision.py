"""The vision domain: Hugging Face ViT / CLIP adapters, CIFAR data, the cifar experiment.

Every model is a tiny one built in-process from ViTConfig / CLIPConfig / BertConfig.
"""

import csv
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from vision_tiny import (
    CLASSES,
    image_batch,
    tiny_clip,
    tiny_sentence_model,
    tiny_tokenizer,
    tiny_vit,
    write_npz,
    write_python_batches,
)

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError, DataError, ModelError
from diversedistill.methods import DiverseDistill, DiverseDistillConfig, StudentOnly
from diversedistill.training import TrainConfig, fit
from diversedistill_recipes.cifar.images import (
    ImageBatches,
    Images,
    augment,
    load_cifar,
    locate_cifar,
    read_npz,
    validation_split,
)
from diversedistill_recipes.cifar.vit import (
    CLIPTeacher,
    ImageSpec,
    ViTStudent,
    ViTTeacher,
    clip_text_embeddings,
    load_clip_teacher,
    load_vit,
)
from diversedistill_recipes.cli import main

pytest.importorskip("transformers")  # a core dependency; the skip is for a trimmed install

PROMPTS = [f"a photo of a {c}." for c in CLASSES]


@pytest.fixture(scope="module")
def vit_teacher():
    teacher = ViTTeacher("vit", tiny_vit(seed=1))
    Committee([teacher]).probe(image_batch())
    return teacher


@pytest.fixture(scope="module")
def clip_teacher():
    teacher = CLIPTeacher.from_clip("clip", tiny_clip(), tiny_tokenizer(), CLASSES)
    Committee([teacher]).probe(image_batch())
    return teacher


def _seen_by_next_layer(teacher, question, batch):
    """The input of the first layer above the injection point during one answer."""
    seen = {}
    hook = teacher.layers[teacher.layer].register_forward_pre_hook(
        lambda _m, args: seen.__setitem__("states", args[0]))
    try:
        answer = teacher.answer(question, teacher.context(batch))
    finally:
        hook.remove()
    return seen["states"], answer


# --------------------------------------------------------------------------- adapters


def test_vit_teacher_split_pass_is_the_models_own_pass(vit_teacher):
    batch = image_batch()
    own = vit_teacher.model(pixel_values=vit_teacher.spec.prepare(batch["image"])).logits
    answer = vit_teacher.answer(None, vit_teacher.context(batch))
    assert torch.allclose(answer.prediction, own, atol=1e-5)
    assert vit_teacher.layer == 2  # the middle of 4 layers
    assert (vit_teacher.question_width, vit_teacher.answer_width) == (16, 16)


@pytest.mark.parametrize("injection", ["add", "replace"])
@pytest.mark.parametrize("which", ["vit_teacher", "clip_teacher"])
def test_question_reaches_the_injection_point_and_changes_the_answer(which, injection, request):
    teacher = request.getfixturevalue(which)
    assert teacher.injection == "add"  # the default: a zero question keeps the teacher
    teacher.injection = injection
    try:
        batch = image_batch()
        context = teacher.context(batch)
        q = torch.randn(6, teacher.question_width, requires_grad=True)
        states, answer = _seen_by_next_layer(teacher, q, batch)
        expected = context[:, 0] + q if injection == "add" else q
        assert torch.equal(states[:, 0], expected)  # the [CLS] token holds the question ...
        assert torch.equal(states[:, 1:], context[:, 1:])  # ... beside the teacher's own tokens
        own = teacher.answer(None, context)
        assert not torch.allclose(answer.hidden, own.hidden)
        assert not torch.allclose(answer.prediction, own.prediction)
        # the question that leaves the [CLS] state as it was gives the teacher's own pass:
        # zero when added (DiverseDistill's zero-initialized question), the state itself when
        # it replaces
        same = teacher.answer(torch.zeros_like(q) if injection == "add" else context[:, 0].clone(),
                              context)
        assert torch.allclose(same.prediction, own.prediction, atol=1e-6)
        answer.prediction.sum().backward()
        assert q.grad is not None and q.grad.abs().sum() > 0
        assert all(p.grad is None for m in teacher.modules() for p in m.parameters())
    finally:
        teacher.injection = "add"


def test_wrong_question_width_is_named(vit_teacher):
    with pytest.raises(ModelError, match=r"question has shape \(6, 5\).*\(6, 16\)"):
        vit_teacher.answer(torch.zeros(6, 5), vit_teacher.context(image_batch()))
    with pytest.raises(ModelError, match="after layer 1..4"):
        ViTTeacher("x", tiny_vit(), layer=9)


def test_clip_teacher_classifies_zero_shot_like_clip_itself(clip_teacher):
    batch = image_batch()
    clip, tokenizer = clip_teacher._owner, tiny_tokenizer()
    inputs = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = clip(pixel_values=clip_teacher.spec.prepare(batch["image"]), **inputs)
        answer = clip_teacher.answer(None, clip_teacher.context(batch))
    assert torch.allclose(answer.prediction, out.logits_per_image, atol=1e-4)
    # the answer is the image representation (CLIP's output holds it normalized)
    assert torch.allclose(torch.nn.functional.normalize(answer.hidden, dim=-1), out.image_embeds,
                          atol=1e-5)
    assert (clip_teacher.question_width, clip_teacher.answer_width) == (16, 8)
    assert clip_teacher.spec.size == 24 and clip_teacher.spec.mean[0] == pytest.approx(0.4815, 1e-3)


def test_cached_clip_text_embeddings_equal_fresh_ones(tmp_path):
    clip, tokenizer = tiny_clip(), tiny_tokenizer()
    first = CLIPTeacher.from_clip("clip", clip, tokenizer, CLASSES, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("text-embeddings-*.safetensors"))) == 1

    def no_text_tower(*args, **kwargs):
        raise AssertionError("the text tower ran again")

    clip.get_text_features, original = no_text_tower, clip.get_text_features
    second = CLIPTeacher.from_clip("clip", clip, tokenizer, CLASSES, cache_dir=tmp_path)
    clip.get_text_features = original
    fresh = torch.nn.functional.normalize(clip_text_embeddings(clip, tokenizer, PROMPTS), dim=-1)
    assert torch.equal(first.text_embeddings, second.text_embeddings)
    assert torch.allclose(second.text_embeddings, fresh, atol=1e-6)
    other = CLIPTeacher.from_clip("clip", clip, tokenizer, CLASSES, prompt="an image of a {}.",
                                  cache_dir=tmp_path)  # other prompts: other cache entry
    assert len(list(tmp_path.glob("text-embeddings-*.safetensors"))) == 2
    assert not torch.allclose(other.text_embeddings, first.text_embeddings)


def test_vit_student_question_point_is_cls_after_the_middle_layer():
    model = tiny_vit()
    student = ViTStudent(model)
    batch = image_batch()
    out = student(batch)
    states = model(pixel_values=student.spec.prepare(batch["image"]),
                   output_hidden_states=True).hidden_states
    assert torch.allclose(out.h, states[2][:, 0])  # after 2 of 4 layers
    assert torch.allclose(model.classifier(out.z), out.prediction)
    assert out.h.shape == (6, 16) and out.z.shape == (6, 16) and out.prediction.shape == (6, 3)


def test_image_spec_resizes_and_normalizes_inside_the_adapter():
    spec = ImageSpec(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = spec.prepare(torch.full((2, 3, 32, 32), 0.75))
    assert x.shape == (2, 3, 16, 16) and torch.allclose(x, torch.ones_like(x))
    with pytest.raises(ModelError, match="expected images"):
        spec.prepare(torch.zeros(2, 32, 32))


def test_teacher_weights_never_change_during_distillation(vit_teacher, clip_teacher, tmp_path):
    committee = Committee([vit_teacher, clip_teacher])
    before = committee.fingerprint()
    data = Images(torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8), torch.arange(16) % 3)
    train = torch.utils.data.DataLoader(ImageBatches(data, 0), batch_size=None,
                                        sampler=torch.utils.data.BatchSampler(
                                            torch.utils.data.SequentialSampler(data), 8, False))
    cfg = TrainConfig(max_epochs=2, batch_size=8, progress=False, schedule="cosine",
                      warmup_epochs=0.5)
    method = DiverseDistill(DiverseDistillConfig(hidden=16, d2=8))
    result = fit(ViTStudent(tiny_vit(seed=2).train()), method, committee, train, train, train,
                 cfg, tmp_path / "run", metric="accuracy")
    assert committee.fingerprint() == before
    assert 0 <= result.test_accuracy <= 1 and result.epochs == 2  # warm-up, then cosine
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    keys = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert all(k.startswith(("student.model.", "method.module.")) for k in keys)
    with pytest.raises(AttributeError, match="reports accuracy"):
        _ = result.val_mse


def test_pretrained_models_load_from_a_local_directory(tmp_path):
    tiny_vit(seed=3).save_pretrained(tmp_path / "vit")
    model = load_vit(str(tmp_path / "vit"), num_labels=5)  # a new head for 5 classes
    assert model.classifier.out_features == 5
    assert torch.equal(model.vit.embeddings.cls_token, tiny_vit(seed=3).vit.embeddings.cls_token)

    clip = tiny_clip(seed=4)
    clip.save_pretrained(tmp_path / "clip")
    tiny_tokenizer().save_pretrained(tmp_path / "clip")
    teacher = load_clip_teacher("clip", str(tmp_path / "clip"), CLASSES, cache_dir=tmp_path / "c")
    fresh = clip_text_embeddings(clip, tiny_tokenizer(), PROMPTS)
    assert torch.allclose(teacher.text_embeddings, torch.nn.functional.normalize(fresh, dim=-1),
                          atol=1e-6)
    teacher.probe(image_batch())
    assert teacher.answer_width == 8


# --------------------------------------------------------------------------- data


def test_npz_and_official_batches_read_the_same_way(tmp_path):
    data = read_npz(write_npz(tmp_path / "cifar10.npz"))
    assert data.train.x.shape == (60, 3, 32, 32) and data.train.x.dtype == torch.uint8
    assert data.class_names == CLASSES and len(data.test) == 30
    folder = load_cifar(write_python_batches(tmp_path / "py"))
    archive = load_cifar(write_python_batches(tmp_path / "tar", archive=True))
    assert len(folder.train) == 50 and folder.class_names[0] == "c0"
    assert torch.equal(folder.train.x, archive.train.x)
    assert torch.equal(folder.test.y, archive.test.y)


def test_keras_cifar100_without_names_gets_the_official_fine_labels(tmp_path):
    from diversedistill_recipes.cifar.images import CIFAR100_CLASSES
    from diversedistill_recipes.cifar.vit import class_prompts

    assert len(CIFAR100_CLASSES) == 100 and list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    x = np.zeros((100, 32, 32, 3), np.uint8)
    y = np.arange(100, dtype=np.uint8).reshape(-1, 1)  # Keras stores (N, 1)
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    data = read_npz(tmp_path / "c.npz")
    assert data.name == "cifar100" and data.class_names[1] == "aquarium_fish"
    assert class_prompts("a photo of a {}.", data.class_names[:2]) == [
        "a photo of a apple.", "a photo of a aquarium fish."]


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    folder = write_python_batches(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match="test_batch.*refused to load"):
        load_cifar(folder)


def test_malformed_npz_names_the_array(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 32, 32, 3), np.uint8), y_train=np.zeros(2))
    with pytest.raises(DataError, match="missing array 'x_test'"):
        read_npz(tmp_path / "bad.npz")


def test_validation_split_is_seeded_stratified_and_disjoint():
    images = Images(torch.arange(100).view(100, 1, 1, 1).to(torch.uint8).expand(100, 3, 2, 2),
                    torch.arange(100) % 4)
    train, val = validation_split(images, 20, seed=0)
    again, _ = validation_split(images, 20, seed=0)
    other, _ = validation_split(images, 20, seed=1)
    ids = lambda part: set(part.x[:, 0, 0, 0].tolist())  # noqa: E731
    assert len(train) == 80 and len(val) == 20 and not ids(train) & ids(val)
    assert torch.bincount(val.y).tolist() == [5, 5, 5, 5]
    assert ids(train) == ids(again) and ids(train) != ids(other)


def test_augmentation_translates_and_flips_with_torch_ops():
    x = torch.rand(64, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = augment(x, g, pad=2)
    assert out.shape == x.shape
    # every output is the input shifted by at most 2 pixels, maybe mirrored: its centre
    # (4x4) is somewhere in the input or the mirrored input
    for a, b in zip(out, x):
        crops = [c[:, i:i + 4, j:j + 4]
                 for c in (b, b.flip(-1)) for i in range(5) for j in range(5)]
        assert any(torch.equal(a[:, 2:6, 2:6], c) for c in crops)
    assert not torch.equal(out, x)
    images = Images((x * 255).to(torch.uint8), torch.zeros(64, dtype=torch.long))
    batch = ImageBatches(images)[[0, 1]]
    assert batch["image"].dtype == torch.float32 and batch["image"].max() <= 1


def test_locate_finds_npz_or_says_where_to_put_it(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "cifar10" / "cifar10.npz")
    assert locate_cifar("cifar10", tmp_path) == path
    assert locate_cifar("cifar10", tmp_path / "cifar10") == path
    monkeypatch.setenv("DIVERSEDISTILL_DATA", str(tmp_path))
    assert locate_cifar("cifar10") == path
    with pytest.raises(DataError, match="cifar100 is not in .*cifar-100-python.tar.gz"):
        locate_cifar("cifar100", tmp_path)


@pytest.mark.integration
def test_shared_cifar10_matches_its_sources_note():
    root = os.environ.get("DIVERSEDISTILL_DATA")
    path = Path(root) / "cifar10" / "cifar10.npz" if root else None
    if not path or not path.is_file():
        pytest.skip("cifar10.npz not found in $DIVERSEDISTILL_DATA/cifar10")
    data = load_cifar(path, "cifar10")
    assert (len(data.train), len(data.test)) == (20000, 10000)
    assert torch.bincount(data.train.y).tolist() == [2000] * 10
    assert data.class_names[0] == "airplane" and data.class_names[-1] == "truck"
    mean = data.train.x.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.491, 0.482, 0.447]), atol=2e-3)


# --------------------------------------------------------------------------- the experiment

TINY_EXPERIMENT = """
dataset: cifar10
val_size: 12
eval_batch_size: 32
student_name: vit-t
student:
  kind: vit
  config: {image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 2,
           num_attention_heads: 2, intermediate_size: 32}
  epochs: 1
  batch_size: 16
teachers:
  vit-b:
    kind: vit
    config: {image_size: 16, patch_size: 4, hidden_size: 24, num_hidden_layers: 2,
             num_attention_heads: 2, intermediate_size: 48}
    stem: [8]             # a conv tokenizer: trained, cached and read back like the rest
    epochs: 1
    batch_size: 16
  clip:
    kind: clip
    config: {image_size: 12, patch_size: 4, hidden_size: 16, num_hidden_layers: 2,
             num_attention_heads: 2, intermediate_size: 32}
    stem: [8]
    text_model: TEXT_MODEL
    epochs: 1
    batch_size: 16
committees: [[vit-b, clip]]
methods: [not-a-method, diversedistill]
diversedistill: {hidden: 16, d2: 8}
"""


def test_reproduce_cifar_writes_accuracy_rows_and_reuses_cached_teachers(tmp_path, capsys):
    data = write_npz(tmp_path / "data" / "cifar10.npz", n_train=72, n_test=24)
    text = tiny_sentence_model(tmp_path / "text")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_EXPERIMENT.replace("TEXT_MODEL", str(text)))
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["reproduce", "cifar10", "--data-dir", str(data.parent), "--seeds", "1", "--out",
            str(out), "--cache-dir", str(cache), "--config", str(config), "--no-progress",
            "--lam", "0.5", "--methods", "not-a-method", "diversedistill"]  # rows, not tables
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "'not-a-method' is not registered" in printed
    assert "| method | teachers | seeds | test accuracy (mean ± std) | gap recovered |" in printed
    assert "| diversedistill | vit-b+clip | 1 |" in printed
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["method", "teachers", "seed", "val_accuracy", "test_accuracy",
                             "seconds"]
    assert {(r["method"], r["teachers"]) for r in rows} == {
        ("teacher alone", "vit-b"), ("teacher alone", "clip"), ("student alone", "vit-t"),
        ("diversedistill", "vit-b+clip")}
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    # α of each teacher on the first test images (24: the whole first test batch here)
    alpha = (out / "runs" / "diversedistill-vit-b+clip-0" / "importance.csv").read_text()
    assert alpha.splitlines()[0] == "sample,vit-b,clip" and len(alpha.splitlines()) == 1 + 24
    assert main(["report", str(out)]) == 0 and (out / "report" / "importance.png").is_file()
    with open(out / "summary.csv") as f:
        header = set(next(csv.DictReader(f)))
    assert {"test_accuracy_mean", "test_accuracy_std", "gap_recovered"} <= header
    entries = sorted(p for p in cache.iterdir() if p.name != "text")
    assert [p.name.split("-")[0] for p in entries] == ["clip", "vit"]
    assert len(list((cache / "text").glob("*.safetensors"))) == 1  # prompts embedded once
    markers = {p: (p / "diversedistill.json").stat().st_mtime_ns for p in entries}
    # a second reproduction reads the teachers back instead of training them again
    from diversedistill_recipes.cifar.image_recipes import make_parts, train_or_load_teacher
    from diversedistill_recipes.cifar.reproduce_cifar import experiment_for

    exp, _ = experiment_for("cifar10", str(config))
    parts = make_parts(load_cifar(data), exp)
    for name, recipe in exp.teachers.items():
        teacher, metrics, cached = train_or_load_teacher(parts, exp, name, recipe, 0, cache)
        assert cached and teacher.predict(image_batch(2)).shape == (2, 3)
        row = next(r for r in rows if r["teachers"] == name)
        assert metrics["test_accuracy"] == pytest.approx(float(row["test_accuracy"]))
        # where questions enter does not change how a teacher trains: the same cache entry
        from dataclasses import replace as changed

        _, _, cached = train_or_load_teacher(parts, exp, name, changed(recipe, layer=1), 0, cache)
        assert cached
    assert {p: (p / "diversedistill.json").stat().st_mtime_ns for p in entries} == markers


def test_vision_config_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: cifar10\nteachers: {t: {kind: vit}}\n")
    args = ["reproduce", "cifar10", "--config", str(bad), "--data-dir", str(tmp_path)]
    assert main(args) == 2
    assert "needs 'pretrained'" in capsys.readouterr().err
    bad.write_text("dataset: cifar100\nteachers: {t: {pretrained: x}}\n")
    assert main(args) == 2
    assert "its dataset is 'cifar100', not 'cifar10'" in capsys.readouterr().err
    assert main(["reproduce", "cifar10", "--data-dir", str(tmp_path / "none")]) == 2
    assert "cifar10 is not in" in capsys.readouterr().err


def test_student_only_accuracy_run(tmp_path):
    from diversedistill_recipes.cifar.images import image_loader

    data = read_npz(write_npz(tmp_path / "c.npz", n_train=48, n_test=12))
    train = image_loader(data.train, 16, shuffle=True, seed=0, augmented=True)
    test = image_loader(data.test, 32, shuffle=False)
    result = fit(ViTStudent(tiny_vit().train()), StudentOnly(), None, train, test, test,
                 TrainConfig(max_epochs=1, batch_size=16, progress=False), tmp_path / "run",
                 metric="accuracy")
    assert 0 <= result.val_accuracy <= 1 and result.metric == "accuracy"
    with pytest.raises(ConfigError, match="unknown metric"):
        fit(ViTStudent(tiny_vit().train()), StudentOnly(), None, train, test, test,
            TrainConfig(max_epochs=1, progress=False), tmp_path / "run2", metric="f1")



def test_a_distillation_step_runs_under_bf16_autocast(tmp_path):
    # the GPU configs' precision, run on the CPU (Lightning autocasts there too): the loop,
    # the adapters and DiverseDistill's module accept bfloat16 activations
    from diversedistill_recipes.cifar.images import image_loader

    data = read_npz(write_npz(tmp_path / "c.npz", n_train=32, n_test=16))
    train = image_loader(data.train, 16, shuffle=True, seed=0, augmented=True)
    test = image_loader(data.test, 16, shuffle=False)
    teacher = ViTTeacher("vit", tiny_vit(seed=1, image_size=32))
    student = ViTStudent(tiny_vit(image_size=32).train())
    dtypes = set()
    student.model.classifier.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
    result = fit(student, DiverseDistill(DiverseDistillConfig(d1=2, d2=4, hidden=8)),
                 Committee([teacher]), train, test, test,
                 TrainConfig(max_epochs=1, batch_size=16, progress=False, precision="bf16-mixed"),
                 tmp_path / "run", metric="accuracy")
    assert 0 <= result.val_accuracy <= 1 and torch.bfloat16 in dtypes  # autocast was on
    assert all(p.dtype == torch.float32 for p in student.parameters())  # weights stay float32
    with pytest.raises(ConfigError, match="unknown precision"):
        TrainConfig(precision="fp8")


def test_the_cpu_recipe_file_is_the_default_experiment():
    from diversedistill.config import load_yaml
    from diversedistill_recipes.cifar.image_recipes import CPU_EXPERIMENT, load_experiment

    path = Path(__file__).resolve().parents[2] / "configs" / "vision" / "cifar10-cpu.yaml"
    assert load_experiment(load_yaml(path), str(path)) == CPU_EXPERIMENT


def test_reproduce_cifar_with_two_workers_gives_the_one_process_rows(tmp_path):
    """Runs spread over spawned single-threaded workers: the same rows, in any order."""
    data = write_npz(tmp_path / "data" / "cifar10.npz", n_train=72, n_test=24)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_EXPERIMENT.replace("TEXT_MODEL",
                                              str(tiny_sentence_model(tmp_path / "t"))))
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        assert main(["reproduce", "cifar10", "--data-dir", str(data.parent), "--seeds", "2",
                     "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--config",
                     str(config), "--no-progress", "--workers", str(workers),
                     "--methods", "diversedistill"]) == 0
        with open(out / "results.csv") as f:
            results[workers] = sorted((r["method"], r["teachers"], r["seed"], r["val_accuracy"],
                                       r["test_accuracy"]) for r in csv.DictReader(f))
    assert len(results[1]) == 2 * 4 and results[2] == results[1]


def test_fixed_views_are_the_same_in_every_run_and_drawn_per_row():
    from diversedistill_recipes.cifar.images import FixedViews, ImageBatches

    images = Images(torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8), torch.arange(6) % 3)
    views = FixedViews(len(images), 3)
    first = ImageBatches(images, augment_seed=1, views=views)[list(range(6))]
    again = ImageBatches(images, augment_seed=1, views=FixedViews(len(images), 3))[list(range(6))]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["view"], again["view"])
    # another run's generator picks other views, but only among the fixed ones: an image
    # in the same view is the same tensor whichever run drew it
    other = ImageBatches(images, augment_seed=7, views=views)
    seen = {}
    for _ in range(10):
        batch = other[list(range(6))]
        for i, v, x in zip(batch["index"].tolist(), batch["view"].tolist(), batch["image"]):
            assert 0 <= v < 3
            if (i, v) in seen:
                assert torch.equal(seen[(i, v)], x)
            seen[(i, v)] = x
    assert len({v for _, v in seen}) == 3
    plain = ImageBatches(images, first_index=100)[[0, 5]]
    assert plain["index"].tolist() == [100, 105] and plain["view"].tolist() == [-1, -1]
    assert "view" not in ImageBatches(images, augment_seed=1)[[0]]  # fresh: nothing to key


def test_the_step_timing_script_trains_both_methods_on_the_paper_architectures():
    # scripts/time_vision_step.py is the GPU check of configs/vision/: on tiny shapes it
    # runs on the CPU, so what it builds and steps is tested here
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "time_vision_step.py"
    spec = importlib.util.spec_from_file_location("time_vision_step", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.main(["--shapes", "tiny", "--device", "cpu", "--steps", "1", "--warmup", "1",
                       "--batch", "4"])
    assert out["diversedistill finite"] and out["fd finite"]
    assert out["diversedistill ms/step"] > 0 and out["fd ms/step"] > 0


def test_a_cached_context_answers_exactly_as_the_teacher_and_passes_gradients(vit_teacher):
    from diversedistill.loop.cached_teacher import CachedContext

    cached = CachedContext(vit_teacher, key_fields=("index", "view"))
    batch = {**image_batch(6), "index": torch.arange(6), "view": torch.zeros(6, dtype=torch.long)}
    question = torch.randn(6, vit_teacher.question_width, requires_grad=True)
    first = cached.answer(question, cached.context(batch))
    want = vit_teacher.answer(question, vit_teacher.context(batch))
    torch.testing.assert_close(first.prediction, want.prediction)
    first.prediction.sum().backward()
    assert question.grad is not None and question.grad.abs().sum() > 0
    # the same images again, in another order and with a new one: only the new one is computed
    again = {k: v[[5, 3, 1]] for k, v in batch.items()}
    again["index"] = torch.tensor([5, 3, 99])
    again["image"][2] = torch.rand_like(again["image"][2])
    states = cached.context(again)
    torch.testing.assert_close(states, vit_teacher.context(again))
    assert (cached.misses, cached.hits, cached.rows_stored) == (7, 2, 7)
    cached.injection = "replace"  # the run's injection mode reaches the teacher
    assert vit_teacher.injection == "replace"
    vit_teacher.injection = "add"
