"""The tables' validation search (search.py): knob after knob, one extension beyond an edge,
in rounds, either metric direction, resumable. Every run is a fake with scripted
validation scores: nothing trains."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from diversedistill.errors import ConfigError
from diversedistill.methods import DiverseDistillConfig
from diversedistill_recipes.comparison.claims import committee_label
from diversedistill_recipes.comparison.results import ACCURACY, MSE
from diversedistill_recipes.comparison.search import (
    GRIDS,
    VISION_GRIDS,
    CellSearch,
    Knob,
    MethodGrid,
    TableProtocol,
    TablesConfig,
    make_method,
    parse_grid,
)
from diversedistill_recipes.comparison.tables import (
    build_tables,
    read_search,
    search_row,
    table_cells,
    vision_layout,
)

BASE = DiverseDistillConfig(hidden=8)


class FakeExecute:
    """``execute`` for a protocol: the validation score of a run is ``score[(λ, T)]`` (test
    = validation + 0.01 · seed); every call (a round) and every run is kept."""

    def __init__(self, score: dict, metric=MSE):
        self.score, self.metric, self.rounds = score, metric, []

    def __call__(self, runs, on_result):
        self.rounds.append([(r.method, r.seed, json.loads(r.values)) for r in runs])
        for run in runs:
            values = json.loads(run.values)
            val = self.score[(values["lam"], values.get("temperature", 1.0))]
            on_result(run, SimpleNamespace(val=val, test=val + 0.01 * run.seed, seconds=1.0))

    @property
    def runs(self):
        return [run for batch in self.rounds for run in batch]


def protocol_for(tmp_path, score, metric=MSE, seeds=2, cells=(("ld", "clip"),), **kw):
    fake = FakeExecute(score, metric)
    logs = []
    protocol = TableProtocol(None, BASE, seeds, tmp_path, VISION_GRIDS, list(cells),
                             log=logs.append, execute=fake, metric=metric, **kw)
    return protocol, fake, logs


# ----------------------------------------------------------------------------- one knob


def knob_search(scores: dict[float, float], higher: bool = False) -> CellSearch:
    """A one-knob search (λ 0.3, 1, 3; ×3 / ÷3) driven to its end by ``scores``."""
    search = CellSearch(MethodGrid((Knob(("lam",), (0.3, 1.0, 3.0), times=3.0),)), higher)
    while trials := search.pending():
        for t in trials:
            search.record(t.key, scores[t.config["lam"]], 0.0, 1.0)
    return search


@pytest.mark.parametrize("higher", [False, True])
def test_a_middle_choice_runs_no_extension(higher):
    scores = {0.3: 0.5, 1.0: 0.4 if not higher else 0.6, 3.0: 0.5}
    search = knob_search(scores, higher)
    assert [t.config["lam"] for t in search.trials.values()] == [0.3, 1.0, 3.0]
    assert search.point == {"lam": 1.0} and search.extensions == 0


@pytest.mark.parametrize("higher, scores, extra, chosen", [
    (False, {0.3: 0.9, 1.0: 0.8, 3.0: 0.7, 9.0: 0.75}, 9.0, 3.0),  # MSE: top edge, ext. loses
    (False, {0.3: 0.7, 1.0: 0.8, 3.0: 0.9, 0.1: 0.6}, 0.1, 0.1),  # MSE: bottom, ext. wins
    (True, {0.3: 0.5, 1.0: 0.4, 3.0: 0.3, 0.1: 0.55}, 0.1, 0.1),  # accuracy: bottom, wins
    (True, {0.3: 0.3, 1.0: 0.4, 3.0: 0.5, 9.0: 0.45}, 9.0, 3.0),  # accuracy: top, loses
])
def test_an_edge_choice_runs_exactly_one_value_beyond_it(higher, scores, extra, chosen):
    search = knob_search(scores, higher)
    # one extension, even when it wins and is then itself at the edge
    assert [t.config["lam"] for t in search.trials.values()] == [0.3, 1.0, 3.0, extra]
    assert search.extensions == 1 and search.point == {"lam": chosen}
    assert search.chosen.val == scores[chosen]


def test_an_extension_the_config_refuses_is_not_run(tmp_path):
    """AMTML's α extends by ±0.15 inside [0, 1]: 0.6 -> 0.75 runs, 1.0 -> 1.15 does not."""
    grid = TablesConfig({"amtml": {"alpha": [0.8, 0.9, 1.0]}}).merged()["amtml"]
    assert GRIDS["amtml"].knobs[0].beyond(0.6) == 0.75
    assert (GRIDS["amtml"].knobs[0].beyond(0.3) == 0.15
            and GRIDS["amtml"].knobs[0].beyond(0.45) is None)
    logs = []
    protocol = TableProtocol(None, BASE, 1, tmp_path, {"amtml": grid}, [("amtml", "lm+mlp-l")],
                             log=logs.append, execute=lambda runs, on_result: [
                                 on_result(r, SimpleNamespace(
                                     val=1 - json.loads(r.values)["alpha"],
                                     test=0.5, seconds=1.0))
                                 for r in runs])
    protocol.run_seeds([0], lambda row: None)
    assert protocol.chosen[("amtml", "lm+mlp-l")]["alpha"] == 1.0
    assert len(protocol.search) == 3
    assert any("no value beyond the edge" in line and "alpha must be in [0, 1]" in line
               for line in logs)


