"""Random-weight models of known shapes, for benchmarks that must run offline.

Latency does not depend on the weights, so `dtx bench --arch bert-base` builds a model of that
shape from nothing: a config, random weights and a synthetic WordPiece vocabulary of the right
size (no download). Accuracy is never measured on these.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, BertConfig, BertTokenizer, ElectraConfig

from dtx.errors import ConfigError
from dtx.task import Task

BERT_VOCAB = 30522

PRESETS: dict[str, dict] = {
    "bert-base": dict(kind="bert", hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large": dict(kind="bert", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "electra-base": dict(kind="electra", embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "electra-small": dict(kind="electra", embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4, intermediate_size=1024),
    "minilm-l6": dict(kind="bert", hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}


def synthetic_tokenizer(vocab_size: int = BERT_VOCAB) -> BertTokenizer:
    """A WordPiece tokenizer with the usual specials and `vocab_size` entries of made-up words."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,?!", *letters, *(f"##{c}" for c in letters)]
    vocab += [f"w{i}" for i in range(vocab_size - len(vocab))]
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


def build_preset(name: str, out_dir: str | Path, task: str = Task.QA, num_labels: int = 2, seed: int = 0) -> Path:
    """Write a random-weight `...ForQuestionAnswering` / `...ForSequenceClassification` of preset `name`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown --arch {name!r}; available are: {', '.join(PRESETS)}")
    shape = dict(PRESETS[name])
    kind = shape.pop("kind")
    common = dict(vocab_size=BERT_VOCAB, max_position_embeddings=512, type_vocab_size=2, num_labels=num_labels)
    config = BertConfig(**common, **shape) if kind == "bert" else ElectraConfig(**common, **shape)
    torch.manual_seed(seed)
    cls = AutoModelForQuestionAnswering if task == Task.QA else AutoModelForSequenceClassification
    model = cls.from_config(config, attn_implementation="eager")
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    synthetic_tokenizer().save_pretrained(out_dir)
    return out_dir
