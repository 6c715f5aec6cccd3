"""Hugging Face vision models as DiverseDistill students and teachers (METHOD.md §4.3).

- :class:`ViTStudent`: a ``ViTForImageClassification``; its question point ``h`` is the
  [CLS] state after its middle layer, ``z`` the classifier's input (the final-layernormed
  [CLS] state).
- :class:`ViTTeacher`: a ``ViTForImageClassification``; the question is added to (or, with
  ``injection="replace"``, replaces) its [CLS] token after its middle layer, and its answer
  is its last-layer [CLS] state (the classifier's input).
- :class:`CLIPTeacher`: CLIP's image tower with a zero-shot classifier built from prompts
  on the class names; the question is added to (or replaces) the [CLS] token in the image
  tower, and the answer is the image-encoder representation (the projected image
  embedding). The text tower runs once, when the teacher is built, and its embeddings are
  cached.

How a transformer teacher answers cheaply: the tokens below the injection layer do not
depend on the question, so ``context(batch)`` runs the tower up to the injection layer once,
without gradient (a forward hook on that layer captures its output and stops the pass), and
``answer(question, context)`` puts the question in place of token 0 of those states and
runs only the layers above. Above the injection layer every token attends to the question
(METHOD.md: the exact variant). The question is added to the [CLS] state by default, so a
zero question leaves the teacher exactly as trained; ``injection="replace"`` is the paper's
"replace the [CLS] token".

Images reach every adapter as float [B, 3, H, W] in [0, 1]; each adapter resizes and
normalizes them for its own model (:class:`ImageSpec`), so one batch feeds a committee of
models that expect different resolutions and statistics.

The layer list is found under the names different transformers versions use
(``vit.layers`` in 5.x, ``vit.encoder.layer`` in 4.x; ``encoder.layers`` for CLIP), and a
layer's output may be a tensor (5.x) or a tuple whose first entry is the hidden states (4.x):
both are handled.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diversedistill.errors import ModelError
from diversedistill.interface import Answer, Batch, HookedStudent, Teacher, first_tensor
from diversedistill.models.hub import load_pretrained

# Normalization constants of the published checkpoints (their preprocessor_config.json).
VIT_MEAN, VIT_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # google/vit-*
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # openai/clip-*
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_PROMPT = "a photo of a {}."


@dataclass(frozen=True)
class ImageSpec:
    """What one model expects: square resolution, per-channel mean / std, and how images
    are resized to it (``F.interpolate``'s mode: the ViT and CLIP preprocessors' bicubic;
    bilinear for the TensorFlow-trained EfficientNet-Lite)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "bicubic"

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] floats in [0, 1] -> resized and normalized model input."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ModelError(
                f"expected images [batch, 3, height, width], got {tuple(images.shape)}")
        if images.shape[-2:] != (self.size, self.size):
            images = F.interpolate(images, size=(self.size, self.size), mode=self.resize,
                                   align_corners=False, antialias=images.shape[-1] > self.size)
        mean = images.new_tensor(self.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.std).view(1, 3, 1, 1)
        return (images - mean) / std

    @classmethod
    def of_checkpoint(cls, path: str | Path, size: int, mean, std) -> ImageSpec:
        """Read ``preprocessor_config.json`` beside a local checkpoint when there is one;
        otherwise the defaults given (the model config's resolution, the family's stats)."""
        file = Path(path) / "preprocessor_config.json"
        if file.is_file():
            cfg = json.loads(file.read_text(encoding="utf-8"))
            mean = tuple(cfg.get("image_mean", mean))
            std = tuple(cfg.get("image_std", std))
        return cls(int(size), tuple(mean), tuple(std))


def find_layers(model: nn.Module, candidates: Sequence[str]) -> tuple[str, nn.ModuleList]:
    for path in candidates:
        try:
            layers = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList):
            return path, layers
    raise ModelError(f"{type(model).__name__}: no encoder layer list at any of {list(candidates)}")


