"""The seven baselines: a contract every registered method keeps, and each baseline's core
computation against a case worked out by hand."""

import math

import pytest
import torch
from tiny import tiny_batch, tiny_recommender
from torch import nn

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError
from diversedistill.interface import Answer, HookedStudent, HookedTeacher, Teacher
from diversedistill.losses import task_loss
from diversedistill.methods import (
    METHODS,
    AutoSKD,
    DiverseDistill,
    DiverseDistillConfig,
    build_method,
)
from diversedistill.methods.aekd import (
    aekd_weights,
    min_norm_fista,
    min_norm_weights,
    project_capped_simplex,
)
from diversedistill.methods.amtml import instance_weights, mixed_target
from diversedistill.methods.autoskd import (
    sample_teacher,
    sampling_probabilities,
    select_effective,
    sswo_update,
)
from diversedistill.methods.common import feature_loss, kd_loss
from diversedistill.methods.mt import mt_distill
from diversedistill.methods.sckd import gate
from diversedistill.training import DistillationTask, TrainConfig, fit
from diversedistill_recipes.movielens.rating_recipes import (
    STUDENT,
    as_student,
    as_teacher,
    build,
    loaders,
)
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split

# ---------------------------------------------------------------- tiny committees


def rating_setup():
    """Student MLP recommender and two larger ones as teachers; float rating targets."""
    student = HookedStudent(tiny_recommender(), "embed", "head")
    committee = Committee([
        HookedTeacher("m", tiny_recommender((16, 8), 6, seed=1), "embed", "head", "add"),
        HookedTeacher("l", tiny_recommender((32, 12), 8, seed=2), "embed", "head", "add")])
    batch = tiny_batch()
    committee.probe(batch)
    return student, committee, batch


class TinyClassifier(nn.Module):
    """x [B, 6] -> embed -> trunk -> head -> logits [B, 5]."""

    def __init__(self, width: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Linear(6, width)
        self.trunk = nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.head = nn.Linear(width, 5)

    def forward(self, batch):
        return self.head(self.trunk(self.embed(batch["x"])))


def class_setup():
    """The same shape of committee for class logits and long targets (the vision case)."""
    student = HookedStudent(TinyClassifier(4, 0), "embed", "head")
    committee = Committee([HookedTeacher("m", TinyClassifier(8, 1), "embed", "head", "add"),
                           HookedTeacher("l", TinyClassifier(12, 2), "embed", "head", "add")])
    g = torch.Generator().manual_seed(0)
    batch = {"x": torch.randn(16, 6, generator=g),
             "target": torch.randint(0, 5, (16,), generator=g)}
    committee.probe(batch)
    return student, committee, batch


class FixedTeacher(Teacher):
    """A teacher whose own pass returns the tensors it is given (for hand-worked cases)."""

    def __init__(self, name, prediction, hidden=None):
        self.name, self.prediction = name, prediction
        self.hidden = torch.zeros(prediction.shape[0], 3) if hidden is None else hidden
        self.question_width = self.answer_width = self.hidden.shape[-1]
        self.calls = 0

    def modules(self):
        return []

    def context(self, batch):
        return batch

    def answer(self, question, context):
        self.calls += 1
        return Answer(self.hidden, self.prediction)


def student_and_batch():
    student = HookedStudent(tiny_recommender(), "embed", "head")
    return student, tiny_batch()


def grad_vector(module, loss):
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, params)])


# ---------------------------------------------------------------- the contract

SMALL = {"diversedistill": {"d1": 3, "d2": 5, "hidden": 7}}


