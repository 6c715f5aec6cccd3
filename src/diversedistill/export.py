"""Export the plain student: ``model.safetensors`` + ``config.json``, nothing else.

The export holds the student's own ``state_dict`` (not the training wrapper's), so no
question augmenter, answer augmenter or teacher leaves a trace in the served model.
Loading never unpickles anything: weights come from safetensors, the config from JSON,
and the config carries the SHA-256 of the weights file, so a file damaged or replaced
after the export is refused instead of served.

Loading never runs code a directory names unless the caller chose it: a registered
architecture (installed code), the ``factory=`` the caller passes, or ``trust_code=True``
(:mod:`diversedistill.models.model_code`); a ``factory`` export is otherwise refused before
anything is imported. Nothing is built before the weights are checked: the checksum, then
the config's parameter count and the model built on the ``meta`` device (no memory) against
the values the weights hold, and only then the real module.

Which kinds of model can be exported: :func:`architectures`, name -> :class:`Architecture`.
The config names the entry (``architecture``) and holds its description of the model
(``model``), from which the entry rebuilds the same module, its weights then loaded from
the file. Built in: ``hf-pretrained`` (any Hugging Face model) and ``factory`` (any
``nn.Module`` given the factory that builds it), both in
:mod:`diversedistill.models.export_generic`.
Another kind of model plugs in with :func:`register_architecture` or an entry point; the paper's
recipes add ``mlp-recommender``, ``movielens-rating-server`` and ``vit-classifier`` that way
(``diversedistill_recipes.movielens.recommender_export``,
``diversedistill_recipes.cifar.vit_export``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diversedistill.errors import DiverseDistillError, ModelError
from diversedistill.models.export_generic import (
    FactoryArchitecture,
    HuggingFaceArchitecture,
)
from diversedistill.models.export_generic import (
    model_factory as model_factory,  # re-exported: users mark factories from here
)
from diversedistill.models.model_code import Factory, choose_factory
from diversedistill.runs.atomic import atomic_path, write_text_atomic
from diversedistill.runs.checkpoints import read_checkpoint
from diversedistill.runs.checkpoints import (
    sha256_of as file_sha256,  # one reader; tests import it here
)

FORMAT = "diversedistill-model/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


class Architecture(Protocol):
    """How one kind of model is exported and rebuilt (an entry of :func:`architectures`)."""

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


# Entries that ship with other packages (the paper's recipes: the MovieLens recommender, the
# CIFAR ViT) are found through the ``diversedistill.architectures`` entry-point group, so
# that this module never imports them and a package of your own can add one the same way:
#   [project.entry-points."diversedistill.architectures"]
#   my-arch = "my_package.export:MY_ARCHITECTURE"
ENTRY_POINTS = "diversedistill.architectures"
# tried after every registered entry: they accept any Hugging Face model / any module
FACTORY = FactoryArchitecture()  # its describe() takes the factory and arguments, not names
GENERIC: dict[str, Architecture] = {"hf-pretrained": HuggingFaceArchitecture(),
                                    "factory": FACTORY}  # type: ignore[dict-item]
ARCHITECTURES: dict[str, Architecture] = {}  # name -> entry, filled by register_architecture
_plugins_loaded = False


def register_architecture(name: str, architecture: Architecture) -> None:
    """Make a kind of model exportable under ``name`` (tried before the generic entries)."""
    if name in GENERIC:
        raise ModelError(f"architecture name {name!r} is reserved for a generic entry")
    ARCHITECTURES[name] = architecture


def architectures() -> dict[str, Architecture]:
    """Every entry, the registered ones first, entry-point plugins loaded on first use."""
    global _plugins_loaded
    if not _plugins_loaded:
        from importlib.metadata import entry_points

        _plugins_loaded = True
        for point in entry_points(group=ENTRY_POINTS):
            if point.name not in ARCHITECTURES:
                register_architecture(point.name, point.load())
    return {**ARCHITECTURES, **GENERIC}


def architecture_of(model: nn.Module) -> tuple[str, Architecture]:
    known = architectures()
    for name, architecture in known.items():
        if architecture.owns(model):
            return name, architecture
    name = type(model).__name__
    raise ModelError(f"{name}: no export architecture for this model (known: "
                     f"{', '.join(known)}); pass factory='package.module:{name}' and its "
                     "arguments, or register an entry "
                     "(diversedistill.export.register_architecture)")


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
        name, architecture = "factory", GENERIC["factory"]
        description = FACTORY.describe(model, factory, arguments)
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
    if not isinstance(architecture, str) or architecture not in architectures():
        from diversedistill.config import short

        raise ModelError(f"{path / CONFIG}: key 'architecture' is {short(architecture)}, not one "
                         f"this version can rebuild ({', '.join(architectures())})")
    return config


def rebuild(config: dict, where: Path, factory: Factory | None = None,
            trust_code: bool = False, weights: dict | None = None,
            weights_file: Path | None = None) -> nn.Module:
    """The module ``config`` (read from ``where``) describes, with fresh weights.

    A ``factory`` export is rebuilt only by the caller's ``factory`` or under ``trust_code``
    (:mod:`diversedistill.models.model_code`). ``weights``: the tensors it will hold (read from
    ``weights_file``); the model is built on the meta device first and refused when it
    needs more values than they hold, so a config describing a huge model allocates
    nothing."""
    build = _builder(config, where, factory, trust_code)
    if weights is not None:
        _check_declared_size(config, where, weights)
        with torch.device("meta"):  # shapes only: no memory, whatever the config says
            skeleton = build()
        _check_fits(skeleton, weights_file or where, weights)
    return build()


def _builder(config: dict, where: Path, factory: Factory | None, trust_code: bool):
    """A function of no arguments that builds the module ``config`` describes: chosen (for
    a factory export: allowed) now, from the config's text; imported and called later."""
    name, description = config["architecture"], config.get("model")
    if not isinstance(description, dict):
        raise ModelError(f"{where}: key 'model' holds no description of the {name}")
    if name == "factory":
        chosen = choose_factory(where.parent, description.get("factory"), factory, trust_code)
        rebuild_one = lambda: FACTORY.rebuild(description, chosen.builder())  # noqa: E731
    else:  # a registered or built-in entry: code the user installed
        rebuild_one = lambda: architectures()[name].rebuild(description)  # noqa: E731

    def build() -> nn.Module:
        try:
            return rebuild_one()
        except (KeyError, TypeError, ValueError) as err:  # a key missing, renamed or out of range
            raise ModelError(f"{where}: key 'model' does not describe a {name} "
                             f"({type(err).__name__}: {err})") from None
    return build


