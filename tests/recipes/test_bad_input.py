"""Malformed inputs through the command line: one line on stderr naming the file and line,
key or width; exit status 2; and no output left behind. docs/bad-input.md lists every case
with its test; ``test_the_docs_table_names_only_tests_that_exist`` keeps the two in step.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import write_ml1m, write_ml_csv, write_tiny_committee
from test_data import MALFORMED_RATING_LINES

from diversedistill.errors import ModelError
from diversedistill_recipes.cli import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    expected: str  # a regular expression the single error line must match
    args: tuple[str, ...] = ()  # added to a small, valid `distill` command
    prepare: Callable[[Path], None] | None = None  # edits the files under the test's root


def replace_line(path: Path, number: int, text: str | bytes) -> None:
    lines = path.read_bytes().splitlines()
    lines[number - 1] = text.encode() if isinstance(text, str) else text
    path.write_bytes(b"\n".join(lines) + b"\n")


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def yaml(text: str) -> Callable[[Path], None]:
    return lambda root: (root / "c.yaml").write_text(text)


def ratings_line(line: str) -> Callable[[Path], None]:
    return lambda root: replace_line(root / "ml-100k" / "u.data", 3, line)


def repeat_line(path: Path, source: int, target: int) -> None:
    """Line ``target`` becomes a second rating of line ``source``'s (user, item) pair."""
    user, item, _, stamp = path.read_text().splitlines()[source - 1].split("\t")
    replace_line(path, target, f"{user}\t{item}\t5\t{stamp}")


def fold_overlap(root: Path) -> None:
    """u1.test's lines 2 and 3 are ratings u1.base holds too."""
    base = (root / "ml-100k" / "u1.base").read_text().splitlines()
    for number, line in ((2, base[0]), (3, base[1])):
        replace_line(root / "ml-100k" / "u1.test", number, line)


def foreign_teacher(root: Path) -> None:
    """A teacher exported from a model of another release's fields (far fewer items)."""
    from diversedistill.export import export_model
    from diversedistill_recipes.movielens.recommender import build_recommender
    from diversedistill_recipes.movielens.releases import load_movielens

    ml1m = load_movielens(write_ml1m(root / "ml-1m"))
    export_model(build_recommender(ml1m.fields, "mlp-s", 3.5, hidden=[8], embedding_dim=4),
                 root / "ta")


def recorded_teacher(root: Path, split_seed: int = 0, ml1m: bool = False) -> None:
    """Teacher 'ta' with the data record `train-teacher` writes: of another split of the
    same ratings, or of another release."""
    from diversedistill.export import export_model
    from diversedistill_recipes.movielens.provenance import data_record
    from diversedistill_recipes.movielens.recommender import build_recommender
    from diversedistill_recipes.movielens.releases import load_movielens
    from diversedistill_recipes.movielens.splits import RatingSplit, make_split

    if ml1m:
        ml = load_movielens(write_ml1m(root / "ml-1m"))
        split = RatingSplit("random-0", ml.ratings, ml.ratings, ml.ratings)
        record = data_record(ml, split, "ml-1m", "random", 0)
    else:
        ml = load_movielens(root / "ml-100k")
        record = data_record(ml, make_split(ml, "random", split_seed), "ml-100k", "random",
                             split_seed)
    export_model(build_recommender(ml.fields, "mlp-s", 3.5, hidden=[8], embedding_dim=4),
                 root / "ta", {"data": record})


def non_finite_teacher(root: Path) -> None:
    """Teacher 'ta' whose weights hold a NaN, under a checksum that matches them."""
    from safetensors.torch import load_file, save_file

    from diversedistill.export import file_sha256

    weights = load_file(str(root / "ta" / "model.safetensors"))
    key = sorted(k for k in weights if k.startswith("embed"))[0]
    weights[key].view(-1)[0] = float("nan")
    save_file(weights, str(root / "ta" / "model.safetensors"))
    edit_json(root / "ta" / "config.json",
              lambda c: c.update(weights_sha256=file_sha256(root / "ta" / "model.safetensors")))


