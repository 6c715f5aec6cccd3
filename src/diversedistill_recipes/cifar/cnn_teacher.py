"""A convolutional network (EfficientNet-Lite0) as a DiverseDistill teacher.

Where a CNN is asked: at the output of one block, a feature map [B, C, H, W]. The question
[B, C] is a per-channel offset added at every position (``q[:, :, None, None]``), so a zero
question — DiverseDistill's initialization — leaves the teacher exactly as trained, and
the blocks above read the question through every spatial position they look at.
``injection="replace"`` (the paper's literal reading, the vision ablation's switch) puts
the question, broadcast the same way, in place of the map. The answer is the pooled
[B, 1280] feature, the input of the classifier ``_fc``.

The split that makes it cheap, as for the transformer towers (vit.py): nothing below the
injection block depends on the question, so ``context(batch)`` runs the stem and the blocks
up to it once, without gradient, and ``answer(question, context)`` runs only the blocks
above, the head convolution, the pool and the classifier. The context is one tensor, so
:class:`~diversedistill.loop.cached_teacher.CachedContext` keeps it per (image, fixed view)
across epochs, methods and seeds (rows × C × H × W floats: after ``_blocks.10`` at 64 px,
112 × 4 × 4 = 1,792 per row).
"""

from __future__ import annotations

import torch

from diversedistill.errors import ModelError
from diversedistill.interface import Answer, Batch, Teacher
from diversedistill_recipes.cifar.efficientnet_lite import EfficientNetLite0, lite_spec
from diversedistill_recipes.cifar.vit import ImageSpec

# After the fifth stage (blocks 8-10, 112 channels): above it stay 5 of the 16 blocks and
# the head, which a question can still steer; at 64 px the map there is 4 × 4
DEFAULT_BLOCK = 10


class EfficientNetTeacher(Teacher):
    """``model`` asked at the output of ``_blocks.<block>`` (0-based, as
    ``named_modules`` lists it), on images resized and normalized by ``spec``."""

    INJECTIONS = ("add", "replace")

    def __init__(self, name: str, model: EfficientNetLite0, block: int | None = None,
                 spec: ImageSpec | None = None, injection: str = "add"):
        if injection not in self.INJECTIONS:
            raise ModelError(f"teacher {name!r}: injection must be one of {self.INJECTIONS}, "
                             f"got {injection!r}")
        blocks = len(model._blocks)
        block = DEFAULT_BLOCK if block is None else int(block)
        if not 0 <= block < blocks:
            raise ModelError(f"teacher {name!r}: the question point must be the output of "
                             f"one of _blocks.0 .. _blocks.{blocks - 1}, got {block}")
        self.name, self.model, self.block = name, model, block
        self.spec = spec or lite_spec()
        self.injection = injection
        self.question_width = model.block_channels(block)
        self.answer_width = int(model._fc.in_features)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @torch.no_grad()
    def context(self, batch: Batch) -> torch.Tensor:
        """The feature map [B, C, H, W] that ``_blocks.<block>`` outputs."""
        return self.model.lower(self.spec.prepare(batch["image"]), self.block + 1)

    def answer(self, question: torch.Tensor | None, context: torch.Tensor) -> Answer:
        state = context
        if question is not None:
            if question.shape != context.shape[:2]:
                raise ModelError(
                    f"teacher {self.name!r}: the question has shape {tuple(question.shape)} "
                    f"but _blocks.{self.block} has {context.shape[1]} channels (a batch of "
                    f"{context.shape[0]}): one offset per channel, [batch, channels]")
            offset = question.to(context.dtype)[:, :, None, None]  # broadcast over positions
            state = context + offset if self.injection == "add" else offset.expand_as(context)
        features = self.model.upper(state, self.block + 1)
        return Answer(features, self.model.classify(features))

    def predict(self, batch: Batch) -> torch.Tensor:
        return self.answer(None, self.context(batch)).prediction
