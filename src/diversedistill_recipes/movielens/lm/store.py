"""On-disk array caches with a key and a checksum: tokens, lower-layer states, contexts.

A store is a directory of ``.npy`` files read memory-mapped (so a 4 GB cache costs page
cache, not process memory) plus ``store.json``, written last, that holds

- the **key**: everything the arrays depend on (model, texts, split, configuration);
- each array's shape and dtype, and a **checksum** over a fixed sample of its rows.

:func:`open_store` returns the arrays only when the key matches and the sample checksum
holds; otherwise the caller rebuilds. A store is built in a temporary directory and renamed
into place, so a run killed half-way leaves no store that looks complete. The sampled
checksum (every row would mean reading gigabytes at every start) catches truncated,
swapped and overwritten files, not a single flipped byte in an unsampled row.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from diversedistill.runs.atomic import write_text_atomic

META = "store.json"
SAMPLED_ROWS = 64


def stable_hash(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            digest.update(part)
        elif isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], bytes):
            digest.update(part[0].encode())
            digest.update(part[1])
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _checksum(array: np.ndarray) -> str:
    n = len(array)
    rows = np.unique(np.linspace(0, n - 1, min(n, SAMPLED_ROWS)).astype(np.int64)) if n else []
    digest = hashlib.sha256(str((array.shape, str(array.dtype))).encode())
    for r in rows:
        digest.update(np.ascontiguousarray(array[r]).tobytes())
    return digest.hexdigest()[:16]


def open_store(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of the store at ``path`` if it is complete and built for ``key``, else None."""
    meta_file = path / META
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        arrays = {}
        for name, info in meta["arrays"].items():
            array = np.load(path / f"{name}.npy", mmap_mode="r")
            if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"] \
                    or _checksum(array) != info["checksum"]:
                return None
            arrays[name] = array
        return arrays
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # truncated or unreadable: rebuild


def build_seconds(path: Path) -> float | None:
    """How long the store at ``path`` took to build, as recorded when it was built."""
    try:
        return float(json.loads((path / META).read_text(encoding="utf-8"))["build_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_store(path: Path, key: str, specs: dict[str, tuple[tuple[int, ...], str]],
                fill: Callable[[dict[str, np.ndarray]], None], info: dict | None = None
                ) -> dict[str, np.ndarray]:
    """Create arrays of the given (shape, dtype), let ``fill`` write them, then publish the
    store atomically; returns the published arrays, memory-mapped read-only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    started = time.perf_counter()
    try:
        arrays = {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype,
                                                  shape=shape)
                  for name, (shape, dtype) in specs.items()}
        fill(arrays)
        meta = {"key": key, "info": info or {}, "arrays": {},
                "build_seconds": time.perf_counter() - started}
        for name, array in arrays.items():
            array.flush()
            meta["arrays"][name] = {"shape": list(array.shape), "dtype": str(array.dtype),
                                    "checksum": _checksum(array)}
        del arrays
        write_text_atomic(tmp / META, json.dumps(meta, indent=2))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    opened = open_store(path, key)
    assert opened is not None, f"store {path} unreadable right after it was written"
    return opened


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
    """Row batches of similar token length, so each batch is trimmed to little padding."""
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield np.sort(order[start:start + batch_size])
