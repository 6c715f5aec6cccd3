"""``diversedistill bench serving``: the exported student, distilled against trained alone.

Both students are trained for one epoch on ML-100K with the one training loop (the
distilled one by DiverseDistill from MLP-M + MLP-L), exported with the exporter that
``diversedistill export`` uses, and loaded back from disk. Reported: file size, tensors,
parameters, and prediction latency at batch 1 and at a large batch, the two models timed
in alternation so that a busy machine slows both alike. The question and answer augmenters
exist only during training: the exported files must be the same size with the same tensor
names, and the latency ratio 1.00 (issue 6: within ± 0.02).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from diversedistill.committee import Committee
from diversedistill.export import WEIGHTS, export_model, load_model
from diversedistill.methods import DiverseDistill, StudentOnly
from diversedistill.training import fit
from diversedistill_recipes.locate import cache_dir, locate_movielens
from diversedistill_recipes.movielens.batches import rating_loader
from diversedistill_recipes.movielens.rating_recipes import (
    STUDENT,
    TEACHERS,
    as_student,
    as_teacher,
    build,
    loaders,
    train_or_load_teacher,
)
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split

LATENCY_TOLERANCE = 0.02


def _train_and_export(ml, split, method, committee, seed: int, work: Path, name: str) -> Path:
    model = build(ml, split, STUDENT, seed)
    train, val, _ = loaders(ml, split, STUDENT.batch_size, seed)
    cfg = replace(STUDENT.train_config(seed, progress=False), max_epochs=1)
    fit(as_student(model), method, committee, train, val, None, cfg, work / f"run-{name}",
        clamp=ml.rating_scale)
    return export_model(model, work / f"export-{name}")


def _latency(models: dict[str, torch.nn.Module], batch: dict, repeats: int) -> dict[str, list]:
    """Seconds of each prediction call of each model, the calls alternating between the
    models (call k of one and call k of the other are a pair, timed moments apart)."""
    times = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(batch)
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(batch)
                times[name].append(time.perf_counter() - start)
    return times


def _describe(export_dir: Path) -> dict:
    tensors = load_file(str(export_dir / WEIGHTS))
    return {"bytes": (export_dir / WEIGHTS).stat().st_size,
            "tensors": sorted((k, tuple(v.shape)) for k, v in tensors.items()),
            "parameters": sum(v.numel() for v in tensors.values())}


def bench_serving(data_dir=None, cache: str | Path | None = None, repeats: int = 300,
                  large_batch: int = 1024, seed: int = 0, progress: bool = True,
                  log=print) -> dict:
    ml = load_movielens(locate_movielens("ml-100k", data_dir))
    split = make_split(ml, "random", 0)
    root = Path(cache) if cache else cache_dir()
    teachers = [as_teacher(n, train_or_load_teacher(ml, split, n, TEACHERS[n], 0,
                                                    root / "teachers", progress, log=log)[0],
                           mode="add") for n in ("mlp-m", "mlp-l")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log("training one epoch each (student alone; DiverseDistill from MLP-M + MLP-L) ...")
        exports = {"student alone": _train_and_export(ml, split, StudentOnly(), None, seed, work,
                                                      "alone"),
                   "DiverseDistill": _train_and_export(ml, split, DiverseDistill(),
                                                       Committee(teachers), seed, work, "dd")}
        files = {name: _describe(path) for name, path in exports.items()}
        models = {name: load_model(path) for name, path in exports.items()}
        test = next(iter(rating_loader(split.test, ml, large_batch, shuffle=False)))
        one = {k: v[:1] for k, v in test.items()}
        calls = {"batch 1": _latency(models, one, repeats),
                 f"batch {large_batch}": _latency(models, test, repeats)}
    latency = {b: {name: statistics.median(t) for name, t in c.items()} for b, c in calls.items()}
    # the ratio is the median of the paired ratios: noise that hits a pair hits both calls
    ratios = {b: statistics.median(d / a for d, a in zip(c["DiverseDistill"], c["student alone"]))
              for b, c in calls.items()}
    same_tensors = files["student alone"]["tensors"] == files["DiverseDistill"]["tensors"]
    log("\n| exported student | file (bytes) | tensors | parameters | "
        + " | ".join(f"median latency, {b} (ms)" for b in latency) + " |")
    log("|---|---|---|---|" + "---|" * len(latency))
    for name, f in files.items():
        log(f"| {name} | {f['bytes']:,} | {len(f['tensors'])} | {f['parameters']:,} | "
            + " | ".join(f"{latency[b][name] * 1e3:.3f}" for b in latency) + " |")
    log(f"\nsame tensor names and shapes: {'yes' if same_tensors else 'NO'}; file size ratio "
        f"{files['DiverseDistill']['bytes'] / files['student alone']['bytes']:.4f}")
    for b, r in ratios.items():
        ok = abs(r - 1) <= LATENCY_TOLERANCE
        log(f"latency ratio distilled / alone, {b}: {r:.3f} "
            f"(target 1.00 ± {LATENCY_TOLERANCE}: {'met' if ok else 'NOT met'})")
    return {"files": files, "latency": latency, "ratios": ratios, "same tensors": same_tensors}
