import pytest
import torch
from tiny import tiny_batch, tiny_recommender

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError
from diversedistill.interface import HookedStudent, HookedTeacher
from diversedistill.methods import DiverseDistill, DiverseDistillConfig
from diversedistill.methods.module import DistillationModule, QuestionAugmenter


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


@pytest.mark.parametrize("answers", [True, False])
@pytest.mark.parametrize("importance", [True, False])
def test_each_switch_routes_the_distillation_gradient_as_documented(answers, importance):
    cfg = DiverseDistillConfig(distill_trains_answers=answers, distill_trains_importance=importance,
                               d1=3, d2=5, hidden=7)
    student, committee, method, batch = setup(cfg)
    method.loss_parts(student, committee, batch)["distill"].backward()
    assert any(g is not None and g.abs().sum() > 0 for g in grads(student))
    moved = lambda module: any(g is not None and g.abs().sum() > 0 for g in grads(module))  # noqa: E731
    # the answers (and, through the teachers, the questions) move iff the term trains them
    assert moved(method.module.answers) is answers
    assert moved(method.module.questions.question_mlps) is answers
    # α's projection moves iff the term trains the importance
    assert moved(method.module.questions.importance_projection) is importance


def test_answer_pull_moves_the_answers_at_its_own_weight_and_z_at_lam():
    moved = lambda module: any(g is not None and g.abs().sum() > 0 for g in grads(module))  # noqa: E731
    cfg = DiverseDistillConfig(answer_pull=2.0, d1=3, d2=5, hidden=7)
    student, committee, method, batch = setup(cfg)
    parts = method.loss_parts(student, committee, batch)
    parts["distill"].backward(retain_graph=True)  # what λ multiplies: the student only
    assert moved(student) and not moved(method.module.answers)
    assert not moved(method.module.questions.question_mlps)
    student.zero_grad()
    parts["reg"].backward()  # the pull is in L_reg: the answers move, the student does not
    assert moved(method.module.answers) and not moved(student)
    # the pull is the distance itself at weight 2: L_reg grows by 2 × the distillation term
    torch.manual_seed(0)
    plain = DiverseDistillConfig(d1=3, d2=5, hidden=7)
    _, _, method0, _ = setup(plain)
    method0.load_state_dict(method.state_dict())
    with torch.no_grad():
        base = method0.loss_parts(student, committee, batch)
        pulled = method.loss_parts(student, committee, batch)
    torch.testing.assert_close(pulled["reg"], base["reg"] + 2.0 * base["distill"])
    torch.testing.assert_close(pulled["distill"], base["distill"])
    with pytest.raises(ConfigError, match="answer_pull"):
        DiverseDistillConfig(answer_pull=-1.0)
    with pytest.raises(ConfigError, match="answer_pull decides"):
        DiverseDistillConfig(answer_pull=1.0, distill_trains_answers=False)


def test_zero_initialized_added_questions_leave_every_teacher_as_trained():
    student, committee, method, batch = setup(DiverseDistillConfig(d1=3, d2=5, hidden=7))
    with torch.no_grad():
        questions, _ = method.module.questions(student(batch).h)
        for teacher, question in zip(committee, questions):
            assert question.abs().max() == 0
            own = teacher.answer(None, teacher.context(batch))
            asked = teacher.answer(question, teacher.context(batch))
            torch.testing.assert_close(asked.hidden, own.hidden, rtol=0, atol=0)
            torch.testing.assert_close(asked.prediction, own.prediction, rtol=0, atol=0)


def test_random_questions_are_available_and_change_the_answer():
    student, committee, method, batch = setup(DiverseDistillConfig(d1=3, d2=5, hidden=7,
                                                                   zero_init_questions=False))
    with torch.no_grad():
        questions, _ = method.module.questions(student(batch).h)
        teacher = list(committee)[0]
        own = teacher.answer(None, teacher.context(batch))
        asked = teacher.answer(questions[0], teacher.context(batch))
    assert questions[0].abs().max() > 0 and not torch.equal(asked.hidden, own.hidden)


