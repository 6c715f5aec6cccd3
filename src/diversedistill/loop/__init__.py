"""The training loop's parts (the loop itself is ``diversedistill.training``): the first-batch
contract (``contract``), early stopping that ignores constant plateaus
(``constant_plateau``), the divergence guard (``divergence``), per-epoch lines
(``epoch_lines``), teachers whose own pass is cached per row (``cached_teacher``) and runs
spread over worker processes (``parallel``)."""
