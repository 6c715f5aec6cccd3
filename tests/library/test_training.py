import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_batch, tiny_recommender

from diversedistill.committee import Committee
from diversedistill.export import export_from_checkpoint, export_model, load_model
from diversedistill.methods import DiverseDistill, DiverseDistillConfig, StudentOnly
from diversedistill.training import TrainConfig, fit, make_optimizer
from diversedistill_recipes.cli import main
from diversedistill_recipes.movielens.rating_recipes import (
    STUDENT,
    as_student,
    as_teacher,
    build,
    loaders,
)
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split

FAST = TrainConfig(max_epochs=2, patience=1, batch_size=64, progress=False)


@pytest.fixture
def data(ml100k_dir):
    ml = load_movielens(ml100k_dir)
    return ml, make_split(ml, "random", 0)


def test_student_alone_learns_and_checkpoints_only_what_is_trained(data, tmp_path):
    ml, split = data
    model = build(ml, split, STUDENT, 0)
    train, val, test = loaders(ml, split, 64, 0)
    result = fit(as_student(model), StudentOnly(), None, train, val, test, FAST, tmp_path / "run",
                 clamp=ml.rating_scale)
    assert result.epochs == 2 and 0 < result.test_mse < 4
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    assert all(k.startswith("student.model.") for k in ckpt["state_dict"])
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()


def test_output_that_is_not_a_terminal_gets_one_plain_line_per_epoch(data, tmp_path, capsys):
    import dataclasses

    ml, split = data
    model = build(ml, split, STUDENT, 0)
    train, val, test = loaders(ml, split, 64, 0)
    fit(as_student(model), StudentOnly(), None, train, val, test,
        dataclasses.replace(FAST, progress=True), tmp_path / "run", clamp=ml.rating_scale)
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["0", "1"]
    assert all("train loss" in line and "val_mse" in line for line in lines)
    assert "\r" not in out.out + out.err  # no progress bar redrawn into the file
    assert "logging interval" not in out.err


def test_distillation_run_keeps_teachers_out_of_checkpoint_and_export(data, tmp_path):
    ml, split = data
    teacher = build(ml, split, STUDENT, 1)
    committee = Committee([as_teacher("t", teacher, mode="add")])
    before = committee.fingerprint()
    student_model = build(ml, split, STUDENT, 0)
    train, val, test = loaders(ml, split, 64, 0)
    cfg = DiverseDistillConfig(d1=4, d2=8, hidden=16)
    fit(as_student(student_model), DiverseDistill(cfg), committee, train, val, test, FAST,
        tmp_path / "run", clamp=ml.rating_scale)
    assert committee.fingerprint() == before
    keys = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt",
                      weights_only=True)["state_dict"]
    assert any(k.startswith("method.module.") for k in keys)
    assert all(k.startswith(("student.model.", "method.module.")) for k in keys)

    export_model(student_model, tmp_path / "student")
    exported = load_file(str(tmp_path / "student" / "model.safetensors"))
    assert set(exported) == set(student_model.state_dict())  # nothing of the module

    # the module's diagnostics: one row per validation epoch, every column finite
    with open(tmp_path / "run" / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("diag/head_on_z")]
    assert len(rows) == FAST.max_epochs
    columns = ["diag/head_on_z"] + [f"diag/t/{k}" for k in (
        "teacher_own", "teacher_asked", "head_on_answer", "alpha_mean", "alpha_std", "distance",
        "along_head", "alpha_gain_corr")]
    for row in rows:
        values = {c: float(row[c]) for c in columns}
        assert all(math.isfinite(v) for v in values.values()), values
        assert 0 <= values["diag/t/along_head"] <= 1 and 0 < values["diag/t/alpha_mean"] < 1
        assert -1 <= values["diag/t/alpha_gain_corr"] <= 1
    # the first epoch's questions are still near zero: the teacher answers about as trained
    assert float(rows[0]["diag/t/teacher_asked"]) == pytest.approx(
        float(rows[0]["diag/t/teacher_own"]), rel=0.2)


def test_export_round_trip_gives_identical_predictions(data, tmp_path):
    ml, split = data
    model = build(ml, split, STUDENT, 0).eval()
    export_model(model, tmp_path / "m", {"note": "x"})
    loaded = load_model(tmp_path / "m")
    batch = next(iter(loaders(ml, split, 64, 0)[2]))
    assert torch.equal(model(batch), loaded(batch))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["note"] == "x"


