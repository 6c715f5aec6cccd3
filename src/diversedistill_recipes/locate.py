"""Find a MovieLens release on disk, or download the official GroupLens archive.

Resolution order: ``--data-dir``, then ``$DIVERSEDISTILL_DATA``, then the user cache
directory. The first one that is set is the only one used, so a typo in ``--data-dir``
fails loudly instead of silently reading another copy. Inside it, the release may be the
directory itself or its subdirectory named after the release (``ml-100k/``).
Only the cache directory is ever downloaded into.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import platformdirs

from diversedistill.errors import DataError
from diversedistill_recipes.movielens.releases import detect_layout, release_layout

ENV_VAR = "DIVERSEDISTILL_DATA"
GROUPLENS = "https://files.grouplens.org/datasets/movielens"
# md5 of the official archives that never change; the living releases (ml-latest-small)
# are checked against the .md5 file GroupLens publishes beside each archive.
KNOWN_MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
}
RELEASES = ("ml-100k", "ml-1m", "ml-10m", "ml-latest-small", "ml-25m", "ml-32m")
_ARCHIVE_DIR = {"ml-10m": "ml-10M100K"}  # the 10M archive unpacks under another name


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("diversedistill"))


def find_release(root: Path, release: str) -> Path | None:
    for candidate in (root, root / release, root / _ARCHIVE_DIR.get(release, release)):
        if candidate.is_dir() and detect_layout(candidate, release):
            return candidate
    return None


def data_root(data_dir: str | Path | None) -> tuple[Path, str]:
    """Where data sets are looked for, and what said so: ``--data-dir``, else
    ``$DIVERSEDISTILL_DATA``, else the user cache (the only place downloads go)."""
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    return cache_dir(), "the cache directory"


def locate_movielens(release: str = "ml-100k", data_dir: str | Path | None = None,
                     download: bool = True) -> Path:
    """Return the directory holding ``release``, downloading it into the cache if needed."""
    release_layout(release)  # a typo ('ml-100') is refused, never read as another release
    root, origin = data_root(data_dir)
    found = find_release(root, release)
    if found:
        return found
    if origin != "the cache directory" or not download:
        raise DataError(_missing_message(release, root, origin))
    try:
        _download(release, root)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise DataError(_missing_message(release, root, origin, err)) from None
    found = find_release(root, release)
    if not found:
        raise DataError(f"{root}: the downloaded {release} archive holds no ratings file")
    return found


def _missing_message(release: str, root: Path, origin: str, err: Exception | None = None) -> str:
    marker = "u.data, u.item and u.user" if release == "ml-100k" else (
        "ratings.dat, movies.dat and users.dat" if release == "ml-1m"
        else "ratings.csv and movies.csv")
    why = f" and could not be downloaded ({err})" if err else ""
    return (
        f"MovieLens {release} is not in {root} (from {origin}){why}. Download {release}.zip from "
        f"https://grouplens.org/datasets/movielens/, unzip it so that {root / release} holds "
        f"{marker}, then pass --data-dir {root} or set {ENV_VAR}."
    )


def _download(release: str, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    url = f"{GROUPLENS}/{release}.zip"
    expected = KNOWN_MD5.get(release)
    if expected is None:
        with urllib.request.urlopen(url + ".md5", timeout=30) as response:
            expected = response.read().decode().split()[0]
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / f"{release}.zip"
        with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
        digest = hashlib.md5(archive.read_bytes()).hexdigest()
        if digest != expected:
            raise OSError(f"checksum mismatch for {url}: md5 {digest}, expected {expected}")
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(Path(tmp) / "unpacked")
        for entry in (Path(tmp) / "unpacked").iterdir():
            target = root / entry.name
            if not target.exists():
                os.replace(entry, target)  # atomic: a killed download leaves no half release
