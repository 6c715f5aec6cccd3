"""The comparison tables in the vision domain: accuracy (higher is better) in the tables and
claims, and one tiny ``reproduce cifar10 --tables`` on the experiment of test_vision.py."""

from __future__ import annotations

import csv

import pytest

from diversedistill.methods import DiverseDistillConfig
from diversedistill_recipes.cifar import reproduce_cifar as reproduce_vision
from diversedistill_recipes.cli import main
from diversedistill_recipes.comparison.claims import HOLDS
from diversedistill_recipes.comparison.results import ACCURACY, ResultRow
from diversedistill_recipes.comparison.tables import build_tables, layout_for, vision_layout
from diversedistill_recipes.comparison.tables import main as tables_main

pytest.importorskip("transformers")

from test_vision import TINY_EXPERIMENT  # after the skip: it imports transformers
from vision_tiny import tiny_sentence_model, write_npz

LAYOUT = vision_layout(["vit-l", "clip"], "vit-s", foundation="clip")
# DiverseDistill best everywhere, the committee best, AEKD below the best single baseline
GOOD = {("ld", "clip"): 0.50, ("fd", "clip"): 0.49, ("sckd", "clip"): 0.495,
        ("diversedistill", "clip"): 0.52, ("ld", "vit-l"): 0.55, ("fd", "vit-l"): 0.53,
        ("sckd", "vit-l"): 0.54, ("diversedistill", "vit-l"): 0.57,
        ("mt", "vit-l+clip"): 0.56, ("amtml", "vit-l+clip"): 0.565,
        ("autoskd", "vit-l+clip"): 0.558, ("aekd", "vit-l+clip"): 0.50,
        ("diversedistill", "vit-l+clip"): 0.60}


def accuracy_rows(cells: dict, seeds: int = 3) -> list[ResultRow]:
    rows = []
    for s in range(seeds):
        rows.append(ACCURACY.row("student alone", "vit-s", s, 0.41, 0.40, 1.0))
        rows.append(ACCURACY.row("teacher alone", "vit-l", s, 0.61, 0.60, 1.0))
        rows.append(ACCURACY.row("teacher alone", "clip", s, 0.51, 0.50, 1.0))
        for (method, teachers), mean in cells.items():
            rows.append(ACCURACY.row(method, teachers, s, mean, mean + 0.001 * (s - 1), 1.0))
    return rows


def test_accuracy_tables_mark_the_highest_and_decide_claims_upward():
    files = build_tables(accuracy_rows(GOOD), layout=LAYOUT)
    assert set(files) >= {"table3.md", "table4.md", "claims.md", "raw.md"}
    assert "table5.md" not in files  # no similar committee in the vision experiment
    table3, table4 = files["table3.md"], files["table4.md"]
    assert "Gap recovered (test accuracy)" in table3
    assert table3.index("| CLIP |") < table3.index("| ViT-L |")  # the foundation model first
    # gap recovered (0.57 - 0.40) / (0.60 - 0.40) = 85%: the highest of its line, in bold
    assert "| ViT-L | 75.0% ± 0.5 (0.5500 ± 0.0010) |" in table3
    assert "**85.0% ± 0.5 (0.5700 ± 0.0010)**" in table3
    assert "## Table 4: committee ViT-L + CLIP" in table4 and "**100.0%" in table4
    assert "Student alone (ViT-S): 0.4000" in table4 and "Best teacher alone: ViT-L" in table4
    assert files["table3.csv"].splitlines()[0].split(",")[4:6] == ["test_accuracy_mean",
                                                                   "test_accuracy_std"]
    assert files["raw.md"].startswith("## Test accuracy per seed")
    claims = files["claims.md"]
    assert "decided on test accuracy" in claims and "higher accuracy is better" in claims
    assert "## Claim 4" not in claims and "Claim 4 (a diverse committee" in claims
    for n in (1, 2, 3):  # higher is better: the same verdicts MovieLens gets from lower MSE
        assert claims.split(f"## Claim {n}: ")[1].split("\n")[0] == HOLDS
    assert "best single-teacher baseline: LD from ViT-L" in claims
    assert "for context, the CLIP teacher alone: 0.5000" in claims
    worse = {**GOOD, ("diversedistill", "vit-l+clip"): 0.50}
    assert "## Claim 1: does not hold" in build_tables(accuracy_rows(worse), layout=LAYOUT)[
        "claims.md"]


