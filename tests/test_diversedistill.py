import pytest
import torch

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError
from diversedistill.interface import HookedStudent, HookedTeacher
from diversedistill.methods import DiverseDistill, DiverseDistillConfig
from diversedistill.module import QuestionAugmenter
from tiny import tiny_batch, tiny_recommender


def setup(cfg=None, mode="add"):
    student = HookedStudent(tiny_recommender(), "embed", "head")
    teachers = [HookedTeacher("m", tiny_recommender((16, 8), 6, seed=1), "embed", "head", mode),
                HookedTeacher("l", tiny_recommender((32, 12), 8, seed=2), "embed", "head", mode)]
    committee = Committee(teachers)
    batch = tiny_batch()
    committee.probe(batch)
    method = DiverseDistill(cfg or DiverseDistillConfig(d1=3, d2=5, hidden=7))
    method.setup(student, committee, batch)
    return student, committee, method, batch


def grads(module):
    return [p.grad for p in module.parameters()]


def test_question_augmenter_shapes():
    qa = QuestionAugmenter(d=12, question_widths=[18, 24], d1=3, d2=5, hidden=7)
    questions, alpha = qa(torch.randn(4, 12))
    assert [q.shape for q in questions] == [(4, 18), (4, 24)]
    assert alpha.shape == (4, 2) and ((alpha > 0) & (alpha < 1)).all()


def test_question_states_are_the_teacher_embedding_dot_product_of_method_md():
    # the augmenter folds E into W_q for speed; it must stay the literal formula
    # H = reshape(h W_q) in R^{d1 x d2}, u_i = E_i H
    torch.manual_seed(0)
    qa = QuestionAugmenter(d=12, question_widths=[18, 24, 6], d1=3, d2=5, hidden=7)
    h = torch.randn(4, 12)
    H = (h @ qa.question_projection.weight.T).view(4, 3, 5)
    literal = torch.stack([qa.teacher_embeddings[i] @ H for i in range(3)], dim=1)  # [B, N, d2]
    torch.testing.assert_close(qa.question_states(h), literal)
    questions, _ = qa(h)
    for i in range(3):
        torch.testing.assert_close(questions[i], qa.question_mlps[i](literal[:, i]))


def test_loss_parts_are_finite_and_teachers_never_change():
    student, committee, method, batch = setup()
    before = committee.fingerprint()
    opt = torch.optim.SGD(list(student.parameters()) + list(method.parameters()), lr=0.1)
    for _ in range(3):
        out = method(student, committee, batch)
        assert all(torch.isfinite(v) for v in out.values())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert committee.fingerprint() == before
    for teacher in committee:
        assert all(p.grad is None for p in teacher.model.parameters())


def test_regularizer_and_importance_never_move_the_student():
    student, committee, method, batch = setup()
    parts = method.loss_parts(student, committee, batch)
    (parts["reg"] + parts["importance"]).backward()
    assert all(g is None or g.abs().sum() == 0 for g in grads(student))
    assert any(g is not None and g.abs().sum() > 0 for g in grads(method.module.questions))
    assert any(g is not None and g.abs().sum() > 0 for g in grads(method.module.answers))


@pytest.mark.parametrize("detach", [True, False])
def test_distillation_term_reaches_the_module_only_when_not_detached(detach):
    cfg = DiverseDistillConfig(detach=detach, d1=3, d2=5, hidden=7)
    student, committee, method, batch = setup(cfg)
    method.loss_parts(student, committee, batch)["distill"].backward()
    assert any(g is not None and g.abs().sum() > 0 for g in grads(student))
    module_grads = [g for g in grads(method.module) if g is not None and g.abs().sum() > 0]
    assert bool(module_grads) is (not detach)


class CountingTeacher(HookedTeacher):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.rows = 0

    def answer(self, question, context):
        self.rows += question.shape[0]
        return super().answer(question, context)


def counting_setup(n_rows: int, **cfg):
    student = HookedStudent(tiny_recommender(), "embed", "head")
    teacher = CountingTeacher("m", tiny_recommender((16, 8), 6, seed=1), "embed", "head")
    committee = Committee([teacher])
    batch = tiny_batch(n_rows)
    committee.probe(batch)
    method = DiverseDistill(DiverseDistillConfig(explore=0.0, d1=3, d2=5, hidden=7, **cfg))
    method.setup(student, committee, batch)
    return student, teacher, committee, method, batch


def test_gating_runs_teachers_only_on_rows_above_tau():
    student, teacher, committee, method, batch = counting_setup(64, tau=0.5, warmup_epochs=1)
    method.epoch = 0  # warm-up: every row asked
    method(student, committee, batch)
    assert teacher.rows == 64
    method.epoch_stats()
    method.epoch = 1
    with torch.no_grad():
        _, alpha = method.module.questions(student(batch).h)
    expected = int((alpha[:, 0] > 0.5).sum())
    assert 0 < expected < 64  # the case is only informative when gating splits the batch
    teacher.rows = 0
    method(student, committee, batch)
    assert teacher.rows == expected
    assert method.epoch_stats()["skipped/m"] == pytest.approx(1 - expected / 64)


def test_gated_off_teacher_costs_no_pass():
    student, teacher, committee, method, batch = counting_setup(32, tau=1.0, warmup_epochs=0)
    out = method(student, committee, batch)
    assert teacher.rows == 0 and out["distill"] == 0 and torch.isfinite(out["loss"])


def test_importance_targets():
    method = DiverseDistill(DiverseDistillConfig(importance_target="binary"))
    own, ans = torch.tensor([1.0, 0.2]), torch.tensor([0.5, 0.9])
    assert method._importance_target(own, ans).tolist() == [1.0, 0.0]
    method.cfg = DiverseDistillConfig(importance_target="soft")
    soft = method._importance_target(own, ans)
    assert 0.5 < soft[0] < 1 and 0 < soft[1] < 0.5


@pytest.mark.parametrize("bad", [{"tau": 1.5}, {"tau": -0.1}, {"importance_target": "x"},
                                 {"explore": 2.0}, {"lam": -1.0}])
def test_bad_config_values_are_rejected(bad):
    with pytest.raises(ConfigError):
        DiverseDistillConfig(**bad)
