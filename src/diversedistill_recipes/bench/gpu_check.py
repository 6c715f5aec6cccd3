"""``diversedistill bench gpu``: the accelerator path checked in one short run.

On a machine with a GPU it checks, and prints, three things:

- **bf16 against fp32**: one training epoch of DiverseDistill (MLP-M + MLP-L teachers,
  freshly initialised, MLP-S student) on synthetic MovieLens-shaped ratings, in
  ``32-true`` and in ``bf16-mixed``, from the same seed; validation MSE of both and their
  difference;
- **DDP on 2 devices against 1**: the same fp32 run with ``--devices 2 --strategy ddp``
  (2 GPUs when there are; otherwise 2 CPU processes over gloo), validation MSE of both;
- **timings**: wall seconds and training rows/s of an epoch of the student alone, MT and
  DiverseDistill, in each precision, on the device.

Without a GPU every check runs on the CPU (bf16 autocast exists there too), which is how CI
tests it; the figures then say nothing about a GPU, and the output says which device ran.
Each DDP run is its own process (``python -m diversedistill_recipes.bench.gpu_check``):
Lightning starts the second rank by running that command again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from diversedistill.committee import Committee
from diversedistill.methods import MT, DiverseDistill, StudentOnly
from diversedistill.training import fit
from diversedistill_recipes.bench.scaling import synthetic_movielens
from diversedistill_recipes.movielens.rating_recipes import (
    STUDENT,
    TEACHERS,
    as_student,
    as_teacher,
    build,
    loaders,
)
from diversedistill_recipes.movielens.splits import random_split

METHODS = {"student alone": StudentOnly, "MT": MT, "DiverseDistill": DiverseDistill}
PRECISIONS = ("32-true", "bf16-mixed")


def accelerator() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} GPU(s))"
    return "CPU (no GPU found: the figures say nothing about a GPU)"


def synthetic_data(ratings: int, seed: int = 0):
    """The synthetic ratings every run of the check trains on, and their split."""
    ml = synthetic_movielens(ratings, seed)
    return ml, random_split(ml, seed)


def one_run(data, method: str, precision: str, devices: int, strategy: str,
            where: str, out: Path, seed: int = 0) -> dict:
    """One epoch of ``method`` on ``data`` (:func:`synthetic_data`); its figures and timing."""
    ml, split = data
    teachers = [] if method == "student alone" else [
        as_teacher(n, build(ml, split, TEACHERS[n], seed)) for n in ("mlp-m", "mlp-l")]
    train, val, test = loaders(ml, split, STUDENT.batch_size, seed)
    cfg = STUDENT.train_config(seed, progress=False, max_epochs=1, patience=1,
                               accelerator=where, devices=devices, strategy=strategy,
                               precision=precision)
    start = time.perf_counter()
    result = fit(as_student(build(ml, split, STUDENT, seed)), METHODS[method](),
                 Committee(teachers) if teachers else None, train, val, test, cfg, out,
                 clamp=ml.rating_scale)
    seconds = time.perf_counter() - start
    return {"method": method, "precision": precision, "devices": devices,
            "accelerator": where, "val_mse": result.val, "seconds": seconds,
            "rows/s": len(split.train) / seconds, "rank": result.rank}


def _ddp_run(ratings: int, devices: int, where: str, out: Path) -> dict:
    """The DDP run in its own process; rank 0 prints its figures as the last line."""
    done = subprocess.run(
        [sys.executable, "-m", "diversedistill_recipes.bench.gpu_check", str(ratings),
         str(devices), where, str(out)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"DDP on {devices} {where} device(s) failed: {tail[0]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_gpu(ratings: int = 100_000, log=print) -> dict:
    """Every check above; prints them as it goes and returns the figures."""
    where = accelerator()
    log(f"device: {device_name()}; {ratings:,} synthetic ratings, 1 epoch per run")
    figures: dict = {"device": device_name(), "runs": []}
    data = synthetic_data(ratings)  # made once: every run below trains on the same rows
    with tempfile.TemporaryDirectory(prefix="dd-gpu-check-") as work:
        root = Path(work)
        # untimed: the first run pays for lazy initialisation (CUDA context, kernels)
        one_run(synthetic_data(min(ratings, 20_000)), "DiverseDistill", "32-true", 1, "auto",
                where, root / "warm-up")
        for precision in PRECISIONS:
            for method in METHODS:
                run = one_run(data, method, precision, 1, "auto", where,
                              root / f"{method}-{precision}".replace(" ", "-"))
                figures["runs"].append(run)
                log(f"  {method:<14} {precision:<10} val MSE {run['val_mse']:.4f}  "
                    f"{run['seconds']:6.1f} s  {run['rows/s']:9,.0f} rows/s")
        by = {(r["method"], r["precision"]): r for r in figures["runs"]}
        fp32, bf16 = by[("DiverseDistill", "32-true")], by[("DiverseDistill", "bf16-mixed")]
        figures["bf16 - fp32"] = bf16["val_mse"] - fp32["val_mse"]
        log(f"bf16 against fp32 (DiverseDistill): val MSE {bf16['val_mse']:.4f} against "
            f"{fp32['val_mse']:.4f} (difference {figures['bf16 - fp32']:+.4f})")
        ddp_where = "gpu" if torch.cuda.device_count() >= 2 else "cpu"
        ddp = _ddp_run(ratings, 2, ddp_where, root / "ddp")
        figures["ddp"] = ddp
        if "error" in ddp:
            log(ddp["error"])
        else:
            single = fp32 if ddp_where == where else one_run(
                data, "DiverseDistill", "32-true", 1, "auto", ddp_where, root / "ddp-1")
            figures["ddp - single"] = ddp["val_mse"] - single["val_mse"]
            # not equal to the bit: each process draws its own dropout masks, by design
            log(f"DDP on 2 {ddp_where} devices against 1 (DiverseDistill, fp32): val MSE "
                f"{ddp['val_mse']:.4f} against {single['val_mse']:.4f} (difference "
                f"{figures['ddp - single']:+.4f}; dropout masks differ per process); "
                f"{ddp['seconds']:.1f} s against {single['seconds']:.1f} s")
    return figures


if __name__ == "__main__":  # one DDP run (every rank runs this): ratings devices where out
    n, devices, where, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    run = one_run(synthetic_data(n), "DiverseDistill", "32-true", devices, "ddp", where, out)
    if run["rank"] == 0:
        print(json.dumps(run))
