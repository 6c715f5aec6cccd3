"""Checkpoints: written atomically, read without running code, resumed where a run died.

- :class:`AtomicCheckpointIO` writes every Lightning checkpoint to a temporary file and
  renames it over the target, so a SIGKILL at any moment leaves the previous complete
  checkpoint (Lightning's own writer opens the target file directly).
- :func:`read_checkpoint` is the only way a checkpoint is loaded: ``weights_only=True``, so
  a file that would run code when unpickled is refused, and a truncated one is named.
- Every checkpoint has its SHA-256 beside it (``last.ckpt.sha256``), written before the
  checkpoint is renamed into place; :func:`read_checkpoint` checks it before anything is
  loaded, so a damaged file is refused on resume and on export instead of trained on.
  The checksum file keeps the previous checkpoint's digest too: a kill between the two
  renames leaves the old checkpoint, which still matches.
- :class:`LastCheckpoint` saves ``last.ckpt`` every N optimizer steps and after every epoch.
  The epoch-end save runs after early stopping and the best checkpoint have updated
  their state, so the file carries it (and whether the run has decided to stop).
- :class:`BestCheckpoint` is Lightning's ModelCheckpoint with its state relocatable: the
  checkpoints name its files relative to the run's ``checkpoints/`` and a resume reads them
  in the directory it runs in, so a copied or moved run resumes and exports its own files.
- :class:`RunLogger` is Lightning's CSV logger, except that on resume it keeps the rows
  written before the checkpoint instead of deleting the file.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from diversedistill.errors import ConfigError, ModelError
from diversedistill.runs.atomic import atomic_path, write_text_atomic
from diversedistill.runs.interrupt import Interrupted, pending

LAST, BEST = "last.ckpt", "best.ckpt"
CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checkpoint(path: str | Path) -> None:
    """The checkpoint's bytes match the digest written with it; otherwise one clear error."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    sums = checksum_path(path)
    try:
        recorded = json.loads(sums.read_text(encoding="utf-8"))
        accepted = {recorded["sha256"], *(recorded.get("previous") or [])}
    except FileNotFoundError:
        raise ModelError(f"{path}: no checksum beside it ({sums.name}); not written by this "
                         "version of diversedistill, or the checksum was removed") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ModelError(f"{sums}: not a readable checksum file") from None
    if sha256_of(path) not in accepted:
        raise ModelError(f"{path}: checksum differs from {sums.name}; the checkpoint is "
                         "corrupt or was replaced after it was written")


def read_checkpoint(path: str | Path, map_location: Any = "cpu", verify: bool = True) -> dict:
    """Load a checkpoint as plain tensors and containers; anything else is refused.

    ``verify``: check the SHA-256 written beside it first (always, except for a caller
    that has just checked it)."""
    path = Path(path)
    checked = verify and checksum_path(path).is_file()
    if checked:  # a damaged file is refused before anything in it is loaded
        verify_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelError(f"{path}: refused to load, it holds more than tensors ({first})") from None
    except FileNotFoundError:
        raise ModelError(f"{path}: checkpoint not found") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:  # truncated or not a checkpoint
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: not a readable checkpoint ({first})") from None
    if verify and not checked:  # loadable, but without its checksum: refused
        verify_checkpoint(path)
    return checkpoint


