"""Teacher cache and exports: keyed, checksummed, rebuilt (and said so) when stale or corrupt."""

from __future__ import annotations

import json

import pytest

import diversedistill_recipes.movielens.rating_recipes as recsys
from diversedistill.errors import ModelError
from diversedistill.export import export_model, load_model
from diversedistill.training import FitResult
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split

RECIPE = recsys.RecommenderRecipe("mlp-s", {"hidden": [8], "embedding_dim": 4})


@pytest.fixture
def cache(ml100k_dir, tmp_path, monkeypatch):
    """train_or_load_teacher with training replaced by a stub that counts its calls."""
    ml = load_movielens(ml100k_dir)
    split = make_split(ml, "random", 0)
    trained, messages = [], []

    def fake_train(ml, split, model, recipe, seed, run_dir, progress=False):
        trained.append(run_dir)
        return FitResult(1.0, 1.1, 0.0, 1, 0, run_dir)

    monkeypatch.setattr(recsys, "train_alone", fake_train)

    def get():
        return recsys.train_or_load_teacher(ml, split, "t", RECIPE, 0, tmp_path / "cache",
                                            log=messages.append)
    return get, trained, messages


def test_cache_entry_is_reused_only_while_key_and_checksum_match(cache, tmp_path):
    get, trained, messages = cache
    _, metrics, from_cache = get()
    assert (from_cache, len(trained)) == (False, 1) and metrics["test_mse"] == 1.1
    assert get()[2] is True and len(trained) == 1 and not messages

    entry = next((tmp_path / "cache").iterdir())
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a weight: safetensors itself would not notice
    weights.write_bytes(bytes(data))
    assert get()[2] is False and len(trained) == 2
    assert "checksum differs" in messages[-1] and str(weights) in messages[-1]

    config = json.loads((entry / "config.json").read_text())
    config["cache_key"] = "0" * 16  # an entry written under another key
    (entry / "config.json").write_text(json.dumps(config))
    assert get()[2] is False and len(trained) == 3 and "is not" in messages[-1]

    (entry / "config.json").write_text('{"format": ')  # a torn config
    assert get()[2] is False and len(trained) == 4 and "invalid JSON" in messages[-1]
    assert get()[2] is True and len(trained) == 4  # rebuilt, and good again


def test_export_refuses_weights_that_do_not_match_their_checksum(tmp_path):
    from tiny import tiny_recommender

    export_model(tiny_recommender(), tmp_path / "m")
    load_model(tmp_path / "m")
    export_model(tiny_recommender(seed=1), tmp_path / "other")
    (tmp_path / "m" / "model.safetensors").write_bytes(
        (tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(ModelError, match=r"m/model.safetensors: checksum differs"):
        load_model(tmp_path / "m")


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
    import os
    import stat

    from diversedistill.runs.atomic import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "results.csv", "a,b\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.csv").stat().st_mode) == 0o644  # not mkstemp's 0600
