"""The comparison tables (issue 5): the own-pass cache."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import write_ml100k
from tiny_lm import tiny_bert_dir
from diversedistill.cached_teacher import CachedOwnPass
from diversedistill.committee import Committee
from diversedistill.data import load_movielens, make_split, rating_loader
from diversedistill.errors import ModelError
from diversedistill.interface import take_rows
from diversedistill.lm.prepare import LMConfig, prepare_language_teacher
from diversedistill.methods import LD, DiverseDistill, DiverseDistillConfig
from diversedistill.methods.common import own_answers
from diversedistill.recsys import STUDENT, as_student, as_teacher, build
from diversedistill.training import TrainConfig, fit

# ----------------------------------------------------------------------------- own-pass cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    ml = load_movielens(write_ml100k(root / "ml-100k"))
    return {"root": root, "ml": ml, "split": make_split(ml, "random", 0)}


def batches(tiny, seed, n=64):
    return list(rating_loader(tiny["split"].train, tiny["ml"], n, shuffle=True, seed=seed))


def mlp_teacher(tiny, name="mlp", seed=1):
    return as_teacher(name, build(tiny["ml"], tiny["split"], STUDENT, seed), mode="add")


def test_cached_own_pass_equals_the_uncached_one_across_epochs_and_batchings(tiny):
    plain = mlp_teacher(tiny)
    cached = CachedOwnPass(mlp_teacher(tiny))
    Committee([plain])  # frozen: eval mode
    Committee([cached])
    epoch_1, epoch_2 = batches(tiny, 0), batches(tiny, 1, n=48)  # new order, new batch size
    for batch in epoch_1:
        first, want = cached.answer(None, cached.context(batch)), plain.answer(None, batch)
        assert torch.equal(first.hidden, want.hidden)  # computed on this very batch
        assert torch.equal(first.prediction, want.prediction)
    rows = sum(len(b["target"]) for b in epoch_1)
    assert cached.misses == cached.rows_stored == rows and cached.hits == 0
    for batch in epoch_2:
        got, want = cached.answer(None, cached.context(batch)), plain.answer(None, batch)
        torch.testing.assert_close(got.hidden, want.hidden)
        torch.testing.assert_close(got.prediction, want.prediction)
    assert cached.misses == rows and cached.hits == rows  # the second epoch: no teacher pass


def test_questions_go_to_the_teacher_and_gating_selects_rows_as_before(tiny):
    plain, cached = mlp_teacher(tiny), CachedOwnPass(mlp_teacher(tiny))
    Committee([plain])
    Committee([cached])
    batch = batches(tiny, 0)[0]
    cached.probe(batch)
    plain.probe(batch)
    assert (cached.question_width, cached.answer_width) == (plain.question_width,
                                                            plain.answer_width)
    rows = torch.tensor([3, 0, 7])
    question = torch.randn(3, plain.question_width)
    got = cached.answer(question, take_rows(cached.context(batch), rows))
    want = plain.answer(question, take_rows(plain.context(batch), rows))
    assert torch.equal(got.hidden, want.hidden) and cached.hits == cached.misses == 0
    # the own pass of a gathered sub-batch, as a gated method would ask it
    own = cached.answer(None, take_rows(cached.context(batch), rows))
    assert torch.equal(own.prediction, plain.answer(None, take_rows(batch, rows)).prediction)


def test_a_teacher_in_training_mode_is_never_cached(tiny):
    cached = CachedOwnPass(mlp_teacher(tiny))
    cached.inner.model.train()
    cached.answer(None, cached.context(batches(tiny, 0)[0]))
    assert cached.rows_stored == 0


def test_methods_train_the_same_with_and_without_the_cache(tiny, tmp_path):
    """Two epochs of LD (own passes) and DiverseDistill (questions, gated rows): the same
    students either way."""
    ml, split = tiny["ml"], tiny["split"]
    for make in (LD, lambda: DiverseDistill(DiverseDistillConfig(hidden=8, tau=0.5))):
        results = []
        for wrap in (lambda t: t, CachedOwnPass):
            committee = Committee([wrap(mlp_teacher(tiny, "m", 1)),
                                   wrap(mlp_teacher(tiny, "l", 2))])
            student = build(ml, split, STUDENT, 0)
            train = rating_loader(split.train, ml, 64, shuffle=True, seed=0)
            val = rating_loader(split.val, ml, 256, shuffle=False)
            fit(as_student(student), make(), committee, train, val, None,
                TrainConfig(max_epochs=2, batch_size=64, progress=False), tmp_path / "run")
            results.append(torch.cat([p.flatten() for p in student.parameters()]))
        torch.testing.assert_close(results[0], results[1])


def test_cached_own_pass_of_the_language_model_equals_the_uncached_one(tiny, tmp_path):
    lm, _ = prepare_language_teacher(
        tiny["ml"], tiny["split"],
        LMConfig(model=str(tiny_bert_dir(tmp_path / "bert")), epochs=1, cache_dtype="float32"),
        tmp_path / "cache", progress=False, log=lambda *_: None)
    cached = CachedOwnPass(lm)
    Committee([cached])
    committee = Committee([lm])
    for seed in (0, 1):  # fill, then read back in another order
        for batch in batches(tiny, seed, n=40):
            (want,) = own_answers(committee, batch)
            got = cached.answer(None, cached.context(batch))
            torch.testing.assert_close(got.hidden, want.hidden)
            torch.testing.assert_close(got.prediction, want.prediction)
    assert cached.hits == cached.misses > 0


def test_a_batch_without_row_keys_is_one_clear_error():
    cached = CachedOwnPass(SimpleNamespace(name="t"))
    with pytest.raises(ModelError, match="identifies rows by .'user', 'item'.*no 'user'"):
        cached.context({"x": torch.zeros(2)})
