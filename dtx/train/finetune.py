"""`dtx finetune --task pair`: fine-tune a coupled pair classifier (the teacher) on labelled pairs.

No fine-tuned cross-encoder can be downloaded here, so teachers are made from a local encoder
(all-MiniLM-L6-v2 is the offline start). The dev split holds out whole passages; dev accuracy
and macro-F1 are written beside the model (dtx_finetune.json), so every figure in the docs can
be traced to the command that made it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from dtx.atomic import atomic_dir, write_json
from dtx.data.pairs import Pair, read_pairs
from dtx.errors import DtxError
from dtx.train.splits import split_by_passage

REPORT_FILE = "dtx_finetune.json"


@dataclass
class FinetuneConfig:
    epochs: float = 1.0  # passes over the training pairs (fractions allowed)
    batch_size: int = 32
    lr: float = 5e-5  # peak AdamW learning rate, linear warm-up then decay
    warmup: float = 0.06  # share of steps spent warming up
    max_len: int = 128  # pair tokens; passages are truncated ("only_second")
    train_limit: int | None = None  # use the first N training pairs (after a seeded shuffle)
    dev_limit: int | None = 2000  # evaluate on at most N dev pairs
    dev_percent: int = 10
    seed: int = 0


def _labels(pairs: list[Pair], path: str) -> list[str]:
    missing = [i for i, p in enumerate(pairs) if p.label is None]
    if missing:
        raise DtxError(f"{path}: pair {missing[0] + 1} has no label; pair fine-tuning needs one on every pair")
    return sorted({p.label for p in pairs})


def _encode(tokenizer, pairs: list[Pair], max_len: int) -> dict[str, torch.Tensor]:
    enc = tokenizer([p.question for p in pairs], [p.passage for p in pairs], truncation="only_second", max_length=max_len, padding=True, return_tensors="pt")
    return dict(enc)


def evaluate(model, tokenizer, pairs: list[Pair], label2id: dict[str, int], max_len: int, batch_size: int = 64) -> dict:
    """Accuracy and macro-F1 of a pair classifier."""
    model.eval()
    preds, gold = [], [label2id[p.label] for p in pairs]
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            logits = model(**_encode(tokenizer, pairs[i : i + batch_size], max_len)).logits
            preds += logits.argmax(-1).tolist()
    return pair_metrics(np.array(preds), np.array(gold), len(label2id))


def pair_metrics(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> dict:
    f1s = []
    for c in range(n_labels):
        tp = int(((pred == c) & (gold == c)).sum())
        fp, fn = int(((pred == c) & (gold != c)).sum()), int(((pred != c) & (gold == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((pred == gold).mean()), "macro_f1": float(np.mean(f1s)), "pairs": int(len(gold))}


def finetune_pair(model_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: FinetuneConfig, overwrite: bool = False, progress: bool = True) -> dict:
    """Fine-tune, evaluate on held-out passages, write the model atomically; returns the report."""
    pairs = read_pairs(data)
    labels = _labels(pairs, str(data))
    label2id = {l: i for i, l in enumerate(labels)}
    train, dev = split_by_passage(pairs, cfg.dev_percent)
    rng = np.random.default_rng(cfg.seed)
    train = [train[i] for i in rng.permutation(len(train))][: cfg.train_limit]
    dev = [dev[i] for i in np.random.default_rng(cfg.seed + 1).permutation(len(dev))][: cfg.dev_limit]
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
        attn_implementation="eager",
        ignore_mismatched_sizes=True,  # a head trained for other labels is replaced by a fresh one
    )
    steps = max(1, math.ceil(cfg.epochs * len(train) / cfg.batch_size))
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    warm = max(1, int(cfg.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="finetune", unit="step", disable=not progress)
    for step in bar:
        i = (step * cfg.batch_size) % len(train)
        batch = train[i : i + cfg.batch_size]
        out = model(**_encode(tokenizer, batch, cfg.max_len), labels=torch.tensor([label2id[p.label] for p in batch]))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{out.loss.item():.3f}")
    train_seconds = time.perf_counter() - start
    metrics = evaluate(model, tokenizer, dev, label2id, cfg.max_len)
    report = {
        "task": "pair",
        "data": str(data),
        "labels": labels,
        "train_pairs": len(train),
        "dev_pairs": len(dev),
        "steps": steps,
        "train_seconds": round(train_seconds, 1),
        "dev": metrics,
        "config": asdict(cfg),
        "source": str(model_dir),
    }
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / REPORT_FILE, report)
    return report
