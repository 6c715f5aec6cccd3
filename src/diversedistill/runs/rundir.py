"""Directories the tool owns: it deletes or overwrites only inside them.

A directory becomes the tool's when a command writes its first file there; the command
then leaves a marker file, ``.diversedistill``, in it. Later commands may clear or
overwrite that directory's contents; a directory without the marker is used only when it
is new or empty. So ``--out ''``, ``--out ~``, or a directory of the user's own files is
refused before anything is touched.

The marker also lists, by name, the entries the tool wrote there (``"wrote"``): every
atomic write (:mod:`diversedistill.runs.atomic`) records its top-level name in the nearest
owned directory above it, and refuses to replace a file that directory's marker does not
list. Clearing removes only the listed entries and refuses, naming them, when anything
else is present: a user's notes, a ``.git/`` or a ``src/`` beside a copied marker are never
deleted. A marker written before these lists existed is read as listing the names earlier
versions wrote (:data:`LEGACY_OUTPUTS`).

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
ASIDE = ".diversedistill.previous"  # a replaced run's outputs, until the new run has started
_KEEP = (MARKER, LOCK, ASIDE)
# what versions before the marker's list wrote at the top of their directories: a run
# (distill, a reproduction's runs/), an export, a results directory, a report
LEGACY_OUTPUTS = frozenset({
    "checkpoints", "logs", "student", "served", "run", "run.json", "result.json",
    "importance.csv", "tensorboard", "model.safetensors", "config.json", "results.csv",
    "summary.csv", "search.csv", "sweep.csv", "runs", "report", "search", "raw.md",
    "raw.csv", "claims.md", "search.md", "comparison.md", "comparison.csv", "teachers",
    "suite.md", "suite.csv", "report.md", *(f"table{n}.{e}" for n in range(1, 8)
                                           for e in ("md", "csv")),
    *(f"{p}.png" for p in ("gap_recovered", "test_metric", "learning_curves", "importance",
                           "diagnostics", "sweep"))})

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


KINDS = {"run": "a run", "teacher": "a trained teacher", "model": "a run's student",
         "export": "an exported model", "results": "a results directory",
         "report": "a report"}


def _marker(path: Path) -> dict | None:
    try:
        found = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def kind_of(path: Path) -> str | None:
    """What the marker says the directory holds (a key of :data:`KINDS`); None without a
    readable marker. A model directory of an older version that holds a ``run/`` was
    written by train-teacher: a teacher."""
    marker = _marker(path) or {}
    found = marker.get("kind")
    if found == "model" and "wrote" not in marker and (path / "run").is_dir():
        return "teacher"
    return found if isinstance(found, str) else None


def listed(path: Path) -> frozenset[str]:
    """The names of the entries the tool wrote in the owned directory ``path``."""
    marker = _marker(path) or {}
    wrote = marker.get("wrote")
    if not isinstance(wrote, list):
        return LEGACY_OUTPUTS
    return frozenset(str(n) for n in wrote)


def owner_of(target: Path) -> tuple[Path, str] | None:
    """The nearest owned directory above ``target`` and the name of the entry under it
    that holds ``target``; None when no directory above is the tool's."""
    target = Path(os.path.abspath(target))
    for parent in target.parents:
        if is_owned(parent):
            return parent, target.relative_to(parent).parts[0]
    return None


def check_may_write(target: str | os.PathLike) -> None:
    """Refuse to replace an existing file in an owned directory that the tool did not write
    there (nothing is written); a path in no owned directory is the caller's to choose."""
    target = Path(target)
    found = owner_of(target)
    if found is None or not os.path.lexists(target):
        return
    owner, name = found
    if name not in _KEEP and name not in listed(owner):
        raise ConfigError(f"{target}: not written by diversedistill (the marker of {owner} "
                          "does not list it); refusing to overwrite it. Move it away or choose "
                          "another directory")


def claim(target: str | os.PathLike) -> None:
    """Record ``target``'s top-level name in the marker of the owned directory above it."""
    found = owner_of(Path(target))
    if found is not None:
        claim_names(*found)