CASES: dict[str, Case] = {
    # ---- data files (the rating-line cases are test_data.py's, here through the CLI)
    **{f"data-{name}": Case(re.escape(f"u.data, {message}"), prepare=ratings_line(line))
       for name, (line, message) in MALFORMED_RATING_LINES.items()},
    "data-separators-only": Case(r"u\.data, line 3: user must be an integer, found ''",
                                 prepare=ratings_line("\t\t\t")),
    "data-wrong-encoding": Case(
        r"u\.user, line 2: not valid utf-8 text",
        prepare=lambda root: replace_line(root / "ml-100k" / "u.user", 2, b"2|30|M|caf\xe9|12345")),
    "data-empty-file": Case(r"u\.data: file is empty",
                            prepare=lambda root: (root / "ml-100k" / "u.data").write_text("\n")),
    "data-empty-split": Case(r"u1\.test: file is empty", args=("--split", "u1"),
                             prepare=lambda root: (root / "ml-100k" / "u1.test").write_text("")),
    "data-too-few-ratings": Case(
        r"ml-100k: 2 ratings are too few for a \(0\.8, 0\.1, 0\.1\) split",
        prepare=lambda root: (root / "ml-100k" / "u.data").write_text("1\t1\t3\t1\n2\t2\t4\t1\n")),
    "data-duplicate-id": Case(
        r"ml-100k: the item table lists item id 2 more than once",
        prepare=lambda root: replace_line(root / "ml-100k" / "u.item", 3,
                                          "2|Again (1990)|01-Jan-1995||http://x|0|0|1|0")),
    "data-missing-release": Case(r"MovieLens ml-100k is not in .*nowhere \(from --data-dir\)",
                                 args=("--data-dir", "{root}/nowhere")),
    "data-csv-header": Case(
        r"ratings\.csv, line 1: expected the header userId,movieId,rating,timestamp, "
        r"found user,movie",
        args=("--release", "ml-latest-small", "--data-dir", "{root}/csv"),
        prepare=lambda root: replace_line(write_ml_csv(root / "csv") / "ratings.csv", 1,
                                          "user,movie,rating,timestamp")),
    "data-unknown-code": Case(
        r"users\.dat, line 2: unknown occupation code 99",
        args=("--release", "ml-1m", "--data-dir", "{root}/dat"),
        prepare=lambda root: replace_line(write_ml1m(root / "dat") / "users.dat", 2,
                                          "2::M::56::99::70072")),
    # ---- configuration: YAML file and flags
    "config-unknown-key": Case(r"c\.yaml: unknown key 'lamda'; known keys: \[",
                               args=("--config", "{root}/c.yaml"),
                               prepare=yaml("diversedistill:\n  lamda: 0.1\n")),
    "config-unknown-section": Case(r"c\.yaml: unknown top-level key 'trainer'",
                                   args=("--config", "{root}/c.yaml"),
                                   prepare=yaml("trainer:\n  lr: 0.1\n")),
    "config-wrong-type": Case(r"c\.yaml\.lam: expected a number, got 'big'",
                              args=("--config", "{root}/c.yaml"),
                              prepare=yaml("diversedistill:\n  lam: big\n")),
    "config-not-yaml": Case(r"c\.yaml, line 3: not valid YAML", args=("--config", "{root}/c.yaml"),
                            prepare=yaml("diversedistill:\n  lam: [1,\n")),
    "config-missing-file": Case(r"absent\.yaml: config file not found",
                                args=("--config", "{root}/absent.yaml")),
    "config-tau-out-of-range": Case(r"command line: tau must be in \[0, 1\], got 1\.5",
                                    args=("--tau", "1.5")),
    "config-tau-in-yaml": Case(r"c\.yaml: tau must be in \[0, 1\], got -0\.1",
                               args=("--config", "{root}/c.yaml"),
                               prepare=yaml("diversedistill:\n  tau: -0.1\n")),
    "config-unknown-method": Case(r"unknown method 'nope'; registered methods: \[",
                                  args=("--method", "nope")),
    "config-unknown-fold": Case(r"unknown fold 'u9'", args=("--split", "u9")),
    "config-devices": Case(r"devices must be at least 1, got 0", args=("--devices", "0")),
    "config-strategy": Case(r"unknown strategy 'fsdp'; choose one of", args=("--strategy", "fsdp")),
    "config-batch-size": Case(r"--batch-size must be at least 1, got 0",
                              args=("--batch-size", "0")),
    "config-batch-smaller-than-processes": Case(
        r"a batch of 1 rows cannot be shared by 2 processes",
        args=("--batch-size", "1", "--devices", "2", "--strategy", "ddp")),
    "config-teacher-device": Case(r"--teacher-device: 'gpu7' is not a device",
                                  args=("--teacher-device", "gpu7")),
    "config-teacher-device-absent": Case(r"--teacher-device: cuda:99 is not on this machine",
                                         args=("--teacher-device", "cuda:99")),
    # ---- teachers: missing, damaged, mismatched
    "teacher-missing": Case(r"absent: no config\.json; not an exported diversedistill model",
                            args=("--teacher", "{root}/absent")),
    "teacher-config-not-json": Case(
        r"ta/config\.json, line 1: invalid JSON",
        prepare=lambda root: (root / "ta" / "config.json").write_text('{"format": ')),
    "teacher-checksum": Case(
        r"ta/model\.safetensors: checksum differs from config\.json",
        prepare=lambda root: shutil.copy(root / "tb" / "model.safetensors",
                                         root / "ta" / "model.safetensors")),
    "teacher-weights-do-not-fit": Case(
        r"ta/model\.safetensors: weights do not fit the config \(it describes a model of "
        r"\d+ values, the weights hold \d+\); refused before building it",
        prepare=lambda root: edit_json(root / "ta" / "config.json",
                                       lambda c: c["model"]["config"].update(hidden=[32, 32]))),
    "teacher-same-name-twice": Case(r"teacher names must be unique, got \['ta', 'tb', 'ta'\]",
                                    args=("--teacher", "{root}/ta")),
    "teacher-other-release": Case(r"teacher 'ta' cannot run on a batch of this data \(IndexError",
                                  prepare=foreign_teacher),
    # ---- issue 17: numbers checked, configs strict
    "config-negative-module-lr": Case(r"c\.yaml: module_lr must be > 0, got -1\.0",
                                      args=("--config", "{root}/c.yaml"),
                                      prepare=yaml("diversedistill:\n  module_lr: -1.0\n")),
    "config-nan-lam": Case(r"command line: lam must be a finite number, got nan",
                           args=("--lam", "nan")),
    "config-infinite-lam": Case(r"c\.yaml: lam must be a finite number, got inf",
                                args=("--config", "{root}/c.yaml"),
                                prepare=yaml("diversedistill:\n  lam: .inf\n")),
    "config-zero-width": Case(r"command line: d1 must be an integer in 1\.\.1048576, got 0",
                              args=("--d1", "0")),
    "config-negative-width": Case(r"c\.yaml: hidden must be an integer in 1\.\.1048576, got -3",
                                  args=("--config", "{root}/c.yaml"),
                                  prepare=yaml("diversedistill:\n  hidden: -3\n")),
    "config-negative-epochs": Case(r"command line: warmup_epochs must be >= 0, got -1",
                                   args=("--warmup-epochs", "-1")),
    "config-negative-seed": Case(r"--split-seed must be in 0\.\.4294967295, got -1",
                                 args=("--split-seed", "-1")),
    "config-duplicate-key": Case(r"c\.yaml, line 3: duplicate key 'lam' \(first at line 2\)",
                                 args=("--config", "{root}/c.yaml"),
                                 prepare=yaml("diversedistill:\n  lam: 1\n  lam: 2\n")),
    "config-long-value": Case(r"c\.yaml\.lam: expected a number, "
                              r"got 'xxxxx[x]*\.\.\. \(5002 characters\)$",
                              args=("--config", "{root}/c.yaml"),
                              prepare=yaml("diversedistill:\n  lam: " + "x" * 5000 + "\n")),
    "config-utf16": Case(r"c\.yaml: not valid UTF-8 text \(byte 0\) \(it starts with a UTF-16 "
                         r"byte-order mark\); save the config file as UTF-8",
                         args=("--config", "{root}/c.yaml"),
                         prepare=lambda root: (root / "c.yaml").write_text(
                             "diversedistill:\n  lam: 1\n", encoding="utf-16")),
    "config-is-a-directory": Case(r"ml-100k: is a directory, not a config file",
                                  args=("--config", "{root}/ml-100k")),
    # ---- issue 17: data that does not fit, a release that is not there
    "data-id-too-large": Case(r"u\.data, line 3: user '9223372036854775808' does not fit a "
                              r"64-bit integer",
                              prepare=ratings_line("9223372036854775808\t1\t3\t1")),
    "data-release-typo": Case(r"unknown MovieLens release 'ml-100'; known: ml-100k, ml-1m",
                              args=("--release", "ml-100")),
    # ---- issue 17: the run directory
    "out-empty": Case(r"--out is empty; name a directory for the run", args=("--out", "")),
    "out-is-a-file": Case(r"notes\.txt \(--out\): is a file, not a directory",
                          args=("--out", "{root}/notes.txt"),
                          prepare=lambda root: (root / "notes.txt").write_text("mine")),
    "out-not-owned": Case(r"mine: not empty \(notes\.txt\) and not a diversedistill directory",
                          args=("--out", "{root}/mine"),
                          prepare=lambda root: (root / "mine").mkdir() or
                          (root / "mine" / "notes.txt").write_text("mine")),
    # ---- issue 17: teachers' provenance and weights
    "teacher-other-split": Case(r"teacher 'ta' was trained on \d+ of this run's \d+ validation "
                                r"and test ratings \(its split random-1, this run's random-0\)",
                                prepare=lambda root: recorded_teacher(root, split_seed=1)),
    "teacher-other-release-recorded": Case(r"teacher 'ta' was trained on ml-1m with other fields",
                                           prepare=lambda root: recorded_teacher(root, ml1m=True)),
    "teacher-non-finite": Case(r"ta/model\.safetensors: embed.*holds 1 non-finite value",
                               prepare=lambda root: non_finite_teacher(root)),
    # ---- issue 39: ratings checked as a whole, timestamps like every field
    "data-duplicate-pair": Case(
        r"u\.data, line 3: user (\d+) rated item (\d+) again \(first at line 1\); 1 ratings "
        r"repeat a \(user, item\) pair rated before them; keep one rating per pair$",
        prepare=lambda root: repeat_line(root / "ml-100k" / "u.data", 1, 3)),
    "data-fold-overlap": Case(
        r"u1\.test, line 2: user \d+, item \d+ is also in u1\.base; 2 \(user, item\) pairs "
        r"of this test file are in its training file too; a fold's two files must not share",
        args=("--split", "u1"), prepare=fold_overlap),
    "data-non-integer-timestamp": Case(r"u\.data, line 3: timestamp must be an integer, "
                                       r"found 'yesterday'",
                                       prepare=ratings_line("1\t2\t3\tyesterday")),
    "data-negative-timestamp": Case(r"u\.data, line 3: timestamp -5 is negative; a timestamp "
                                    r"counts seconds since 1970",
                                    prepare=ratings_line("1\t2\t3\t-5")),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES)
