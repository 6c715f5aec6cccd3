"""The ``bench`` command: what distillation costs."""

from __future__ import annotations

from typing import Annotated, Literal

from diversedistill.errors import ConfigError
from diversedistill_recipes.cli import config_file
from diversedistill_recipes.cli.typed import Flag


def bench(benchmark: Literal["lm", "throughput", "scaling", "serving", "gpu"], /, *,
          data_dir: str | None = None, lm: Annotated[str | None, Flag(metavar="MODEL")] = None,
          config: str | None = None, cache_dir: str | None = None, batches: int = 40,
          sizes: list[str] = ["100k", "1m", "10m"],  # noqa: B006 (read, never changed)
          distill_up_to: str = "1m", repeats: int = 300, tau: float = 0.6,
          ratings: str = "100k",
          no_progress: bool = False) -> int:
    """Measure what distillation costs.

    Args:
        benchmark: lm: LM teacher preparation time and epoch cost against student alone;
            throughput: rows/s and peak memory of student alone, MT, AEKD and
            DiverseDistill; scaling: epoch time and memory from 100K to 10M synthetic
            ratings; serving: the exported student's latency and size; gpu: bf16 against
            fp32, DDP on 2 devices against 1, and epoch timings on the GPU (the CPU when
            there is none)
        data_dir: MovieLens-100K directory
        lm: language model (default all-MiniLM-L6-v2); throughput: 'none' leaves the LM
            committee out
        config: YAML file with an 'lm:' section
        cache_dir: cache root (default: the user cache directory)
        batches: training batches timed per method
        sizes: scaling: numbers of synthetic ratings
        distill_up_to: scaling: time DiverseDistill's epoch up to this size (student alone
            at every size)
        repeats: serving: timed calls per model
        tau: throughput: also time DiverseDistill gated at this importance threshold (the
            paper's; 0 leaves the gated row out)
        ratings: gpu: synthetic ratings per run
        no_progress: hide the progress bars
    """
    from diversedistill_recipes import bench as benches

    if batches < 2:
        raise ConfigError(f"--batches must be at least 2, got {batches}")
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")
    progress = not no_progress
    if benchmark == "lm":
        benches.bench_lm(data_dir, config_file.lm_config(config, lm), cache_dir, batches,
                         progress=progress)
    elif benchmark == "throughput":
        benches.bench_throughput(data_dir, config_file.lm_config(config, lm), cache_dir,
                                 batches, progress=progress, tau=tau)
    elif benchmark == "scaling":
        from diversedistill_recipes.bench.scaling import parse_size

        benches.bench_scaling([parse_size(s) for s in sizes],
                              distill_up_to=parse_size(distill_up_to))
    elif benchmark == "gpu":
        from diversedistill_recipes.bench.gpu_check import bench_gpu
        from diversedistill_recipes.bench.scaling import parse_size

        bench_gpu(parse_size(ratings))
    else:
        benches.bench_serving(data_dir, cache_dir, repeats, progress=progress)
    return 0
