"""The committee: the frozen teachers, in one place.

Freezing happens here and only here: every teacher module goes to eval mode (no dropout,
no batch-norm updates) and loses ``requires_grad`` on its parameters. The committee is a
plain object, not an ``nn.Module``, so a Lightning module holding it never puts teacher
weights in a checkpoint, an optimizer or a DDP gradient bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch

from diversedistill.errors import ModelError
from diversedistill.interface import Batch, Teacher


class Committee:
    def __init__(self, teachers: Sequence[Teacher]):
        names = [t.name for t in teachers]
        if len(set(names)) != len(names):
            raise ModelError(f"teacher names must be unique, got {names}")
        self.teachers = list(teachers)
        self.freeze()

    def freeze(self) -> None:
        for teacher in self.teachers:
            for module in teacher.modules():
                module.eval()
                module.requires_grad_(False)

    def probe(self, batch: Batch) -> None:
        for teacher in self.teachers:
            teacher.probe(batch)

    def to(self, device: torch.device | str) -> Committee:
        """Move every teacher to ``device`` (the student's), or to its own ``device`` and
        ``dtype`` when it has one (a teacher that does not fit beside the student)."""
        for teacher in self.teachers:
            for module in teacher.modules():
                module.to(device=teacher.device or device, dtype=teacher.dtype)
        self.freeze()
        return self

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.teachers]

    def __iter__(self) -> Iterator[Teacher]:
        return iter(self.teachers)

    def __len__(self) -> int:
        return len(self.teachers)

    def check_unchanged(self, fingerprint: str) -> None:
        """Raise if a teacher's weights differ from ``fingerprint`` (taken before training):
        cheap, and the whole method rests on it."""
        if self.fingerprint() != fingerprint:
            raise RuntimeError("a teacher's weights changed during distillation")

    def fingerprint(self) -> str:
        """A hash of every teacher weight: equal before and after training, or a bug."""
        digest = hashlib.sha256()
        for teacher in self.teachers:
            for module in teacher.modules():
                for name, tensor in module.state_dict().items():
                    digest.update(name.encode())
                    # reshape: 0-dim weights too (CLIP's logit scale)
                    flat = tensor.detach().cpu().contiguous().reshape(-1)
                    digest.update(flat.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()