# ----------------------------------------------------------------------------- two knobs


def test_two_knobs_one_after_the_other_mse_lower_is_better(tmp_path):
    """λ first (T at 1): 3 wins at the top edge, 9 runs and loses; then T at λ = 3: its
    first value ran already, 2 wins in the middle, no extension. 6 search runs."""
    score = {(0.3, 1.0): 0.9, (1.0, 1.0): 0.8, (3.0, 1.0): 0.7, (9.0, 1.0): 0.75,
             (3.0, 2.0): 0.65, (3.0, 4.0): 0.68}
    protocol, fake, logs = protocol_for(tmp_path, score)
    rows = []
    protocol.run_seeds([0, 1], rows.append)
    assert [[(v["lam"], v["temperature"]) for _, _, v in batch] for batch in fake.rounds] == [
        [(0.3, 1.0), (1.0, 1.0), (3.0, 1.0)], [(9.0, 1.0)], [(3.0, 2.0), (3.0, 4.0)],
        [(3.0, 2.0)]]  # the last round: seed 1 of the chosen config
    assert fake.rounds[-1][0][1] == 1
    assert protocol.chosen[("ld", "clip")] == {"lam": 3.0, "temperature": 2.0}
    assert [(r.knob, r.val, r.chosen) for r in protocol.search] == [
        ("lam", 0.9, False), ("lam", 0.8, False), ("lam", 0.7, False), ("lam", 0.75, False),
        ("temperature", 0.65, True), ("temperature", 0.68, False)]
    assert [(r.seed, r.val, r.test) for r in rows] == [
        (0, 0.65, 0.65), (1, 0.65, pytest.approx(0.66))]
    saved = read_search(tmp_path / "search.csv")
    assert [(r.trial, r.knob, json.loads(r.config), r.chosen) for r in saved][4] == (
        4, "temperature", {"lam": 3.0, "temperature": 2.0}, True)
    # the grid grew once, and search.csv says why; every other trial was in the grid
    assert [r.why for r in saved] == ["", "", "", "lam=3 was best at the top edge of {0.3, 1, 3}: "
                                      "one value beyond", "", ""]
    assert "lam=3 was best at the top edge" in build_tables([], saved)["search.md"]
    # the progress line: a range while an extension may still come, exact at the end
    progress = [line for line in logs if line.lstrip().startswith("[")]
    assert progress[0].lstrip().startswith("[1/6-8]") and progress[-1].lstrip().startswith("[7/7]")
    assert any("tables: estimated" in line for line in logs)


def test_two_knobs_accuracy_higher_is_better(tmp_path):
    """λ: 0.3 wins at the bottom edge, 0.1 runs and wins (and extends no further); T at
    λ = 0.1: 4 wins at the top edge, 8 runs and loses."""
    score = {(0.3, 1.0): 0.5, (1.0, 1.0): 0.4, (3.0, 1.0): 0.3, (0.1, 1.0): 0.55,
             (0.1, 2.0): 0.6, (0.1, 4.0): 0.62, (0.1, 8.0): 0.61}
    protocol, fake, _ = protocol_for(tmp_path, score, ACCURACY, seeds=1)
    rows = []
    protocol.run_seeds([0], rows.append)
    assert len(fake.runs) == len({json.dumps(v, sort_keys=True) for *_, v in fake.runs}) == 7
    assert protocol.chosen[("ld", "clip")] == {"lam": 0.1, "temperature": 4.0}
    assert [r.val for r in protocol.search if r.chosen] == [0.62]
    assert [(r.method, r.seed, r.val) for r in rows] == [("ld", 0, 0.62)]
    assert "val_accuracy" in (tmp_path / "search.csv").read_text().splitlines()[0]