def test_the_distilled_z_is_the_student_as_served_without_dropout():
    student = HookedStudent(tiny_recommender(dropout=0.5), "embed", "head")
    teachers = [HookedTeacher("m", tiny_recommender((16, 8), 6, seed=1), "embed", "head")]
    committee = Committee(teachers)
    batch = tiny_batch(32)
    committee.probe(batch)
    method = DiverseDistill(DiverseDistillConfig(d1=3, d2=5, hidden=7))
    method.setup(student, committee, batch)
    seen = []
    distance = method.distance
    method.distance = lambda a, z: seen.append(z.detach().clone()) or distance(a, z)
    student.train()
    method.loss_parts(student, committee, batch)
    assert student.training and student.model.trunk.mlp[2].training  # modes restored
    with torch.no_grad():
        student.eval()
        served = student(batch).z
        student.train()
        noisy = student(batch).z
    torch.testing.assert_close(seen[0], served)
    assert not torch.allclose(noisy, served)  # the case is informative: dropout is active


def test_the_default_distance_is_free_of_scale_and_width():
    torch.manual_seed(0)
    method = DiverseDistill()
    z, a = torch.randn(64, 8).relu(), torch.randn(64, 8)
    values = []
    for c in (1.0, 0.01, 300.0):
        method.module = DistillationModule(4, 8, [3], [5], 2, 2, 4)
        method.train()
        method._running("z_mean_square", (c * z).pow(2))
        values.append(method.distance(c * a, c * z))
    torch.testing.assert_close(values[1], values[0])
    torch.testing.assert_close(values[2], values[0])
    # width: the same rows repeated side by side give the same distance
    method.module = DistillationModule(4, 16, [3], [5], 2, 2, 4)
    method._running("z_mean_square", torch.cat([z, z], 1).pow(2))
    torch.testing.assert_close(method.distance(torch.cat([a, a], 1), torch.cat([z, z], 1)),
                               values[0])
    assert DiverseDistill(DiverseDistillConfig(distance="sum")).distance(2 * a, 2 * z).mean() == \
        pytest.approx(4 * (a - z).pow(2).sum(-1).mean().item())