def test_the_served_recommender_predicts_from_raw_ids_clamped_as_evaluated(data, tmp_path):
    from diversedistill_recipes.movielens.rating_server import RatingServer

    ml, split = data
    model = build(ml, split, STUDENT, 0).eval()
    with torch.no_grad():
        model.head.bias += 10.0  # predictions far above the scale: the clamp must show
    export_model(RatingServer.from_release(model, ml), tmp_path / "served")
    served = load_model(tmp_path / "served")
    test = split.test
    users, items = ml.user_ids[test.user[:64]], ml.item_ids[test.item[:64]]  # raw ids
    batch = next(iter(loaders(ml, split, 64, 0)[2]))  # the same rows, as evaluation reads them
    low, high = ml.rating_scale
    with torch.no_grad():
        expected = model(batch).clamp(low, high)
    torch.testing.assert_close(served.predict(users, items), expected, rtol=0, atol=0)
    assert float(expected.max()) == high
    # an id the release does not hold is "unknown" (code 0), as the model was trained to take
    unknown = served.predict([10**9], [items[0]])
    assert unknown.shape == (1,) and low <= float(unknown) <= high
    assert served.batch([10**9], [items[0]])["user"].tolist() == [0]


def test_cli_train_distill_export(ml100k_dir, tmp_path, capsys):
    common = ["--data-dir", str(ml100k_dir), "--no-progress"]
    for size in ("mlp-m", "mlp-l"):
        assert main(["train-teacher", "--size", size, "--out", str(tmp_path / size), *common]) == 0
    assert main(["distill", "--teacher", str(tmp_path / "mlp-m"),
                 "--teacher", str(tmp_path / "mlp-l"),
                 "--out", str(tmp_path / "run"), "--d1", "4", "--hidden", "16", *common]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["test_mse"] > 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "served")]) == 0
    served, trained = load_model(tmp_path / "served"), load_model(tmp_path / "run" / "student")
    ml = load_movielens(ml100k_dir)
    batch = next(iter(loaders(ml, make_split(ml, "random", 0), 64, 0)[2]))
    assert torch.equal(served(batch), trained(batch))
    # the run also leaves the student with its id encoders: raw ids in, clamped ratings out
    server = load_model(tmp_path / "run" / "served")
    rows = make_split(ml, "random", 0).test
    users, items = ml.user_ids[rows.user[:64]], ml.item_ids[rows.item[:64]]
    with torch.no_grad():
        expected = trained(batch).clamp(1.0, 5.0)
    torch.testing.assert_close(server.predict(users, items), expected, rtol=0, atol=0)


