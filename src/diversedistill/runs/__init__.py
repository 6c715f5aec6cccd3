"""What a run leaves on disk, and how it stops and resumes: the directories the tool owns
(``rundir``), atomic writes (``atomic``), checkpoints (``checkpoints``), the batch order a
resumed run continues (``batch_order``) and the signals that end a run with a checkpoint
(``interrupt``). Nothing here imports torch at import time unless it needs tensors."""
