"""The teacher / student interface, and hook adapters that give it to any ``nn.Module``.

A **student** exposes, for one batch, its prediction, its question point ``h`` [B, d]
and its last hidden state ``z`` [B, d'], plus its head (``z`` -> prediction).

A **teacher** exposes
- ``context(batch)``: the question-independent part of its pass (computed without grad,
  cacheable). For an MLP it is just the inputs; for T5 it is the encoder output; for an
  encoder-only LM or a ViT, the token states below the injection layer;
- ``answer(question, context)`` -> ``Answer(hidden, prediction)``: the teacher run from
  its injection point with the question in place of its own state there; with
  ``question=None`` the teacher's own pass (its own state at the injection point), which
  is what feature- and logit-distillation baselines read;
- ``predict(batch)``: its own prediction, no question involved;
- ``question_width`` / ``answer_width``: the widths the distillation module must match;
- ``device`` / ``dtype``: where its weights live and in which precision (``None``: beside
  the student, as loaded). A teacher that does not fit beside the student runs on another
  device or in bfloat16; its answers come back on the student's device in the student's
  precision, and gradients still reach the question.

:class:`HookedStudent` and :class:`HookedTeacher` satisfy the interface for an arbitrary
module given dotted module paths, without editing it: a forward hook *replaces* (or adds
to) the output of the injection module, and a pre-hook on the head reads its input. An
adapter that needs a cheaper split (T5's encoder run once, cached lower layers) subclasses
:class:`Teacher` and overrides ``context`` and ``answer``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diversedistill.errors import ModelError
from diversedistill.loop.contract import check_prediction, check_vectors

Batch = Mapping[str, torch.Tensor]


@dataclass
class StudentOutput:
    prediction: torch.Tensor  # [B] (regression) or [B, C] (classification)
    h: torch.Tensor  # [B, d]   question point
    z: torch.Tensor  # [B, d']  last hidden state, the head's input


@dataclass
class Answer:
    hidden: torch.Tensor  # [b, d_t] the teacher's last hidden state, before its head
    prediction: torch.Tensor  # [b] or [b, C] its head applied to ``hidden``


def move_tensors(tree: Any, device: torch.device | str | None, dtype: torch.dtype | None) -> Any:
    """Move every tensor of a (nested) batch; floating tensors also take ``dtype``."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device=device, dtype=dtype if dtype and tree.is_floating_point() else None)
    if isinstance(tree, Mapping):
        return {k: move_tensors(v, device, dtype) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(move_tensors(v, device, dtype) for v in tree)
    return tree


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:12]
        raise ModelError(
            f"{type(model).__name__} has no submodule {path!r}; some of its modules: {names}"
        ) from None


