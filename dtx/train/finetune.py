"""`dtx finetune --task qa|pair`: fine-tune the coupled teacher (QA reader or pair classifier).

No fine-tuned cross-encoder can be downloaded here, so teachers are made from a local encoder
(all-MiniLM-L6-v2 is the offline start). The dev split holds out whole passages; dev accuracy
and macro-F1 (pair) or SQuAD 2.0 EM / F1 (QA) are written beside the model (dtx_finetune.json), so every figure in the docs can
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
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer

from dtx.atomic import atomic_dir, write_json
from dtx.data.pairs import Pair, read_pairs
from dtx.engines.runner import Runner
from dtx.errors import DtxError
from dtx.model.segments import PairSegmenter, Segment
from dtx.train.splits import dev_subset, split_by_passage, train_subset

REPORT_FILE = "dtx_finetune.json"


@dataclass
class FinetuneConfig:
    epochs: float = 1.0  # passes over the training pairs (fractions allowed)
    batch_size: int = 32
    lr: float = 5e-5  # peak AdamW learning rate, linear warm-up then decay
    warmup: float = 0.06  # share of steps spent warming up
    max_len: int = 128  # pair tokens; pair tasks truncate the passage, QA cuts it into windows
    doc_stride: int = 64  # QA: tokens shared by consecutive passage windows
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


def _train(model, batches, steps: int, cfg: FinetuneConfig, progress: bool) -> float:
    """AdamW with linear warm-up and decay over `steps` batches from `batches(step)`; returns seconds."""
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    warm = max(1, int(cfg.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="finetune", unit="step", disable=not progress)
    for step in bar:
        loss = model(**batches(step)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return time.perf_counter() - start


def _write(model, tokenizer, out_dir, report: dict, overwrite: bool) -> dict:
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / REPORT_FILE, report)
    return report


def finetune_pair(model_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: FinetuneConfig, overwrite: bool = False, progress: bool = True) -> dict:
    """Fine-tune, evaluate on held-out passages, write the model atomically; returns the report."""
    pairs = read_pairs(data)
    labels = _labels(pairs, str(data))
    label2id = {l: i for i, l in enumerate(labels)}
    train, dev = split_by_passage(pairs, cfg.dev_percent)
    train = train_subset(train, cfg.train_limit, cfg.seed)
    dev = dev_subset(dev, cfg.dev_limit, cfg.seed)
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

    def batch(step: int) -> dict:
        i = (step * cfg.batch_size) % len(train)
        rows = train[i : i + cfg.batch_size]
        return {**_encode(tokenizer, rows, cfg.max_len), "labels": torch.tensor([label2id[p.label] for p in rows])}

    seconds = _train(model, batch, steps, cfg, progress)
    report = {
        "task": "pair",
        "data": str(data),
        "labels": labels,
        "train_pairs": len(train),
        "dev_pairs": len(dev),
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "dev": evaluate(model, tokenizer, dev, label2id, cfg.max_len),
        "config": asdict(cfg),
        "source": str(model_dir),
    }
    return _write(model, tokenizer, out_dir, report, overwrite)


class _HFCoupled(Runner):
    """A Hugging Face QA model behind the Runner interface, so the teacher is scored by dtx.eval's decoding."""

    def __init__(self, model) -> None:
        super().__init__({"coupled": ["start_logits", "end_logits"]})
        self.model = model

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = self.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        return [out.start_logits.numpy(), out.end_logits.numpy()]


def qa_window_lengths(max_len: int) -> tuple[int, int]:
    """(question, passage) tokens of a QA window of `max_len`: the question gets at most 64."""
    q = min(64, max_len // 3)
    return q, max_len - q


def qa_segmenter(tokenizer, cfg: FinetuneConfig) -> PairSegmenter:
    """The windows the teacher is trained on (and its students read, see `dtx decouple`)."""
    return PairSegmenter(tokenizer, *qa_window_lengths(cfg.max_len), cfg.doc_stride)


def finetune_qa(model_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: FinetuneConfig, overwrite: bool = False, progress: bool = True) -> dict:
    """Fine-tune an extractive QA teacher (SQuAD 2.0 style: [CLS] = no answer) on held-out paragraphs."""
    from dtx.data.qa import qa_features
    from dtx.eval.predict import qa_answers, run_qa
    from dtx.eval.squad import squad_v2

    pairs = read_pairs(data)
    if all(not p.answers for p in pairs):
        raise DtxError(f"{data} has no answers at all; QA fine-tuning needs questions with answer spans (SQuAD 2.0 style)")
    train, dev = split_by_passage(pairs, cfg.dev_percent)
    train = train_subset(train, cfg.train_limit, cfg.seed)
    dev = dev_subset(dev, cfg.dev_limit, cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    seg = qa_segmenter(tokenizer, cfg)
    features = qa_features(train, seg, str(data))
    order = np.random.default_rng(cfg.seed).permutation(len(features))
    features = [features[i] for i in order]
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir, attn_implementation="eager")
    steps = max(1, math.ceil(cfg.epochs * len(features) / cfg.batch_size))

    def batch(step: int) -> dict:
        i = (step * cfg.batch_size) % len(features)
        rows = features[i : i + cfg.batch_size]
        packed = seg.pad([Segment(f.question.input_ids + f.passage.input_ids, f.question.token_type_ids + f.passage.token_type_ids, []) for f in rows])
        starts = [len(f.question) + f.start if f.start >= 0 else 0 for f in rows]
        ends = [len(f.question) + f.end if f.end >= 0 else 0 for f in rows]
        return {**{k: torch.from_numpy(v) for k, v in packed.as_dict().items()}, "start_positions": torch.tensor(starts), "end_positions": torch.tensor(ends)}

    seconds = _train(model, batch, steps, cfg, progress)
    dev_features = qa_features(dev, seg, str(data))
    answers = qa_answers(dev, dev_features, run_qa(_HFCoupled(model), seg, dev_features, "coupled"))
    report = {
        "task": "qa",
        "data": str(data),
        "train_questions": len(train),
        "train_windows": len(features),
        "dev_questions": len(dev),
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "dev": squad_v2([p.answers for p in dev], answers),
        "config": asdict(cfg),
        "source": str(model_dir),
    }
    return _write(model, tokenizer, out_dir, report, overwrite)