def test_the_layout_of_saved_accuracy_results_is_read_from_its_rows():
    layout = layout_for(accuracy_rows(GOOD))
    assert layout.claims.committee == "vit-l+clip" and layout.student == "vit-s"
    assert layout.metric.higher_is_better


# ----------------------------------------------------------------------------- end to end

# one seed, LD's λ searched (T fixed), DiverseDistill one run per cell: 9-11 tiny runs
TABLES = """
tables:
  grids:
    ld: {lam: [0.5, 1, 2], temperature: 2}
    diversedistill: {lam: 1}
"""


def test_reproduce_cifar_tables_writes_table3_table4_and_the_search(tmp_path, capsys,
                                                                    monkeypatch):
    data = write_npz(tmp_path / "data" / "cifar10.npz", n_train=72, n_test=24)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_EXPERIMENT.replace("TEXT_MODEL", str(tiny_sentence_model(
        tmp_path / "text"))) + TABLES)
    out = tmp_path / "out"
    args = ["reproduce", "cifar10", "--data-dir", str(data.parent), "--tables", "--table-seeds",
            "1", "--methods", "ld", "diversedistill", "--out", str(out), "--cache-dir",
            str(tmp_path / "cache"), "--config", str(config), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tables: 5 cells" in printed and "9-11 runs" in printed  # the counts, up front
    assert "grid ld: lam {0.5, 1, 2} (×3 / ÷3 beyond an edge); fixed temperature=2" in printed
    assert "tables: at least" in printed  # the time, from the student alone's run
    written = {p.name for p in out.iterdir() if p.is_file()}
    assert written >= {"table3.md", "table3.csv", "table4.md", "table4.csv", "search.csv",
                       "search.md", "claims.md", "raw.md", "results.csv", "tables.json"}
    assert "table5.md" not in written
    table3, table4 = (out / "table3.md").read_text(), (out / "table4.md").read_text()
    # the CLIP teacher (the foundation model) first; FD and SCKD were not asked for
    assert "| teacher | LD | FD | SCKD | DiverseDistill |" in table3
    assert table3.index("| CLIP | ") < table3.index("| vit-b | ")
    assert "| CLIP | " in table3 and " | — | — | " in table3
    assert "Chosen on validation (search seed): LD from CLIP: lam=" in table3
    assert "## Table 4: committee vit-b + CLIP" in table4 and "| vit-b + CLIP | — |" in table4
    with open(out / "search.csv") as f:
        search = list(csv.DictReader(f))
    assert {"knob", "val_accuracy", "chosen"} <= set(search[0])
    ld = [r for r in search if r["method"] == "ld" and r["teachers"] == "clip"]
    assert [r["knob"] for r in ld][:3] == ["lam"] * 3 and len(ld) in (3, 4)
    assert sum(r["chosen"] == "True" for r in search) == 5  # one per cell
    with open(out / "results.csv") as f:
        results = list(csv.DictReader(f))
    cells = {(r["method"], r["teachers"]) for r in results
             if r["method"] in ("ld", "diversedistill")}
    assert cells == {("ld", "clip"), ("ld", "vit-b"), ("diversedistill", "clip"),
                     ("diversedistill", "vit-b"), ("diversedistill", "vit-b+clip")}
    # rebuilt from the saved results alone (tables.json keeps the teachers), the same
    before = {n: (out / n).read_text() for n in ("table3.md", "table4.md", "claims.md")}
    assert tables_main([str(out)]) == 0
    assert {n: (out / n).read_text() for n in before} == before

    # resumed: every run is in results.csv and search.csv, so nothing trains again
    trained = []
    monkeypatch.setattr(reproduce_vision, "train_student",
                        lambda *a, **k: trained.append(a) or pytest.fail("a run trained again"))
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert trained == []
    with open(out / "results.csv") as f:
        again = {(r["method"], r["teachers"], r["seed"]): r["test_accuracy"]
                 for r in csv.DictReader(f)}
    assert again == {(r["method"], r["teachers"], r["seed"]): r["test_accuracy"] for r in results}


def test_baselines_read_each_teachers_own_pass_once_per_image_and_view(tmp_path):
    # fixed views make a frozen teacher's own pass a fixed function of (image, view): the
    # worker computes it once and serves it to every later baseline run and epoch
    from diversedistill.loop.parallel import worker_state
    from diversedistill_recipes.cifar.reproduce_cifar import (
        Job,
        _prepare_worker,
        experiment_for,
        run_job,
    )

    data = write_npz(tmp_path / "data" / "cifar10.npz", n_train=40, n_test=8)
    text = tiny_sentence_model(tmp_path / "text")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_EXPERIMENT.replace("TEXT_MODEL", str(text)) + "views: 2\n")
    exp, dd = experiment_for("cifar10", str(config))
    state = _prepare_worker(exp, data.parent, 0, tmp_path / "cache", DiverseDistillConfig(**dd),
                            tmp_path / "out", False)
    # every image the runs can show a teacher: 2 views of each training image, the others as is
    bound = 2 * (40 - exp.val_size) + exp.val_size + 8
    worker_state().clear()
    worker_state().update(state)
    try:
        run_job(Job("ld", 0, ("vit-b",), "ld", run_name="ld-0"))
        cached = state["own"]["vit-b"]
        first = cached.misses
        assert 0 < first == cached.rows_stored <= bound
        run_job(Job("ld", 1, ("vit-b",), "ld", run_name="ld-1"))
        assert cached.misses == cached.rows_stored <= bound  # a pair is computed once, ever
        assert cached.hits > 0  # the second run read back pairs the first one stored
        run_job(Job("diversedistill", 0, ("vit-b",), run_name="dd-0"))
        assert state["own"]["vit-b"] is cached  # DiverseDistill asks the teacher itself...
        contexts = state["contexts"]["vit-b"]  # ... above the injection point only
        assert 0 < contexts.misses == contexts.rows_stored <= bound
    finally:
        worker_state().clear()


