import pytest
import torch
from tiny import tiny_batch, tiny_recommender

from diversedistill.committee import Committee
from diversedistill.errors import ModelError
from diversedistill.interface import HookedStudent, HookedTeacher, take_rows


@pytest.fixture
def teacher():
    t = HookedTeacher("big", tiny_recommender(hidden=(16, 8), dim=6, seed=1), "embed", "head")
    Committee([t]).probe(tiny_batch())
    return t


def test_student_exposes_question_point_and_last_hidden_state():
    model = tiny_recommender()
    out = HookedStudent(model, "embed", "head")(tiny_batch())
    assert out.h.shape == (16, 3 * 4) and out.z.shape == (16, 4) and out.prediction.shape == (16,)
    assert torch.allclose(model.head(out.z).squeeze(-1), out.prediction)


def test_probe_finds_teacher_widths(teacher):
    assert (teacher.question_width, teacher.answer_width) == (18, 8)


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_question_changes_the_answer_and_gets_gradient(teacher, mode):
    teacher.mode = mode
    batch = tiny_batch()
    q = torch.randn(16, 18, requires_grad=True)
    first = teacher.answer(q, teacher.context(batch))
    second = teacher.answer(q.detach() * 3, teacher.context(batch))
    assert not torch.allclose(first.hidden, second.hidden)
    assert torch.allclose(teacher.head(first.hidden).squeeze(-1), first.prediction)
    first.prediction.sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.model.parameters())


def test_replace_ignores_the_teachers_own_state_and_add_keeps_it(teacher):
    batch, other = tiny_batch(seed=0), tiny_batch(seed=1)
    q = torch.randn(16, 18)
    teacher.mode = "replace"
    assert torch.equal(teacher.answer(q, batch).hidden, teacher.answer(q, other).hidden)
    teacher.mode = "add"
    assert not torch.equal(teacher.answer(q, batch).hidden, teacher.answer(q, other).hidden)
    zero = teacher.answer(torch.zeros(16, 18), batch).prediction
    assert torch.allclose(zero, teacher.predict(batch))  # a zero question leaves it as it was


def test_hooks_are_removed_after_a_pass(teacher):
    teacher.answer(torch.randn(16, 18), tiny_batch())
    assert not teacher.model.embed._forward_hooks and not teacher.model.head._forward_pre_hooks


def test_wrong_question_width_and_bad_paths_are_clear(teacher):
    with pytest.raises(ModelError,
                       match=r"question has shape \(16, 5\) but 'embed' outputs \(16, 18\)"):
        teacher.answer(torch.randn(16, 5), tiny_batch())
    with pytest.raises(ModelError, match="has no submodule 'encoder.layer.3'"):
        HookedTeacher("x", tiny_recommender(), "encoder.layer.3", "head")
    with pytest.raises(ModelError, match="injection mode"):
        HookedTeacher("x", tiny_recommender(), "embed", "head", mode="swap")


def test_committee_freezes_teachers_in_one_place():
    model = tiny_recommender(dropout=0.5)
    model.train()
    committee = Committee([HookedTeacher("t", model, "embed", "head")])
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    before = committee.fingerprint()
    with torch.no_grad():
        model.head.bias += 1
    assert committee.fingerprint() != before
    with pytest.raises(ModelError, match="unique"):
        Committee([HookedTeacher("t", model, "embed", "head"),
                   HookedTeacher("t", model, "embed", "head")])


def test_take_rows_handles_nested_contexts():
    ctx = {"a": torch.arange(5), "b": (torch.arange(5) * 2, None)}
    out = take_rows(ctx, torch.tensor([1, 3]))
    assert out["a"].tolist() == [1, 3] and out["b"][0].tolist() == [2, 6] and out["b"][1] is None


def test_a_teacher_in_bfloat16_answers_in_the_students_precision_with_gradient():
    """A teacher that does not fit beside the student can run in bfloat16 (or on another
    device): its weights are converted once, its answers come back in float32 on the
    question's device, and the question still gets a gradient through it."""
    model = tiny_recommender(hidden=(16, 8), dim=6, seed=1)
    full = HookedTeacher("f32", model, "embed", "head", mode="add")
    half = HookedTeacher("bf16", tiny_recommender(hidden=(16, 8), dim=6, seed=1), "embed", "head",
                         mode="add", device="cpu", dtype=torch.bfloat16)
    batch = tiny_batch()
    Committee([full, half]).to("cpu").probe(batch)
    assert all(p.dtype == torch.bfloat16 for p in half.model.parameters())
    q = torch.randn(16, half.question_width, requires_grad=True)
    answer = half.answer(q, half.context(batch))
    assert answer.hidden.dtype == answer.prediction.dtype == torch.float32
    assert torch.allclose(answer.prediction, full.answer(q.detach(), batch).prediction, atol=0.1)
    answer.prediction.sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.float32 and q.grad.abs().sum() > 0
    assert half.predict(batch).dtype == torch.float32


def test_the_served_pass_is_the_eval_pass_and_is_skipped_when_it_cannot_differ():
    import torch
    from tiny import tiny_batch, tiny_recommender

    from diversedistill.interface import HookedStudent

    batch = tiny_batch(32)
    noisy = HookedStudent(tiny_recommender(dropout=0.5), "embed", "head").train()
    assert noisy.train_noise
    first = noisy(batch)
    served = noisy.served(batch, first)
    assert served is not first and noisy.training  # a second pass, modes restored
    with torch.no_grad():
        torch.testing.assert_close(served.z, noisy.eval()(batch).z)
    clean = HookedStudent(tiny_recommender(dropout=0.0), "embed", "head").train()
    assert not clean.train_noise
    first = clean(batch)
    assert clean.served(batch, first) is first  # the same numbers: no second pass
