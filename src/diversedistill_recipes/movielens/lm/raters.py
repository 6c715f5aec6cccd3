"""Hugging Face language models as rating predictors that can be asked a question.

Two families, split the same way: a frozen, question-independent **lower** part whose
output is cached once, and an **upper** part that is fine-tuned and that a question enters.

``EncoderRater`` — encoder-only (BERT family)::

    tokens ─► embeddings + layers[:k0] ─► states [B, T, d]        (lower: cached)
           ─► layers[k0:] ─► pooled state [B, d] ─► head ─► rating (upper: fine-tuned)

  Pooling (the answer a question gets): the last-layer [CLS] state (``"cls"``) or the
  mean of every token's last-layer state (``"mean"``, how sentence-transformers such as
  all-MiniLM-L6-v2 were trained). In ``"token"`` mode the context tokens do not attend to
  the question, so their part of the mean is question-independent and cached with the
  context: a question still costs one token.

  The question replaces (``injection="replace"``, the paper's reading) or is added to
  (``"add"``: a zero question leaves the teacher as trained, as for MLP teachers) the
  [CLS] state at the input of layer ``inject``. Two ways to run
  the layers above it (METHOD.md, "what a question costs a transformer teacher"):
  ``"token"`` (default): the question is one token that attends to the context tokens'
  states cached from one question-free pass — a question costs one token per layer;
  ``"full"``: every token is re-run from ``inject`` with the question in place of [CLS]
  (exact: context tokens also attend to the question; ~T times dearer). Both give the
  teacher's own prediction when the question equals its own [CLS] state.

``T5Rater`` — encoder-decoder (T5), as in the paper: the rating is the expected value over
the tokens "1".."5" at the first decoding step; the question replaces the decoder's token
state after its first block; the encoder output is the context (lower: cached).

Models load with ``from_pretrained`` from a hub name or a local path, never with remote code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from diversedistill.errors import ModelError
from diversedistill.models.hub import load_pretrained

ENCODER_TYPES = ("bert", "roberta")
POOLINGS = ("cls", "mean")
T5_TYPES = ("t5", "mt5")


def _out(x):
    return x[0] if isinstance(x, tuple) else x


def zero_padding(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """States [B, T, d] with padded positions set to 0: they are never attended to, and
    zeros make a cached batch identical however it was padded when computed."""
    return states * mask[..., None].to(states.dtype)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] 1/0 -> [B, 1, 1, T] additive attention mask (0 keep, large negative drop)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class EncoderRater(nn.Module):
    """An encoder-only LM with a regression head on its pooled last-layer state."""

    def __init__(self, encoder: nn.Module, rating_mean: float = 3.5, inject: int = -1,
                 question_mode: str = "token", injection: str = "add", pooling: str = "cls"):
        super().__init__()
        if question_mode not in ("token", "full"):
            raise ModelError(f"question_mode must be 'token' or 'full', got {question_mode!r}")
        if pooling not in POOLINGS:
            raise ModelError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        if injection not in ("replace", "add"):
            raise ModelError(f"injection must be 'replace' or 'add', got {injection!r}")
        self.injection = injection
        self.encoder = encoder
        self.layers = encoder.encoder.layer
        n = len(self.layers)
        self.inject = inject % n
        if not 0 <= self.inject < n:
            raise ModelError(f"inject layer {inject} outside the model's {n} layers")
        self.question_mode = question_mode
        self.width = encoder.config.hidden_size
        self.head = nn.Linear(self.width, 1)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.constant_(self.head.bias, rating_mean)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def lower(self, ids: torch.Tensor, mask: torch.Tensor, upto: int) -> torch.Tensor:
        """Token ids [B, T] -> states at the input of layer ``upto`` [B, T, d]."""
        x = self.encoder.embeddings(input_ids=ids)
        return zero_padding(self.run_layers(x, mask, 0, upto), mask)

    def run_layers(self, x: torch.Tensor, mask: torch.Tensor, start: int,
                   stop: int) -> torch.Tensor:
        bias = additive_mask(mask, x.dtype)
        for layer in self.layers[start:stop]:
            x = _out(layer(x, bias))
        return x

    def read(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled last-layer state [B, d] -> rating [B]."""
        return self.head(pooled).squeeze(-1)

    def pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Last-layer states [B, T, d] -> [B, d]: the [CLS] state, or the mean over tokens."""
        if self.pooling == "cls":
            return x[:, 0]
        weights = mask[..., None].to(x.dtype)
        return (x * weights).sum(1) / weights.sum(1)

    def upper(self, states: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        """States at layer ``start`` -> pooled last-layer state [B, d]."""
        return self.pool(self.run_layers(states, mask, start, self.n_layers), mask)

    # ----------------------------------------------------------------- the question path

    @torch.no_grad()
    def context(self, states: torch.Tensor, mask: torch.Tensor, start: int) -> dict:
        """Question-independent part of a pass, from states at layer ``start`` (≤ inject).

        "token": the keys and values of the non-[CLS] tokens at every layer from ``inject``
        up — all a question token attends to — and the teacher's own [CLS] state at
        ``inject`` (its answer to no question): {"keys", "values": [B, L−inject, T−1, d],
        "mask": [B, T−1], "own": [B, d]}; with mean pooling also "rest" [B, d], the sum of
        the non-[CLS] tokens' last-layer states. Caching keys and values rather than states costs
        twice the space and saves the two projections per context token and layer that
        would otherwise dominate a step. "full": the states at ``inject``,
        {"states": [B, T, d], "mask": [B, T]}.
        """
        if start > self.inject:
            raise ModelError(f"context needs states at or below the injection layer "
                             f"{self.inject}, got layer {start}")
        x = self.run_layers(states, mask, start, self.inject)
        if self.question_mode == "full":
            return {"states": zero_padding(x, mask), "mask": mask}
        own, keys, values = x[:, 0], [], []
        bias, ctx_mask = additive_mask(mask, x.dtype), mask[:, 1:]
        for layer in self.layers[self.inject:]:
            att = layer.attention.self
            keys.append(zero_padding(att.key(x[:, 1:]), ctx_mask))
            values.append(zero_padding(att.value(x[:, 1:]), ctx_mask))
            x = _out(layer(x, bias))
        context = {"keys": torch.stack(keys, 1), "values": torch.stack(values, 1),
                   "mask": ctx_mask, "own": own}
        if self.pooling == "mean":
            context["rest"] = (x[:, 1:] * ctx_mask[..., None].to(x.dtype)).sum(1)
        return context

    def answer(self, question: torch.Tensor | None, context: dict) -> torch.Tensor:
        """Question [b, d] (None: the teacher's own [CLS]) + context -> pooled state [b, d]."""
        mask = context["mask"]
        own = context["states"][:, 0] if self.question_mode == "full" else context["own"]
        if question is not None and self.injection == "add":
            question = own + question
        if self.question_mode == "full":
            states = context["states"].to(self.head.weight.dtype)  # caches may be float16
            if question is not None:
                states = torch.cat([question[:, None].to(states.dtype), states[:, 1:]], 1)
            return self.upper(states, mask, self.inject)
        x = (own if question is None else question)[:, None]  # [b, 1, d]
        x = x.to(self.head.weight.dtype)
        for k, layer in enumerate(self.layers[self.inject:]):
            x = self._one_token_layer(layer, x, context["keys"][:, k], context["values"][:, k],
                                      mask)
        if self.pooling == "cls":
            return x[:, 0]
        return (x[:, 0] + context["rest"].to(x.dtype)) / (mask.sum(1, keepdim=True) + 1).to(x.dtype)

    @staticmethod
    def _one_token_layer(layer: nn.Module, x: torch.Tensor, k_ctx: torch.Tensor,
                         v_ctx: torch.Tensor, ctx_mask: torch.Tensor) -> torch.Tensor:
        """One BERT layer for a single query token [b, 1, d] over itself + context tokens
        whose keys and values [b, T', d] were computed in the question-free pass.

        Uses the layer's own weights (query/key/value, output dense + LayerNorm, feed-forward),
        so it equals the layer's forward for that token when the context is that of the
        full pass. The context's keys and values are the bulk of a step's memory traffic:
        they are split into heads and converted to the layer's precision in one copy, and
        the query's own key/value are scored separately instead of being concatenated to
        them (which would copy them again).
        """
        att = layer.attention.self
        heads, size = att.num_attention_heads, att.attention_head_size
        b = x.shape[0]

        def split(t):  # [b, n, d] -> [b, heads, n, size], contiguous, in x's precision
            view = t.view(b, t.shape[1], heads, size).transpose(1, 2)
            return torch.empty(view.shape, dtype=x.dtype, device=x.device).copy_(view)

        q = split(att.query(x)) / size ** 0.5               # [b, h, 1, s]
        k_ctx, v_ctx = split(k_ctx), split(v_ctx)           # [b, h, T', s]
        own_score = (q * split(att.key(x))).sum(-1, keepdim=True)  # [b, h, 1, 1]
        ctx_score = (q @ k_ctx.transpose(-1, -2)).masked_fill(
            ~ctx_mask.bool()[:, None, None, :], float("-inf"))    # [b, h, 1, T']
        weights = torch.cat([own_score, ctx_score], -1).softmax(-1)
        out = weights[..., :1] * split(att.value(x)) + weights[..., 1:] @ v_ctx
        out = out.transpose(1, 2).reshape(x.shape)
        x = layer.attention.output(out, x)
        return layer.output(layer.intermediate(x), x)


class T5Rater(nn.Module):
    """A T5 model reading the rating as the expected value over the tokens "1".."5"."""

    def __init__(self, model: nn.Module, rating_token_ids: list[int], scale: tuple[float, float],
                 injection: str = "add"):
        super().__init__()
        if injection not in ("replace", "add"):
            raise ModelError(f"injection must be 'replace' or 'add', got {injection!r}")
        self.model, self.injection = model, injection
        self.register_buffer("rating_ids", torch.tensor(rating_token_ids), persistent=False)
        self.register_buffer("values", torch.linspace(scale[0], scale[1], len(rating_token_ids)),
                             persistent=False)
        self.width = model.config.d_model
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None and getattr(model, "generation_config", None) is not None:
            start = model.generation_config.decoder_start_token_id
        self.start_id = start if start is not None else model.config.pad_token_id
        self.n_layers = model.config.num_layers

    def lower(self, ids: torch.Tensor, mask: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Token ids -> encoder output [B, T, d] (the whole encoder is the lower part)."""
        return zero_padding(
            self.model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask)

    @torch.no_grad()
    def context(self, states: torch.Tensor, mask: torch.Tensor, start: int | None = None) -> dict:
        return {"states": states, "mask": mask}

    def _decode(self, question: torch.Tensor | None, context: dict
                ) -> tuple[torch.Tensor, torch.Tensor]:
        enc, mask = context["states"], context["mask"]
        start = torch.full((enc.shape[0], 1), self.start_id, dtype=torch.long, device=enc.device)
        seen = {}

        def replace(_m, _i, out):
            if question is None:
                return None
            q = question[:, None].to(out[0].dtype)
            return (q if self.injection == "replace" else out[0] + q, *out[1:])

        hooks = [self.model.decoder.block[0].register_forward_hook(replace),
                 self.model.lm_head.register_forward_pre_hook(
                     lambda _m, args: seen.__setitem__("hidden", args[0]))]
        try:
            logits = self.model(encoder_outputs=(enc.to(self.model.dtype),), attention_mask=mask,
                                decoder_input_ids=start).logits[:, 0]
        finally:
            for hook in hooks:
                hook.remove()
        probs = logits[:, self.rating_ids].float().softmax(-1)
        return seen["hidden"][:, 0], probs @ self.values

    def answer(self, question: torch.Tensor | None, context: dict) -> torch.Tensor:
        return self._decode(question, context)[0]

    def upper(self, states: torch.Tensor, mask: torch.Tensor,
              start: int | None = None) -> torch.Tensor:
        """Encoder output -> the decoder's last hidden state at the first step [B, d]."""
        return self._decode(None, {"states": states, "mask": mask})[0]

    def read(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder hidden state [B, d] -> expected rating [B]."""
        logits = self.model.lm_head(hidden)
        return logits[:, self.rating_ids].float().softmax(-1) @ self.values


def rating_token_ids(tokenizer, scale: tuple[float, float]) -> list[int]:
    words = [str(r) for r in range(int(scale[0]), int(scale[1]) + 1)]
    ids = []
    for word in words:
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
            raise ModelError(f"the tokenizer has no single token for the rating {word!r} "
                             f"(got {len(pieces)} pieces); a T5 rater needs one token per rating")
        ids.append(pieces[0])
    return ids


def load_rater(name_or_path: str | Path, rating_mean: float, scale: tuple[float, float],
               inject: int = -1, question_mode: str = "token", injection: str = "add",
               pooling: str = "cls"):
    """(rater, tokenizer) for a hub name or a local directory; never runs remote code."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, T5ForConditionalGeneration

    where = str(name_or_path)
    try:
        config = load_pretrained(AutoConfig, where, weights=False)
        tokenizer = load_pretrained(AutoTokenizer, where, weights=False)
    except ModelError as err:
        raise ModelError(f"language model {where!r}: cannot load its config or tokenizer "
                         f"(offline? set HF_HUB_OFFLINE=1 and pass a local path): {err}") from None
    if config.model_type in ENCODER_TYPES:
        encoder = load_pretrained(AutoModel, where, add_pooling_layer=False)
        return EncoderRater(encoder, rating_mean, inject, question_mode, injection,
                            pooling), tokenizer
    if config.model_type in T5_TYPES:
        model = load_pretrained(T5ForConditionalGeneration, where)
        return T5Rater(model, rating_token_ids(tokenizer, scale), scale, injection), tokenizer
    raise ModelError(f"language model {where!r} is a {config.model_type!r} model; supported: "
                     f"encoder-only {ENCODER_TYPES} and encoder-decoder {T5_TYPES}")
