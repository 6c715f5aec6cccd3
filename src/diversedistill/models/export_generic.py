"""Export entries for students the library did not build: any Hugging Face model, and any
``nn.Module`` made by a named factory.

- ``hf-pretrained``: a ``transformers`` ``PreTrainedModel`` (bare, or in a
  ``HookedStudent``). Its export directory is also a ``save_pretrained`` directory: the
  model's own config keys sit at the top of ``config.json`` beside ours and the weights
  carry safetensors' ``{"format": "pt"}``, so transformers' ``AutoModel*`` loaders read
  it too. Rebuilt from the ``transformers`` class named in the config and its config,
  never from the hub.
- ``factory``: any module, given ``factory="package.module:Name"`` and the keyword
  ``arguments`` that build it (JSON values). Loading calls the factory again, then loads
  the weights, but only a factory the loading code passes in (``load_model(path,
  factory=...)``) or one it trusts (``trust_code=True``): a directory's config alone never
  makes loading import or call anything (:mod:`diversedistill.models.model_code`). Even then only
  an ``nn.Module`` subclass, or a function marked with :func:`model_factory`, is called: a
  config naming ``os:system`` is refused, not run.

Both check at export time that the rebuilt module has the same structure (module types,
parameter and buffer shapes) as the one exported, so a mismatch is found when exporting,
not when serving.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import torch
from torch import nn

from diversedistill.errors import ModelError
from diversedistill.models.model_code import FACTORY_MARK as FACTORY_MARK  # re-exported
from diversedistill.models.model_code import importable
from diversedistill.models.model_code import model_factory as model_factory  # re-exported


def structure(model: nn.Module) -> dict[str, str]:
    """Module path -> type of each leaf module, parameter or buffer -> its shape. Containers
    only route; transformers 4 names its attention container after the implementation
    chosen when the model was loaded, which the config does not record."""
    leaves = {name: type(m).__name__ for name, m in model.named_modules()
              if not list(m.children())}
    return {**leaves, **{k: str(tuple(v.shape)) for k, v in model.state_dict().items()}}


def check_rebuilds_same(model: nn.Module, rebuilt: nn.Module, what: str,
                        why: str = "the export could not be loaded back") -> None:
    """Refused at export, not found when serving: ``rebuilt`` (what loading will make) must
    have ``model``'s structure. ``what`` names the rebuilt model in the message."""
    ours, theirs = structure(model), structure(rebuilt)
    if ours != theirs:
        differs = sorted(set(ours.items()) ^ set(theirs.items()))[:3]
        raise ModelError(f"{type(model).__name__}: differs from {what} ({differs}); {why}")


def _inner(model: nn.Module) -> nn.Module:
    """A student adapter's model (``HookedStudent.model``), or the model itself."""
    hooked = sys.modules.get("diversedistill.interface")
    if hooked is not None and isinstance(model, hooked.HookedStudent):
        return model.model
    return model


def _is_hf(model: nn.Module) -> bool:
    hf = sys.modules.get("transformers")  # a Hugging Face model exists only once imported
    return hf is not None and isinstance(model, hf.PreTrainedModel)


class HuggingFaceArchitecture:
    """Any ``transformers`` model: its class and config rebuild it."""

    def owns(self, model):
        return _is_hf(_inner(model))

    def served(self, model):
        return _inner(model)

    def describe(self, model, class_names=None):
        hf = _inner(model)
        config = json.loads(hf.config.to_json_string(use_diff=False))
        if class_names is not None:
            config["id2label"] = {str(i): str(n) for i, n in enumerate(class_names)}
            config["label2id"] = {str(n): i for i, n in enumerate(class_names)}
        description = {"class": type(hf).__name__, "config": config,
                       "parameters": sum(p.numel() for p in hf.parameters())}
        with torch.device("meta"):  # structure and shapes only: no memory, no random numbers
            check_rebuilds_same(hf, self.rebuild(description),
                                f"the model transformers.{type(hf).__name__} builds")
        return description

    def top_level(self, model, description):
        """``save_pretrained``'s own config keys, so transformers' loaders read the directory."""
        return {**description["config"], "architectures": [description["class"]]}

    def rebuild(self, description):
        import transformers

        name = description["class"]
        cls = getattr(transformers, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise ValueError(f"{name!r} is not a transformers model class")
        config = cls.config_class.from_dict(dict(description["config"]))
        return cls(config)

    def as_student(self, model, description):
        return model


class FactoryArchitecture:
    """Any module, rebuilt by calling an importable factory with JSON arguments. Chosen by
    passing ``factory=`` to :func:`~diversedistill.export.export_model`; never guessed."""

    def owns(self, model):
        return False

    def served(self, model):
        return _inner(model)

    def describe(self, model, factory: str, arguments: dict | None):
        arguments = dict(arguments or {})
        try:
            json.dumps(arguments, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ModelError(f"factory arguments must be JSON values (numbers, strings, lists, "
                             f"dicts): {err}") from None
        description = {"factory": factory, "arguments": arguments,
                       "parameters": sum(p.numel() for p in _inner(model).parameters())}
        try:  # the caller typed this factory: importing it is their choice
            build = importable(factory)
            with torch.device("meta"):
                rebuilt = self.rebuild(description, build)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"factory {factory!r} cannot build the model from {arguments} "
                             f"({type(err).__name__}: {err})") from None
        check_rebuilds_same(_inner(model), rebuilt, f"the model factory {factory!r} builds")
        return description

    def rebuild(self, description, build: Callable[..., nn.Module] | None = None):
        """The module ``build`` makes from the description's arguments. ``build`` is the
        factory the loading code chose (:func:`~diversedistill.models.model_code.choose_factory`);
        without one nothing is built, since the description alone must never pick code."""
        target = description["factory"]
        if build is None:
            raise ModelError(f"factory {target!r}: no factory was chosen by the caller; "
                             "refused (load through diversedistill.export.load_model)")
        model = build(**description["arguments"])
        if not isinstance(model, nn.Module):
            raise TypeError(f"factory {target!r} returned {type(model).__name__}, not a module")
        return model

    def as_student(self, model, description):
        return model
