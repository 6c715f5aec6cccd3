"""The per-sample importance α of each teacher, saved after a DiverseDistill run.

``importance.csv`` holds α (the module's sigmoid importance, in [0, 1]) of every teacher on
a fixed set of sample points: the first rows of the first test batch. Fixed points make
runs comparable (every method, seed and committee is asked about the same samples) and
give ``diversedistill report`` the paper's Figure 4 without reloading any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from diversedistill.interface import take_rows
from diversedistill.runs.atomic import write_text_atomic

SAMPLE_POINTS = 64  # columns of the report's heatmap: enough to see a pattern, still legible


def sample_batch(loader, n: int = SAMPLE_POINTS):
    """The first ``n`` rows of the loader's first batch. Called on the test loader, which is
    never shuffled, so the rows are the same in every run on the same split."""
    batch = next(iter(loader))
    return take_rows(batch, slice(0, n))


@torch.no_grad()
def importance(method, student, batch) -> torch.Tensor:
    """α [B, n_teachers] of a DiverseDistill ``method`` at the student's question points,
    in eval mode (no dropout: the same rows give the same α). Training modes are restored,
    so the call can sit anywhere."""
    modes = (student.training, method.training)
    student.eval()
    method.eval()
    try:
        device = next(student.parameters()).device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return method.importance(student(batch).h).float().cpu()  # no question is asked
    finally:
        student.train(modes[0])
        method.train(modes[1])


def save_importance(method, student, batch, committee_names: Sequence[str],
                    path: str | Path) -> Path:
    """Write ``sample,<teacher 1>,<teacher 2>,...``, one line per row of ``batch``,
    atomically (a run killed here leaves no half-written file)."""
    alpha = importance(method, student, batch)
    if alpha.shape[1] != len(committee_names):
        raise ValueError(f"α has {alpha.shape[1]} columns for {len(committee_names)} teachers")
    lines = [",".join(["sample", *committee_names])]
    lines += [",".join([str(i), *(f"{v:.6f}" for v in row)])
              for i, row in enumerate(alpha.tolist())]
    path = Path(path)
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def record_importance(method, student, result, test_loader, committee_names: Sequence[str],
                      run_dir: str | Path) -> None:
    """After a finished run: ``run_dir/importance.csv`` when the method is DiverseDistill
    (``fit`` has restored the best epoch), written by the reporting process only."""
    from diversedistill.methods import DiverseDistill

    if isinstance(method, DiverseDistill) and result.rank == 0:
        save_importance(method, student, sample_batch(test_loader), committee_names,
                        Path(run_dir) / "importance.csv")
