"""Shared fixtures: small generated MovieLens releases in every official layout, and tiny
recommenders built in-process. Nothing here downloads anything."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# One thread per test process. The models here are tiny, and on a busy 2-core machine (CI,
# or the DDP test's two processes) a second OpenMP thread mostly spins: 20x slower runs.
# Subprocesses inherit it through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

OCCUPATIONS = ["artist", "doctor", "engineer", "other", "student"]
GENRES = ["unknown", "Action", "Comedy", "Drama"]


def write_ml100k(root: Path, n_users=30, n_items=40, n_ratings=600, seed=0) -> Path:
    """A tiny ML-100K-layout directory with learnable structure (user + item effects)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pairs = rng.choice(n_users * n_items, size=n_ratings, replace=False)
    users, items = pairs // n_items + 1, pairs % n_items + 1
    u_eff, i_eff = rng.normal(0, 0.8, n_users + 1), rng.normal(0, 0.8, n_items + 1)
    ratings = np.clip(
        np.round(3.5 + u_eff[users] + i_eff[items] + rng.normal(0, 0.3, n_ratings)), 1, 5)
    lines = [f"{u}\t{i}\t{int(r)}\t{880000000 + k}"
             for k, (u, i, r) in enumerate(zip(users, items, ratings))]
    (root / "u.data").write_text("\n".join(lines) + "\n")
    half = len(lines) // 2
    (root / "u1.base").write_text("\n".join(lines[:half]) + "\n")
    (root / "u1.test").write_text("\n".join(lines[half:]) + "\n")
    item_lines = []
    for i in range(1, n_items + 1):
        flags = ["1" if (i + g) % 3 == 0 else "0" for g in range(len(GENRES))]
        item_lines.append(f"{i}|Movie {i} ({1950 + i % 40})|01-Jan-1995||http://x|"
                          + "|".join(flags))
    (root / "u.item").write_text("\n".join(item_lines) + "\n", encoding="latin-1")
    user_lines = [f"{u}|{15 + u % 50}|{'MF'[u % 2]}|{OCCUPATIONS[u % 5]}|{10000 + 997 * u}"
                  for u in range(1, n_users + 1)]
    (root / "u.user").write_text("\n".join(user_lines) + "\n")
    (root / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)))
    return root


def write_ml1m(root: Path, with_users: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978302109\n"
                                      "2::10::4::978301968\n3::30::2::978300275\n")
    (root / "movies.dat").write_text("10::Toy Story (1995)::Animation|Children's|Comedy\n"
                                     "20::Heat (1995)::Action|Crime|Thriller\n"
                                     "30::Sabrina (1995)::Comedy|Romance\n", encoding="latin-1")
    if with_users:
        (root / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n"
                                        "3::M::25::15::55117\n")
    return root


def write_ml_csv(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
                                      "1,3,4.5,964981247\n2,1,0.5,964982224\n3,2,3.5,964983815\n")
    (root / "movies.csv").write_text('movieId,title,genres\n1,Toy Story (1995),Adventure|Comedy\n'
                                     '2,"American President, The (1995)",Comedy|Drama\n'
                                     "3,Heat (1995),(no genres listed)\n")
    return root


@pytest.fixture
def ml100k_dir(tmp_path) -> Path:
    return write_ml100k(tmp_path / "ml-100k")


@pytest.fixture
def shared_ml100k() -> Path:
    """The real ML-100K from $DIVERSEDISTILL_DATA, or a clean skip."""
    root = os.environ.get("DIVERSEDISTILL_DATA")
    path = Path(root) / "ml-100k" if root else None
    if not path or not (path / "u.data").is_file():
        pytest.skip("real MovieLens-100K not found in $DIVERSEDISTILL_DATA")
    return path


def write_tiny_committee(root: Path) -> tuple[Path, list[Path]]:
    """A tiny ML-100K directory and two small exported (untrained) MLP teachers of different
    widths: enough to exercise a whole ``distill`` run in seconds."""
    import torch

    from diversedistill.export import export_model
    from diversedistill_recipes.movielens.batches import global_mean
    from diversedistill_recipes.movielens.provenance import data_record
    from diversedistill_recipes.movielens.recommender import build_recommender
    from diversedistill_recipes.movielens.releases import load_movielens
    from diversedistill_recipes.movielens.splits import make_split

    data = write_ml100k(root / "ml-100k")
    ml = load_movielens(data)
    split = make_split(ml, "random", 0)
    mean = global_mean(split.train)
    # what `train-teacher` records: the release, data and split it was trained on
    record = data_record(ml, split, "ml-100k", "random", 0)
    teachers = []
    for i, name in enumerate(("ta", "tb")):
        torch.manual_seed(i + 1)
        model = build_recommender(ml.fields, "mlp-s", mean, hidden=[32, 16 + 8 * i],
                                  embedding_dim=8)
        teachers.append(export_model(model, root / name, {"data": record}))
    return data, teachers


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that must import this checkout's source."""
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


CLI_CHILD = Path(__file__).resolve().parent / "cli_child.py"


def start_paused_child(args: list[str], marker: Path, **env: str) -> subprocess.Popen:
    """The CLI in a child process (cli_child.py), returned once it has paused where ``env``
    asks (it writes ``marker`` then); its output goes to ``marker``.log."""
    log = marker.with_suffix(".log")
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(CLI_CHILD), *args], stdout=out,
                                stderr=subprocess.STDOUT,
                                env=child_env(DD_TEST_MARKER=str(marker), **env))
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended before pausing:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never reached the pause")
        time.sleep(0.05)
    return proc


def distill_command(committee: tuple[Path, list[Path]], out: Path, *extra: str) -> list[str]:
    """``diversedistill distill`` arguments for a tiny committee from write_tiny_committee."""
    data, teachers = committee
    return ["distill", *(a for t in teachers for a in ("--teacher", str(t))),
            "--data-dir", str(data), "--out", str(out), *extra]
