"""The user's history in a language model's text: built from the training split only, and
never holding the rating the text is asked to predict (movielens/history.py, movielens/text.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import write_ml1m, write_ml100k, write_ml_csv

from diversedistill.errors import ConfigError
from diversedistill_recipes.movielens.history import (
    HistoryConfig,
    build_histories,
    item_similarity,
    short_title,
)
from diversedistill_recipes.movielens.rating_recipes import history_reference
from diversedistill_recipes.movielens.releases import Ratings, load_movielens
from diversedistill_recipes.movielens.splits import make_split
from diversedistill_recipes.movielens.text import render_texts


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    ml = load_movielens(write_ml100k(tmp_path_factory.mktemp("history") / "ml-100k"))
    return ml, make_split(ml, "random", 0)


def texts_of(ml, split, ratings: Ratings | None = None, **history):
    """Texts of every rating of ``ml``, with the training ratings replaced by ``ratings``."""
    train = split.train if ratings is None else ratings
    return render_texts(ml, ml.ratings.user, ml.ratings.item, train=train,
                        history=HistoryConfig(**history))


def row_of(ml, part: Ratings, k: int) -> int:
    pairs = {(u, i): r for r, (u, i) in enumerate(zip(ml.ratings.user.tolist(),
                                                      ml.ratings.item.tolist()))}
    return pairs[(int(part.user[k]), int(part.item[k]))]


def test_a_training_rows_own_rating_never_reaches_its_text(data):
    ml, split = data
    before = texts_of(ml, split, k=5)
    for k in range(0, len(split.train), 37):
        changed = dataclasses.replace(split.train, rating=split.train.rating.copy())
        changed.rating[k] = 1.0 if changed.rating[k] >= 3 else 5.0
        after = texts_of(ml, split, changed, k=5)
        own = row_of(ml, split.train, k)
        assert after[own] == before[own], "a training text changed with its own rating"
        # the same rating does reach the texts of the user's other rows: the test can fail
        others = [r for r in range(len(ml.ratings)) if r != own
                  and ml.ratings.user[r] == split.train.user[k]]
        assert any(after[r] != before[r] for r in others)


def test_validation_and_test_ratings_reach_no_text(data):
    ml, split = data
    before = texts_of(ml, split, k=5)
    # every validation and test rating changed in the release itself: no text may move
    train_pairs = set(zip(split.train.user.tolist(), split.train.item.tolist()))
    held_out = np.array([pair not in train_pairs for pair in zip(ml.ratings.user.tolist(),
                                                                  ml.ratings.item.tolist())])
    flipped = np.where(held_out, 6 - ml.ratings.rating, ml.ratings.rating)
    changed = dataclasses.replace(ml, ratings=Ratings(ml.ratings.user, ml.ratings.item, flipped))
    assert held_out.any() and (flipped != ml.ratings.rating).any()
    assert texts_of(changed, split, k=5) == before
    # and what a val/test row shows is a training pair of its user, never its own movie
    for part in (split.val, split.test):
        h = build_histories(split.train, part.user, part.item, ml.n_items, 5)
        for u, i, picks in zip(part.user.tolist(), part.item.tolist(), h.picks.tolist()):
            assert i not in picks
            assert all((u, p) in train_pairs for p in picks if p >= 0)


def test_history_statistics_leave_the_row_out(data):
    ml, split = data
    tr = split.train
    h = build_histories(tr, tr.user, tr.item, ml.n_items, 3)
    for k in range(0, len(tr), 11):
        u, i = tr.user[k], tr.item[k]
        others = (tr.user == u) & (tr.item != i)
        assert h.count[k] == others.sum()
        assert h.mean[k] == pytest.approx(tr.rating[others].mean()) if others.any() \
            else np.isnan(h.mean[k])
        raters = (tr.item == i) & (tr.user != u)
        assert h.item_count[k] == raters.sum()
        if raters.any():
            assert h.item_mean[k] == pytest.approx(tr.rating[raters].mean())
        shown = h.picks[k][h.picks[k] >= 0]
        assert i not in shown and len(shown) == min(3, others.sum())
        stars = {int(j): r for j, r in zip(tr.item[tr.user == u], tr.rating[tr.user == u])}
        assert [stars[int(j)] for j in shown] == h.stars[k][:len(shown)].tolist()


def test_shown_titles_are_the_most_similar_items_the_user_rated(data):
    ml, split = data
    sims = item_similarity(split.train, ml.n_items)
    assert np.allclose(sims, sims.T) and np.all(np.diag(sims) == 0)
    h = build_histories(split.train, split.val.user, split.val.item, ml.n_items, 3)
    for k in range(len(split.val)):
        rated = split.train.item[split.train.user == split.val.user[k]]
        shown = h.picks[k][h.picks[k] >= 0]
        best = np.sort(sims[split.val.item[k], rated])[::-1][:len(shown)]
        assert np.allclose(sims[split.val.item[k], shown], best)


def test_the_history_is_a_template_field_like_the_others(data):
    ml, split = data
    text = texts_of(ml, split)[0]
    assert text.startswith("user: ") and " rated: " in text and " mean " in text
    mine = render_texts(ml, ml.ratings.user[:1], ml.ratings.item[:1], "{title}: {user_mean}",
                        train=split.train)[0]
    assert mine.startswith(ml.titles[ml.ratings.item[0]])
    with pytest.raises(ConfigError, match=r"\{history\} needs the user's history"):
        render_texts(ml, ml.ratings.user, ml.ratings.item, "{title} {history}")
    assert "rated:" not in render_texts(ml, ml.ratings.user[:1], ml.ratings.item[:1])[0]


def test_releases_without_demographics_get_a_history_too(tmp_path):
    ml = load_movielens(write_ml_csv(tmp_path / "ml-latest-small"))
    everything = Ratings(ml.ratings.user, ml.ratings.item, ml.ratings.rating)
    texts = render_texts(ml, ml.ratings.user, ml.ratings.item, train=everything)
    # user 1 rated Toy Story 4 and Heat 4.5: each text shows the other one, never its own
    assert texts[0] == ("user: mean 4.5 of 1. movie: Toy Story (1995), Adventure, Comedy, "
                        "mean 0.5 of 1. rated: 4.5 Heat.")
    assert texts[1].endswith("rated: 4 Toy Story.")
    ml1m = load_movielens(write_ml1m(tmp_path / "ml-1m"))
    assert render_texts(ml1m, ml1m.ratings.user, ml1m.ratings.item,
                        train=ml1m.ratings)[0].startswith("user: 1 female ")


def test_short_titles_drop_years_aliases_and_moved_articles():
    assert short_title("Godfather: Part II, The (1974)", 4) == "Godfather: Part II"
    assert (short_title("Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)", 4)
            == "Shanghai Triad")
    assert (short_title("Dr. Strangelove or: How I Learned to Stop (1963)", 3)
            == "Dr. Strangelove or:")


def test_bad_history_settings_are_refused():
    with pytest.raises(ConfigError, match="history k"):
        HistoryConfig(k=-1)
    with pytest.raises(ConfigError, match="title_words"):
        HistoryConfig(title_words=0)


def test_the_history_reference_is_fitted_on_validation(data):
    from diversedistill_recipes.movielens.rating_recipes import fit_biases

    ml, split = data
    ref = history_reference(split, ml.n_users, ml.n_items, ml.rating_scale)
    biases = fit_biases(split.train, ml.n_users, ml.n_items)(split.val.user, split.val.item)
    biases_val = np.mean((split.val.rating - np.clip(biases, *ml.rating_scale)) ** 2)
    # the biases are one of its features, and its weights are fitted on validation
    assert ref["val"] <= biases_val + 1e-6 and np.isfinite(ref["test"])
    # the rows a run prints: the history reference only beside an LM that reads histories
    from diversedistill_recipes.movielens.rating_recipes import HISTORY_REFERENCE, references

    assert HISTORY_REFERENCE not in references(ml, split)
    assert references(ml, split, 3)[HISTORY_REFERENCE] == (ref["val"], ref["test"])


def test_a_release_too_large_for_the_similarity_is_refused_with_the_way_out(data, monkeypatch):
    import diversedistill_recipes.movielens.history as history

    ml, split = data
    monkeypatch.setattr(history, "MAX_ITEMS_FOR_SIMILARITY", ml.n_items - 1)
    with pytest.raises(ConfigError, match="set history_k to 0"):
        build_histories(split.train, split.val.user, split.val.item, ml.n_items, 3)
    means_only = build_histories(split.train, split.val.user, split.val.item, ml.n_items, 0)
    assert means_only.picks.shape == (len(split.val), 0) and (means_only.count > 0).any()


def test_the_similarity_is_the_same_whatever_the_block_size(data):
    ml, split = data
    np.testing.assert_array_equal(item_similarity(split.train, ml.n_items, block=7),
                                  item_similarity(split.train, ml.n_items, block=512))
