"""Time one training step of DiverseDistill against one of FD on the paper's vision shapes.

    python scripts/time_vision_step.py --device cuda --precision bf16-mixed --steps 200
    python scripts/time_vision_step.py --shapes tiny --device cpu --steps 3     # a smoke run

``--shapes paper`` builds, with random weights (nothing is downloaded), the models of
configs/vision/cifar10.yaml: a ViT-B/16 student, a ViT-L/16 teacher and a CLIP ViT-B/32
image tower with 10 random prompt embeddings, at 224×224. ``tiny`` builds the same
architectures a few layers deep at 32×32, for CPUs and tests. Both methods train on random
images for ``--steps`` steps after ``--warmup`` untimed ones (DiverseDistill on the
committee ViT-L + CLIP, FD from ViT-L), under ``--precision`` (``bf16-mixed``: autocast to
bfloat16, weights in float32). Prints milliseconds per step, the ratio, peak GPU memory on
CUDA, and whether every loss stayed finite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time

import torch

from diversedistill.committee import Committee
from diversedistill.methods import DiverseDistill, DiverseDistillConfig, build_method
from diversedistill_recipes.cifar.vit import CLIPTeacher, ViTStudent, ViTTeacher

SHAPES = {
    # hidden, layers, heads, MLP width, image size, patch: ViT-B/16, ViT-L/16, CLIP B/32
    "paper": {"student": (768, 12, 12, 3072, 224, 16), "vit-l": (1024, 24, 16, 4096, 224, 16),
              "clip": (768, 12, 12, 3072, 224, 32), "projection": 512},
    "tiny": {"student": (32, 2, 2, 64, 32, 8), "vit-l": (48, 4, 2, 96, 32, 8),
             "clip": (32, 2, 2, 64, 32, 8), "projection": 16},
}
CLASSES = 10


def vit(shape) -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    hidden, layers, heads, mlp, size, patch = shape
    return ViTForImageClassification(ViTConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=mlp, image_size=size, patch_size=patch, num_labels=CLASSES))


def clip_teacher(shape, projection: int) -> CLIPTeacher:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    hidden, layers, heads, mlp, size, patch = shape
    tower = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=mlp, image_size=size, patch_size=patch, projection_dim=projection))
    prompts = torch.nn.functional.normalize(torch.randn(CLASSES, projection), dim=-1)
    return CLIPTeacher("clip", tower.vision_model, tower.visual_projection, prompts, 100.0,
                       owner=tower)


def time_method(method, student_model, teachers, device, precision, batch, steps, warmup):
    """(ms per step, every loss finite) over ``steps`` timed steps after ``warmup``."""
    student = ViTStudent(student_model.to(device).train())
    for teacher in teachers:
        for module in teacher.modules():
            module.to(device).eval().requires_grad_(False)
    committee = Committee(teachers)
    example = {"image": torch.rand(batch, 3, 32, 32, device=device),
               "target": torch.randint(0, CLASSES, (batch,), device=device)}
    committee.probe(example)
    method.setup(student, committee, example)
    method.to(device).train()
    params = list(student.parameters()) + list(method.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    finite = True

    def step():
        nonlocal finite
        with autocast:
            loss = method(student, committee, example)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        finite = finite and math.isfinite(float(loss.detach()))

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return 1000 * (time.perf_counter() - start) / steps, finite


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="bf16-mixed")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    device, shapes = torch.device(args.device), SHAPES[args.shapes]
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = {"shapes": args.shapes, "device": str(device), "precision": args.precision,
              "batch": args.batch, "steps": args.steps}
    runs = {
        "diversedistill": lambda: (DiverseDistill(DiverseDistillConfig()),
                                   [ViTTeacher("vit-l", vit(shapes["vit-l"])),
                                    clip_teacher(shapes["clip"], shapes["projection"])]),
        "fd": lambda: (build_method("fd", {}), [ViTTeacher("vit-l", vit(shapes["vit-l"]))]),
    }
    for name, make in runs.items():
        method, teachers = make()
        ms, finite = time_method(method, vit(shapes["student"]), teachers, device,
                                 args.precision, args.batch, args.steps, args.warmup)
        result[f"{name} ms/step"], result[f"{name} finite"] = round(ms, 2), finite
        if device.type == "cuda":
            result[f"{name} peak GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
    result["diversedistill / fd"] = round(
        result["diversedistill ms/step"] / result["fd ms/step"], 2)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