@pytest.mark.parametrize("setup", [rating_setup, class_setup], ids=["ratings", "classes"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_the_student_and_its_own_parameters_never_the_teachers(name, setup):
    student, committee, batch = setup()
    method = build_method(name, SMALL.get(name))
    method.setup(student, committee, batch)
    optimizer = DistillationTask(student, method, committee, TrainConfig()).configure_optimizers()
    own = {n: p for n, p in method.named_parameters() if p.requires_grad}
    reached = set()
    before = committee.fingerprint()
    torch.manual_seed(0)
    for _ in range(3):
        out = method(student, committee, batch)
        assert out["loss"].requires_grad and torch.isfinite(out["loss"])
        parts = [v for k, v in out.items() if k != "loss"]
        assert all(torch.isfinite(v).all() and not v.requires_grad for v in parts)
        optimizer.zero_grad()
        out["loss"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
        reached |= {n for n, p in own.items() if p.grad is not None and p.grad.abs().sum() > 0}
        optimizer.step()
    assert reached == set(own)
    assert committee.fingerprint() == before
    assert all(p.grad is None for t in committee for m in t.modules() for p in m.parameters())
    assert all(isinstance(v, float) for v in method.epoch_stats().values())


@pytest.mark.parametrize("name, values", [("amtml", {"stage1_epochs": 1}),
                                          ("autoskd", {"phase1_epochs": 1})])
def test_epoch_dependent_baselines_run_in_the_training_loop(name, values, ml100k_dir, tmp_path):
    """Two epochs of the real loop (Lightning, early stopping, best-checkpoint restore),
    across AMTML's stage and AutoSKD's phase boundary."""
    ml = load_movielens(ml100k_dir)
    split = make_split(ml, "random", 0)
    committee = Committee([as_teacher(n, build(ml, split, STUDENT, s), mode="add")
                           for n, s in (("a", 1), ("b", 2))])
    before = committee.fingerprint()
    train, val, test = loaders(ml, split, 64, 0)
    fast = TrainConfig(max_epochs=2, patience=2, batch_size=64, progress=False)
    result = fit(as_student(build(ml, split, STUDENT, 0)), build_method(name, values), committee,
                 train, val, test, fast, tmp_path / name, clamp=ml.rating_scale)
    assert result.epochs == 2 and 0 < result.test_mse < 4
    assert committee.fingerprint() == before


# ---------------------------------------------------------------- build_method


def test_build_method_fills_the_config_from_a_dict():
    method = build_method("diversedistill", {"lam": 5, "importance_target": "binary"})
    assert isinstance(method, DiverseDistill)
    assert method.cfg == DiverseDistillConfig(lam=5.0, importance_target="binary")
    assert build_method("mt", {"variant": "average_of_kd"}).cfg.variant == "average_of_kd"
    assert build_method("sckd", {"terms": ["logit"]}).cfg.terms == ["logit"]
    assert build_method("amtml", {"lr": None}).cfg.lr is None


@pytest.mark.parametrize("name, values, words", [
    ("ld", {"lamda": 1.0}, ["method 'ld'", "unknown key 'lamda'"]),
    ("aekd", {"cap": "high"}, ["method 'aekd'.cap", "expected a number"]),
    ("mt", {"variant": "median"}, ["method 'mt'", "variant must be one of"]),
    ("sckd", {"terms": ["logit", "attention"]}, ["method 'sckd'", "terms must be one of"]),
    ("student", {"lam": 1.0}, ["takes no options"]),
    ("nope", {}, ["unknown method 'nope'"]),
    ("fd", ["lam", 1.0], ["expected a mapping"]),
])
def test_build_method_names_the_bad_value(name, values, words):
    with pytest.raises(ConfigError) as err:
        build_method(name, values)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_unknown_teacher_name_fails_in_setup():
    student, committee, batch = rating_setup()
    for name in ("ld", "fd", "sckd"):
        with pytest.raises(ConfigError, match="not in the committee"):
            build_method(name, {"teacher": "xl"}).setup(student, committee, batch)


# ---------------------------------------------------------------- shared KD losses


def test_kd_loss_for_ratings_is_the_squared_error_and_ignores_temperature():
    s, t = torch.tensor([3.0, 4.0]), torch.tensor([4.0, 2.0])
    assert kd_loss(s, t, temperature=4.0).item() == pytest.approx((1 + 4) / 2)
    assert kd_loss(s, t, reduction="none").tolist() == [1.0, 4.0]


def test_kd_loss_for_logits_is_t_squared_kl_per_row():
    # teacher softened at T=2 to p = (3/4, 1/4); student uniform: KL = ¾ ln 1.5 + ¼ ln 0.5
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])
    student = torch.zeros(1, 2)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(4 * kl, rel=1e-5)
    # summed over classes, averaged over rows (not over all elements); a zero probability is fine
    rows = torch.cat([teacher, torch.tensor([[0.0, -1e4]])])
    per_row = kd_loss(torch.zeros(2, 2), rows, temperature=2.0, reduction="none")
    assert per_row[0].item() == pytest.approx(4 * kl, rel=1e-5)
    assert per_row[1].item() == pytest.approx(4 * math.log(2.0), rel=1e-5)
    assert kd_loss(torch.zeros(2, 2), rows, 2.0).item() == pytest.approx(per_row.mean().item())


# ---------------------------------------------------------------- LD and FD


def test_ld_is_task_plus_lambda_squared_rating_gap():
    student, batch = student_and_batch()
    with torch.no_grad():
        own = student.predict(batch)
    teacher = FixedTeacher("t", own + 0.5)
    method = build_method("ld", {"lam": 2.0})
    method.setup(student, Committee([teacher]), batch)
    out = method(student, Committee([teacher]), batch)
    assert out["distill"].item() == pytest.approx(0.25, rel=1e-5)
    expected = task_loss(own, batch["target"]).item() + 2.0 * 0.25
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_ld_and_fd_distill_from_the_named_teacher_only():
    student, batch = student_and_batch()
    a = FixedTeacher("a", torch.zeros(16), torch.zeros(16, 3))
    b = FixedTeacher("b", torch.zeros(16))
    committee = Committee([a, b])
    for name in ("ld", "fd"):
        method = build_method(name, {"teacher": "b"})
        method.setup(student, committee, batch)
        method(student, committee, batch)
    assert a.calls == 0 and b.calls == 2
    assert len(method.proj) == 1 and method.proj[0].out_features == 3


def test_fd_projects_z_to_the_teacher_width():
    student, batch = student_and_batch()
    target = torch.randn(16, 7)
    committee = Committee([FixedTeacher("t", torch.zeros(16), target)])
    method = build_method("fd", {"lam": 1.0, "reduction": "mean"})
    method.setup(student, committee, batch)
    with torch.no_grad():
        z = student(batch).z
        expected = (method.proj[0](z) - target).pow(2).mean()
    distill = method(student, committee, batch)["distill"]
    assert distill.item() == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------- SCKD


def test_sckd_gate_opens_on_aligned_and_closes_on_opposed_gradients():
    g = torch.tensor([1.0, -2.0, 0.5])
    assert gate(g, 3 * g) and not gate(g, -g)
    orthogonal = torch.tensor([2.0, 1.0, 0.0])
    assert not gate(g, orthogonal, phi=0.0)  # cos = 0 is not > 0
    assert gate(g, orthogonal, phi=-0.1)
    assert not gate(g, torch.zeros(3))  # no gradient, no term


@pytest.mark.parametrize("over", ["student", "z"])
def test_sckd_drops_a_distillation_term_whose_gradient_opposes_the_task(over):
    # a teacher that predicts 2ŷ − y, the mirror image of the target around the student's
    # prediction: ∇(ŷ − t)² = −∇(ŷ − y)², exactly opposed to the task gradient
    student, batch = student_and_batch()
    with torch.no_grad():
        own = student.predict(batch)
    y = batch["target"]
    for prediction, expect_open in ((2 * own - y, False), (y + 0.1 * (own - y), True)):
        committee = Committee([FixedTeacher("t", prediction)])
        method = build_method("sckd", {"terms": ["logit"], "gradients_over": over})
        method.setup(student, committee, batch)
        out = method(student, committee, batch)
        assert bool(out["open/logit/t"]) is expect_open
        task = task_loss(student.predict(batch), y)
        if not expect_open:  # the term is gone: the student sees the task gradient only
            assert torch.allclose(grad_vector(student, out["loss"]), grad_vector(student, task))


def test_sckd_closed_gate_still_trains_the_projection():
    student, batch = student_and_batch()
    committee = Committee([FixedTeacher("t", batch["target"], torch.randn(16, 5))])
    method = build_method("sckd", {"terms": ["feature"], "phi": 0.999999})
    method.setup(student, committee, batch)
    out = method(student, committee, batch)
    assert not bool(out["open/feature/t"])
    task = task_loss(student.predict(batch), batch["target"])
    assert torch.allclose(grad_vector(student, out["loss"]), grad_vector(student, task))
    assert grad_vector(method, out["loss"]).abs().sum() > 0


# ---------------------------------------------------------------- MT


def test_mt_variants_on_ratings_differ_by_the_teachers_variance_with_equal_gradients():
    s = torch.tensor([3.0, 4.0], requires_grad=True)
    teachers = [torch.tensor([2.0, 5.0]), torch.tensor([4.0, 2.0])]
    to_average = mt_distill(s, teachers, variant="kd_to_average")  # t̄ = (3, 3.5)
    of_kd = mt_distill(s, teachers, variant="average_of_kd")
    assert to_average.item() == pytest.approx((0 + 0.25) / 2)
    assert of_kd.item() == pytest.approx(((1 + 1) / 2 + (1 + 4) / 2) / 2)
    variance = torch.stack(teachers).var(0, unbiased=False).mean()  # (1 + 2.25) / 2
    assert (of_kd - to_average).item() == pytest.approx(variance.item())
    g1, = torch.autograd.grad(to_average, s)
    g2, = torch.autograd.grad(of_kd, s)
    assert torch.allclose(g1, g2)


def test_mt_variants_on_logits_differ_by_the_jensen_shannon_gap_and_what_is_averaged_matters():
    s = torch.zeros(1, 2, requires_grad=True)
    teachers = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])]
    p = [torch.softmax(t, -1) for t in teachers]
    p_mean = (p[0] + p[1]) / 2

    def entropy(q):
        return -(q * q.log()).sum()

    to_average = mt_distill(s, teachers, variant="kd_to_average")
    of_kd = mt_distill(s, teachers, variant="average_of_kd")
    gap = entropy(p_mean) - (entropy(p[0]) + entropy(p[1])) / 2
    assert (of_kd - to_average).item() == pytest.approx(gap.item(), rel=1e-5)
    g1, = torch.autograd.grad(to_average, s)
    g2, = torch.autograd.grad(of_kd, s)
    assert torch.allclose(g1, g2)
    assert torch.allclose(g1, torch.full((1, 2), 0.5) - p_mean)  # ∂/∂z_s = q − p̄ at T = 1
    # softmax of the mean logit, (1, 0) -> (0.731, 0.269), is another target: another gradient
    by_logits = mt_distill(s, teachers, variant="kd_to_average", average="logits")
    g3, = torch.autograd.grad(by_logits, s)
    sharper = torch.softmax(torch.tensor([[1.0, 0.0]]), -1)
    assert torch.allclose(g3, torch.full((1, 2), 0.5) - sharper)
    assert not torch.allclose(g1, g3)


