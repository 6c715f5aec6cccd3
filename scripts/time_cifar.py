"""Time the pieces of ``reproduce cifar10`` on a small subset and extrapolate the whole run.

    PYTHONPATH=src python scripts/time_cifar.py --data-dir ../shared/data/cifar10 \
        [--images 2000] [--config configs/vision/cifar10-cpu.yaml]

Each piece runs one epoch on ``--images`` training images (teachers untrained: a pass costs
the same whatever the weights): the student alone, each teacher's training, DiverseDistill
with each committee, and each teacher's inference (what LD / FD / MT / AEKD pay on top of
the student). Prints seconds per 1,000 images (wall clock and process CPU time) and the
extrapolated total of the experiment: teachers trained once, then seeds × (student alone +
every method on its committees), plus evaluation. Baselines are estimated from the
measured pieces (student + teacher inference; AEKD with one extra student backward per
teacher); they are not run by this script.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from diversedistill.committee import Committee
from diversedistill.config import load_yaml
from diversedistill.methods import DiverseDistill, DiverseDistillConfig, StudentOnly
from diversedistill.training import fit
from diversedistill_recipes.cifar.image_recipes import (
    CPU_EXPERIMENT,
    as_student,
    as_teacher,
    build_clip_tower,
    build_vit,
    committees_for,
    load_experiment,
    loaders,
    make_parts,
    tower_student,
)
from diversedistill_recipes.cifar.images import image_loader, load_cifar, locate_cifar


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


@torch.no_grad()
def inference_seconds(predict, images, batch_size) -> float:
    """Seconds per image of ``predict`` over ``images`` (no gradient)."""
    start = time.perf_counter()
    for batch in image_loader(images, batch_size, shuffle=False):
        predict(batch)
    return (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--config", help="experiment YAML (default: the CPU recipe)")
    parser.add_argument("--images", type=int, default=2000, help="training images per timed epoch")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="results/timing")
    args = parser.parse_args()

    exp = load_experiment(load_yaml(args.config), args.config) if args.config else CPU_EXPERIMENT
    data = load_cifar(locate_cifar(exp.dataset, args.data_dir), exp.dataset)
    full = make_parts(data, exp)
    small = make_parts(data, replace(exp, train_size=args.images))
    n_train, n_val, n_test = len(full.train), len(full.val), len(full.test)
    classes = len(full.class_names)
    out = Path(args.out)
    print(f"torch threads {torch.get_num_threads()}, load average at start "
          f"{tuple(round(v, 2) for v in os.getloadavg())}")
    print(f"one epoch on {len(small.train)} images (validation on {n_val}); the experiment "
          f"trains on {n_train}, validates on {n_val}, tests on {n_test}\n")
    train_s: dict[str, float] = {}  # seconds per training image (forward + backward + step)
    infer_s: dict[str, float] = {}  # seconds per image of inference

    def one_epoch(name, student, method, committee, recipe, predict_cost):
        train, val, _ = loaders(small, exp, recipe.batch_size, 0)
        cfg = recipe.train_config(0, exp.accelerator, progress=False)
        cfg.max_epochs = 1
        result, wall, cpu = timed(lambda: fit(student, method, committee, train, val, None, cfg,
                                              out / name.replace(" ", "_"), metric="accuracy"))
        # the loop's time holds the epoch and its validation pass; take the validation out
        train_s[name] = max(0.0, result.seconds - n_val * predict_cost) / len(small.train)
        print(f"{name:<32} {result.seconds:6.1f}s ({wall:5.1f}s with set-up, {cpu:6.1f}s CPU): "
              f"{1000 * train_s[name]:5.2f}s per 1000 training images", flush=True)

    student_model = build_vit(exp.student, classes, 0)
    student = as_student(student_model, exp.student)
    student_model.eval()
    infer_s["student"] = inference_seconds(student.predict, small.train, exp.eval_batch_size)
    student_model.train()
    print(f"{'student inference':<32} {1000 * infer_s['student']:5.2f}s per 1000 images")
    one_epoch("student alone", student, StudentOnly(), None, exp.student, infer_s["student"])
    teachers = {}
    for name, recipe in exp.teachers.items():
        if recipe.kind == "vit":
            model = build_vit(recipe, classes, 0)
            trainee = as_student(model, recipe)
        else:
            model = build_clip_tower(recipe, full.class_names, 0, out / "text")
            trainee = tower_student(model, recipe.layer)
        teachers[name] = as_teacher(name, model, recipe)
        Committee([teachers[name]])  # frozen, eval mode, as in the experiment
        infer_s[name] = inference_seconds(teachers[name].predict, small.train, exp.eval_batch_size)
        print(f"{'teacher ' + name + ' inference':<32} {1000 * infer_s[name]:5.2f}s "
              "per 1000 images")
        if recipe.train:
            model.train().requires_grad_(True)
            one_epoch(f"teacher {name} training", trainee, StudentOnly(), None, recipe,
                      infer_s[name])
            Committee([teachers[name]])
    dd = DiverseDistillConfig(**exp.diversedistill)
    for names in committees_for("diversedistill", exp.committees):
        one_epoch(f"diversedistill {'+'.join(names)}",
                  as_student(build_vit(exp.student, classes, 0), exp.student), DiverseDistill(dd),
                  Committee([teachers[n] for n in names]), exp.student, infer_s["student"])

    # ---- extrapolation to the experiment
    epochs = exp.student.epochs

    def student_run(per_image: float) -> float:  # epochs (train + validation), then the test
        infer = infer_s["student"]
        return epochs * (n_train * per_image + n_val * infer) + n_test * infer

    runs = {"student alone": student_run(train_s["student alone"])}
    for names in committees_for("diversedistill", exp.committees):
        key = f"diversedistill {'+'.join(names)}"
        runs[key] = student_run(train_s[key])
    # baselines, estimated: a student step plus the teachers' inference on the batch; AEKD
    # also backpropagates the student once per teacher (about 2/3 of a training step each)
    for method in ("ld", "fd", "mt", "aekd"):
        if method not in exp.methods:
            continue
        for names in committees_for(method, exp.committees):
            per_image = train_s["student alone"] + sum(infer_s[n] for n in names)
            if method == "aekd":
                per_image += len(names) * 2 / 3 * train_s["student alone"]
            runs[f"{method} {'+'.join(names)} (estimate)"] = student_run(per_image)
    teachers_once = sum(
        (r.epochs * (n_train * train_s[f"teacher {n} training"] + n_val * infer_s[n])
         if r.train else 0.0) + (n_val + n_test) * infer_s[n]
        for n, r in exp.teachers.items())
    print("\nextrapolated to the experiment (at the load measured here):")
    print(f"  teachers, trained once and evaluated alone: {teachers_once / 60:5.1f} min")
    for name, seconds in runs.items():
        print(f"  {name:<42} {seconds / 60:5.1f} min per seed")
    measured = teachers_once + args.seeds * sum(v for k, v in runs.items() if "estimate" not in k)
    total = teachers_once + args.seeds * sum(runs.values())
    print(f"  total, {args.seeds} seeds, student + teachers + DiverseDistill: "
          f"{measured / 60:5.1f} min")
    print(f"  total, {args.seeds} seeds, with the baselines' estimates:      "
          f"{total / 60:5.1f} min")
    print(f"  load average at the end {tuple(round(v, 2) for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