def _values(tensors) -> int:
    return sum(t.numel() for t in tensors)


def _check_declared_size(config: dict, where: Path, weights: dict) -> None:
    """The parameter count the config records must fit in the weights: checked from the
    text, before any code runs."""
    declared, held = config["model"].get("parameters"), _values(weights.values())
    if isinstance(declared, int) and not isinstance(declared, bool) and declared > held:
        raise ModelError(f"{where}: key 'model.parameters' declares {declared} parameters but "
                         f"the weights hold {held} values; refused before building the model")


def _check_fits(skeleton: nn.Module, weights_file: Path, weights: dict) -> None:
    """The model built on the meta device may need no more values than the weights hold."""
    needed, held = _values(skeleton.state_dict().values()), _values(weights.values())
    if needed > held:
        raise ModelError(f"{weights_file}: weights do not fit the config (it describes a "
                         f"model of {needed} values, the weights hold {held}); refused before "
                         "building it")


def load_model(path: str | Path, factory: Factory | None = None, *,
               trust_code: bool = False) -> nn.Module:
    """Rebuild an exported model from its config and load its weights (strictly).

    The weights' checksum and size are checked before anything is built. A ``factory``
    export (a model exported with ``factory="pkg.mod:Name"``) names code, and a directory
    is data: it is rebuilt only with the ``factory`` you pass (``MyNet`` or
    ``"pkg.mod:MyNet"``, which must be the one recorded), or with ``trust_code=True``,
    which imports and calls the recorded one. Registered architectures and Hugging Face
    models need neither."""
    return _load(Path(path), factory, trust_code)[0]