def test_legacy_config_reproduces_the_first_implementation_bit_for_bit():
    # Figures printed by the first implementation (commit 1f442d7) for this exact run: six
    # AdamW steps of a dropout student with two add-injected teachers, without and with gating.
    expected = {0.0: (14.375528335571289, 4.178747884405311, -1.5663031185395084),
                0.5: (11.671870231628418, 4.821042324358132, -2.660557598399464)}
    for tau, (loss, student_sum, module_sum) in expected.items():
        torch.manual_seed(0)
        student = HookedStudent(tiny_recommender(dropout=0.3), "embed", "head")
        committee = Committee([
            HookedTeacher("m", tiny_recommender((16, 8), 6, seed=1), "embed", "head", "add"),
            HookedTeacher("l", tiny_recommender((32, 12), 8, seed=2), "embed", "head", "add")])
        batch = tiny_batch(64)
        committee.probe(batch)
        torch.manual_seed(1)
        method = DiverseDistill(DiverseDistillConfig.legacy(tau=tau, warmup_epochs=0, d1=3, d2=5,
                                                            hidden=7))
        method.setup(student, committee, batch)
        opt = torch.optim.AdamW(list(student.parameters()) + list(method.parameters()), lr=0.01)
        for step in range(6):
            torch.manual_seed(100 + step)
            out = method(student, committee, batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        assert float(out["loss"].detach()) == pytest.approx(loss, rel=1e-5)
        assert (sum(float(p.detach().double().sum()) for p in student.parameters())
                == pytest.approx(student_sum, rel=1e-5))
        assert (sum(float(p.detach().double().sum()) for p in method.module.parameters())
                == pytest.approx(module_sum, rel=1e-5))


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
    rows = torch.arange(2)
    (_, target), = method._importance_targets(own, [(rows, ans)])
    assert target.tolist() == [1.0, 0.0]
    method.cfg = DiverseDistillConfig(importance_target="soft")
    (_, soft), = method._importance_targets(own, [(rows, ans)])
    assert 0.5 < soft[0] < 1 and 0 < soft[1] < 0.5


def test_the_relative_importance_target_carries_the_difference_between_teachers():
    method = DiverseDistill()
    method.module = DistillationModule(4, 8, [3, 3], [5, 5], 2, 2, 4)
    method.train()
    own = torch.tensor([1.0, 1.0, 1.0])
    rows = torch.arange(3)
    # row 0: teacher 0 much better; row 1: teacher 1 much better; row 2: both equal to z
    first, second = torch.tensor([0.2, 1.8, 1.0]), torch.tensor([1.8, 0.2, 1.0])
    (_, t0), (_, t1) = method._importance_targets(own, [(rows, first), (rows, second)])
    assert t0[0] > 0.75 and t1[0] < 0.25 and t0[1] < 0.25 and t1[1] > 0.75
    assert t0[2] == pytest.approx(0.5) and t1[2] == pytest.approx(0.5)
    # the scale is the running mean |gain|: losses ten times larger give the same targets
    method.module.gain_scale.zero_()
    (_, big), _ = method._importance_targets(10 * own, [(rows, 10 * first), (rows, 10 * second)])
    torch.testing.assert_close(big, t0)
    # a teacher not asked on a row is no alternative there: only z is
    (_, only), _ = method._importance_targets(own, [(rows, first), (rows[:1], second[:1])])
    assert only[1] < 0.5 < only[0]


def test_the_expected_target_is_the_gain_in_units_of_its_mean_size():
    method = DiverseDistill(DiverseDistillConfig(importance_target="expected"))
    method.module = DistillationModule(4, 8, [3, 3], [5, 5], 2, 2, 4)
    method.train()
    own, rows = torch.tensor([1.0, 1.0, 1.0]), torch.arange(3)
    first, second = torch.tensor([0.2, 1.8, 1.0]), torch.tensor([1.8, 0.2, 1.0])
    (_, t0), (_, t1) = method._importance_targets(own, [(rows, first), (rows, second)])
    # gains of teacher 0: (1 + 1.8) / 2 - 0.2 = 1.2, -1.2, 0; mean |gain| over both = 0.8
    torch.testing.assert_close(t0, torch.tensor([1.5, -1.5, 0.0]))
    torch.testing.assert_close(t1, -t0)


def test_expected_importance_spreads_alpha_whatever_the_size_of_the_logits():
    # α = sigmoid(logit / spread): the same ranking and the same spread for logits 1000x
    # smaller, where sigmoid(logit) alone would sit at 0.5 on every row
    method = DiverseDistill(DiverseDistillConfig(importance_target="expected"))
    method.module = DistillationModule(4, 8, [3, 3], [5, 5], 2, 2, 4)
    method.train()
    logits = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    alpha = method.alpha(logits)
    method.module.logit_spread.zero_()
    small = method.alpha(logits / 1000)
    torch.testing.assert_close(small, alpha)
    assert 0.15 < float(alpha.std(0).min()) and float(torch.sigmoid(logits / 1000).std()) < 0.001
    # in eval mode the running spread is read, not updated
    method.eval()
    torch.testing.assert_close(method.alpha(logits[:3] / 1000), alpha[:3])


def test_expected_importance_learns_which_rows_a_teacher_helps():
    # a teacher whose answer is right on half the rows (x[:, 0] > 0) and wrong on the
    # other half: the logit fitted to the gain ranks the rows, α spreads and gates by row
    torch.manual_seed(0)
    method = DiverseDistill(DiverseDistillConfig(importance_target="expected", lam=0.0))
    method.module = DistillationModule(4, 8, [3], [5], 2, 2, 4)
    method.train()
    opt = torch.optim.Adam(method.module.parameters(), lr=0.05)
    for _ in range(200):
        h = torch.randn(128, 4)
        helps = h[:, 0] > 0
        own = torch.ones(128)
        answer = torch.where(helps, torch.tensor(0.2), torch.tensor(1.8))
        logits = method.module.questions.importance_logits(h)
        (_, target), = method._importance_targets(own, [(torch.arange(128), answer)])
        loss = torch.nn.functional.mse_loss(logits[:, 0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.alpha(logits.detach())  # keeps the running spread, as loss_parts does
    method.eval()
    h = torch.randn(512, 4)
    with torch.no_grad():
        alpha = method.importance(h)[:, 0]
    helps = h[:, 0] > 0
    assert float(alpha[helps].mean()) > 0.6 > 0.4 > float(alpha[~helps].mean())
    assert float(((alpha > 0.5) == helps).float().mean()) > 0.9  # τ = 0.5 gates by row


@pytest.mark.parametrize("bad", [{"tau": 1.5}, {"tau": -0.1}, {"importance_target": "x"},
                                 {"explore": 2.0}, {"lam": -1.0}, {"lam": float("nan")},
                                 {"distance": "l1"}, {"module_lr": -1.0}, {"d1": 0},
                                 {"importance_temperature": 0.0}])
def test_bad_config_values_are_rejected(bad):
    with pytest.raises(ConfigError):
        DiverseDistillConfig(**bad)


def test_lam_grows_over_its_warmup_epochs_then_stays():
    student, committee, method, batch = setup(DiverseDistillConfig(lam=30.0, lam_warmup_epochs=3,
                                                                   d1=3, d2=5, hidden=7))
    seen = []
    for epoch in range(5):
        method.epoch = epoch
        seen.append(method.lam_now())
    assert seen == [10.0, 20.0, 30.0, 30.0, 30.0]
    # the loss uses it: task + λ_now · distill + reg + importance
    method.epoch = 0
    out = method(student, committee, batch)
    expected = out["task"] + 10.0 * out["distill"] + out["reg"] + out["importance"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    assert DiverseDistill(DiverseDistillConfig(lam=3.0)).lam_now() == 3.0  # off by default
    with pytest.raises(ConfigError, match="lam_warmup_epochs"):
        DiverseDistillConfig(lam_warmup_epochs=-1)


def test_epoch_stats_give_the_heads_training_loss_on_each_answer_and_on_z():
    student, committee, method, batch = setup()
    y = batch["target"]
    losses = []
    for _ in range(2):  # two steps: the stats are means over every row of the epoch
        method(student, committee, batch)
        with torch.no_grad():  # what the step saw (nothing was updated in between)
            out = student.served(batch, student(batch))
            states, _ = method.module.questions.states_and_logits(out.h)
            per_teacher = []
            for i, teacher in enumerate(committee):
                answer = teacher.answer(method.module.questions.ask(i, states[:, i]),
                                        teacher.context(batch))
                a = method.module.answers(i, answer.hidden)
                per_teacher.append(float(((student.frozen_head(a) - y) ** 2).mean()))
            losses.append((float(((student.frozen_head(out.z) - y) ** 2).mean()), per_teacher))
    stats = method.epoch_stats()
    assert stats["head_on_z"] == pytest.approx(sum(z for z, _ in losses) / 2, rel=1e-5)
    for i, name in enumerate(committee.names):
        assert stats[f"head_on_answer/{name}"] == pytest.approx(
            sum(t[i] for _, t in losses) / 2, rel=1e-5)
    method(student, committee, batch)  # the next epoch's sums start from zero
    assert method.epoch_stats()["head_on_z"] == pytest.approx(losses[-1][0], rel=1e-5)


def importance_on(batch, student, committee, method):
    method.eval()  # the running gain scale stays fixed: a row's target depends on it alone
    method.module.gain_scale.fill_(1.0)
    return float(method.loss_parts(student, committee, batch)["importance"].detach())


def test_importance_rows_take_alphas_targets_from_the_marked_rows_only():
    cfg = DiverseDistillConfig(d1=3, d2=5, hidden=7, importance_rows="unseen")
    student, committee, method, batch = setup(cfg)
    batch = {**batch, "unseen": torch.arange(16) < 8}  # the first half: rows teachers never saw
    before = importance_on(batch, student, committee, method)
    changed = {**batch, "target": torch.cat([batch["target"][:8], 6 - batch["target"][8:]])}
    assert before > 0
    # other ratings on the rows the teachers saw: α's loss does not move
    assert importance_on(changed, student, committee, method) == pytest.approx(before)
    # ... while without importance_rows it does (the test can tell the two apart)
    plain = DiverseDistill(DiverseDistillConfig(d1=3, d2=5, hidden=7))
    plain.setup(student, committee, batch)
    plain.module.load_state_dict(method.module.state_dict())
    assert importance_on(changed, student, committee, plain) != pytest.approx(
        importance_on(batch, student, committee, plain))
    none_marked = {**batch, "unseen": torch.zeros(16, dtype=torch.bool)}
    assert importance_on(none_marked, student, committee, method) == 0.0


def test_epoch_stats_give_the_heads_loss_over_the_marked_rows_when_importance_rows_is_set():
    cfg = DiverseDistillConfig(d1=3, d2=5, hidden=7, importance_rows="unseen")
    student, committee, method, batch = setup(cfg)
    marked = torch.arange(16) % 3 == 0
    batch = {**batch, "unseen": marked}
    y = batch["target"]
    method(student, committee, batch)
    with torch.no_grad():  # what the step saw
        out = student.served(batch, student(batch))
        states, _ = method.module.questions.states_and_logits(out.h)
        answers = [method.module.answers(i, teacher.answer(
            method.module.questions.ask(i, states[:, i]), teacher.context(batch)).hidden)
            for i, teacher in enumerate(committee)]
    stats = method.epoch_stats()
    on_z = float(((student.frozen_head(out.z) - y) ** 2)[marked].mean())
    assert stats["head_on_z_unseen"] == pytest.approx(on_z, rel=1e-5)
    assert stats["head_on_z_unseen"] != pytest.approx(stats["head_on_z"], rel=1e-5)
    for name, a in zip(committee.names, answers):
        on_answer = float(((student.frozen_head(a) - y) ** 2)[marked].mean())
        assert stats[f"head_on_answer_unseen/{name}"] == pytest.approx(on_answer, rel=1e-5)
    plain_student, plain_committee, plain, plain_batch = setup()
    plain(plain_student, plain_committee, plain_batch)
    assert not any("unseen" in k for k in plain.epoch_stats())  # only with importance_rows


def test_importance_rows_naming_a_missing_column_is_one_clear_error():
    student, committee, method, batch = setup(
        DiverseDistillConfig(d1=3, d2=5, hidden=7, importance_rows="unseen"))
    with pytest.raises(ConfigError, match="importance_rows 'unseen': the training batch has no"):
        method(student, committee, batch)


def _student_grads(cfg):
    """The student's gradient [P] from the task alone and from the whole loss."""
    torch.manual_seed(0)
    student, committee, method, batch = setup(cfg)
    params = list(student.parameters())
    task = torch.nn.functional.mse_loss(student(batch).prediction, batch["target"])
    task_only = torch.autograd.grad(task, params, allow_unused=True)
    method(student, committee, batch)["loss"].backward()
    flat = lambda gs: torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()  # noqa: E731
                                 for g, p in zip(gs, params)])
    return flat(task_only), flat([p.grad for p in params])


def test_pull_cap_bounds_distillations_gradient_into_z_by_the_tasks():
    # a huge λ: uncapped, distillation's gradient on the student dwarfs the task's (the
    # collapse to the constant prediction on a user's 3-class table); capped at c, the
    # gradient distillation adds stays of the task's order
    big = dict(d1=3, d2=5, hidden=7, lam=1e4)
    task, whole = _student_grads(DiverseDistillConfig(**big, pull_cap=None))
    assert (whole - task).norm() > 100 * task.norm()
    task, whole = _student_grads(DiverseDistillConfig(**big, pull_cap=0.3))
    assert (whole - task).norm() < 10 * task.norm()
    # below the cap nothing changes: the capped and uncapped gradients are the same
    small = dict(d1=3, d2=5, hidden=7, lam=1e-3)
    _, capped = _student_grads(DiverseDistillConfig(**small, pull_cap=0.3))
    task, uncapped = _student_grads(DiverseDistillConfig(**small, pull_cap=None))
    assert not torch.equal(uncapped, task)  # distillation does reach the student
    torch.testing.assert_close(capped, uncapped)


def test_pull_cap_is_checked():
    with pytest.raises(ConfigError, match="pull_cap"):
        DiverseDistillConfig(pull_cap=0.0)
    with pytest.raises(ConfigError, match="pull_cap"):
        DiverseDistillConfig(pull_cap=float("nan"))