# ---------------------------------------------------------------- AMTML


def test_amtml_instance_weights_sum_to_one_per_sample():
    torch.manual_seed(0)
    mu = instance_weights(torch.randn(8, 4), torch.randn(3, 4), torch.randn(4))
    assert mu.shape == (8, 3) and (mu > 0).all()
    assert torch.allclose(mu.sum(1), torch.ones(8))
    # by hand: a = (β ⊙ θ_k) · w = (2, 0) -> μ = (σ(2), 1 − σ(2))
    mu = instance_weights(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 5.0]]),
                          torch.tensor([1.0, 1.0]))
    assert mu[0].tolist() == pytest.approx([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))])


def test_amtml_mixes_ratings_and_probabilities_by_the_weights():
    mu = torch.tensor([[0.25, 0.75]])
    assert mixed_target(mu, [torch.tensor([4.0]), torch.tensor([2.0])], 1.0).item() == 2.5
    logits = [torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, 0.0]])]
    mixed = mixed_target(mu, logits, 1.0)  # 0.25 (¾, ¼) + 0.75 (½, ½)
    assert mixed[0].tolist() == pytest.approx([0.5625, 0.4375])


def test_amtml_freezes_teacher_factors_in_stage_two():
    student, committee, batch = rating_setup()
    method = build_method("amtml", {"stage1_epochs": 1})
    method.setup(student, committee, batch)
    for epoch, trained in ((0, True), (1, False)):
        method.zero_grad()
        method.epoch = epoch
        method(student, committee, batch)["loss"].backward()
        for p in (method.theta, method.w):
            assert bool(p.grad is not None and p.grad.abs().sum() > 0) is trained
        assert method.proj[0].weight.grad.abs().sum() > 0  # hints keep training


