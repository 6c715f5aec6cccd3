"""``diversedistill bench ...``: what distillation costs, measured side by side.

- ``lm``: the language-model teacher's one-time preparation and its epoch cost
  (:mod:`diversedistill_recipes.bench.language_model`);
- ``throughput``: samples/s and peak memory of student alone, MT, AEKD and DiverseDistill
  on the MLP and the LM committee (:mod:`diversedistill_recipes.bench.throughput`);
- ``scaling``: epoch time per million ratings and peak memory from 100K to 10M synthetic
  ratings (:mod:`diversedistill_recipes.bench.scaling`);
- ``serving``: latency and size of the exported student, distilled against trained alone
  (:mod:`diversedistill_recipes.bench.serving`).
"""

from diversedistill_recipes.bench.language_model import bench_lm
from diversedistill_recipes.bench.scaling import bench_scaling
from diversedistill_recipes.bench.serving import bench_serving
from diversedistill_recipes.bench.throughput import bench_throughput

__all__ = ["bench_lm", "bench_scaling", "bench_serving", "bench_throughput"]