def take_rows(tree: Any, rows: torch.Tensor | slice) -> Any:
    """Select batch rows from a tensor or a (nested) dict / tuple / list of tensors."""
    if isinstance(tree, torch.Tensor):
        return tree[rows]
    if isinstance(tree, Mapping):
        return {k: take_rows(v, rows) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(take_rows(v, rows) for v in tree)
    return tree


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode for the block, then each back in its own mode."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _is_stochastic(module: nn.Module) -> bool:
    """Whether a module behaves differently in training: dropout with p > 0 (a layer, or a
    Hugging Face attention's probability attribute) or batch normalization."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return any(isinstance(value, (int, float)) and value > 0
               for value in (getattr(module, n, None)
                             for n in ("dropout_prob", "attention_dropout")))


def first_tensor(value: Any) -> torch.Tensor:
    """A module's hidden state: the output itself, or the first entry of a tuple or of a
    Hugging Face ``ModelOutput`` (``last_hidden_state``)."""
    if isinstance(value, (tuple, list)):
        value = value[0]
    elif isinstance(value, Mapping):
        value = next(iter(value.values()))
    first: torch.Tensor = value
    return first


def _with_first(value: Any, state: torch.Tensor) -> Any:
    """The module output ``value`` with its hidden state (:func:`first_tensor`) replaced:
    a layer that returns ``(hidden, attentions)`` keeps returning a tuple."""
    if isinstance(value, (tuple, list)):
        return type(value)((state, *value[1:]))
    if isinstance(value, MutableMapping):
        value[next(iter(value.keys()))] = state  # ModelOutput: item and attribute both set
        return value
    return state


def _at_token(state: torch.Tensor, token: int | None) -> torch.Tensor:
    """One vector per row: a [B, T, D] token state at ``token``; a [B, D] state as it is."""
    return state[:, token] if token is not None and state.dim() == 3 else state


def _injected(own: torch.Tensor, question: torch.Tensor, mode: str,
              token: int | None) -> torch.Tensor:
    """``own`` with the question added (or put in its place) — at one token of a
    [B, T, D] state when ``token`` is set. Out of place: autograd reaches the question."""
    if token is None or own.dim() == 2:
        return question if mode == "replace" else own + question
    state = own.clone()
    state[:, token] = question if mode == "replace" else own[:, token] + question
    return state


def _injected_per_channel(own: torch.Tensor, question: torch.Tensor, mode: str) -> torch.Tensor:
    """A [B, C, H, W] feature map with the question [B, C] added to (or put in place of)
    every position: one offset per channel."""
    offset = question[:, :, None, None]
    return offset.expand_as(own) if mode == "replace" else own + offset


class HookedStudent(nn.Module):
    """Any module as a student: ``question_at`` names the module whose output is ``h``,
    ``head`` the final layer whose input is ``z``. ``call`` maps a batch to the model's
    forward (default: ``model(batch)``). ``token``: for a transformer whose states there
    are [B, T, D], the position read (0: the [CLS]); [B, D] states are read as they are."""

    # set through __dict__ (not submodules); declared for type checkers
    _question_module: nn.Module
    head: nn.Module

    def __init__(self, model: nn.Module, question_at: str, head: str,
                 call: Callable[[nn.Module, Batch], torch.Tensor] | None = None,
                 token: int | None = None):
        super().__init__()
        self.model = model
        self.question_at, self.head_path, self.token = question_at, head, token
        # plain attributes, not submodules: the weights are registered once, under ``model``
        self.__dict__["_question_module"] = get_submodule(model, question_at)
        self.__dict__["head"] = get_submodule(model, head)
        self._call = call or (lambda m, b: m(b))
        self._train_noise: bool | None = None  # found on first use (see ``served``)

    def forward(self, batch: Batch) -> StudentOutput:
        seen: dict[str, torch.Tensor] = {}
        h_hook = self._question_module.register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("h", _at_token(first_tensor(out), self.token)))
        z_hook = self.head.register_forward_pre_hook(
            lambda _m, args: seen.__setitem__("z", _at_token(args[0], self.token)))
        try:
            prediction = self._call(self.model, batch)
        finally:
            h_hook.remove()
            z_hook.remove()
        return StudentOutput(prediction, seen["h"], seen["z"])

    def predict(self, batch: Batch) -> torch.Tensor:
        return self._call(self.model, batch)

    def served(self, batch: Batch, training_pass: StudentOutput | None = None) -> StudentOutput:
        """The pass as the student is served: every module in eval mode (no dropout, running
        statistics for normalization), gradients kept. Distillation reads ``h`` and ``z``
        here: the training pass's ``z`` carries the dropout noise (measured on MLP-S:
        ‖z_train − z_eval‖² ≈ 0.28 ‖z_eval‖²), which a distance to ``z`` would also fight.

        ``training_pass`` (this batch's ordinary pass) is returned as it is when the two
        cannot differ: in eval mode already, or with no dropout and no batch norm in the
        model (``nn.Dropout`` layers with p > 0, Hugging Face attention's
        ``dropout_prob``/``attention_dropout`` > 0, ``nn.BatchNorm``) — the second pass
        would cost a forward and a backward for nothing. A model whose forward depends on
        ``training`` in another way is told apart by ``HookedStudent.train_noise = True``."""
        if training_pass is not None and (not self.training or not self.train_noise):
            return training_pass
        if not self.training:
            served: StudentOutput = self(batch)
            return served
        with eval_mode(self):
            served = self(batch)
        return served

    @property
    def train_noise(self) -> bool:
        """Whether the model's training pass can differ from its pass as served."""
        if self._train_noise is None:
            self._train_noise = any(_is_stochastic(m) for m in self.model.modules())
        return self._train_noise

    @train_noise.setter
    def train_noise(self, value: bool) -> None:
        self._train_noise = value

    def frozen_head(self, z: torch.Tensor) -> torch.Tensor:
        """The student's head applied with its parameters detached: gradients reach ``z``
        (the distillation module's answer) but never the student."""
        params = {k: v.detach() for k, v in self.head.named_parameters()}
        out: torch.Tensor = torch.func.functional_call(self.head, params, (z,))
        return out.squeeze(-1) if out.shape[-1] == 1 and out.dim() > 1 else out


class Teacher:
    """Base teacher: subclasses implement ``context``, ``answer`` and ``predict``."""

    name: str
    question_width: int
    answer_width: int
    device: torch.device | str | None = None  # None: the student's device
    dtype: torch.dtype | None = None  # None: as loaded (float32)

    def modules(self) -> list[nn.Module]:
        """Every module holding this teacher's weights (the committee freezes them)."""
        raise NotImplementedError

    def context(self, batch: Batch) -> Any:
        raise NotImplementedError

    def answer(self, question: torch.Tensor | None, context: Any) -> Answer:
        """``question`` [b, question_width], or None for the teacher's own pass."""
        raise NotImplementedError

    def predict(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def probe(self, batch: Batch) -> None:
        """Find the widths from one example batch (called once by the committee)."""


class HookedTeacher(Teacher):
    """Any module as a teacher, given module paths.

    ``inject_at`` names the module whose output the question is added to (``mode="add"``,
    the default: the teacher keeps its own view of the input and the question steers it;
    with DiverseDistill's zero-initialized questions every teacher starts answering
    exactly as trained) or replaces (``mode="replace"``, the paper's literal reading, which
    starts the teacher from an untrained state: measured 45% of the gap against 94%).
    ``head`` names the output layer whose input is the answer. The context is the batch
    itself: for a module with no cacheable prefix the question-independent part is just its
    input.

    ``token`` asks a transformer at one position of its [B, T, D] token states: the
    question is added to (or replaces) that token's state at ``inject_at`` — any layer,
    e.g. ``"bert.encoder.layer.3"``, ``"vit.layers.5"`` (transformers 5 names),
    ``"encoder.layers.2"`` of CLIP's image tower, ``"decoder.block.1"`` of T5 — as
    ``model.named_modules()`` lists them — and the answer is that
    token's state at the head's input when the head sees tokens too. ``token=0`` is the
    [CLS] of an encoder (BERT, ViT, CLIP's image tower) and the first decoder position of
    T5; a layer returning a tuple keeps returning one. Without ``token`` both points must
    already hold one vector per row ([B, D]).

    ``per_channel=True`` asks a convolutional network at a block whose output is a feature
    map [B, C, H, W]: the question [B, C] is a per-channel offset added at every position
    (``q[:, :, None, None]``; ``"replace"`` puts it, broadcast, in place of the map), so its
    width is C — e.g. ``"layer3"`` of a torchvision ResNet, ``"_blocks.10"`` of an
    EfficientNet — and the answer is the pooled feature the classifier reads (``"fc"``,
    ``"_fc"``).
    """

    MODES = ("replace", "add")

    def __init__(self, name: str, model: nn.Module, inject_at: str, head: str,
                 mode: str = "add", call: Callable[[nn.Module, Batch], torch.Tensor] | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 token: int | None = None, per_channel: bool = False):
        if mode not in self.MODES:
            raise ModelError(f"teacher {name!r}: injection mode must be one of {self.MODES}, "
                             f"got {mode!r}")
        if per_channel and token is not None:
            raise ModelError(f"teacher {name!r}: token= picks a position of token states, "
                             "per_channel=True offsets every position of a feature map; "
                             "give one of them")
        self.name, self.model, self.mode, self.token = name, model, mode, token
        self.per_channel = per_channel
        self.device, self.dtype = device, dtype
        if device is not None or dtype is not None:  # placed once, before the first pass
            model.to(device=device, dtype=dtype)
        self.inject_at, self.head_path = inject_at, head
        self._inject_module = get_submodule(model, inject_at)
        self.head = get_submodule(model, head)
        self._call = call or (lambda m, b: m(b))
        self.question_width = self.answer_width = -1

    def modules(self) -> list[nn.Module]:
        return [self.model]

    def context(self, batch: Batch) -> Batch:
        return batch

    @contextlib.contextmanager
    def _hooks(self, question: torch.Tensor | None,
               seen: dict[str, torch.Tensor]) -> Iterator[None]:
        def inject(_m: nn.Module, _i: Any, out: Any) -> Any:
            state = first_tensor(out)
            seen["own"] = own = _at_token(state, self.token)
            if question is None:
                return None
            expected = own.shape[:2] if self.per_channel else own.shape
            if question.shape != expected:
                raise ModelError(
                    f"teacher {self.name!r}: the question has shape {tuple(question.shape)} but "
                    f"{self.inject_at!r} outputs {tuple(own.shape)}"
                    + (" (one offset per channel: [batch, channels])" if self.per_channel else "")
                )
            question_here = question.to(own.device, own.dtype)  # differentiable: grads flow back
            if self.per_channel:
                return _with_first(out, _injected_per_channel(state, question_here, self.mode))
            return _with_first(out, _injected(state, question_here, self.mode, self.token))

        def read_answer(_m: nn.Module, args: tuple[Any, ...]) -> None:
            seen["t"] = _at_token(args[0], self.token)

        hooks = [
            self._inject_module.register_forward_hook(inject),
            self.head.register_forward_pre_hook(read_answer),
        ]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()

    def _run(self, batch: Batch) -> torch.Tensor:
        """The model on its own device and precision; the result comes back to the batch's
        device in the default precision (the student's)."""
        if self.device is not None or self.dtype is not None:
            batch = move_tensors(batch, self.device, self.dtype)
        return self._call(self.model, batch)

    def _home(self, tensor: torch.Tensor, like: Batch) -> torch.Tensor:
        device = next((v.device for v in like.values() if isinstance(v, torch.Tensor)), None)
        return tensor.to(device, torch.get_default_dtype() if tensor.is_floating_point() else None)

    def answer(self, question: torch.Tensor | None, context: Batch) -> Answer:
        seen: dict[str, torch.Tensor] = {}
        with self._hooks(question, seen):
            prediction = self._run(context)
        return Answer(self._home(seen["t"], context), self._home(prediction, context))

    def predict(self, batch: Batch) -> torch.Tensor:
        return self._home(self._run(batch), batch)

    def probe(self, batch: Batch) -> None:
        seen: dict[str, torch.Tensor] = {}
        try:
            with torch.no_grad(), self._hooks(None, seen):
                prediction = self._run(batch)
        except (IndexError, RuntimeError, KeyError, TypeError) as err:
            # e.g. a teacher trained on another release: its embedding tables are too small
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"teacher {self.name!r} cannot run on a batch of this data "
                             f"({type(err).__name__}: {first})") from None
        if "target" in batch:
            check_prediction(f"teacher {self.name!r}", prediction, batch["target"])
        if "own" not in seen:
            raise ModelError(f"teacher {self.name!r}: module {self.inject_at!r} "
                             "never ran in a forward pass")
        if "t" not in seen:
            raise ModelError(f"teacher {self.name!r}: head {self.head_path!r} "
                             "never ran in a forward pass")
        own = seen["own"]
        if self.per_channel:
            if own.dim() != 4:
                raise ModelError(f"teacher {self.name!r}: per_channel=True needs a feature map "
                                 f"[batch, channels, height, width] at {self.inject_at!r}, "
                                 f"which outputs {tuple(own.shape)}")
            check_vectors(f"teacher {self.name!r}", **{"head input": (self.head_path, seen["t"])})
            self.question_width = own.shape[1]
        else:
            if own.dim() == 4:
                raise ModelError(f"teacher {self.name!r}: {self.inject_at!r} outputs a feature "
                                 f"map {tuple(own.shape)}; ask a convolutional network with "
                                 "per_channel=True (the question: one offset per channel)")
            check_vectors(f"teacher {self.name!r}", **{"injection point": (self.inject_at, own),
                                                        "head input": (self.head_path, seen["t"])})
            self.question_width = own.shape[-1]
        self.answer_width = seen["t"].shape[-1]
