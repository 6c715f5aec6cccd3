"""Tiny Hugging Face language models saved to a temporary directory, built in-process.

A character-level WordPiece vocabulary covers every text the MovieLens template renders,
so the real loading path (``from_pretrained`` on a directory) is exercised offline.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _tokenizer(root: Path):
    from transformers import BertTokenizer

    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = SPECIAL + list(chars) + [f"##{c}" for c in chars]
    root.mkdir(parents=True, exist_ok=True)
    return BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})


def tiny_bert_dir(root: Path, layers: int = 3, seed: int = 0) -> Path:
    from transformers import BertConfig, BertModel

    tokenizer = _tokenizer(root)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=128)
    BertModel(config, add_pooling_layer=False).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def tiny_t5_dir(root: Path, seed: int = 0) -> Path:
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _tokenizer(root)
    torch.manual_seed(seed)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                      num_heads=2, decoder_start_token_id=0, pad_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root
