"""Property-based tests (hypothesis): the loaders on generated tables, well-formed and
damaged, the batch order, and the shapes through the distillation module."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from conftest import write_ml100k
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import tiny_batch, tiny_recommender

import diversedistill.runs.batch_order as order
from diversedistill.committee import Committee
from diversedistill.errors import DataError
from diversedistill.interface import HookedStudent, HookedTeacher
from diversedistill.methods import DiverseDistill, DiverseDistillConfig
from diversedistill.methods.module import AnswerAugmenter, QuestionAugmenter
from diversedistill.runs.batch_order import EpochBatches
from diversedistill_recipes.movielens.delimited import read_table
from diversedistill_recipes.movielens.releases import load_movielens

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rating_tables(draw):
    """Distinct raw user and item ids (not contiguous, not sorted) and rating lines, one per
    (user, item) pair as in every release."""
    users = draw(st.lists(st.integers(1, 10_000), min_size=1, max_size=8, unique=True))
    items = draw(st.lists(st.integers(1, 10_000), min_size=1, max_size=8, unique=True))
    rows = draw(st.lists(st.tuples(st.sampled_from(users), st.sampled_from(items),
                                   st.integers(1, 5), st.integers(0, 2**31)),
                         min_size=1, max_size=30, unique_by=lambda row: row[:2]))
    return users, items, rows


def write_release(root: Path, users, items, rows) -> Path:
    write_ml100k(root, n_users=3, n_items=3, n_ratings=3)  # side files in the right layout
    (root / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    (root / "u.user").write_text("".join(f"{u}|30|F|artist|12345\n" for u in users))
    (root / "u.item").write_text("".join(f"{i}|Film {i} (1990)|01-Jan-1995||http://x|0|1|0|0\n"
                                         for i in items), encoding="latin-1")
    return root


@FAST
@given(rating_tables())
def test_a_well_formed_release_loads_exactly(table):
    users, items, rows = table
    with tempfile.TemporaryDirectory() as tmp:
        ml = load_movielens(write_release(Path(tmp) / "ml-100k", users, items, rows))
    assert len(ml.ratings) == len(rows)
    assert ml.user_ids[ml.ratings.user].tolist() == [u for u, _, _, _ in rows]
    assert ml.item_ids[ml.ratings.item].tolist() == [i for _, i, _, _ in rows]
    assert ml.ratings.rating.tolist() == [float(r) for _, _, r, _ in rows]
    assert (ml.n_users, ml.n_items) == (len(users), len(items))


@FAST
@given(rating_tables(), st.data())
def test_one_damaged_field_is_reported_at_its_line(table, data):
    users, items, rows = table
    line = data.draw(st.integers(1, len(rows)), label="line")
    column = data.draw(st.integers(0, 2), label="column")  # user, item, rating
    junk = data.draw(st.text("abcdefghijklmnopqrstuvwxyz ", max_size=6), label="junk")
    fields = [str(v) for v in rows[line - 1]]
    fields[column] = junk
    with tempfile.TemporaryDirectory() as tmp:
        root = write_release(Path(tmp) / "ml-100k", users, items, rows)
        lines = (root / "u.data").read_text().splitlines()
        lines[line - 1] = "\t".join(fields)
        (root / "u.data").write_text("\n".join(lines) + "\n")
        with pytest.raises(DataError, match=rf"u\.data, line {line}: "):
            load_movielens(root)


@FAST
@given(st.lists(st.lists(st.text("xyz0189.-", max_size=4), min_size=1, max_size=5),
                min_size=1, max_size=12))
def test_a_table_reads_only_when_every_line_has_the_right_field_count(lines):
    texts = ["\t".join(fields) for fields in lines]
    # a blank line (no text, no separator) is skipped; every other line is a row
    rows = [(n, fields) for n, (fields, text) in enumerate(zip(lines, texts), 1)
            if text.strip() or "\t" in text]
    wrong = [n for n, fields in rows if len(fields) != 3]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.tsv"
        path.write_text("".join(text + "\n" for text in texts))
        if not "".join(texts).strip():
            with pytest.raises(DataError, match="file is empty"):
                read_table(path, "\t", ["a", "b", "c"])
        elif wrong:
            with pytest.raises(DataError,
                               match=rf"t\.tsv, line {wrong[0]}: expected 3 tab-separated"):
                read_table(path, "\t", ["a", "b", "c"])
        else:
            frame = read_table(path, "\t", ["a", "b", "c"])
            assert frame["_line"].tolist() == [n for n, _ in rows]
            assert frame[["a", "b", "c"]].values.tolist() == [fields for _, fields in rows]


@FAST
@given(n=st.integers(1, 60), batch=st.integers(1, 16), world=st.integers(1, 4),
       seed=st.integers(0, 10), epoch=st.integers(0, 5), bucketed=st.booleans(), data=st.data())
def test_processes_together_see_each_row_once_and_resume_anywhere(n, batch, world, seed, epoch,
                                                                  bucketed, data):
    if batch < world:  # a process would get no rows: refused (test_bad_input.py)
        return
    lengths = data.draw(st.lists(st.integers(1, 80), min_size=n, max_size=n), label="lengths")

    def sampler_for():  # plain shuffling, or batches of similar length (LM fine-tuning)
        if bucketed:
            return order.LengthBuckets(lengths, batch, seed=seed, shard=True, bucket=3)
        return EpochBatches(n, batch, shuffle=True, seed=seed, shard=True)
    per_rank = []
    for rank in range(world):
        with pytest.MonkeyPatch.context() as mp:  # as if this were process `rank` of `world`
            mp.setattr(order, "process_rank_and_count", lambda r=rank: (r, world))
            sampler = sampler_for()
            sampler.set_epoch(epoch)
            per_rank.append(list(sampler))
            cut = data.draw(st.integers(0, len(per_rank[-1])), label="resume after")
            resumed = sampler_for()
            resumed.load_state_dict({"epoch": epoch, "batches_done": cut})
            resumed.set_epoch(epoch)
            assert per_rank[-1][:cut] + list(resumed) == per_rank[-1]
    assert len({len(b) for b in per_rank}) == 1  # every process takes the same number of steps
    rows = [r for batches in per_rank for b in batches for r in b]
    assert len(rows) == len(set(rows)) and all(len(b) > 0 for bs in per_rank for b in bs)
    dropped = n % batch if 0 < n % batch < world else 0
    assert len(rows) == n - dropped


def test_length_buckets_pad_less_than_plain_shuffling():
    lengths = torch.randint(10, 80, (4096,)).tolist()
    padding = {}
    for name, sampler in {"plain": EpochBatches(len(lengths), 64, shuffle=True, seed=0),
                          "buckets": order.LengthBuckets(lengths, 64, seed=0)}.items():
        batches = list(sampler)
        padding[name] = sum(max(lengths[r] for r in b) * len(b) - sum(lengths[r] for r in b)
                            for b in batches)
        assert sorted(r for b in batches for r in b) == list(range(len(lengths)))
    assert padding["buckets"] < 0.2 * padding["plain"]
    # the batches' order is shuffled too: not sorted by length across the epoch
    firsts = [lengths[b[0]] for b in order.LengthBuckets(lengths, 64, seed=0)]
    assert firsts != sorted(firsts)


@FAST
@given(d=st.integers(1, 12), widths=st.lists(st.integers(1, 12), min_size=1, max_size=4),
       d1=st.integers(1, 6), d2=st.integers(1, 6), hidden=st.integers(1, 8),
       rows=st.integers(1, 9), d_student=st.integers(1, 8))
def test_augmenter_shapes(d, widths, d1, d2, hidden, rows, d_student):
    questions, alpha = QuestionAugmenter(d, widths, d1, d2, hidden)(torch.randn(rows, d))
    assert [tuple(q.shape) for q in questions] == [(rows, w) for w in widths]
    assert alpha.shape == (rows, len(widths)) and ((alpha >= 0) & (alpha <= 1)).all()
    answers = AnswerAugmenter(widths, d_student, hidden)
    for i, w in enumerate(widths):
        assert answers(i, torch.randn(rows, w)).shape == (rows, d_student)


@settings(max_examples=15, deadline=None)
@given(teachers=st.lists(st.tuples(st.integers(2, 12), st.integers(1, 6)), min_size=1, max_size=3),
       rows=st.integers(2, 12), tau=st.sampled_from([0.0, 0.3, 0.7]),
       target=st.sampled_from(["soft", "binary", "none"]), mode=st.sampled_from(["add", "replace"]),
       epoch=st.integers(0, 2))
def test_distillation_losses_are_finite_scalars_for_any_committee(teachers, rows, tau, target,
                                                                  mode, epoch):
    student = HookedStudent(tiny_recommender(), "embed", "head")
    committee = Committee([HookedTeacher(f"t{i}", tiny_recommender((h,), dim, seed=i + 1),
                                         "embed", "head", mode)
                           for i, (h, dim) in enumerate(teachers)])
    batch = tiny_batch(rows)
    committee.probe(batch)
    method = DiverseDistill(DiverseDistillConfig(d1=3, d2=4, hidden=5, tau=tau,
                                                 importance_target=target))
    method.setup(student, committee, batch)
    method.epoch = epoch
    before = committee.fingerprint()
    out = method(student, committee, batch)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    for p in [*student.parameters(), *method.parameters()]:
        assert p.grad is None or p.grad.shape == p.shape
    assert committee.fingerprint() == before
    assert all(0 <= int(n) <= rows for n in method._asked)


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A reproduction killed with SIGKILL must not leave its workers training for nobody —
    even workers that, like a training run, answer SIGTERM by carrying on to a checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    (tmp_path / "stubborn_job.py").write_text(
        "import os, signal, time\n"
        f"MARKS = {str(tmp_path)!r}\n"
        "def run(seconds):\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as a run mid-step would\n"
        "    open(os.path.join(MARKS, f'started-{os.getpid()}'), 'w').close()\n"
        "    time.sleep(seconds)\n")
    script = (
        "from diversedistill.loop.parallel import run_jobs\n"
        "from stubborn_job import run\n"
        "run_jobs([60, 60], run, lambda j, r: None, workers=2)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 60
    children = []
    while time.time() < deadline and len(children) < 2:
        out = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True)
        children = [int(p) for p in out.stdout.split()]
        time.sleep(0.2)
    # the pool's workers, and possibly its resource tracker: every child must go
    assert children, "no worker started"
    while len(list(tmp_path.glob("started-*"))) < 2 and time.time() < deadline + 60:
        time.sleep(0.2)  # both workers inside their jobs, SIGTERM ignored
    assert len(list(tmp_path.glob("started-*"))) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    deadline = time.time() + 20
    alive = children
    while alive and time.time() < deadline:
        alive = [p for p in alive if running(p)]
        time.sleep(0.2)
    assert not alive, f"workers still running after their parent was killed: {alive}"