# ---------------------------------------------------------------- AutoSKD


def test_autoskd_sampling_frequencies_follow_the_weights():
    logits = torch.tensor([0.7, 0.2, 0.1]).log()
    alive = torch.ones(3, dtype=torch.bool)
    p = sampling_probabilities(logits, alive)
    assert p.tolist() == pytest.approx([0.7, 0.2, 0.1])
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_teacher(p, g) for _ in range(20000)])
    frequencies = torch.bincount(draws, minlength=3).div(20000)
    assert frequencies.tolist() == pytest.approx([0.7, 0.2, 0.1], abs=0.01)
    # a dropped teacher is never drawn; its weight goes to the others in proportion
    p = sampling_probabilities(logits, torch.tensor([True, False, True]))
    assert p.tolist() == pytest.approx([0.875, 0.0, 0.125])
    assert 1 not in {sample_teacher(p, g) for _ in range(2000)}


def test_autoskd_method_draws_teachers_at_its_configured_weights():
    student, committee, batch = rating_setup()
    method = build_method("autoskd", {"learn": False, "weights": [3.0, 1.0]})
    method.setup(student, committee, batch)
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(200):
            method(student, committee, batch)
    stats = method.epoch_stats()
    assert stats["p/m"] == pytest.approx(0.75) and stats["p/l"] == pytest.approx(0.25)
    assert stats["sampled/m"] == pytest.approx(0.75, abs=0.08)  # 200 draws: σ ≈ 0.03