def run_layer(layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Call one encoder layer on [B, T, D] states without a mask, in any transformers
    version: required positional arguments beyond the states (CLIP's attention masks) get
    None, and a tuple output gives its first entry."""
    params = list(inspect.signature(layer.forward).parameters.values())[1:]
    required = [p for p in params if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return first_tensor(layer(hidden, *([None] * len(required))))


class _Stop(Exception):
    """Raised by the capture hook: the layers above the injection point need not run."""


def middle(num_layers: int) -> int:
    return max(1, num_layers // 2)


def _check_layer(layer: int | None, num_layers: int, who: str) -> int:
    layer = middle(num_layers) if layer is None else int(layer)
    if not 1 <= layer <= num_layers:
        raise ModelError(
            f"{who}: the question point must be after layer 1..{num_layers}, got {layer}")
    return layer


class _TowerTeacher(Teacher):
    """A transformer image tower with a [CLS] token: context = token states after layer
    ``layer`` (question-free, no grad), answer = the layers above with the question added
    to token 0 (``injection="add"``) or put in its place ("replace")."""

    INJECTIONS = ("add", "replace")

    def __init__(self, name: str, tower: nn.Module, layers_path: str, layers: nn.ModuleList,
                 spec: ImageSpec, layer: int | None, injection: str = "add"):
        if injection not in self.INJECTIONS:
            raise ModelError(f"teacher {name!r}: injection must be one of {self.INJECTIONS}, "
                             f"got {injection!r}")
        # "add": the question is added to the teacher's own [CLS] state, so a zero question
        # (DiverseDistill's initialization) leaves the teacher's summary intact; "replace"
        # (the paper's literal reading) starts it from the question alone (measured: the
        # fresh question's norm 0.54 against the trained [CLS] state's 6.8).
        self.injection = injection
        self.name, self.tower, self.spec = name, tower, spec
        self.layers_path, self.layers = layers_path, layers
        self.layer = _check_layer(layer, len(layers), f"teacher {name!r}")
        self.question_width = self.answer_width = -1

    # subclasses: the tower's own forward on prepared pixels, and the part after the layers
    def _run_tower(self, pixels: torch.Tensor) -> None:
        raise NotImplementedError

    def _finish(self, hidden: torch.Tensor) -> Answer:
        raise NotImplementedError

    @torch.no_grad()
    def context(self, batch: Batch) -> torch.Tensor:
        """Token states [B, T, D] after layer ``self.layer``: what the question meets."""
        seen = {}

        def capture(_module, _inputs, output):
            seen["states"] = first_tensor(output)
            raise _Stop

        hook = self.layers[self.layer - 1].register_forward_hook(capture)
        try:
            self._run_tower(self.spec.prepare(batch["image"]))
        except _Stop:
            pass
        finally:
            hook.remove()
        if "states" not in seen:
            raise ModelError(
                f"teacher {self.name!r}: layer {self.layer} never ran in a forward pass")
        return seen["states"]

    def answer(self, question: torch.Tensor | None, context: torch.Tensor) -> Answer:
        hidden = context
        if question is not None:
            if question.shape != (context.shape[0], context.shape[-1]):
                raise ModelError(
                    f"teacher {self.name!r}: the question has shape {tuple(question.shape)} "
                    f"but its [CLS] state after layer {self.layer} has shape "
                    f"{(context.shape[0], context.shape[-1])}")
            token = question.to(context.dtype)
            if self.injection == "add":
                token = context[:, 0] + token
            hidden = torch.cat([token.unsqueeze(1), context[:, 1:]], dim=1)
        for layer in self.layers[self.layer:]:
            hidden = run_layer(layer, hidden)
        return self._finish(hidden)

    def predict(self, batch: Batch) -> torch.Tensor:
        return self.answer(None, self.context(batch)).prediction

    def probe(self, batch: Batch) -> None:
        with torch.no_grad():
            context = self.context(batch)
            answer = self.answer(None, context)
        self.question_width = context.shape[-1]
        self.answer_width = answer.hidden.shape[-1]


class ViTTeacher(_TowerTeacher):
    """A ``ViTForImageClassification`` (``.vit`` + ``.classifier``) as a teacher."""

    LAYERS = ("vit.layers", "vit.encoder.layer", "vit.encoder.layers")

    def __init__(self, name: str, model: nn.Module, layer: int | None = None,
                 spec: ImageSpec | None = None, injection: str = "add"):
        path, layers = find_layers(model, self.LAYERS)
        for part in ("vit", "classifier"):
            if not hasattr(model, part):
                raise ModelError(f"teacher {name!r}: {type(model).__name__} has no .{part}; "
                                 "expected a ViTForImageClassification")
        self.model = model
        super().__init__(name, model, path, layers, spec or vit_spec(model.config), layer,
                         injection)

    def modules(self) -> list[nn.Module]:
        return [self.model]

    def _run_tower(self, pixels):
        self.model.vit(pixel_values=pixels)

    def _finish(self, hidden):
        cls = self.model.vit.layernorm(hidden)[:, 0]
        return Answer(cls, self.model.classifier(cls))


class ZeroShotHead(nn.Module):
    """CLIP's classifier: ``scale · cos(image embedding, prompt embedding)`` per class.
    The prompt embeddings are buffers (moved with the teacher, never trained)."""

    def __init__(self, text_embeddings: torch.Tensor, logit_scale: float):
        super().__init__()
        self.register_buffer("text_embeddings",
                             F.normalize(text_embeddings.detach().float(), dim=-1))
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))

    def forward(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        image = F.normalize(image_embeddings, dim=-1)
        return self.logit_scale * image @ self.text_embeddings.to(image.dtype).T


class CLIPTeacher(_TowerTeacher):
    """CLIP's image tower (``embeddings``, ``pre_layrnorm``, ``encoder.layers``,
    ``post_layernorm``) and ``visual_projection``, classifying zero-shot with
    :class:`ZeroShotHead`. Build it with :meth:`from_clip` (a ``CLIPModel`` and its
    tokenizer: the text tower runs once) or directly from a vision tower and prompt
    embeddings from any text encoder (:func:`sentence_embeddings`)."""

    def __init__(self, name: str, vision: nn.Module, projection: nn.Module,
                 text_embeddings: torch.Tensor, logit_scale: float, layer: int | None = None,
                 spec: ImageSpec | None = None, owner: nn.Module | None = None,
                 injection: str = "add"):
        path, layers = find_layers(vision, ("encoder.layers",))
        self.vision, self.projection = vision, projection
        self.head = ZeroShotHead(text_embeddings, logit_scale)
        if self.head.text_embeddings.shape[-1] != projection.out_features:
            raise ModelError(f"teacher {name!r}: prompt embeddings have width "
                             f"{self.head.text_embeddings.shape[-1]} but the image projection "
                             f"gives {projection.out_features}")
        self._owner = owner  # the whole CLIPModel, text tower included, when built from one
        super().__init__(name, vision, path, layers, spec or clip_spec(vision.config), layer,
                         injection)

    def modules(self) -> list[nn.Module]:
        return [self._owner or self.vision, self.projection, self.head]

    @property
    def text_embeddings(self) -> torch.Tensor:
        return self.head.text_embeddings

    def _run_tower(self, pixels):
        self.vision(pixel_values=pixels)

    def _finish(self, hidden):
        image = self.projection(self.vision.post_layernorm(hidden[:, 0]))
        return Answer(image, self.head(image))

    @classmethod
    def from_clip(cls, name: str, clip: nn.Module, tokenizer, class_names: Sequence[str],
                  prompt: str = DEFAULT_PROMPT, layer: int | None = None,
                  spec: ImageSpec | None = None,
                  cache_dir: str | Path | None = None) -> CLIPTeacher:
        """A ``CLIPModel``: prompts ``prompt.format(class)`` through its text tower, once
        (and, with ``cache_dir``, once per model and prompt set on disk)."""
        prompts = class_prompts(prompt, class_names)
        texts = cached_text_embeddings(
            lambda: clip_text_embeddings(clip, tokenizer, prompts), prompts,
            identity=f"clip:{module_fingerprint(clip.text_model, clip.text_projection)}",
            cache_dir=cache_dir)
        return cls(name, clip.vision_model, clip.visual_projection, texts,
                   float(clip.logit_scale.detach().exp()), layer,
                   spec or clip_spec(clip.config.vision_config), owner=clip)


def class_prompts(prompt: str, class_names: Sequence[str]) -> list[str]:
    """``prompt`` with each class name, written as words ("aquarium_fish" -> "aquarium fish")."""
    return [prompt.format(str(c).replace("_", " ")) for c in class_names]


class ViTStudent(HookedStudent):
    """A ``ViTForImageClassification`` as the student: ``h`` = [CLS] after layer ``layer``
    (default: the middle one), ``z`` = the classifier's input."""

    def __init__(self, model: nn.Module, layer: int | None = None, spec: ImageSpec | None = None):
        path, layers = find_layers(model, ViTTeacher.LAYERS)
        self.layer = _check_layer(layer, len(layers), "student")
        spec = spec or vit_spec(model.config)
        super().__init__(model, question_at=f"{path}.{self.layer - 1}", head="classifier",
                         call=lambda m, b: m(pixel_values=spec.prepare(b["image"])).logits,
                         token=0)
        self.spec = spec


# --------------------------------------------------------------------------- specs, loading


def vit_spec(config) -> ImageSpec:
    return ImageSpec(int(config.image_size), VIT_MEAN, VIT_STD)


def clip_spec(vision_config) -> ImageSpec:
    return ImageSpec(int(vision_config.image_size), CLIP_MEAN, CLIP_STD)


def load_vit(name_or_path: str, num_labels: int | None = None, **kw) -> nn.Module:
    """A ViT classifier from the hub or a local directory; with ``num_labels`` a new head
    of that size (the pretrained one is dropped when its size differs)."""
    from transformers import ViTForImageClassification

    extra = {"num_labels": num_labels, "ignore_mismatched_sizes": True} if num_labels else {}
    return load_pretrained(ViTForImageClassification, name_or_path, **extra, **kw)


def load_clip_teacher(name: str, name_or_path: str, class_names: Sequence[str],
                      prompt: str = DEFAULT_PROMPT, layer: int | None = None,
                      cache_dir: str | Path | None = None) -> CLIPTeacher:
    """A pretrained CLIP (e.g. ``openai/clip-vit-base-patch32``) as a zero-shot teacher."""
    from transformers import AutoTokenizer, CLIPModel

    clip = load_pretrained(CLIPModel, name_or_path).eval()
    tokenizer = load_pretrained(AutoTokenizer, name_or_path, weights=False)
    spec = ImageSpec.of_checkpoint(name_or_path, clip.config.vision_config.image_size,
                                     CLIP_MEAN, CLIP_STD)
    return CLIPTeacher.from_clip(name, clip, tokenizer, class_names, prompt, layer, spec, cache_dir)


# --------------------------------------------------------------------------- text embeddings


def _pooled(output) -> torch.Tensor:
    """``get_text_features`` returns a tensor (transformers 4) or an output whose
    ``pooler_output`` holds the projected features (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def clip_text_embeddings(clip: nn.Module, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    device = next(clip.parameters()).device
    inputs = tokenizer(list(prompts), padding=True, return_tensors="pt")
    inputs = {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
    was_training = clip.training
    clip.eval()
    try:
        return _pooled(clip.get_text_features(**inputs)).float().cpu()
    finally:
        clip.train(was_training)


@torch.no_grad()
def sentence_embeddings(model_path: str | Path, prompts: Sequence[str]) -> torch.Tensor:
    """Sentence-transformers embeddings (mean pooling over tokens, L2-normalized) from a
    local model directory, e.g. all-MiniLM-L6-v2, with plain transformers."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = load_pretrained(AutoTokenizer, str(model_path), weights=False)
    model = load_pretrained(AutoModel, str(model_path)).eval()
    inputs = tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
    states = model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, dim=-1).float()


def module_fingerprint(*modules: nn.Module) -> str:
    digest = hashlib.sha256()
    for module in modules:
        for key, tensor in module.state_dict().items():
            digest.update(key.encode())
            flat = tensor.detach().cpu().contiguous().reshape(-1)  # 0-dim ones too (a logit scale)
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_text_embeddings(compute: Callable[[], torch.Tensor], prompts: Sequence[str],
                           identity: str, cache_dir: str | Path | None = None) -> torch.Tensor:
    """Run ``compute`` (the text tower on ``prompts``) once: with ``cache_dir``, the result
    is kept in a safetensors file keyed by the text model's ``identity`` and the prompts,
    and read back on later calls."""
    if cache_dir is None:
        return compute()
    from safetensors.torch import load_file, save_file

    from diversedistill.runs.atomic import atomic_path

    key = hashlib.sha256(json.dumps([identity, list(prompts)]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"text-embeddings-{key}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["embeddings"]
        except Exception:  # corrupt or foreign file: compute again and overwrite
            pass
    embeddings = compute().contiguous()
    with atomic_path(path) as tmp:
        save_file({"embeddings": embeddings}, str(tmp),
                  metadata={"identity": identity, "prompts": json.dumps(list(prompts))})
    return embeddings
