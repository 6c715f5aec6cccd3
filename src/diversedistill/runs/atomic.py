"""Atomic file writes: write to a temporary file beside the target, then rename.

A run killed half-way never leaves a half-written result, checkpoint or cache behind:
readers see either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed onto ``target``. In a directory the
    tool owns (:mod:`diversedistill.runs.rundir`), a file it did not write is never replaced, and
    what it writes is recorded in the directory's marker."""
    from diversedistill.runs import rundir  # rundir never writes through here: no cycle

    target = Path(target)
    rundir.check_may_write(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        os.chmod(tmp_path, 0o666 & ~_umask())
        _flush_to_disk(tmp_path)  # a rename can reach the disk before the data it names
        os.replace(tmp_path, target)
        rundir.claim(target)
    except OSError as err:  # a write error names no file: name the one being written
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror or str(err), str(target)) from err
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set, then put it back
    os.umask(mask)
    return mask


def _flush_to_disk(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