def test_a_round_hands_every_cell_its_next_runs_at_once(tmp_path):
    score = {(lam, t): 1 / lam + t
             for lam in (0.1, 0.3, 1.0, 3.0, 9.0) for t in (1.0, 2.0, 4.0, 8.0, 0.5)}
    protocol, fake, _ = protocol_for(tmp_path, score, cells=(("ld", "clip"), ("fd", "clip")),
                                     seeds=2)
    protocol.run_seeds([0, 1], lambda row: None)
    assert [m for m, *_ in fake.rounds[0]] == ["ld"] * 3 + ["fd"] * 3
    # fd's search ends before ld's: its seed 1 runs beside ld's next trials
    assert ("fd", 1) in [(m, s) for m, s, _ in fake.rounds[2]]
    assert sum(len(batch) for batch in fake.rounds) == protocol.run_counts()[0]


# ----------------------------------------------------------------------------- resume


def test_resume_takes_finished_trials_and_runs_only_what_is_missing(tmp_path):
    score = {(0.3, 1.0): 0.5, (1.0, 1.0): 0.4, (3.0, 1.0): 0.3, (0.1, 1.0): 0.55,
             (0.1, 2.0): 0.6, (0.1, 4.0): 0.62, (0.1, 8.0): 0.61}
    first, fake, _ = protocol_for(tmp_path, score, ACCURACY, seeds=2)
    rows = []
    first.run_seeds([0, 1], rows.append)
    assert len(fake.runs) == 8
    search = read_search(tmp_path / "search.csv")

    # everything kept: nothing runs, the same rows come back
    again, fake, _ = protocol_for(tmp_path, score, ACCURACY, seeds=2, done=rows,
                                     done_search=search)
    assert "the earlier run's search trials" in again.describe()
    kept = []
    again.run_seeds([0, 1], kept.append)
    assert fake.rounds == [] and kept == rows and again.chosen == first.chosen

    # killed mid-way: one trial and seed 1 missing -> only those run
    lost = json.dumps({"lam": 1.0, "temperature": 1.0}, sort_keys=True)
    again, fake, _ = protocol_for(tmp_path, score, ACCURACY, seeds=2,
                                  done=[r for r in rows if r.seed == 0],
                                  done_search=[r for r in search if r.config != lost])
    again.run_seeds([0, 1], lambda row: None)
    assert [(s, v) for _, s, v in fake.runs] == [(0, {"lam": 1.0, "temperature": 1.0}),
                                                 (1, {"lam": 0.1, "temperature": 4.0})]

    # the search finished but its seed-0 row was lost: the chosen config runs once more
    again, fake, _ = protocol_for(tmp_path, score, ACCURACY, seeds=2,
                                  done=[r for r in rows if r.seed == 1], done_search=search)
    kept = []
    again.run_seeds([0, 1], kept.append)
    assert [(s, v) for _, s, v in fake.runs] == [(0, {"lam": 0.1, "temperature": 4.0})]
    assert sorted((r.seed, r.test) for r in kept) == sorted(
        (r.seed, r.test) for r in rows)

    # the earlier run chose another config (its grid differed): its seed-1 row is not of
    # today's choice, so seed 1 runs again rather than mixing the two configs in one cell
    other = [replace(r, chosen=json.loads(r.config) == {"lam": 0.3, "temperature": 1.0})
             for r in search]
    again, fake, _ = protocol_for(tmp_path, score, ACCURACY, seeds=2, done=rows,
                                  done_search=other)
    again.run_seeds([0, 1], lambda row: None)
    assert [(s, v) for _, s, v in fake.runs] == [(1, {"lam": 0.1, "temperature": 4.0})]


def test_a_search_csv_written_before_the_why_column_still_reads(tmp_path):
    path = tmp_path / "search.csv"
    path.write_text("method,teachers,seed,trial,knob,config,val_mse,seconds,chosen\n"
                    'fd,mlp-l,0,3,lam,"{""lam"": 9.0}",0.84,10.0,True\n')
    (row,) = read_search(path)
    assert row.chosen and row.why.startswith("not recorded")


# ----------------------------------------------------------------------------- grids and counts