def test_bad_input_gives_one_line_exit_2_and_no_output(case, tmp_path, capsys):
    data, teachers = write_tiny_committee(tmp_path)
    if case.prepare:
        case.prepare(tmp_path)
    out = tmp_path / "out"
    args = ["distill", "--teacher", str(teachers[0]), "--teacher", str(teachers[1]),
            "--data-dir", str(data), "--out", str(out), "--no-progress", "--max-epochs", "1",
            *(a.replace("{root}", str(tmp_path)) for a in case.args)]
    before = sorted(tmp_path.rglob("*"))
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("diversedistill distill: error: ")
    assert re.search(case.expected, err[0]), err[0]
    assert sorted(tmp_path.rglob("*")) == before  # no output, partial or whole


def test_unknown_teacher_size_in_train_teacher(ml100k_dir, tmp_path, capsys):
    code = main(["train-teacher", "--size", "mlp-xl", "--data-dir", str(ml100k_dir),
                 "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip().splitlines()
    assert (code == 2 and len(err) == 1
            and "unknown size 'mlp-xl'; choose mlp-s, mlp-m or mlp-l" in err[0])
    assert not (tmp_path / "t").exists()


class TwoOutputs(torch.nn.Module):
    """A regression model that wrongly returns two numbers per row."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(1000, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, batch):
        return self.head(self.embed(batch["item"]))


def test_a_teacher_returning_the_wrong_shape_is_named():
    from tiny import tiny_batch

    from diversedistill.committee import Committee
    from diversedistill.interface import HookedTeacher

    committee = Committee([HookedTeacher("two", TwoOutputs(), "embed", "head")])
    with pytest.raises(ModelError, match=r"teacher 'two' returns predictions of shape \(16, 2\); "
                                         r".*regression, which needs \(16,\): one number per row"):
        committee.probe(tiny_batch())


def test_a_student_returning_the_wrong_shape_is_named(ml100k_dir, tmp_path):
    from diversedistill.interface import HookedStudent
    from diversedistill.methods import StudentOnly
    from diversedistill.training import TrainConfig, fit
    from diversedistill_recipes.movielens.rating_recipes import loaders
    from diversedistill_recipes.movielens.releases import load_movielens
    from diversedistill_recipes.movielens.splits import make_split

    ml = load_movielens(ml100k_dir)
    train, val, test = loaders(ml, make_split(ml, "random", 0), 16, 0)
    student = HookedStudent(TwoOutputs(), "embed", "head")
    with pytest.raises(ModelError, match=r"the student returns predictions of shape \(16, 2\)"):
        fit(student, StudentOnly(), None, train, val, test, TrainConfig(progress=False),
            tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_docs_table_names_only_tests_that_exist():
    """Every row of docs/bad-input.md points at a test (file::name[case]) that exists."""
    table = (ROOT / "docs" / "bad-input.md").read_text(encoding="utf-8")
    refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)(?:\[([\w-]+)\])?`", table)
    assert len(refs) >= 20
    for path, name, case in refs:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} does not exist"
        if case and path.endswith("test_bad_input.py"):
            assert case in CASES, f"no case {case!r} in {path}"
        elif case:
            assert f'"{case}"' in source, f"no case {case!r} in {path}"
