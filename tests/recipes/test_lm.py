"""Language-model teachers: text features, question injection, context caching, safety.

Every model here is a tiny BERT or T5 built in-process and saved to a temporary
directory, so the real ``from_pretrained`` path runs offline.
"""

from __future__ import annotations

import pytest
import torch
from conftest import write_ml1m, write_ml100k, write_ml_csv
from tiny_lm import tiny_bert_dir, tiny_t5_dir

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError, ModelError
from diversedistill.methods import DiverseDistill, DiverseDistillConfig
from diversedistill.training import TrainConfig, fit
from diversedistill_recipes.movielens.batches import rating_loader
from diversedistill_recipes.movielens.lm.prepare import LMConfig, prepare_language_teacher
from diversedistill_recipes.movielens.lm.raters import EncoderRater, load_rater
from diversedistill_recipes.movielens.lm.store import open_store
from diversedistill_recipes.movielens.rating_recipes import STUDENT, as_student, as_teacher, build
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split
from diversedistill_recipes.movielens.text import render_texts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    ml = load_movielens(write_ml100k(root / "ml-100k"))
    return {"root": root, "ml": ml, "split": make_split(ml, "random", 0),
            "bert": tiny_bert_dir(root / "bert"), "t5": tiny_t5_dir(root / "t5")}


def prepared(tiny, cache, **changes):
    cfg = LMConfig(model=str(tiny["bert"]), epochs=1, cache_dtype="float32", **changes)
    return prepare_language_teacher(tiny["ml"], tiny["split"], cfg, cache, progress=False,
                                    log=lambda *_: None)


def a_batch(tiny, n=16):
    return next(iter(rating_loader(tiny["split"].train, tiny["ml"], n, shuffle=True)))


# ----------------------------------------------------------------------------- text


def test_texts_follow_the_template_of_kang_et_al(tiny):
    ml = tiny["ml"]
    text = render_texts(ml, ml.ratings.user[:1], ml.ratings.item[:1])[0]
    user, item = ml.user_ids[ml.ratings.user[0]], ml.item_ids[ml.ratings.item[0]]
    age = ml.user_info["age"][ml.ratings.user[0]]
    assert text.startswith(f"user u-{user}, a {age}-year-old ")
    assert f"Movie m-{item}: {ml.titles[ml.ratings.item[0]]}" in text


def test_releases_without_demographics_get_a_template_without_them(tmp_path):
    ml = load_movielens(write_ml_csv(tmp_path / "ml-latest-small"))
    texts = render_texts(ml, ml.ratings.user, ml.ratings.item)
    assert texts[0] == "user u-1. Movie m-1: Toy Story (1995), Adventure, Comedy."
    with pytest.raises(ConfigError, match=r"\{age\}.*no demographics"):
        render_texts(ml, ml.ratings.user, ml.ratings.item, "user {user_id} aged {age}")
    ml1m = load_movielens(write_ml1m(tmp_path / "ml-1m"))
    assert "-year-old female" in render_texts(ml1m, ml1m.ratings.user, ml1m.ratings.item)[0]