def test_run_counts_of_the_default_tables():
    movielens = TableProtocol(None, BASE, 5, "unused", log=lambda *_: None)
    assert movielens.run_counts() == (14 * 3 + 4 * 14, 14 * 4 + 4 * 14)
    assert ("42-56 runs" in movielens.describe()
            and "98-112 distillation runs" in movielens.describe())
    layout = vision_layout(["vit-l", "clip"], "vit-s", foundation="clip")
    assert layout.tables[0].settings == ("clip", "vit-l")
    vision = TableProtocol(None, BASE, 5, "unused", VISION_GRIDS, table_cells(layout.tables),
                           log=lambda *_: None)
    assert len(vision.cells) == 13 and committee_label("vit-l+clip") == "ViT-L + CLIP"
    # LD (on two teachers), MT, AEKD: λ then T (5-7 runs); the 9 others one knob (3-4)
    assert vision.run_counts() == (4 * 5 + 9 * 3 + 4 * 13, 4 * 7 + 9 * 4 + 4 * 13)
    assert "47-64 runs" in vision.describe() and "99-116 distillation runs" in vision.describe()
    assert "grid ld: lam {0.3, 1, 3} (×3 / ÷3 beyond an edge), then temperature {1, 2, 4}" \
        in vision.describe()


def test_yaml_grids_knob_order_ties_and_fixed_values():
    grid = parse_grid({"temperature": [1, 2, 4], "lam": {"values": [1, 2, 3], "plus": 1},
                       "reduction": "mean"}, "g")
    assert [k.name for k in grid.knobs] == ["temperature", "lam"]  # the order written
    assert grid.start() == {"reduction": "mean", "temperature": 1.0, "lam": 1.0}
    assert grid.knobs[1].beyond(3.0) == 4.0 and grid.knobs[1].beyond(1.0) == 0.0
    sckd = TablesConfig({"sckd": {"lam_logit=lam_feature": [1, 3, 9]}}).merged()["sckd"]
    assert sckd.start() == {"lam_logit": 1.0, "lam_feature": 1.0}
    assert sckd.knobs[0].at({}, 27.0) == {"lam_logit": 27.0, "lam_feature": 27.0}


@pytest.mark.parametrize("spec, message", [
    ({"ld": "lam"}, "tables.grids.ld: expected a mapping of knob -> values"),
    ({"ld": {"lam": [1, 3]}}, "tables.grids.ld.lam: a knob needs at least 3 values"),
    ({"ld": {"lam": [1, "x", 3]}}, "tables.grids.ld.lam: expected a list of distinct numbers"),
    ({"ld": {"lam": [1, 1, 3]}}, "tables.grids.ld.lam: expected a list of distinct numbers"),
    ({"ld": {"lam": {"values": [1, 2, 3], "step": 2}}}, "tables.grids.ld.lam: unknown key 'step'"),
    ({"ld": {"lam": {"values": [1, 2, 3], "times": 2, "plus": 1}}},
     "tables.grids.ld.lam: give one extension rule"),
    ({"ld": {"lam": {"values": [1, 2, 3], "times": 0.5}}},
     "tables.grids.ld.lam.times: expected a number above 1"),
    ({"ld": {"lamda": [1, 2, 3]}}, "tables.grids.ld: unknown key 'lamda'"),
    ({"mt": {"average": ["a", "b", "c"]}}, "tables.grids.mt.average: no default extension"),
    ({"ld": {"temperature": [0, 1, 2]}}, "tables.grids.ld.temperature: temperature must be > 0"),
    ({"sckd": {"lam_logit=": [1, 2, 3]}}, "tables.grids.sckd: 'lam_logit=' is not a key"),
])
def test_a_bad_knob_spec_is_one_line_naming_the_key(spec, message):
    with pytest.raises(ConfigError) as err:
        TablesConfig(spec)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- comparable strengths


@pytest.mark.parametrize("grids", [GRIDS, VISION_GRIDS], ids=["movielens", "vision"])
def test_every_method_in_the_tables_says_what_its_distance_is_measured_in(grids):
    """BASELINES.md, comparable strengths: each table method, at its grid's first config,
    names its distance; on MovieLens every one is free of the teacher's width (the LM is
    384 wide, an MLP 64) and the feature terms of its scale too."""
    for method, grid in grids.items():
        note = make_method(method, grid.start(), DiverseDistillConfig()).distance_note()
        assert note != "not stated" and "grows with width" not in note, (method, note)
        if grids is GRIDS and "feature" in note:
            assert "free of width and scale" in note, (method, note)


def test_the_tables_print_each_methods_distance_under_the_table():
    search = [search_row(MSE, m, "mlp-l", 0, 0, "lam", json.dumps(GRIDS[m].start()), 0.8, 1.0,
                         True) for m in ("ld", "fd", "sckd", "diversedistill")]
    rows = [MSE.row(m, "mlp-l", 0, 0.8, 0.85, 1.0) for m in ("ld", "fd", "sckd", "diversedistill")]
    table = build_tables(rows, search)["table3.md"]
    assert "- FD: feature: squared error per dimension relative to the teacher" in table
    assert "- DiverseDistill: answer against z: squared error per dimension" in table
    assert "- LD: prediction: squared error of the rating" in table