def claim_names(owner: str | os.PathLike, *names: str) -> None:
    """Add ``names`` (entries directly in the owned directory ``owner``) to its marker's
    list; other processes may claim in the same directory at once (a reproduction's
    workers), so the update is made under a lock on the directory itself."""
    owner = Path(owner)
    if not is_owned(owner):
        return
    have = listed(owner)
    wanted = {n for n in names if n not in _KEEP} - have
    if not wanted:
        return
    fd = os.open(owner, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        marker = _marker(owner) or {"written_by": "diversedistill"}
        marker["wrote"] = sorted(listed(owner) | wanted)
        _write_marker(owner, marker)
    finally:
        os.close(fd)  # drops the flock


def _write_marker(path: Path, marker: dict) -> None:
    """The marker, replaced whole (never through atomic.py: that claims names here)."""
    tmp = path / f"{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(marker) + "\n", encoding="utf-8")
    os.replace(tmp, path / MARKER)


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
            held = KINDS.get(found or "", "something else")
            raise ConfigError(f"{path}: holds {held}, not {KINDS.get(kind, kind)}; refusing "
                              f"to overwrite it. Choose another {what}")
        return path
    if not path.exists() or _written_by_owner(path):
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


def _written_by_owner(path: Path) -> bool:
    """A folder the tool wrote inside a directory it owns (a results directory's
    ``report/``), though it carries no marker of its own."""
    found = owner_of(path)
    return found is not None and found[1] in listed(found[0])


def own(path: str | os.PathLike, kind: str, what: str = "--out") -> Path:
    """:func:`check_owned`, then :func:`mark`: the directory is the tool's from now on."""
    return mark(check_owned(path, what, kind), kind)


def adopt(path: str | os.PathLike, kind: str) -> None:
    """Mark a directory an older version wrote without a marker (or with another kind's),
    recognised by the caller from what it holds; its marker lists what older versions
    wrote (:data:`LEGACY_OUTPUTS`)."""
    path = Path(path)
    marker = {k: v for k, v in (_marker(path) or {"written_by": "diversedistill"}).items()
              if k != "wrote"}
    _write_marker(path, {**marker, "kind": kind})


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
    """Create ``path`` if needed and leave the marker that makes it the tool's (listing
    nothing yet); an owned directory above it records ``path`` as written by the tool."""
    path = Path(path)
    new = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    if new:
        claim(path)
    if not is_owned(path):
        _write_marker(path, {"written_by": "diversedistill", "kind": kind, "wrote": []})
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
    try:  # never through a link: a symlinked lock would truncate the file it points at
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ConfigError(f"{path / LOCK}: is a symbolic link; refusing to follow it. "
                              "Remove it") from None
        raise
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
    return sorted(e.name + ("/" if e.is_dir() else "") for e in _ours(path))


def _ours(path: Path) -> list[Path]:
    """The entries of ``path`` the tool wrote: those its marker lists, and the temporary
    files of a write a kill cut short (atomic.py names them ``.<name>.<random>.tmp``)."""
    names = listed(path)
    return [e for e in path.iterdir() if e.name not in _KEEP
            and (e.name in names or (e.name.startswith(".") and e.name.endswith(".tmp")))]


def _foreign(path: Path) -> list[str]:
    """Entries of ``path`` the tool did not write; an empty directory holds nothing to lose
    (Lightning makes ``checkpoints/`` before its first file)."""
    ours = {e.name for e in _ours(path)}
    return sorted(e.name + ("/" if e.is_dir() else "") for e in path.iterdir()
                  if e.name not in _KEEP and e.name not in ours
                  and not (e.is_dir() and not e.is_symlink() and not any(e.iterdir())))


def check_clearable(path: str | os.PathLike) -> None:
    """Refuse (writing nothing) when clearing ``path`` would have to delete what the tool
    did not write there."""
    path = Path(path)
    if not path.is_dir():
        return
    foreign = _foreign(path)
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4
                                          else "")
        raise ConfigError(f"{path}: holds {shown}, which diversedistill did not write (its "
                          f"{MARKER} does not list them); a fresh run would clear the "
                          "directory, so nothing was touched. Move them away or choose "
                          "another directory")


def set_aside(path: str | os.PathLike) -> Path | None:
    """Move the outputs of a previous run into ``path/.diversedistill.previous`` (refused,
    with nothing moved, when anything the tool did not write is there): the new run starts
    from nothing, and a run that fails before its first checkpoint puts them back
    (:func:`restore`). None when there was nothing to set aside."""
    path = Path(path)
    if not is_owned(path):  # never reached through acquire(); a last guard
        raise ConfigError(f"{path}: not a diversedistill directory; nothing removed")
    check_clearable(path)
    aside = path / ASIDE
    if aside.exists():  # a run killed before it could put them back or drop them: stale
        shutil.rmtree(aside)
    entries = [e for e in path.iterdir() if e.name not in _KEEP]
    if not entries:
        return None
    aside.mkdir()
    for entry in entries:
        os.replace(entry, aside / entry.name)
    (aside / MARKER).write_text(json.dumps({"wrote": sorted(listed(path))}), encoding="utf-8")
    _write_marker(path, {**(_marker(path) or {}), "wrote": []})
    return aside


def restore(path: str | os.PathLike, aside: Path) -> None:
    """Put a previous run's outputs back (see :func:`set_aside`); what the failed run wrote
    is removed first."""
    path = Path(path)
    wrote = json.loads((aside / MARKER).read_text(encoding="utf-8"))["wrote"]
    clear(path)
    for entry in aside.iterdir():
        if entry.name != MARKER:
            os.replace(entry, path / entry.name)
    shutil.rmtree(aside)
    _write_marker(path, {**(_marker(path) or {}), "wrote": wrote})


def discard(aside: Path | None) -> None:
    """Drop a previous run's outputs once the new run has its own checkpoint."""
    if aside is not None and aside.exists():
        shutil.rmtree(aside)


def clear(path: str | os.PathLike) -> None:
    """Remove the outputs of a previous run from an owned directory: only what its marker
    lists (marker and lock stay); refused, with nothing removed, when anything else is
    there."""
    path = Path(path)
    if not is_owned(path):  # never reached through acquire(); a last guard
        raise ConfigError(f"{path}: not a diversedistill directory; nothing removed")
    check_clearable(path)
    for entry in path.iterdir():
        if entry.name in _KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    _write_marker(path, {**(_marker(path) or {}), "wrote": []})
