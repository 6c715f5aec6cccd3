"""Export the plain student: ``model.safetensors`` + ``config.json``, nothing else.

The export holds the student's own ``state_dict`` (not the training wrapper's), so no
question augmenter, answer augmenter or teacher leaves a trace in the served model.
Loading never unpickles anything: weights come from safetensors, the config from JSON,
and the config carries the SHA-256 of the weights file, so a file damaged or replaced
after the export is refused instead of served.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diversedistill.atomic import atomic_path, write_text_atomic
from diversedistill.checkpoints import read_checkpoint
from diversedistill.checkpoints import sha256_of as file_sha256  # noqa: F401 - one digest reader, also imported from here
from diversedistill.errors import DiverseDistillError, ModelError
from diversedistill.models.recommender import MLPRecommender

FORMAT = "diversedistill-model/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
ARCHITECTURES = {"mlp-recommender": MLPRecommender}


def export_model(model: MLPRecommender, out_dir: str | Path, extra: dict | None = None) -> Path:
    out_dir = Path(out_dir)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_finite(weights, out_dir / WEIGHTS)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        try:
            save_file(weights, str(tmp))
        except Exception as err:  # safetensors reports I/O errors as its own type
            raise _os_error(err, out_dir / WEIGHTS) from None
        checksum = file_sha256(tmp)
    # the config is written last: a directory with a config always has complete weights
    config = {"format": FORMAT, "architecture": "mlp-recommender", "model": model.describe(),
              **(extra or {}), "weights_sha256": checksum}
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
    if not isinstance(config, dict):
        raise ModelError(f"{path / CONFIG}: not a {FORMAT} export")
    if config.get("format") != FORMAT or config.get("architecture") not in ARCHITECTURES:
        raise ModelError(f"{path / CONFIG}: not a {FORMAT} export")
    return config


def load_model(path: str | Path) -> nn.Module:
    """Rebuild an exported model from its config and load its weights (strictly)."""
    path = Path(path)
    config = read_config(path)
    model = ARCHITECTURES[config["architecture"]].from_description(config["model"])
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
    return model.eval()


def export_from_checkpoint(run_dir: str | Path, out_dir: str | Path,
                           before_writing=None) -> Path:
    """Export the student of a ``distill`` run from its best checkpoint.

    The checkpoint holds the training wrapper's state (student and distillation module);
    only the ``student.model.*`` entries are kept, rebuilt from the run's exported config.
    """
    run_dir = Path(run_dir)
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    if (run_dir / "checkpoints").is_dir() and not (run_dir / "student" / CONFIG).is_file():
        raise ModelError(f"{run_dir}: no student/{CONFIG}; the run has not finished (resume it "
                         "with the same command and --resume)")
    if not checkpoint.is_file():
        raise ModelError(f"{run_dir}: no checkpoints/best.ckpt; is it a 'distill' run directory?")
    config = read_config(run_dir / "student")
    model = ARCHITECTURES[config["architecture"]].from_description(config["model"])
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
    extra = {k: v for k, v in config.items()
             if k not in ("format", "architecture", "model", "weights_sha256")}
    if before_writing is not None:  # everything is checked: the CLI takes the directory now
        before_writing()
    return export_model(model, out_dir, extra)