def test_a_template_naming_an_unknown_field_is_refused(tiny):
    ml = tiny["ml"]
    with pytest.raises(ConfigError, match=r"unknown field \{director\}.*available fields"):
        render_texts(ml, ml.ratings.user, ml.ratings.item, "{title} by {director}")


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("mode", ["token", "full"])
def test_own_state_as_question_reproduces_the_model_and_a_question_changes_it(tiny, mode,
                                                                              pooling):
    rater, tokenizer = load_rater(tiny["bert"], 3.5, (1, 5), inject=1, question_mode=mode,
                                  pooling=pooling)
    rater.eval()
    enc = tokenizer(["user u-1. movie m-2", "a much longer text about a movie"], padding=True,
                    return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        last = rater.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        # what the model computes without any question: its [CLS] or its masked token mean
        reference = last[:, 0] if pooling == "cls" else \
            (last * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        context = rater.context(rater.lower(ids, mask, 0), mask, 0)
        own = rater.answer(None, context)
        question = torch.randn(2, rater.width)
        asked = rater.answer(question, context)
    torch.testing.assert_close(own, reference, rtol=0, atol=1e-5)
    assert (asked - reference).abs().max() > 1e-2  # the question reached the injection point


def test_add_injection_with_a_zero_question_is_the_teacher_as_trained(tiny):
    rater, tokenizer = load_rater(tiny["bert"], 3.5, (1, 5), injection="add")
    enc = tokenizer(["user u-1. movie m-2"], return_tensors="pt")
    with torch.no_grad():
        context = rater.eval().context(rater.lower(enc["input_ids"], enc["attention_mask"], 0),
                                       enc["attention_mask"], 0)
        torch.testing.assert_close(rater.answer(torch.zeros(1, rater.width), context),
                                   rater.answer(None, context))


@pytest.mark.parametrize("mode", ["token", "full"])
def test_a_zero_question_added_leaves_every_language_teacher_as_trained(tiny, mode):
    # the default injection is "add": DiverseDistill's zero-initialized first question
    # must give every teacher its own answer, bit for bit
    for name in ("bert", "t5"):
        rater, tokenizer = load_rater(tiny[name], 3.5, (1, 5), **({"question_mode": mode}
                                                                   if name == "bert" else {}))
        assert rater.injection == "add"
        enc = tokenizer(["user u-1. movie m-2", "a longer text about a movie"], padding=True,
                        return_tensors="pt")
        with torch.no_grad():
            rater.eval()
            context = rater.context(rater.lower(enc["input_ids"], enc["attention_mask"], 0),
                                    enc["attention_mask"], 0)
            torch.testing.assert_close(rater.answer(torch.zeros(2, rater.width), context),
                                       rater.answer(None, context), rtol=0, atol=0)


def test_t5_question_replaces_the_decoder_state_and_changes_the_rating(tiny):
    rater, tokenizer = load_rater(tiny["t5"], 3.5, (1, 5), injection="replace")
    rater.eval()
    enc = tokenizer(["user u-1. movie m-2", "user u-3. movie m-4"], padding=True,
                    return_tensors="pt")
    seen = {}
    rater.model.decoder.block[1].register_forward_pre_hook(
        lambda _m, args: seen.__setitem__("input", args[0]))
    with torch.no_grad():
        context = rater.context(rater.lower(enc["input_ids"], enc["attention_mask"]),
                                enc["attention_mask"])
        own = rater.answer(None, context)
        question = torch.randn(2, rater.width) * 5
        asked = rater.answer(question, context)
    torch.testing.assert_close(seen["input"][:, 0], question)  # the state after block 0
    assert (asked - own).abs().max() > 1e-3
    rating = rater.read(asked)
    assert ((rating >= 1) & (rating <= 5)).all()  # an expected value over "1".."5"


def test_unsupported_architectures_and_missing_models_are_one_clear_error(tmp_path):
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=30)).save_pretrained(
        tmp_path / "gpt2")
    (tmp_path / "gpt2" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    with pytest.raises(ModelError, match="cannot load|supported"):
        load_rater(tmp_path / "gpt2", 3.5, (1, 5))
    with pytest.raises(ModelError, match="cannot load its config or tokenizer"):
        load_rater(tmp_path / "no-such-model", 3.5, (1, 5))


def test_a_tokenizer_that_splits_ratings_is_refused_for_t5(tmp_path):
    from transformers import BertTokenizer, T5Config, T5ForConditionalGeneration

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]  # no digits: "1" is unknown
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(tmp_path)
    T5ForConditionalGeneration(T5Config(vocab_size=5, d_model=8, d_kv=4, d_ff=8, num_layers=1,
                                        num_heads=2)).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="no single token for the rating .1."):
        load_rater(tmp_path, 3.5, (1, 5))


# ----------------------------------------------------------------------------- caching


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_context_cached_once_equals_context_computed_per_step(tiny, tmp_path, pooling):
    teacher, _ = prepared(tiny, tmp_path, pooling=pooling)
    batch = a_batch(tiny)
    cached = teacher.context(batch)
    assert ("rest" in cached) == (pooling == "mean")
    teacher.contexts = None  # the per-step path: tokens -> frozen layers -> context
    per_step = teacher.context(batch)
    assert cached.keys() == per_step.keys()
    for key in cached:
        torch.testing.assert_close(cached[key], per_step[key], rtol=0, atol=1e-5)
    question = torch.randn(len(batch["user"]), teacher.answer_width)
    torch.testing.assert_close(teacher.answer(question, cached).prediction,
                               teacher.answer(question, per_step).prediction)


def test_everything_is_read_back_from_the_cache_and_rebuilt_when_corrupt(tiny, tmp_path):
    messages = []
    cfg = LMConfig(model=str(tiny["bert"]), epochs=1, cache_dtype="float32")
    first, m1 = prepare_language_teacher(tiny["ml"], tiny["split"], cfg, tmp_path, progress=False,
                                         log=messages.append)
    assert len(messages) == 5  # tokens, lower states, fine-tuning, contexts, ready
    messages.clear()
    second, m2 = prepare_language_teacher(tiny["ml"], tiny["split"], cfg, tmp_path,
                                          progress=False, log=messages.append)
    assert len(messages) == 1 and m2["val_mse"] == m1["val_mse"]  # nothing rebuilt
    assert Committee([first]).fingerprint() == Committee([second]).fingerprint()
    # corrupt the context cache: it is rebuilt, not read
    (store,) = tmp_path.glob("bert-context-*")
    keys = store / "keys.npy"
    keys.write_bytes(keys.read_bytes()[:-64])
    messages.clear()
    prepare_language_teacher(tiny["ml"], tiny["split"], cfg, tmp_path, progress=False,
                             log=messages.append)
    assert any("caching the context" in m for m in messages)
    # a different template is different data: new tokens, never the old ones
    other = LMConfig(model=str(tiny["bert"]), epochs=1, template="{title} {genres}")
    messages.clear()
    prepare_language_teacher(tiny["ml"], tiny["split"], other, tmp_path, progress=False,
                             log=messages.append)
    assert any("tokenizing" in m for m in messages)
    assert len(list(tmp_path.glob("bert-tokens-*"))) == 2


