"""``diversedistill bench throughput``: training rows per second and peak memory of student
alone, MT, AEKD and DiverseDistill, on the MLP committee (MLP-M + MLP-L) and on the LM
committee (LM + MLP-L), all on the same ML-100K training batches in one process.

The teachers run their passes at every step here (no cached outputs): this is what a
method costs a user who plugs in teachers and trains. Issue 6's target is read off the
MLP committee: DiverseDistill's epoch at most 1.3x MT's.

DiverseDistill is timed twice: asking every row (τ = 0, what its warm-up epoch costs) and
gated at ``tau`` (what every later epoch costs), after one untimed warm-up epoch over the
whole training set so that the importances gating reads have learned, as in a real run.
The share of teacher passes the gated epoch skipped is printed beside it.
"""

from __future__ import annotations

from pathlib import Path

from diversedistill.methods import DiverseDistill, StudentOnly, method_class
from diversedistill.methods.diversedistill import DiverseDistillConfig
from diversedistill_recipes.bench.timing import time_epoch
from diversedistill_recipes.locate import cache_dir, locate_movielens
from diversedistill_recipes.movielens.lm.prepare import LMConfig, prepare_language_teacher
from diversedistill_recipes.movielens.rating_recipes import (
    STUDENT,
    TEACHERS,
    as_teacher,
    build,
    loaders,
    train_or_load_teacher,
)
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split

MT_RATIO_TARGET = 1.3  # issue 6: DiverseDistill's epoch on the MLP committee vs MT's
RUN_EPOCHS = 11  # length of the τ sweep's runs (early stopping), for the whole-run ratio
GATED = "DiverseDistill, τ = {:g}"


def method_factories(tau: float = 0.6) -> dict:
    """Label -> a fresh method. Each method with its default settings (the ones
    ``reproduce`` starts its search from); DiverseDistill also gated at ``tau`` (timed after
    its warm-up epoch). ``tau=0`` leaves the gated row out."""
    factories = {"student alone": StudentOnly, "MT": method_class("mt"),
                 "AEKD": method_class("aekd"), "DiverseDistill": DiverseDistill}
    if tau > 0:
        factories[GATED.format(tau)] = lambda: DiverseDistill(DiverseDistillConfig(tau=tau))
    return factories


def bench_throughput(data_dir=None, lm: LMConfig | None = None, cache: str | Path | None = None,
                     batches: int = 20, seed: int = 0, progress: bool = True,
                     tau: float = 0.6, log=print) -> dict[str, dict[str, dict[str, float]]]:
    """{committee: {method: figures}}; ``lm=None`` leaves the LM committee out."""
    DiverseDistillConfig(tau=tau)  # a threshold outside [0, 1] fails before any work
    ml = load_movielens(locate_movielens("ml-100k", data_dir))
    split = make_split(ml, "random", 0)
    root = Path(cache) if cache else cache_dir()
    log(f"{ml.summary()}\n{split.describe()}")
    mlp = {name: train_or_load_teacher(ml, split, name, TEACHERS[name], 0, root / "teachers",
                                       progress, log=log)[0] for name in ("mlp-m", "mlp-l")}
    committees = {"MLP-M + MLP-L": [as_teacher(n, mlp[n], mode="add") for n in ("mlp-m", "mlp-l")]}
    if lm is not None:
        teacher, _ = prepare_language_teacher(ml, split, lm, root / "lm", 0, progress, log)
        committees["LM + MLP-L"] = [teacher, as_teacher("mlp-l", mlp["mlp-l"], mode="add")]
    train, _, _ = loaders(ml, split, STUDENT.batch_size, seed)
    sample = [batch for _, batch in zip(range(batches + 1), train)]
    log(f"\n{len(sample) - 1} training batches of {STUDENT.batch_size} rows timed per method "
        f"and scaled to the epoch ({len(train)} batches)\n")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for committee, teachers in committees.items():
        for teacher in teachers:  # untimed: whichever method came first would pay for
            for batch in sample:  # reading the LM's cache from disk into memory
                teacher.predict(batch)
        results[committee] = {}
        gated = GATED.format(tau)
        for label, make in method_factories(tau).items():
            figures = time_epoch(make(), build(ml, split, STUDENT, seed),
                                 [] if label == "student alone" else teachers, sample, len(train),
                                 STUDENT.lr, warmup=train if label == gated else None)
            results[committee][label] = figures
            log(f"  {committee:<14} {label:<15} {figures['rows/s']:>9,.0f} rows/s")
    log("\n" + format_throughput(results))
    log("\n" + mt_verdict(results["MLP-M + MLP-L"], tau))
    return results


def mt_verdict(rows: dict[str, dict[str, float]], tau: float) -> str:
    """Issue 6's figure, DiverseDistill's epoch over MT's on the MLP committee: for an epoch
    asking every row, for a gated epoch, and averaged over a run of ``RUN_EPOCHS`` epochs
    whose first (the default warm-up) asks every row."""
    mt, every = rows["MT"]["epoch"], rows["DiverseDistill"]["epoch"]
    lines = [f"DiverseDistill / MT epoch on the MLP committee, every row asked (τ = 0, the "
             f"warm-up epoch): {every / mt:.2f}x"]
    judged, ratio = "an epoch asking every row", every / mt
    if (label := GATED.format(tau)) in rows:
        gated = rows[label]["epoch"]
        run = (every + (RUN_EPOCHS - 1) * gated) / (RUN_EPOCHS * mt)
        lines += [f"DiverseDistill / MT epoch on the MLP committee, gated at τ = {tau:g}: "
                  f"{gated / mt:.2f}x",
                  f"DiverseDistill / MT over a {RUN_EPOCHS}-epoch run (1 warm-up epoch, then "
                  f"gated at τ = {tau:g}): {run:.2f}x"]
        judged, ratio = "a gated epoch", gated / mt
    verdict = "met" if ratio <= MT_RATIO_TARGET else "NOT met"
    lines.append(f"target, {judged} at most {MT_RATIO_TARGET:g}x MT's: {verdict}")
    return "\n".join(lines)


def format_throughput(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| committee | method | rows / s | s / epoch | x student alone | x MT | "
             "teacher passes skipped | peak memory (MiB) | added by the steps (MiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for committee, rows in results.items():
        alone, mt = rows["student alone"]["epoch"], rows["MT"]["epoch"]
        for label, r in rows.items():
            skipped = [v for k, v in r.items() if k.startswith("skipped/")]
            skipped_cell = f"{sum(skipped) / len(skipped):.1%}" if skipped else ""
            lines.append(f"| {committee} | {label} | {r['rows/s']:,.0f} | {r['epoch']:.1f} | "
                         f"{r['epoch'] / alone:.2f} | {r['epoch'] / mt:.2f} | {skipped_cell} | "
                         f"{r['peak MiB']:,.0f} | {r['added MiB']:,.0f} |")
    return "\n".join(lines)