def test_autoskd_single_weight_update_and_teacher_selection():
    logits = torch.zeros(3)
    assert sswo_update(logits, 1, torch.tensor(2.0), 0.1).tolist() == pytest.approx([0, 0.2, 0])
    assert logits.tolist() == [0, 0, 0]  # a copy
    keep = select_effective(torch.tensor([0.6, 0.35, 0.05]), torch.ones(3, dtype=torch.bool), 0.5)
    assert keep.tolist() == [True, True, False]  # 0.05 < 0.5 / 3
    keep = select_effective(torch.tensor([0.3, 0.3, 0.4]), torch.ones(3, dtype=torch.bool), 1.0)
    assert keep.tolist() == [False, False, True]  # the most likely is always kept


def test_autoskd_moves_only_the_previously_sampled_teachers_weight():
    student, committee, batch = rating_setup()
    method = build_method("autoskd", {"weight_lr": 0.5, "momentum": 0.5, "phase1_epochs": 5})
    assert isinstance(method, AutoSKD)
    method.setup(student, committee, batch)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    torch.manual_seed(0)
    moved = 0
    previous = None
    for _ in range(12):
        logits = method.logits.clone()
        out = method(student, committee, batch)
        changed = (method.logits != logits).nonzero().flatten().tolist()
        assert changed in ([], [previous])  # only the teacher drawn at the step being credited
        moved += bool(changed)
        previous = method._pending[2]
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert moved > 0


def test_autoskd_drops_ineffective_teachers_when_phase_one_ends():
    student, committee, batch = rating_setup()
    method = build_method("autoskd", {"weights": [0.9, 0.1], "phase1_epochs": 1, "drop_below": 0.5})
    method.setup(student, committee, batch)
    method.epoch = 1
    with torch.no_grad():
        method(student, committee, batch)
    assert method.alive.tolist() == [True, False]
    assert method.probabilities().tolist() == [1.0, 0.0]


# ---------------------------------------------------------------- AEKD


def test_capped_simplex_projection_by_hand_and_against_bisection():
    for v, cap, expected in (([0.9, 0.1], 0.6, [0.6, 0.4]), ([2.0, 0.0, 0.0], 1.0, [1, 0, 0]),
                             ([5.0, 5.0, 5.0], 0.6, [1 / 3] * 3)):
        assert project_capped_simplex(torch.tensor(v), cap).tolist() == pytest.approx(expected)
    g = torch.Generator().manual_seed(0)
    for cap in (0.25, 0.4, 0.6, 1.0):
        for _ in range(20):
            v = torch.randn(4, generator=g, dtype=torch.float64) * 2
            lo, hi = float(v.min()) - 1, float(v.max())
            for _ in range(200):  # bisection on τ: Σ clip(v − τ, 0, cap) = 1
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if (v - mid).clamp(0, cap).sum() > 1 else (lo, mid)
            x = project_capped_simplex(v, cap)
            assert torch.allclose(x, (v - lo).clamp(0, cap), atol=1e-9)
            assert x.sum().item() == pytest.approx(1.0) and x.max() <= cap + 1e-12