def test_cli_distill_with_teachers_in_bfloat16_on_their_own_device(tmp_path, capsys):
    from conftest import write_tiny_committee

    data, teachers = write_tiny_committee(tmp_path)
    assert main(["distill", "--teacher", str(teachers[0]), "--teacher", str(teachers[1]),
                 "--data-dir", str(data), "--out", str(tmp_path / "run"), "--no-progress",
                 "--max-epochs", "1", "--teacher-device", "cpu", "--teacher-dtype", "bfloat16",
                 "--d1", "4", "--hidden", "16"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_mse"] > 0
    # α of both teachers on the first test rows, for `diversedistill report`
    header = (tmp_path / "run" / "importance.csv").read_text().splitlines()[0]
    assert header == "sample," + ",".join(Path(t).name for t in teachers)


@pytest.mark.parametrize("args, message", [
    (["--tau", "1.5"], "tau must be in [0, 1]"),
    (["--importance-target", "sometimes"], "importance_target must be one of"),
    (["--method", "nope"], "unknown method 'nope'"),
])
def test_cli_reports_bad_input_in_one_line(ml100k_dir, tmp_path, capsys, args, message):
    code = main(["distill", "--teacher", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                 "--data-dir", str(ml100k_dir), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_missing_teacher_and_bad_yaml(ml100k_dir, tmp_path, capsys):
    code = main(["distill", "--teacher", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                 "--data-dir", str(ml100k_dir)])
    assert code == 2 and "not an exported diversedistill model" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("diversedistill:\n  lamda: 0.1\n")
    code = main(["distill", "--teacher", "x", "--out", str(tmp_path / "o"), "--data-dir",
                 str(ml100k_dir), "--config", str(tmp_path / "c.yaml")])
    assert code == 2 and "unknown key 'lamda'" in capsys.readouterr().err


class Tokens(torch.nn.Module):
    """A toy sequence model: its inner state is [B, T, D], not a single vector."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 6)
        self.head = torch.nn.Linear(6, 1)

    def forward(self, batch):
        return self.head(self.embed(batch["user"]).mean(1)).squeeze(-1)


def test_committee_widths_that_do_not_fit_name_the_teacher_and_shape():
    from diversedistill.errors import ModelError
    from diversedistill.interface import HookedTeacher

    committee = Committee([HookedTeacher("seq", Tokens(), "embed", "head")])
    with pytest.raises(ModelError,
                       match=r"teacher 'seq': its injection point 'embed' has shape \(2, 3, 6\)"):
        committee.probe({"user": torch.zeros(2, 3, dtype=torch.long)})


@pytest.mark.integration
def test_real_ml100k_student_trains_below_the_bias_reference(shared_ml100k, tmp_path):
    from diversedistill_recipes.movielens.rating_recipes import reference_mse

    ml = load_movielens(shared_ml100k)
    split = make_split(ml, "random", 0)
    model = build(ml, split, STUDENT, 0)
    train, val, test = loaders(ml, split, 1024, 0)
    cfg = TrainConfig(max_epochs=2, patience=1, batch_size=1024, progress=False)
    result = fit(as_student(model), StudentOnly(), None, train, val, test, cfg, tmp_path,
                 clamp=ml.rating_scale)
    refs = reference_mse(split.train, split.test, ml.n_users, ml.n_items, ml.rating_scale)
    assert refs["user + item biases"] < refs["global mean"]
    assert result.test_mse < refs["global mean"]


class _Exploit:
    """Unpickling this would run code; safe loading must refuse it."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_a_malicious_checkpoint_is_refused(tmp_path, data):
    from diversedistill.errors import ModelError

    ml, split = data
    run = tmp_path / "run"
    export_model(build(ml, split, STUDENT, 0), run / "student")
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": _Exploit()}, run / "checkpoints" / "best.ckpt")
    with pytest.raises(ModelError, match="refused to load"):
        export_from_checkpoint(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_distills_with_a_baseline_configured_from_its_yaml_section(tmp_path, capsys):
    from conftest import write_tiny_committee

    data, teachers = write_tiny_committee(tmp_path)
    config = tmp_path / "fd.yaml"
    config.write_text("fd:\n  lam: 0.5\n  reduction: mean\n")
    args = ["distill", "--teacher", str(teachers[0]), "--teacher", str(teachers[1]),
            "--data-dir", str(data), "--out", str(tmp_path / "run"), "--no-progress",
            "--max-epochs", "1", "--method", "fd", "--config", str(config)]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_mse"] > 0
    exported = json.loads((tmp_path / "run" / "student" / "config.json").read_text())
    assert exported["method"] == "fd" and exported["distillation"]["lam"] == 0.5
    config.write_text("fd:\n  lamda: 0.5\n")
    assert main(args) == 2
    assert "fd.yaml: fd: unknown key 'lamda'" in capsys.readouterr().err


def test_the_optimizer_is_fused_adamw_with_the_module_in_its_own_undecayed_group():
    student = tiny_recommender()
    method = DiverseDistill(DiverseDistillConfig(module_lr=3e-3))
    teachers = Committee([as_teacher("t", tiny_recommender(hidden=(16, 8), seed=1), mode="add")])
    batch = tiny_batch(8)
    teachers.probe(batch)
    method.setup(as_student(student), teachers, batch)
    optimizer = make_optimizer(student, method, 1e-3, 1e-4)
    assert optimizer.defaults["fused"] is True  # every parameter on the CPU
    own, module = optimizer.param_groups
    assert (own["lr"], own["weight_decay"]) == (1e-3, 1e-4)
    assert (module["lr"], module["weight_decay"]) == (3e-3, 0.0)
    assert len(module["params"]) == len(list(method.parameters()))
    assert len(make_optimizer(student, StudentOnly(), 1e-3, 1e-4).param_groups) == 1
