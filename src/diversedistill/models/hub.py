"""Pretrained Hugging Face models (from the Hub or a local copy): weights only, never code.

Every Hugging Face teacher or student is loaded through :func:`load_pretrained`, which
- never runs code shipped with a model: ``trust_remote_code=False``, and a caller asking
  for ``True`` is refused (a model that needs its own code is not loaded at all);
- reads model weights from safetensors files only (``use_safetensors=True``): a model
  published only as a pickled ``pytorch_model.bin`` is refused, since unpickling can run
  code.
``tests/library/test_safe_loading.py`` scans the source tree so that no other ``from_pretrained``
call, and no ``torch.load`` without ``weights_only=True``, slips in.

A model *exported* by this library (:func:`diversedistill.export.load_model`) keeps the same
promise: an ``hf-pretrained`` export is rebuilt from a ``transformers`` class and its config,
never from the hub, and a ``factory`` export runs no code its directory names unless the
caller passes that factory or ``trust_code=True`` (:mod:`diversedistill.models.model_code`).

    from transformers import AutoModel, AutoTokenizer
    model = load_pretrained(AutoModel, "google-t5/t5-small")
    tokenizer = load_pretrained(AutoTokenizer, "google-t5/t5-small", weights=False)
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from diversedistill.errors import ModelError

log = logging.getLogger("diversedistill")


def load_pretrained(loader: Any, name_or_path: str, *, weights: bool = True, **kwargs: Any) -> Any:
    """``loader.from_pretrained(name_or_path, **kwargs)`` without remote code; ``weights``:
    the loader reads model weights (configs and tokenizers have none)."""
    if kwargs.pop("trust_remote_code", False):
        raise ModelError(f"{name_or_path}: trust_remote_code=True is refused; diversedistill "
                         "never runs code shipped with a model")
    if weights:
        if kwargs.get("use_safetensors") is False:
            raise ModelError(f"{name_or_path}: use_safetensors=False is refused; pickled "
                             "weights can run code when loaded")
        kwargs["use_safetensors"] = True
        kwargs["output_loading_info"] = True
    try:
        with _quiet_transformers():
            loaded = loader.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as err:  # what transformers raises for both refusals
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{name_or_path}: not loaded ({first})") from None
    if not weights:
        return loaded
    model, info = loaded
    # Weights the checkpoint has but the model does not use (BERT's pooler under a
    # regression head) are expected here; weights the model needs but the checkpoint lacks
    # start from random values, which a user must hear about, in one line.
    fresh = sorted({*info.get("missing_keys", ()),
                    *(k for k, *_ in info.get("mismatched_keys", ()))})
    if fresh:
        shown = ", ".join(fresh[:4]) + (f" and {len(fresh) - 4} more" if len(fresh) > 4 else "")
        log.warning(f"{name_or_path}: {len(fresh)} weight(s) not in the checkpoint start from "
                    f"random values: {shown}")
    return model


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' own load report (a multi-line table per model) and its progress bar
    are replaced by the one line above; its errors still come through."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