@pytest.mark.parametrize("g1, g2, cap, expected", [
    ([1.0, 0.0], [0.0, 1.0], 1.0, [0.5, 0.5]),  # orthogonal, equal: a² + (1 − a)²
    ([2.0, 0.0], [0.0, 1.0], 1.0, [0.2, 0.8]),  # orthogonal: 4a² + (1 − a)² -> a = 1/5
    ([2.0, 0.0], [0.0, 1.0], 0.6, [0.4, 0.6]),  # ... capped at C = 0.6
    ([1.0, 0.0], [-1.0, 0.0], 1.0, [0.5, 0.5]),  # opposed, equal: they cancel
    ([1.0, 0.0], [-3.0, 0.0], 1.0, [0.75, 0.25]),  # opposed: a − 3(1 − a) = 0
    ([1.0, 0.0], [-3.0, 0.0], 0.6, [0.6, 0.4]),  # ... capped at C = 0.6
])
def test_aekd_min_norm_weights_by_hand(g1, g2, cap, expected):
    grads = torch.tensor([g1, g2])
    assert min_norm_weights(grads, cap).tolist() == pytest.approx(expected, abs=1e-5)  # closed form
    gram = grads.double() @ grads.double().T
    fista = min_norm_fista(gram / gram.diagonal().max(), cap)  # the solver for K ≥ 3
    assert fista.tolist() == pytest.approx(expected, abs=1e-5)


def test_aekd_three_teachers_and_degenerate_gradients():
    alpha = min_norm_weights(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), 0.6)
    assert alpha.tolist() == pytest.approx([1 / 3] * 3, abs=1e-5)  # Σ α g = 0 there
    # three orthogonal, norms 1, 2, 2: α ∝ 1/‖g‖² = (4, 1, 1)/6, then capped at 0.6
    grads = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    assert min_norm_weights(grads, 1.0).tolist() == pytest.approx([4 / 6, 1 / 6, 1 / 6], abs=1e-5)
    assert min_norm_weights(grads, 0.6).tolist() == pytest.approx([0.6, 0.2, 0.2], abs=1e-5)
    for k in (2, 3):  # no gradient at all: every α is optimal; the uniform one is returned
        assert min_norm_weights(torch.zeros(k, 3), 0.6).tolist() == pytest.approx([1 / k] * k)
    assert min_norm_weights(torch.ones(1, 3), 1.0).tolist() == [1.0]


def test_aekd_weights_from_autograd_gradients_of_rating_kd():
    # residuals ŷ_s − t: teacher 1 says "higher" by 1, teacher 2 "lower" by 3; batch-mean
    # gradients −1 and 3 cancel at a = 3/4, which the cap C = 0.6 clips
    s = torch.tensor([3.0, 4.0], requires_grad=True)
    losses = [kd_loss(s, s.detach() + 1), kd_loss(s, s.detach() - 3)]
    grads = [torch.autograd.grad(loss, s, retain_graph=True)[0] for loss in losses]
    assert aekd_weights(grads, cap=1.0).tolist() == pytest.approx([0.75, 0.25], abs=1e-5)
    assert aekd_weights(grads, cap=0.6).tolist() == pytest.approx([0.6, 0.4], abs=1e-5)
    # normalized (original code): solve on unit gradients (½, ½), map back by 1/‖g‖, renormalize
    normalized = aekd_weights(grads, 1.0, normalize=True)
    assert normalized.tolist() == pytest.approx([0.75, 0.25], abs=1e-5)


def test_aekd_cap_must_be_feasible_for_the_committee():
    student, batch = student_and_batch()
    alone = Committee([FixedTeacher("t", torch.zeros(16))])
    with pytest.raises(ConfigError, match="infeasible"):
        build_method("aekd", {"cap": 0.6}).setup(student, alone, batch)


def test_normalized_feature_distance_is_free_of_width_and_scale():
    """FD/SCKD/AMTML's "normalized" reduction: scaling projection and teacher feature
    together leaves it unchanged, and repeating every dimension (a wider teacher carrying
    the same feature) too; "sum" grows with both."""
    torch.manual_seed(0)
    projected, features = torch.randn(16, 8), torch.randn(16, 8) * 3
    base = feature_loss(projected, features, "normalized")
    assert torch.allclose(feature_loss(10 * projected, 10 * features, "normalized"), base)
    wider = feature_loss(projected.repeat(1, 4), features.repeat(1, 4), "normalized")
    assert torch.allclose(wider, base)
    assert torch.allclose(feature_loss(projected.repeat(1, 4), features.repeat(1, 4), "sum"),
                          4 * feature_loss(projected, features, "sum"))
    # a projection predicting zero is at distance 1 on average
    assert feature_loss(torch.zeros(16, 8), features, "normalized").mean().item() == (
        pytest.approx(1.0))