def test_open_store_refuses_a_wrong_key(tiny, tmp_path):
    prepared(tiny, tmp_path)
    (store,) = tmp_path.glob("bert-tokens-*")
    assert open_store(store, "another key") is None


# ----------------------------------------------------------------------------- distillation


def test_distilling_from_an_lm_and_an_mlp_leaves_every_teacher_bit_identical(tiny, tmp_path):
    ml, split = tiny["ml"], tiny["split"]
    lm, _ = prepared(tiny, tmp_path / "cache")
    mlp = build(ml, split, STUDENT, 1)
    committee = Committee([lm, as_teacher("mlp", mlp, mode="add")])
    before = committee.fingerprint()
    student = build(ml, split, STUDENT, 0)
    train = rating_loader(split.train, ml, 64, shuffle=True)
    val = rating_loader(split.val, ml, 256, shuffle=False)
    result = fit(as_student(student), DiverseDistill(DiverseDistillConfig()), committee, train, val,
                 None, TrainConfig(max_epochs=2, batch_size=64, progress=False), tmp_path / "run",
                 clamp=ml.rating_scale)
    assert committee.fingerprint() == before
    assert torch.isfinite(torch.tensor(result.val_mse))


def test_the_question_gets_gradient_through_the_frozen_lm(tiny, tmp_path):
    teacher, _ = prepared(tiny, tmp_path)
    batch = a_batch(tiny)
    Committee([teacher])  # freezes
    question = torch.randn(16, teacher.question_width, requires_grad=True)
    answer = teacher.answer(question, teacher.context(batch))
    answer.prediction.sum().backward()
    assert question.grad is not None and question.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.rater.parameters())


def test_inject_below_the_finetuned_layers_is_refused(tiny, tmp_path):
    with pytest.raises(ConfigError, match="inject layer 0 is below the fine-tuned layers"):
        prepared(tiny, tmp_path, inject=0, finetune_layers=1)


def test_encoder_rater_rejects_unknown_modes(tiny):
    rater, _ = load_rater(tiny["bert"], 3.5, (1, 5))
    with pytest.raises(ModelError, match="question_mode"):
        EncoderRater(rater.encoder, question_mode="sometimes")


@pytest.mark.parametrize("buckets", [True, False])
def test_a_fine_tuned_lm_trained_in_another_batch_order_is_not_read_back(tiny, tmp_path,
                                                                         monkeypatch, buckets):
    from diversedistill.runs.batch_order import EpochBatches, LengthBuckets

    prepared(tiny, tmp_path, length_buckets=buckets)
    assert len(list(tmp_path.glob("bert-finetuned-*"))) == 1
    prepared(tiny, tmp_path, length_buckets=buckets)  # same code, same order: read back
    assert len(list(tmp_path.glob("bert-finetuned-*"))) == 1
    sampler = LengthBuckets if buckets else EpochBatches
    shuffled = sampler.order
    monkeypatch.setattr(sampler, "order", lambda self, epoch: shuffled(self, epoch).flip(0))
    prepared(tiny, tmp_path, length_buckets=buckets)  # the shuffling changed: a new key
    assert len(list(tmp_path.glob("bert-finetuned-*"))) == 2


def test_the_token_cache_key_covers_the_history_and_is_never_reused_across_it(tiny, tmp_path):
    prepared(tiny, tmp_path)
    prepared(tiny, tmp_path)  # same settings: read back, nothing rebuilt
    assert len(list(tmp_path.glob("bert-tokens-*"))) == 1
    for n, changes in enumerate([{"history_k": 1}, {"history_title_words": 1},
                                 {"history": False}], start=2):
        prepared(tiny, tmp_path, **changes)
        assert len(list(tmp_path.glob("bert-tokens-*"))) == n, changes
    # a split with other training rows gives other histories: other texts, another entry
    other = make_split(tiny["ml"], "random", 1)
    prepare_language_teacher(tiny["ml"], other, LMConfig(model=str(tiny["bert"]), epochs=1,
                                                         cache_dtype="float32"),
                             tmp_path, progress=False, log=lambda *_: None)
    assert len(list(tmp_path.glob("bert-tokens-*"))) == 5
