"""Tiny Hugging Face vision and text models, tokenizers and CIFAR files, built in-process.

Nothing is downloaded: every model comes from a ``ViTConfig`` / ``CLIPConfig`` /
``BertConfig`` with random weights, every tokenizer from a word list.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

CLASSES = ("cat", "dog", "ship")
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "photo", "of", "the", "."] + list(CLASSES)


def tiny_vit(seed=0, layers=4, image_size=16, hidden=16, num_labels=3):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(image_size=image_size, patch_size=4, hidden_size=hidden,
                       num_hidden_layers=layers, num_attention_heads=2,
                       intermediate_size=2 * hidden, num_labels=num_labels,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return ViTForImageClassification(config).eval()


def tiny_clip(seed=0):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0),
        vision_config=dict(image_size=24, patch_size=6, hidden_size=16, num_hidden_layers=4,
                           num_attention_heads=2, intermediate_size=32),
        projection_dim=8)
    return CLIPModel(config).eval()


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")


def tiny_sentence_model(path: Path) -> Path:
    """A 2-layer BERT with its tokenizer saved where a sentence encoder is expected."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(WORDS), hidden_size=12, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=24,
                         max_position_embeddings=16)).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def image_batch(n=6, size=32, seed=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, 3, size, size, generator=g),
            "target": torch.randint(0, classes, (n,), generator=g)}


def cifar_arrays(n_train=60, n_test=30, classes=3, seed=0):
    """Learnable toy images: each class has its own mean colour, plus noise."""
    rng = np.random.default_rng(seed)

    def part(n):
        y = np.arange(n) % classes
        base = np.linspace(40, 215, classes)[y][:, None, None, None]
        tint = np.array([1.0, 0.6, 0.3])[None, None, None, :] * (1 + y[:, None, None, None] % 2)
        x = np.clip(base * tint + rng.normal(0, 25, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        return x, y.astype(np.uint8)

    x_train, y_train = part(n_train)
    x_test, y_test = part(n_test)
    return x_train, y_train, x_test, y_test


def write_npz(path: Path, n_train=60, n_test=30, classes=CLASSES) -> Path:
    x_train, y_train, x_test, y_test = cifar_arrays(n_train, n_test, len(classes))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                        class_names=np.array(classes))
    return path


def write_python_batches(root: Path, archive: bool = False) -> Path:
    """The official CIFAR-10 python layout (5 training batches, a test batch, the meta)."""
    x_train, y_train, x_test, y_test = cifar_arrays(50, 10, 10)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, x, y):
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": [int(v) for v in y], b"batch_label": b"x"}, f,
                        protocol=2)  # as the official (Python 2) files

    for i in range(5):
        dump(f"data_batch_{i + 1}", x_train[i * 10:(i + 1) * 10], y_train[i * 10:(i + 1) * 10])
    dump("test_batch", x_test, y_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)
    if not archive:
        return folder
    tar_path = root / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return tar_path