def _previous_digest(path: Path) -> list[str]:
    """Digests the file now on disk may have: the last one written, and (after a cut
    write, whose checksum landed but whose checkpoint did not) the ones before it."""
    try:
        recorded = json.loads(checksum_path(path).read_text(encoding="utf-8"))
        return [recorded["sha256"], *(recorded.get("previous") or [])][:4]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def save_verified(checkpoint: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file; its digest beside it; then rename into place."""
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            torch.save(checkpoint, tmp)
        except RuntimeError as err:  # torch's C++ writer: "unexpected pos" on a full disk
            if "unexpected pos" in str(err) or _disk_full(path.parent):
                raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
            raise
        digest = {"sha256": sha256_of(tmp), "previous": _previous_digest(path)}
        write_text_atomic(checksum_path(path), json.dumps(digest) + "\n")


def _disk_full(directory: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(directory).free < (1 << 20)
    except OSError:
        return False


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        save_verified(checkpoint, path)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        checksum_path(path).unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        # weights_only whatever the caller asks: Lightning's strategies do not all pass it on
        return read_checkpoint(path, map_location or "cpu")


class LastCheckpoint(Checkpoint):
    def __init__(self, path: str | Path, every_n_steps: int):
        self.path, self.every_n_steps = Path(path), every_n_steps
        self._trainer = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the last batch of an epoch is saved a moment later, after validation
        last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        signalled = pending() is not None
        if (not last_batch and (signalled or (
                self.every_n_steps and trainer.global_step % self.every_n_steps == 0))):
            self._save(trainer)
        if signalled:  # SIGTERM / SIGINT: stop after this step, its checkpoint written
            self._stop(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save(trainer)
        if pending() is not None:
            self._stop(trainer)

    @staticmethod
    def _stop(trainer) -> None:
        signum = pending()
        assert signum is not None  # called only once a signal is pending
        raise Interrupted(signum, trainer.current_epoch, trainer.global_step)

    def _save(self, trainer) -> None:
        for logger in trainer.loggers:  # the rows the checkpoint counts are on disk first
            logger.save()
        trainer.save_checkpoint(self.path)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["log_rows"] = getattr(trainer.logger, "rows_written", 0)

    def state_dict(self) -> dict[str, Any]:
        # Lightning does not save its stop decision: a run resumed from its final checkpoint
        # would otherwise train one epoch more than the run that was not interrupted
        return {"should_stop": bool(self._trainer is not None and self._trainer.should_stop)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("should_stop") and self._trainer is not None:
            self._trainer.should_stop = True


class BestCheckpoint(ModelCheckpoint):
    """``best.ckpt``, as Lightning's ModelCheckpoint saves it, with a state that does not
    remember where the run was.

    ModelCheckpoint keeps absolute paths in every checkpoint (its directory, the best file)
    and, resumed in another directory, reloads only the best file's path: the old
    location's, and without the best score, so the first epoch after the resume always
    counted as the best. Here the state names files relative to the checkpoint directory,
    and a resume resolves them in the directory the run now lives in (a checkpoint written
    before this class, with absolute paths, is resolved the same way: by file name)."""

    @property
    def state_key(self) -> str:
        # the key ModelCheckpoint's state is saved under, so that a checkpoint written
        # before this class existed still resumes with its state
        return super().state_key.replace(type(self).__qualname__,
                                         ModelCheckpoint.__qualname__, 1)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["dirpath"] = "."  # the checkpoint's own directory, wherever it is
        return self._rebased(state, lambda name: name)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        here = Path(self.dirpath or ".")
        state = self._rebased(dict(state_dict), lambda name: str(here / name))
        state["dirpath"] = self.dirpath  # so that the scores are reloaded with the paths
        super().load_state_dict(state)

    @staticmethod
    def _rebased(state: dict[str, Any], place) -> dict[str, Any]:
        """``state`` with every file it names replaced by ``place(file name)``: the files
        live directly in the checkpoint directory."""
        def moved(path: str) -> str:
            return place(Path(path).name) if path else path

        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if isinstance(state.get(key), str):
                state[key] = moved(state[key])
        if isinstance(state.get("best_k_models"), dict):
            state["best_k_models"] = {moved(p): v for p, v in state["best_k_models"].items()}
        return state


def check_same_settings(path: Path, saved: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """A checkpoint resumes only the run that wrote it: same data, method, teachers, recipe."""
    if saved is None:
        raise ConfigError(f"{path}: not written by diversedistill; cannot resume from it")
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise ConfigError(
                f"{path}: cannot resume, the run was started with {key}={saved.get(key)!r} and "
                f"this command has {key}={current.get(key)!r}; repeat the original command with "
                "--resume, or leave out --resume to start afresh")


class _Writer(ExperimentWriter):
    """Lightning's CSV writer, counting the rows it has written; on resume it keeps the
    first ``keep_rows`` rows of the old file instead of deleting it."""

    def __init__(self, log_dir: str, keep_rows: int | None):
        self.keep_rows, self.rows_written = keep_rows, 0
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if self.keep_rows is None or not path.is_file():
            return super()._check_log_dir_exists()
        # rows after the checkpoint are logged again by the replay, so they are dropped here
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header, rows = list(reader.fieldnames or []), list(reader)[:self.keep_rows]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(path, out.getvalue())
        self.metrics_keys, self.rows_written = header, len(rows)

    def save(self) -> None:
        self.rows_written += len(self.metrics)
        super().save()


class RunLogger(CSVLogger):
    """``run_dir/logs/metrics.csv``; ``keep_rows`` (from the checkpoint) when resuming."""

    def __init__(self, run_dir: str | Path, keep_rows: int | None = None):
        super().__init__(run_dir, name="logs", version="")
        self.keep_rows = keep_rows

    @property
    @rank_zero_experiment
    def experiment(self) -> _Writer:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _Writer(self.log_dir, self.keep_rows)
        assert isinstance(self._experiment, _Writer)  # the only writer this logger makes
        return self._experiment

    @property
    def rows_written(self) -> int:
        return self._experiment.rows_written if isinstance(self._experiment, _Writer) else 0
