"""Export the plain student: ``model.safetensors`` + ``config.json``, nothing else.

The export holds the student's own ``state_dict`` (not the training wrapper's), so no
question augmenter, answer augmenter or teacher leaves a trace in the served model.
Loading never unpickles anything: weights come from safetensors, the config from JSON,
and the config carries the SHA-256 of the weights file, so a file damaged or replaced
after the export is refused instead of served.

Which kinds of model can be exported: :data:`ARCHITECTURES`, name -> :class:`Architecture`.
The config names the entry (``architecture``) and holds its description of the model
(``model``), from which the entry rebuilds the same module, its weights then loaded from
the file; another kind of model plugs in by adding one entry.

- ``mlp-recommender``: :class:`~diversedistill.models.recommender.MLPRecommender`;
- ``movielens-rating-server``: the recommender with its release's id encoders and side
  tables (:class:`~diversedistill.models.rating_server.RatingServer`): ``predict(user_id,
  movie_id)`` from raw ids, clamped to the rating scale;
- ``hf-pretrained`` and ``factory``: any Hugging Face model, and any ``nn.Module`` given
  the factory that builds it (:mod:`diversedistill.export_generic`);
- ``vit-classifier``: a Hugging Face ``ViTForImageClassification`` (exported bare or from
  its :class:`~diversedistill.models.vision.ViTStudent` adapter). Its description holds
  the ``ViTConfig`` (``to_dict()``), the image size and normalization the adapter applies,
  the question layer, ``num_labels``, the class names when known and the widths of a
  convolutional tokenizer (``stem``, :mod:`diversedistill.models.conv_stem`) when one
  replaced the patch convolution; it is rebuilt with ``ViTConfig(**d)`` +
  ``ViTForImageClassification(config)`` (+ the experiment's own ``install_conv_stem``),
  never from the hub.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diversedistill.atomic import atomic_path, write_text_atomic
from diversedistill.checkpoints import read_checkpoint
from diversedistill.checkpoints import sha256_of as file_sha256  # one reader; tests import it here
from diversedistill.errors import DiverseDistillError, ModelError
from diversedistill.export_generic import (
    FactoryArchitecture,
    HuggingFaceArchitecture,
    check_rebuilds_same,
)
from diversedistill.export_generic import (
    model_factory as model_factory,  # re-exported: users mark factories from here
)
from diversedistill.models.recommender import MLPRecommender

FORMAT = "diversedistill-model/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


class Architecture(Protocol):
    """How one kind of model is exported and rebuilt (an entry of :data:`ARCHITECTURES`)."""

    def owns(self, model: nn.Module) -> bool:
        """Whether ``model`` (or the training adapter around it) is of this kind."""

    def served(self, model: nn.Module) -> nn.Module:
        """The module whose ``state_dict`` is the weights file (an adapter's inner model)."""

    def describe(self, model: nn.Module, class_names: Sequence[str] | None = None) -> dict:
        """JSON-ready data from which :meth:`rebuild` makes the same module again."""

    def rebuild(self, description: dict) -> nn.Module:
        """The described module with fresh weights: no network, no pickle."""

    def as_student(self, model: nn.Module, description: dict) -> nn.Module:
        """The rebuilt module in the adapter it was trained in (a ``HookedStudent``)."""


class MLPRecommenderArchitecture:
    def owns(self, model):
        return isinstance(model, MLPRecommender)

    def served(self, model):
        return model

    def describe(self, model, class_names=None):
        return model.describe()

    def rebuild(self, description):
        return MLPRecommender.from_description(description)

    def as_student(self, model, description):
        from diversedistill.recsys import as_student  # recsys imports this module

        return as_student(model)


class RatingServerArchitecture:
    """A recommender with its release's id encoders: predicts from raw MovieLens ids."""

    def owns(self, model):
        server = sys.modules.get("diversedistill.models.rating_server")
        return server is not None and isinstance(model, server.RatingServer)

    def served(self, model):
        return model

    def describe(self, model, class_names=None):
        return model.describe()

    def rebuild(self, description):
        from diversedistill.models.rating_server import RatingServer

        return RatingServer.from_description(description)

    def as_student(self, model, description):
        return model


class ViTClassifierArchitecture:
    """A ``ViTForImageClassification``, bare or in its ``ViTStudent`` adapter."""

    def owns(self, model):
        # A ViT can only exist once its module is imported: looking in sys.modules keeps
        # exporting (and importing) an MLP free of transformers' seconds-long import.
        vision = sys.modules.get("diversedistill.models.vision")
        if vision is not None and isinstance(model, vision.ViTStudent):
            return True
        hf = sys.modules.get("transformers")
        return hf is not None and isinstance(model, hf.ViTForImageClassification)

    def served(self, model):
        from diversedistill.models.vision import ViTStudent

        return model.model if isinstance(model, ViTStudent) else model

    def describe(self, model, class_names=None):
        from diversedistill.models.vision import ViTStudent

        # a bare model: the adapter's defaults (its own size, the google/vit-* statistics)
        student = model if isinstance(model, ViTStudent) else ViTStudent(model)
        vit, spec = student.model, student.spec
        # to_json_string: to_dict() with every value JSON-ready (dtypes as names)
        config = json.loads(vit.config.to_json_string(use_diff=False))
        names = _class_names(vit.config, class_names)
        if names is not None:  # served with readable labels: config.id2label[i]
            config["id2label"] = {str(i): n for i, n in enumerate(names)}
            config["label2id"] = {n: i for i, n in enumerate(names)}
        description = {"vit_config": config, "num_labels": int(vit.config.num_labels),
                       "stem": _stem_of(vit),
                       "image": {"size": spec.size, "mean": list(spec.mean),
                                 "std": list(spec.std)},
                       "question_layer": student.layer, "class_names": names,
                       "parameters": sum(p.numel() for p in vit.parameters())}
        self._check_rebuildable(vit, description)
        return description

    def _check_rebuildable(self, model: nn.Module, description: dict) -> None:
        """The description must cover the whole model: a submodule replaced after the
        model was built (another tokenizer than the conv stem, another activation) would be
        rebuilt as the plain ViT and load weights meant for something else, so it is
        refused at export, not discovered when serving."""
        with torch.device("meta"):  # structure and shapes only: no memory, no random numbers
            plain = self.rebuild(description)
        check_rebuilds_same(model, plain, "the ViT its config describes",
                            "this architecture cannot rebuild it, give it an entry of its own "
                            "in diversedistill.export.ARCHITECTURES")

    def rebuild(self, description):
        from transformers import ViTConfig, ViTForImageClassification

        config = ViTConfig(**description["vit_config"])
        if config.num_labels != int(description["num_labels"]):
            raise ValueError(f"vit_config has {config.num_labels} labels, num_labels says "
                             f"{description['num_labels']}")
        model = ViTForImageClassification(config)
        stem = description.get("stem")
        if stem is not None:  # the tokenizer the experiment's build_vit installs, by its builder
            from diversedistill.models.conv_stem import install_conv_stem

            install_conv_stem(model, [int(c) for c in stem])
        return model

    def as_student(self, model, description):
        from diversedistill.models.vision import ImageSpec, ViTStudent

        image = description["image"]
        spec = ImageSpec(int(image["size"]), tuple(image["mean"]), tuple(image["std"]))
        return ViTStudent(model, layer=description["question_layer"], spec=spec)


def _class_names(config, given: Sequence[str] | None) -> list[str] | None:
    """The names given, else the config's own labels unless they are Hugging Face's
    placeholders (LABEL_0, LABEL_1, ...)."""
    if given is not None:
        names = [str(n) for n in given]
        if len(names) != config.num_labels:
            raise ModelError(f"{len(names)} class names for a classifier of "
                             f"{config.num_labels} classes")
        return names
    names = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
    return None if names == [f"LABEL_{i}" for i in range(config.num_labels)] else names


def _stem_of(model: nn.Module) -> list[int] | None:
    """The intermediate widths of the model's convolutional tokenizer (None without one),
    read from its convolutions: the model itself, not a recipe that may have been edited
    since, says what to rebuild; the structure check then proves the reading right."""
    if "diversedistill.models.conv_stem" not in sys.modules:  # no tokenizer was ever built
        return None
    from diversedistill.models.conv_stem import ConvTokenizer

    tokenizers = [m for m in model.modules() if isinstance(m, ConvTokenizer)]
    if not tokenizers:
        return None
    convs = [m for m in tokenizers[0].modules() if isinstance(m, nn.Conv2d)]
    return [c.out_channels for c in convs[:-1]]  # the last conv gives the model's width


# in the order they are tried: the specific entries before any Hugging Face model
ARCHITECTURES: dict[str, Architecture] = {"mlp-recommender": MLPRecommenderArchitecture(),
                                          "movielens-rating-server": RatingServerArchitecture(),
                                          "vit-classifier": ViTClassifierArchitecture(),
                                          "hf-pretrained": HuggingFaceArchitecture(),
                                          "factory": FactoryArchitecture()}


def architecture_of(model: nn.Module) -> tuple[str, Architecture]:
    for name, architecture in ARCHITECTURES.items():
        if architecture.owns(model):
            return name, architecture
    name = type(model).__name__
    raise ModelError(f"{name}: no export architecture for this model (known: "
                     f"{', '.join(ARCHITECTURES)}); pass factory='package.module:{name}' and "
                     "its arguments, or add an entry to diversedistill.export.ARCHITECTURES")


def export_model(model: nn.Module, out_dir: str | Path, extra: dict | None = None,
                 class_names: Sequence[str] | None = None, factory: str | None = None,
                 arguments: dict | None = None) -> Path:
    """``model`` (or its student adapter) as ``model.safetensors`` + ``config.json``;
    ``class_names``: a classifier's label of each output, recorded with it.

    Any ``nn.Module``: ``factory="package.module:Name"`` (an ``nn.Module`` class or a
    function marked :func:`model_factory`) and the keyword ``arguments`` that build it;
    :func:`load_model` calls it again and loads the weights. A Hugging Face model needs
    neither: its class and config rebuild it (and transformers' own loaders read the directory).
    """
    if factory is not None:
        name, architecture = "factory", ARCHITECTURES["factory"]
        description = architecture.describe(model, factory, arguments)
    else:
        name, architecture = architecture_of(model)
        description = architecture.describe(model, class_names)
    top = getattr(architecture, "top_level", None)  # keys another loader reads (Hugging Face)
    config = {**(top(model, description) if top else {}), "format": FORMAT,
              "architecture": name, "model": description, **(extra or {})}
    return _write_export(architecture.served(model), Path(out_dir), config)


def _write_export(model: nn.Module, out_dir: Path, config: dict) -> Path:
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_finite(weights, out_dir / WEIGHTS)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        try:
            save_file(weights, str(tmp), metadata={"format": "pt"})  # as transformers writes
        except Exception as err:  # safetensors reports I/O errors as its own type
            raise _os_error(err, out_dir / WEIGHTS) from None
        checksum = file_sha256(tmp)
    # the config is written last: a directory with a config always has complete weights
    config = {**config, "weights_sha256": checksum}
    write_text_atomic(out_dir / CONFIG, json.dumps(config, indent=2))
    return out_dir


def _os_error(err: Exception, path: Path) -> Exception:
    """safetensors' "... (os error 28)" as the OSError it is (28: no space left on device)."""
    import re

    found = re.search(r"os error (\d+)", str(err))
    if isinstance(err, OSError) or not found:
        return err
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def check_finite(weights: dict, where: str | Path) -> None:
    """Weights holding NaN or infinity are never exported (a diverged run, a damaged file)."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelError(f"{where}: {name} holds {bad} non-finite value(s) (NaN or "
                             "infinity); refused: the run diverged or the file is damaged")


def read_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: no {CONFIG}; not an exported diversedistill model") from None
    except json.JSONDecodeError as err:
        raise ModelError(f"{path / CONFIG}, line {err.lineno}: invalid JSON ({err.msg})") from None
    except UnicodeDecodeError as err:
        raise ModelError(f"{path / CONFIG}: not valid UTF-8 text (byte {err.start})") from None
    except NotADirectoryError:
        raise ModelError(f"{path}: a file, not an exported model directory") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelError(f"{path / CONFIG}: not a {FORMAT} export")
    architecture = config.get("architecture")
    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        from diversedistill.config import short

        raise ModelError(f"{path / CONFIG}: key 'architecture' is {short(architecture)}, not one "
                         f"this version can rebuild ({', '.join(ARCHITECTURES)})")
    return config


def rebuild(config: dict, where: Path) -> nn.Module:
    """The module ``config`` (read from ``where``) describes, with fresh weights."""
    name, description = config["architecture"], config.get("model")
    if not isinstance(description, dict):
        raise ModelError(f"{where}: key 'model' holds no description of the {name}")
    try:
        return ARCHITECTURES[name].rebuild(description)
    except (KeyError, TypeError, ValueError) as err:  # a key missing, renamed or out of range
        raise ModelError(f"{where}: key 'model' does not describe a {name} "
                         f"({type(err).__name__}: {err})") from None


def load_model(path: str | Path) -> nn.Module:
    """Rebuild an exported model from its config and load its weights (strictly)."""
    return _load(Path(path))[0]


def load_student(path: str | Path) -> nn.Module:
    """The exported model in the adapter it was trained in, in eval mode: its ``predict``
    takes a batch as training saw it (a ViT: images in [0, 1], resized and normalized
    as its config records)."""
    model, config = _load(Path(path))
    return ARCHITECTURES[config["architecture"]].as_student(model, config["model"]).eval()


def _load(path: Path) -> tuple[nn.Module, dict]:
    config = read_config(path)
    model = rebuild(config, path / CONFIG)
    expected = config.get("weights_sha256")
    if not (path / WEIGHTS).is_file():
        raise ModelError(f"{path / WEIGHTS}: not found; the export is incomplete")
    if not isinstance(expected, str):
        raise ModelError(f"{path / CONFIG}: records no weights_sha256; cannot check the weights")
    if file_sha256(path / WEIGHTS) != expected:
        raise ModelError(f"{path / WEIGHTS}: checksum differs from {CONFIG}; the file is corrupt "
                         "or was replaced after the export")
    try:
        state = load_file(str(path / WEIGHTS))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ModelError(f"{path / WEIGHTS}: cannot read weights ({err})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape than the config describes
        first = str(err).strip().splitlines()[-1].strip()
        raise ModelError(f"{path / WEIGHTS}: weights do not fit the config ({first})") from None
    if missing or unexpected:
        raise ModelError(f"{path / WEIGHTS}: weights do not fit the config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    check_finite(state, path / WEIGHTS)
    return model.eval(), config


def export_run_student(student: nn.Module, result, extra: dict | None = None,
                       class_names: Sequence[str] | None = None, factory: str | None = None,
                       arguments: dict | None = None) -> Path | None:
    """Leave a finished run's student in ``run_dir/student/``, as ``distill`` does: its
    config is what ``export RUN`` rebuilds the checkpoint's student from, and its presence
    says the run finished (a run that starts again clears it). ``result``: the run's
    :class:`~diversedistill.training.FitResult`, whose numbers it records; ``factory`` and
    ``arguments`` as :func:`export_model` takes them."""
    from diversedistill import rundir

    if result.rank != 0:  # under DDP the reporting process writes it
        return None
    out = rundir.mark(Path(result.run_dir) / "student", "model")
    return export_model(student, out, {"metrics": result.summary(), **(extra or {})},
                        class_names, factory, arguments)


def export_from_checkpoint(run_dir: str | Path, out_dir: str | Path,
                           before_writing=None) -> Path:
    """Export the student of a run (``distill``, or one of a reproduction's ``runs/``)
    from its best checkpoint.

    The checkpoint holds the training wrapper's state (student and distillation module);
    only the ``student.model.*`` entries are kept, rebuilt from the config the run left
    in ``student/``, whose description and records the export keeps.
    """
    run_dir = Path(run_dir)
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    if (run_dir / "checkpoints").is_dir() and not (run_dir / "student" / CONFIG).is_file():
        raise ModelError(f"{run_dir}: no student/{CONFIG}; {_why_unfinished(run_dir)}")
    if not checkpoint.is_file():
        raise ModelError(f"{run_dir}: no checkpoints/best.ckpt; {_what_to_export(run_dir)}")
    config = read_config(run_dir / "student")
    model = rebuild(config, run_dir / "student" / CONFIG)
    # weights_only: a checkpoint that would run code when unpickled is refused
    saved = read_checkpoint(checkpoint)  # its checksum checked first
    run_file = run_dir / "run.json"
    if run_file.is_file():  # the checkpoint must be this run's, not one copied in
        from diversedistill.checkpoints import check_same_settings

        try:
            settings = json.loads(run_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ModelError(f"{run_file}: not readable JSON") from None
        try:
            check_same_settings(checkpoint, saved.get("run_settings"), settings)
        except DiverseDistillError as err:
            raise ModelError(f"{checkpoint}: belongs to another run than {run_file} "
                             f"({str(err).split('cannot resume, ')[-1].split(';')[0]})") from None
    state = saved["state_dict"]
    prefix = "student.model."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    check_finite(weights, checkpoint)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ModelError(f"{checkpoint}: its student does not fit {run_dir / 'student' / CONFIG} "
                         f"({first})") from None
    if before_writing is not None:  # everything is checked: the CLI takes the directory now
        before_writing()
    # the run's config as it is (description, metrics, data): only the checksum is new
    kept = {k: v for k, v in config.items() if k != "weights_sha256"}
    return _write_export(model, Path(out_dir), kept)


def _why_unfinished(run_dir: Path) -> str:
    """A distill run resumes with --resume; a reproduction's run is made again by running
    the reproduction (runs written before runs recorded their student have none either)."""
    try:
        settings = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        settings = {}
    if isinstance(settings, dict) and "data.release" in settings:  # a MovieLens distill run
        return "the run has not finished (resume it with the same command and --resume)"
    return ("the run has not finished, or was written by a version that did not record its "
            "student; run it again")


def _what_to_export(path: Path) -> str:
    runs = path / "runs"
    if runs.is_dir():  # a reproduction's output directory: one student per run
        found = sorted(p.name for p in runs.iterdir() if (p / "student" / CONFIG).is_file())
        if found:
            return f"a reproduction's directory: export one of its runs, e.g. {runs / found[0]}"
    return "is it a run directory ('distill', or one of a reproduction's runs/)?"