def load_student(path: str | Path, factory: Factory | None = None, *,
                 trust_code: bool = False) -> nn.Module:
    """The exported model in the adapter it was trained in, in eval mode: its ``predict``
    takes a batch as training saw it (a ViT: images in [0, 1], resized and normalized
    as its config records). ``factory`` and ``trust_code`` as :func:`load_model` takes them."""
    model, config = _load(Path(path), factory, trust_code)
    return architectures()[config["architecture"]].as_student(model, config["model"]).eval()


def _load(path: Path, factory: Factory | None, trust_code: bool) -> tuple[nn.Module, dict]:
    config = read_config(path)
    _builder(config, path / CONFIG, factory, trust_code)  # refused now, before reading weights
    state = _read_weights(path, config)
    model = rebuild(config, path / CONFIG, factory, trust_code, state, path / WEIGHTS)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape than the config describes
        first = str(err).strip().splitlines()[-1].strip()
        raise ModelError(f"{path / WEIGHTS}: weights do not fit the config ({first})") from None
    if missing or unexpected:
        raise ModelError(f"{path / WEIGHTS}: weights do not fit the config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval(), config


def _read_weights(path: Path, config: dict) -> dict:
    """The directory's weights, their checksum checked against the config and every value
    finite; read before any model is built."""
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
    check_finite(state, path / WEIGHTS)
    return state


def export_run_student(student: nn.Module, result, extra: dict | None = None,
                       class_names: Sequence[str] | None = None, factory: str | None = None,
                       arguments: dict | None = None) -> Path | None:
    """Leave a finished run's student in ``run_dir/student/``, as ``distill`` does: its
    config is what ``export RUN`` rebuilds the checkpoint's student from, and its presence
    says the run finished (a run that starts again clears it). ``result``: the run's
    :class:`~diversedistill.training.FitResult`, whose numbers it records; ``factory`` and
    ``arguments`` as :func:`export_model` takes them."""
    from diversedistill.runs import rundir

    if result.rank != 0:  # under DDP the reporting process writes it
        return None
    out = rundir.mark(Path(result.run_dir) / "student", "model")
    return export_model(student, out, {"metrics": result.summary(), **(extra or {})},
                        class_names, factory, arguments)


def export_from_checkpoint(run_dir: str | Path, out_dir: str | Path,
                           before_writing=None, factory: Factory | None = None, *,
                           trust_code: bool = False) -> Path:
    """Export the student of a run (``distill``, or one of a reproduction's ``runs/``)
    from its best checkpoint.

    The checkpoint holds the training wrapper's state (student and distillation module);
    only the ``student.model.*`` entries are kept, rebuilt from the config the run left
    in ``student/``, whose description and records the export keeps. A student exported
    by factory is rebuilt only with the ``factory`` passed or under ``trust_code``, as
    :func:`load_model` rebuilds one; the checkpoint is checked before anything is built.
    """
    run_dir = Path(run_dir)
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    if (run_dir / "checkpoints").is_dir() and not (run_dir / "student" / CONFIG).is_file():
        raise ModelError(f"{run_dir}: no student/{CONFIG}; {_why_unfinished(run_dir)}")
    if not checkpoint.is_file():
        raise ModelError(f"{run_dir}: no checkpoints/best.ckpt; {_what_to_export(run_dir)}")
    config = read_config(run_dir / "student")
    where = run_dir / "student" / CONFIG
    _builder(config, where, factory, trust_code)  # refused now, before reading the checkpoint
    # weights_only: a checkpoint that would run code when unpickled is refused
    saved = read_checkpoint(checkpoint)  # its checksum checked first
    run_file = run_dir / "run.json"
    if run_file.is_file():  # the checkpoint must be this run's, not one copied in
        from diversedistill.runs.checkpoints import check_same_settings

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
    model = rebuild(config, where, factory, trust_code, weights, checkpoint)
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
