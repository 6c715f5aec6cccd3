"""The comparison tables (issue 5): tables and claims from hand-made results, the
validation search, the own-pass cache, and one tiny ``reproduce movielens --tables``."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, replace
from types import SimpleNamespace

import pytest
import torch
from conftest import write_ml100k
from tiny_lm import tiny_bert_dir

from diversedistill.committee import Committee
from diversedistill.errors import ConfigError, ModelError
from diversedistill.interface import take_rows
from diversedistill.loop.cached_teacher import CachedOwnPass
from diversedistill.methods import LD, DiverseDistill, DiverseDistillConfig
from diversedistill.methods.common import own_answers
from diversedistill.training import TrainConfig, fit
from diversedistill_recipes.cli import main
from diversedistill_recipes.comparison.claims import FAILS, HOLDS, Spread, compare, decide_claims
from diversedistill_recipes.comparison.results import ResultRow, write_csv
from diversedistill_recipes.comparison.search import (
    GRIDS,
    MethodGrid,
    TableProtocol,
    TablesConfig,
    choose,
)
from diversedistill_recipes.comparison.tables import TABLES, build_tables, table_cells
from diversedistill_recipes.comparison.tables import main as tables_main
from diversedistill_recipes.movielens import reproduce_movielens as reproduce
from diversedistill_recipes.movielens import runs as ml_runs
from diversedistill_recipes.movielens.batches import rating_loader
from diversedistill_recipes.movielens.lm.prepare import LMConfig, prepare_language_teacher
from diversedistill_recipes.movielens.rating_recipes import (
    STUDENT,
    TEACHERS,
    RecommenderRecipe,
    as_student,
    as_teacher,
    build,
)
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split

# ----------------------------------------------------------------------------- hand-made rows

STUDENT_MSE, BEST_TEACHER_MSE = 0.90, 0.80  # the gap is 0.10: MSE 0.85 recovers 50%


def rows_for(cells: dict, seeds: int = 3) -> list[ResultRow]:
    """Reference rows plus ``cells``: (method, committee) -> mean test MSE, spread ±0.001
    per seed (seeds at mean − 0.001, mean, mean + 0.001: std 0.001)."""
    rows = []
    for s in range(seeds):
        rows.append(ResultRow("student alone", "mlp-s", s, 0.91, STUDENT_MSE, 1.0))
        rows.append(ResultRow("teacher alone", "mlp-l", s, 0.81, BEST_TEACHER_MSE, 1.0))
        rows.append(ResultRow("teacher alone", "lm", s, 0.83, 0.82, 1.0))
        rows.append(ResultRow("reference", "global mean", s, float("nan"), 1.27, 0.0))
        for (method, teachers), mean in cells.items():
            rows.append(ResultRow(method, teachers, s, mean, mean + 0.001 * (s - 1), 1.0))
    return rows


# DiverseDistill best everywhere, the committee best, AMTML below the best single baseline
GOOD = {("ld", "lm"): 0.86, ("fd", "lm"): 0.87, ("sckd", "lm"): 0.865,
        ("diversedistill", "lm"): 0.85, ("ld", "mlp-l"): 0.84, ("fd", "mlp-l"): 0.86,
        ("sckd", "mlp-l"): 0.845, ("diversedistill", "mlp-l"): 0.83,
        ("mt", "lm+mlp-l"): 0.835, ("amtml", "lm+mlp-l"): 0.88, ("autoskd", "lm+mlp-l"): 0.838,
        ("aekd", "lm+mlp-l"): 0.85, ("diversedistill", "lm+mlp-l"): 0.79,
        ("diversedistill", "mlp-m+mlp-l"): 0.81}


def verdicts(cells: dict, seeds: int = 3) -> dict[int, str]:
    files = build_tables(rows_for(cells, seeds))
    claims = files["claims.md"]
    return {n: claims.split(f"## Claim {n}: ")[1].split("\n")[0] for n in (1, 2, 3, 4)}


def test_tables_cover_every_cell_once_in_table_order():
    cells = table_cells()
    assert len(cells) == len(set(cells)) == 14
    assert set(cells) == set(GOOD)


def test_table_cells_show_gap_recovered_with_the_test_mse_behind_it():
    files = build_tables(rows_for(GOOD))
    with_csv = list(csv.DictReader(files["table3.csv"].splitlines()))
    ld_lm = next(r for r in with_csv if r["method"] == "ld" and r["setting"] == "lm")
    assert float(ld_lm["test_mse_mean"]) == pytest.approx(0.86)
    assert float(ld_lm["test_mse_std"]) == pytest.approx(0.001)
    assert float(ld_lm["gap_recovered"]) == pytest.approx(0.4)  # (0.86-0.90)/(0.80-0.90)
    assert int(ld_lm["seeds"]) == 3
    table4 = files["table4.md"]
    # the committee's DiverseDistill beats the best teacher: above 100%, and bold in its line
    assert "**110.0% ± 1.0 (0.7900 ± 0.0010)**" in table4
    assert "| LM + MLP-L |" in table4 and "AutoSKD" in table4
    assert "| MLP-M + MLP-L | 90.0% ± 1.0 (0.8100 ± 0.0010) |" in files["table5.md"]
    assert "Best teacher alone: MLP-L, 0.8000" in table4
    raw = files["raw.md"]
    assert "| ld | lm | 0.8590 | 0.8600 | 0.8610 |" in raw
    assert "| reference | global mean | 1.2700 | 1.2700 | 1.2700 |" in raw
    assert files["raw.csv"].splitlines()[0] == "method,teachers,seed 0,seed 1,seed 2"


def test_a_cell_not_run_is_a_dash_and_leaves_its_claims_undecided():
    cells = {k: v for k, v in GOOD.items() if k[1] not in ("lm", "lm+mlp-l")}
    files = build_tables(rows_for(cells))
    assert "| LM | — | — | — | — |" in files["table3.md"]
    rows = list(csv.DictReader(files["table4.csv"].splitlines()))
    assert all(r["seeds"] == "0" and r["test_mse_mean"] == "" for r in rows)
    v = verdicts(cells)
    assert v[1] == ("not decided (not run: DiverseDistill from LM + MLP-L, "
                    "DiverseDistill from LM)")
    assert v[4] == "not decided (not run: DiverseDistill from LM + MLP-L)"
    assert v[2].startswith("not decided (not run: MT from LM + MLP-L, AMTML from LM + MLP-L")
    assert v[3].startswith("not decided (not run: DiverseDistill from LM, LD from LM")


def test_claims_hold_when_every_spread_is_clear():
    assert verdicts(GOOD) == {1: HOLDS, 2: HOLDS, 3: HOLDS, 4: HOLDS}


def test_claims_do_not_hold_when_the_opposite_is_clear():
    bad = dict(GOOD)
    bad[("diversedistill", "lm+mlp-l")] = 0.86  # worse than DD from LM alone (0.85), ...
    bad[("diversedistill", "mlp-m+mlp-l")] = 0.80  # ... than the similar committee, ...
    for mixing in ("mt", "amtml", "autoskd", "aekd"):  # ... and mixing beats the best single
        bad[(mixing, "lm+mlp-l")] = 0.83
    v = verdicts(bad)
    assert v == {1: FAILS, 2: FAILS, 3: FAILS, 4: FAILS}


def test_overlapping_spreads_leave_a_claim_undecided_with_the_numbers():
    close = dict(GOOD)
    close[("diversedistill", "lm+mlp-l")] = 0.8515  # 0.8505..0.8525 against 0.849..0.851
    close[("amtml", "lm+mlp-l")] = 0.8415  # within the best single baseline's spread
    close[("aekd", "lm+mlp-l")] = 0.841
    close[("mt", "lm+mlp-l")] = 0.8405
    close[("autoskd", "lm+mlp-l")] = 0.841
    files = build_tables(rows_for(close))
    v = verdicts(close)
    assert v[1] == "not decided (spreads overlap)"
    assert v[2] == "not decided (spreads overlap)"
    assert "DiverseDistill from LM + MLP-L 0.8515 ± 0.0010 (3 seeds) against DiverseDistill " \
           "from LM 0.8500 ± 0.0010 (3 seeds): spreads overlap" in files["claims.md"]
    assert "best single-teacher baseline: LD from MLP-L" in files["claims.md"]


def test_claim_3_is_decided_per_setting_and_fails_on_one_clear_loss():
    one_loss = dict(GOOD)
    one_loss[("sckd", "mlp-l")] = 0.82  # beats DiverseDistill from MLP-L (0.83) clearly
    files = build_tables(rows_for(one_loss))
    claims = files["claims.md"]
    assert "## Claim 3: does not hold" in claims
    assert "setting MLP-L: does not hold" in claims and "setting LM: holds" in claims


def test_one_seed_has_no_spread_so_nothing_is_decided():
    v = verdicts(GOOD, seeds=1)
    assert all(text == "not decided (fewer than 2 seeds)" for text in v.values())
    assert compare(Spread(0.8, 0.0, 1), Spread(0.9, 0.0, 1)) == "no spread"
    assert compare(Spread(0.8, 0.05, 2), Spread(0.9, 0.05, 2)) == "overlap"  # touching


def test_claim_1_quotes_the_lm_teacher_alone_for_context():
    claims = decide_claims({("diversedistill", "lm+mlp-l"): Spread(0.8, 0.001, 5),
                            ("diversedistill", "lm"): Spread(0.9, 0.001, 5)},
                           foundation_alone=Spread(0.85, 0.0, 5))
    assert claims[0].verdict == HOLDS
    assert claims[0].evidence[-1] == "for context, the LM teacher alone: 0.8500"


# ----------------------------------------------------------------------------- the search


def test_choose_takes_the_best_validation_score_first_on_ties_never_nan():
    assert choose([0.9, 0.8, 0.85]) == 1  # MSE: the lowest
    assert choose([0.9, 0.8, 0.85], higher_is_better=True) == 0  # accuracy: the highest
    assert choose([0.8, 0.8]) == 0 and choose([0.8, 0.8], higher_is_better=True) == 0
    assert choose([float("nan"), 0.95]) == 1
    assert choose([float("nan"), 0.2], higher_is_better=True) == 1


def test_the_search_picks_the_best_validation_value_and_runs_it_on_every_seed(tmp_path):
    """A fake run: validation MSE set by λ (best inside LD's list at λ = 3; best at the top
    of DiverseDistill's, so one more value, 90, runs and loses), test MSE by λ and seed;
    nothing trains."""
    calls = []

    def run(names, method, seed, run_dir):
        calls.append((method.name, names, method.cfg.lam, seed))
        val = {1.0: 0.86, 3.0: 0.83, 10.0: 0.84, 30.0: 0.82, 90.0: 0.825}[method.cfg.lam]
        return SimpleNamespace(val=val, test=val + 0.01 + 0.001 * seed, seconds=2.0)

    cells = [("ld", "lm"), ("diversedistill", "lm+mlp-l")]
    recorded = []
    protocol = TableProtocol(run, DiverseDistillConfig(hidden=8), 3, tmp_path, GRIDS, cells,
                             log=lambda *_: None)
    assert protocol.run_counts() == (3 + 3 + 2 * 2, 4 + 4 + 2 * 2)
    for seed in range(3):
        protocol.run_seed(seed, recorded.append)
    assert len(calls) == 3 + 4 + 2 * 2  # the chosen search run is seed 0's: not rerun
    assert protocol.run_counts() == (len(calls), len(calls))
    assert protocol.chosen == {("ld", "lm"): {"lam": 3.0},
                               ("diversedistill", "lm+mlp-l"): {"lam": 30.0}}
    assert [c for c in calls if c[3] > 0] == [
        ("ld", ("lm",), 3.0, 1), ("diversedistill", ("lm", "mlp-l"), 30.0, 1),
        ("ld", ("lm",), 3.0, 2), ("diversedistill", ("lm", "mlp-l"), 30.0, 2)]
    ld = [r for r in recorded if r.method == "ld"]
    assert [(r.seed, r.val, r.test) for r in ld] == [
        (0, 0.83, pytest.approx(0.84)), (1, 0.83, pytest.approx(0.841)),
        (2, 0.83, pytest.approx(0.842))]
    with open(tmp_path / "search.csv") as f:
        search = list(csv.DictReader(f))
    assert [(r["method"], r["knob"], json.loads(r["config"]), r["val_mse"], r["chosen"])
            for r in search] == [
        ("ld", "lam", {"lam": 1.0}, "0.86", "False"), ("ld", "lam", {"lam": 3.0}, "0.83", "True"),
        ("ld", "lam", {"lam": 10.0}, "0.84", "False"),
        ("diversedistill", "lam", {"lam": 3.0}, "0.83", "False"),
        ("diversedistill", "lam", {"lam": 10.0}, "0.84", "False"),
        ("diversedistill", "lam", {"lam": 30.0}, "0.82", "True"),
        ("diversedistill", "lam", {"lam": 90.0}, "0.825", "False")]
    assert "test" not in ",".join(search[0])  # a search run's test MSE is never written


def test_diversedistill_grid_values_change_the_run_configuration_only_where_given(tmp_path):
    seen = []

    def run(names, method, seed, run_dir):
        seen.append(method.cfg)
        return SimpleNamespace(val=0.8, test=0.8, seconds=0.0)

    protocol = TableProtocol(run, DiverseDistillConfig(hidden=8, tau=0.6), 1, tmp_path,
                             {"diversedistill": MethodGrid(fixed={"lam": 3.0})},
                             [("diversedistill", "lm")], log=lambda *_: None)
    protocol.run_seed(0, lambda row: None)
    assert (seen[0].lam, seen[0].hidden, seen[0].tau) == (3.0, 8, 0.6)


def test_default_grids_build_and_a_bad_grid_fails_before_anything_runs(tmp_path):
    assert set(GRIDS) >= {m for m, _ in table_cells()}
    TableProtocol(None, DiverseDistillConfig(), 5, tmp_path, log=lambda *_: None)
    # a search, not a single value: every knob has three values or more
    assert all(grid.knobs and all(len(k.values) >= 3 for k in grid.knobs)
               for grid in GRIDS.values())
    with pytest.raises(ConfigError, match=r"tables.grids.ld.*unknown key 'lamda'"):
        TablesConfig({"ld": {"lamda": [1.0, 3.0, 9.0]}})
    with pytest.raises(ConfigError, match="not a method of the tables"):
        TablesConfig({"kd": {"lam": [1.0, 3.0, 9.0]}})
    with pytest.raises(ConfigError, match="tables.grids.ld: expected a mapping of knob"):
        TablesConfig({"ld": [{"lam": 1.0}, {"lam": 3.0}]})  # the old list of configs
    merged = TablesConfig({"ld": {"lam": [9.0, 10.0, 11.0]}}).merged()
    assert merged["ld"].knobs[0].values == (9.0, 10.0, 11.0) and merged["mt"] == GRIDS["mt"]


def test_cells_whose_teacher_is_missing_are_skipped(tmp_path):
    protocol = TableProtocol(None, DiverseDistillConfig(), 5, tmp_path, log=lambda *_: None,
                             teachers={"mlp-m": object(), "mlp-l": object()})
    assert protocol.cells == [("ld", "mlp-l"), ("fd", "mlp-l"), ("sckd", "mlp-l"),
                              ("diversedistill", "mlp-l"), ("diversedistill", "mlp-m+mlp-l")]
    assert "skipped, a teacher missing: LD from LM" in protocol.describe()


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


# ----------------------------------------------------------------------------- end to end


class ShortRecipe(RecommenderRecipe):
    """A recipe whose runs stop after 3 epochs: one step per epoch on the tiny data would
    otherwise run all 40 for every one of the ~30 runs."""

    def train_config(self, seed: int, **kw) -> TrainConfig:
        return replace(super().train_config(seed, **kw), max_epochs=3)


def test_reproduce_tables_end_to_end_writes_every_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(reproduce, "STUDENT", ShortRecipe(**asdict(STUDENT)))
    monkeypatch.setattr(reproduce, "TEACHERS", {k: ShortRecipe(**asdict(v))
                                                for k, v in TEACHERS.items()})
    data = write_ml100k(tmp_path / "ml-100k")
    out, cache = tmp_path / "out", tmp_path / "cache"
    config = tmp_path / "tables.yaml"
    # one value per method (LD's λ searched over three, so that something is): a fast test
    grids = {m: {k: v for k, v in grid.start().items()} for m, grid in GRIDS.items()}
    grids["ld"] = {"lam": [0.3, 1.0, 3.0]}
    config.write_text(json.dumps({"lm": {"epochs": 1}, "tables": {"grids": grids}}))
    args = ["reproduce", "movielens", "--data-dir", str(data), "--tables", "--table-seeds", "2",
            "--out", str(out), "--cache-dir", str(cache), "--no-progress", "--hidden", "16",
            "--lm", str(tiny_bert_dir(tmp_path / "bert")), "--config", str(config)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    # the run counts, up front: 12 cells of one run, LD's 2 of 3 or 4; then 14 on seed 1
    assert "18-20 runs (each cell's chosen run is its seed-0 result)" in printed
    assert "32-34 distillation runs in all" in printed and "grid ld: lam {0.3, 1, 3}" in printed
    assert "own-pass cache lm:" in printed
    written = {p.name for p in out.iterdir() if p.is_file()}
    tables = {f"{t.name}.{x}" for t in TABLES for x in ("md", "csv")}
    assert written >= tables | {"results.csv", "summary.csv", "search.csv", "search.md",
                                "claims.md", "raw.md", "raw.csv"}
    with open(out / "results.csv") as f:
        results = list(csv.DictReader(f))
    for method, teachers in table_cells():
        seeds = sorted(r["seed"] for r in results
                       if r["method"] == method and r["teachers"] == teachers)
        assert seeds == ["0", "1"], (method, teachers)
    claims = (out / "claims.md").read_text()
    assert claims.count("## Claim ") == 4
    for n in (1, 2, 3, 4):
        assert claims.split(f"## Claim {n}: ")[1].split()[0] in ("holds", "does", "not")
    assert "—" not in (out / "table3.md").read_text()  # every cell ran
    assert "Chosen on validation (search seed): LD from LM: lam=" in (out / "table3.md").read_text()
    # rebuilt from the saved results alone, the tables come out the same
    before = {name: (out / name).read_text() for name in written if name.startswith("table")}
    for name in before:
        (out / name).unlink()
    assert tables_main([str(out)]) == 0
    assert {name: (out / name).read_text() for name in before} == before
    assert not math.isnan(float(results[0]["test_mse"]))

    # resumed after a kill: two finished runs and one cell's search are missing; only
    # those train again, and (CPU runs are deterministic) they give the same figures
    dropped = {("ld", "mlp-l", "1"), ("mt", "lm+mlp-l", "1")}
    write_rows(out / "results.csv", [r for r in results
                                     if (r["method"], r["teachers"], r["seed"]) not in dropped])
    with open(out / "search.csv") as f:
        search = list(csv.DictReader(f))
    write_rows(out / "search.csv",
               [r for r in search if (r["method"], r["teachers"]) != ("fd", "lm")])
    calls = []
    train = ml_runs.train_student

    def counted(recipe, job, *a, **k):  # the distillation runs (the student alone is kept)
        if job.names:
            calls.append(job.names)
        return train(recipe, job, *a, **k)

    monkeypatch.setattr(ml_runs, "train_student", counted)
    assert main(args + ["--resume"]) == 0
    # FD from the LM: its search runs again, and so does its seed 1 — with the earlier
    # search lost, nothing says that seed 1 ran the config chosen now
    assert sorted(calls) == sorted([("mlp-l",), ("lm", "mlp-l"), ("lm",), ("lm",)])
    with open(out / "results.csv") as f:
        resumed = {(r["method"], r["teachers"], r["seed"]): r["test_mse"]
                   for r in csv.DictReader(f)}
    assert resumed == {(r["method"], r["teachers"], r["seed"]): r["test_mse"] for r in results}


def write_rows(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_tables_and_ablations_are_refused_together(tmp_path, capsys):
    args = ["reproduce", "movielens", "--data-dir", str(tmp_path), "--tables", "--ablations"]
    assert main(args) == 2
    assert "--tables and --ablations" in capsys.readouterr().err


def test_a_bad_grid_in_the_yaml_fails_before_any_data_is_read(tmp_path, capsys):
    config = tmp_path / "t.yaml"
    config.write_text("tables:\n  grids:\n    mt: {lam: [1, 3, 9], varient: x}\n")
    args = ["reproduce", "movielens", "--data-dir", str(tmp_path / "nowhere"), "--tables",
            "--config", str(config)]
    assert main(args) == 2
    assert "tables.grids.mt: unknown key 'varient'" in capsys.readouterr().err
    config.write_text("tables:\n  grids:\n    mt: {lam: [1, 3]}\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "tables.grids.mt.lam: a knob needs at least 3 values" in err
    assert len(err.strip().splitlines()) == 1


def test_rebuilding_without_results_is_one_clear_error(tmp_path, capsys):
    assert tables_main([str(tmp_path)]) == 2
    assert "no results.csv" in capsys.readouterr().err
    write_csv(tmp_path / "results.csv", rows_for(GOOD))
    assert tables_main([str(tmp_path)]) == 0
    assert (tmp_path / "claims.md").is_file() and not (tmp_path / "search.md").exists()


def test_summarize_tables_joins_directories_of_a_split_run(tmp_path, capsys):
    """Two processes ran different cells; both repeated the student-alone rows."""
    from diversedistill_recipes.cli import main
    from diversedistill_recipes.comparison.results import ResultRow, write_csv

    common = [ResultRow("student alone", "mlp-s", s, 0.9, 0.88 + 0.01 * s, 1) for s in range(2)]
    common += [ResultRow("teacher alone", "mlp-l", s, 0.85, 0.84, 1) for s in range(2)]
    a = common + [ResultRow("ld", "mlp-l", s, 0.86, 0.86, 1) for s in range(2)]
    b = common + [ResultRow("mt", "lm+mlp-l", s, 0.87, 0.87, 1) for s in range(2)]
    write_csv(tmp_path / "a" / "results.csv", a)
    write_csv(tmp_path / "b" / "results.csv", b)
    assert main(["summarize", str(tmp_path / "a"), str(tmp_path / "b"), "--tables",
                 "--out", str(tmp_path / "all")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| student alone | mlp-s | 2 |") == 1  # kept once, not twice
    with open(tmp_path / "all" / "results.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 8
    assert (tmp_path / "all" / "table3.md").is_file() and (tmp_path / "all" / "claims.md").is_file()
    b[0] = ResultRow("student alone", "mlp-s", 0, 0.9, 0.99, 1)  # same run, other score
    write_csv(tmp_path / "b" / "results.csv", b)
    assert main(["summarize", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "student alone / mlp-s / seed 0 differs" in capsys.readouterr().err
