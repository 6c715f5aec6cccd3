"""Directories the tool owns: it deletes or overwrites only inside them.

A directory becomes the tool's when a command writes its first file there; the command
then leaves a marker file, ``.diversedistill``, in it. Later commands may clear or
overwrite that directory's contents; a directory without the marker is used only when it
is new or empty. So ``--out ''``, ``--out ~``, or a directory of the user's own files is
refused before anything is touched.

A run also takes an exclusive lock (``flock`` on ``.diversedistill.lock``) for as long as it
writes there: a second command on the same directory is refused with one line instead of
mixing its checkpoints into the first run's.

Order of a fresh run (``training.fit``): check ownership (nothing written) → validate the
data, config, teachers and build the Trainer → lock → clear the previous run's outputs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from diversedistill.errors import ConfigError

MARKER = ".diversedistill"
LOCK = ".diversedistill.lock"
_KEEP = (MARKER, LOCK)

_held: dict[str, int] = {}  # resolved directory -> open lock file descriptor
_sessions = [0]  # nesting depth of session(): locks taken inside are kept until it ends


def _key(path: Path) -> str:
    return str(path.resolve())


def check_out(text: str | os.PathLike, what: str = "--out") -> Path:
    """The directory named by ``--out``; refused when empty or a file (nothing written)."""
    if not str(text).strip():
        raise ConfigError(f"{what} is empty; name a directory for the run")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} ({what}): is a file, not a directory")
    return path


def is_owned(path: Path) -> bool:
    return (path / MARKER).is_file()


def kind_of(path: Path) -> str | None:
    """What the marker says the directory holds: "run" (distill, train-teacher's run/) or
    "model" (an export); None without a readable marker."""
    try:
        return json.loads((path / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_owned(path: str | os.PathLike, what: str = "run directory",
                kind: str | None = None) -> Path:
    """Refuse a directory the tool may not write into; writes nothing.

    Accepted: a path that does not exist yet, an empty directory, or a directory that
    carries the marker of an earlier diversedistill command (of ``kind``, when given: a
    run never clears an exported teacher's directory)."""
    path = check_out(path, what)
    _check_writable(path)
    if is_owned(path):
        found = kind_of(path)
        if kind is not None and found != kind:
            held = {"model": "an exported model", "run": "a run"}.get(found or "",
                                                                    "something else")
            raise ConfigError(f"{path}: holds {held}, "
                              f"not {'a run' if kind == 'run' else 'an export'}; "
                              f"refusing to overwrite it. Choose another {what}")
        return path
    if not path.exists():
        return path
    try:
        entries = sorted(p.name for p in path.iterdir())
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ConfigError(
            f"{path}: not empty ({shown}) and not a diversedistill directory (no {MARKER} "
            "file); refusing to delete or overwrite anything there. Choose a new or empty "
            "directory")
    return path


def _check_writable(path: Path) -> None:
    """The directory (or, for a new one, its nearest existing parent) can be written."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_fs(existing) else "permission denied"
        raise ConfigError(f"{existing}: {reason}; the run cannot write there")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def mark(path: str | os.PathLike, kind: str = "run") -> Path:
    """Create ``path`` if needed and leave the marker that makes it the tool's."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not is_owned(path):
        (path / MARKER).write_text(json.dumps({"written_by": "diversedistill", "kind": kind})
                                   + "\n", encoding="utf-8")
    return path


def acquire(path: str | os.PathLike, kind: str = "run") -> Path:
    """Check ownership, mark and lock ``path`` for this process (re-entrant).

    A lock held by another process is one clear error; the lock ends with the process (or
    :func:`release`), so a killed run never leaves a stale lock behind."""
    path = check_owned(path, kind=kind)
    key = _key(path) if path.exists() else None
    if key is not None and key in _held:
        return path
    mark(path, kind)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        owner = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            pid = f" (process {owner})" if owner.isdigit() else ""
            raise ConfigError(
                f"{path}: another diversedistill command is using this directory{pid}; wait "
                "for it to end or choose another --out") from None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[_key(path)] = fd
    return path


def release(path: str | os.PathLike) -> None:
    fd = _held.pop(_key(Path(path)), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def holds(path: str | os.PathLike) -> bool:
    return Path(path).exists() and _key(Path(path)) in _held


@contextlib.contextmanager
def session() -> Iterator[None]:
    """A command: locks taken while it runs are held until it ends (so that the export
    after training is still under the lock)."""
    _sessions[0] += 1
    try:
        yield
    finally:
        _sessions[0] -= 1
        if not _sessions[0]:
            for key in list(_held):
                release(key)


@contextlib.contextmanager
def locked(path: str | os.PathLike, kind: str = "run") -> Iterator[Path]:
    """Hold the lock on ``path`` for the block (and, inside a :func:`session`, until it ends)."""
    already = holds(path)
    path = acquire(path, kind)
    try:
        yield path
    finally:
        if not already and not _sessions[0]:
            release(path)


def check_inputs_outside(out: Path, inputs: list[tuple[str, str | os.PathLike | None]]) -> None:
    """A fresh run clears ``out``: no input (teacher, data, config) may live inside it."""
    root = out.resolve()
    for what, where in inputs:
        if where is None:
            continue
        path = Path(where).resolve()
        if path == root or root in path.parents:
            raise ConfigError(f"{what} {where} lies inside --out {out}, which a fresh run "
                              "clears; move it out or choose another --out")


def previous_outputs(path: str | os.PathLike) -> list[str]:
    """The outputs of an earlier run in ``path`` that :func:`clear` would remove, by name."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(e.name + ("/" if e.is_dir() else "") for e in path.iterdir()
                  if e.name not in _KEEP)


def clear(path: str | os.PathLike) -> None:
    """Remove every output of a previous run from an owned directory (marker and lock stay)."""
    path = Path(path)
    if not is_owned(path):  # never reached through acquire(); a last guard
        raise ConfigError(f"{path}: not a diversedistill directory; nothing removed")
    for entry in path.iterdir():
        if entry.name in _KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