def test_plain_reproduce_cifar_runs_the_tables_and_rows_only_when_asked():
    from diversedistill_recipes.cli.options import Reproduction
    from diversedistill_recipes.cli.vision_commands import vision_tables
    from diversedistill_recipes.comparison.search import TablesConfig

    assert isinstance(vision_tables(Reproduction(), None), TablesConfig)
    assert vision_tables(Reproduction(methods=["fd"]), None) is None
    assert vision_tables(Reproduction(ablations=True), None) is None


def test_a_resumed_vision_ablation_trains_only_the_rows_it_lacks(tmp_path, monkeypatch):
    from diversedistill_recipes.jobs import JobResult

    data = write_npz(tmp_path / "data" / "cifar10.npz", n_train=72, n_test=24)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_EXPERIMENT.replace("TEXT_MODEL", str(tiny_sentence_model(
        tmp_path / "text"))))
    out = tmp_path / "out"
    args = ["reproduce", "cifar10", "--data-dir", str(data.parent), "--ablations", "--seeds", "1",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--config", str(config),
            "--no-progress"]
    detached = {"answers detached": {"distill_trains_answers": False}}
    monkeypatch.setattr(reproduce_vision, "vision_ablations", lambda lr: detached)
    assert main(args) == 0
    with open(out / "results.csv") as f:
        first = {(r["method"], r["teachers"]): r["test_accuracy"] for r in csv.DictReader(f)}
    assert ("dd ablation: answers detached", "vit-b+clip") in first

    # a second variant, resumed: only its run trains; the rows of the first run stay
    monkeypatch.setattr(reproduce_vision, "vision_ablations",
                        lambda lr: {**detached, "replace": {"injection": "replace"}})
    trained = []

    def fake_train(recipe, job, *rest, **kw):
        trained.append(job.label)
        return JobResult(0.5, 0.25, 1.0, 1, job.run_dir(out))

    monkeypatch.setattr(reproduce_vision, "train_student", fake_train)
    assert main(args + ["--resume"]) == 0
    assert trained == ["dd ablation: replace"]
    with open(out / "results.csv") as f:
        again = {(r["method"], r["teachers"]): r["test_accuracy"] for r in csv.DictReader(f)}
    assert again == {**first, ("dd ablation: replace", "vit-b+clip"): "0.25"}


def test_vision_ablations_scale_the_module_lr_to_the_vision_students_own():
    variants = reproduce_vision.vision_ablations(2e-3)
    assert variants["module lr 3x the student's"] == {"module_lr": pytest.approx(6e-3)}
    # the vision legacy row keeps the vision λ and the question replacing [CLS]
    legacy = variants["first implementation (all old choices)"]
    assert (legacy["lam"], legacy["injection"]) == (0.003, "replace")
    assert variants["distance: sum, lam 0.003"] == {"distance": "sum", "lam": 0.003}
    # the same vision student at another rate: the variant follows it
    assert reproduce_vision.vision_ablations(1e-3)["module lr 3x the student's"] == {
        "module_lr": pytest.approx(3e-3)}
