"""`dtx finetune --task qa|pair`: fine-tune the coupled teacher (QA reader or pair classifier).

No fine-tuned cross-encoder can be downloaded here, so teachers are made from a local encoder
(all-MiniLM-L6-v2 is the offline start). Two splits hold out whole passages: dev, which every
report reads, and a selection split beside it; after every epoch the model is scored on both
(SQuAD 2.0 F1 for QA, accuracy for pairs), training stops once the selection score stops
improving, and the epoch best there is what is published, with the per-epoch curves in
dtx_finetune.json. While a run is going, OUT holds the best weights so far plus a training
state (written every epoch and every `save_every` seconds): the same command resumes it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer

from dtx.atomic import ArtifactKind, atomic_dir, check_output, write_json
from dtx.data.pairs import Pair, read_pairs
from dtx.engines.runner import Runner
from dtx.errors import DtxError
from dtx.eval.metrics import pair_metrics
from dtx.model.decouple import FINETUNE_REPORT
from dtx.model.segments import PairSegmenter, Segment, qa_window_lengths
from dtx.train.config import DEFAULT_MAX_LEN, FinetuneConfig
from dtx.train.loop import Hooks, Phase, PhaseState, autocast, cpu_state, padded_length, resolve_bf16, resume_state, scored, train_device, train_phase
from dtx.data.splits import held_out

STATE_FILE = "train_state.pt"  # present only while a run is unfinished
# OUT: a Hugging Face model directory (save_pretrained + the tokenizer) with the report beside it
FINETUNED = ArtifactKind(
    "fine-tuned model",
    FINETUNE_REPORT,
    ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin", "tokenizer*",
     "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt", "*.model", "chat_template.*", STATE_FILE),
)  # fmt: skip


def check_start(model_dir: str | Path, out_dir: str | Path, cfg: FinetuneConfig, overwrite: bool) -> None:
    """Everything that can refuse a run, before data or weights are read: OUT (dtx's rule for replacing a
    directory, and writable; an unfinished run there resumes), the schedule, the model's config."""
    from dtx.model.surgery import read_source_config

    check_output(out_dir, FINETUNED, overwrite or (Path(out_dir) / STATE_FILE).is_file())
    cfg.check()
    read_source_config(model_dir)


def _labels(pairs: list[Pair], path: str) -> list[str]:
    missing = [i for i, p in enumerate(pairs) if p.label is None]
    if missing:
        raise DtxError(f"{path}: pair {missing[0] + 1} has no label; pair fine-tuning needs one on every pair")
    return sorted({p.label for p in pairs})


def majority_baseline(dev: list[Pair]) -> dict:
    """The dev accuracy of always answering the most common dev label: the floor a pair classifier must clear.

    A classifier that has only learned the label prior sits at (or just under) it while its loss sits at
    the prior's entropy; its accuracy alone does not show that (VitaminC: 0.49 looks like a weak model,
    but half the dev pairs are "True").
    """
    counts = Counter(p.label for p in dev)
    label = max(sorted(counts), key=counts.__getitem__)  # ties: the first label in sorted order
    return {"label": label, "accuracy": counts[label] / len(dev)}


def prior_warning(report: dict) -> str | None:
    """One line for a pair teacher no better than its majority baseline (what to do about it), else None."""
    floor, acc = report.get("dev_majority"), report["dev"]["accuracy"]
    if not floor or acc > floor["accuracy"]:
        return None
    limit = (report.get("config") or {}).get("train_limit")
    fix = f"train on more pairs than --train-limit {limit}" if limit else "check the labels, then train longer (--min-epochs) or at a lower --lr"
    return (
        f"warning: the kept dev accuracy {acc:.4f} is no better than always answering {floor['label']!r} ({floor['accuracy']:.4f}): "
        f"the classifier learned little beyond the label prior and is no teacher to distil from; {fix}"
    )


def _encode(tokenizer, pairs: list[Pair], max_len: int) -> dict[str, torch.Tensor]:
    enc = tokenizer([p.question for p in pairs], [p.passage for p in pairs], truncation="only_second", max_length=max_len, padding=True, return_tensors="pt")
    return dict(enc)


def evaluate(model, tokenizer, pairs: list[Pair], label2id: dict[str, int], max_len: int, batch_size: int = 64) -> dict:
    """Accuracy and macro-F1 of a pair classifier (fp32: the score of the weights that are published)."""
    model.eval()
    device = next(model.parameters()).device
    preds, gold = [], [label2id[p.label] for p in pairs]
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            batch = {k: v.to(device) for k, v in _encode(tokenizer, pairs[i : i + batch_size], max_len).items()}
            preds += model(**batch).logits.argmax(-1).tolist()
    return pair_metrics(np.array(preds), np.array(gold), len(label2id))


def _write(model, tokenizer, out_dir: Path, report: dict, weights: dict | None, state: dict | None) -> None:
    """Publish OUT atomically: the given weights (the best epoch's), the report, and the training state while unfinished."""
    with atomic_dir(out_dir, overwrite=True, kind=FINETUNED) as tmp:
        model.save_pretrained(tmp, state_dict=weights)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / FINETUNE_REPORT, report)
        if state is not None:
            torch.save(state, tmp / STATE_FILE)


def fit(
    model,
    tokenizer,
    lengths: list[int],
    make_batch: Callable[[list[int]], dict],
    score: Callable[[], tuple[float, dict]],
    cfg: FinetuneConfig,
    out_dir: str | Path,
    report: dict,
    overwrite: bool = False,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """Train a Hugging Face model (its own `.loss`) epoch by epoch, keep the epoch best on the selection split, resume a killed run.

    `lengths` are the examples' token counts (for length-bucketed batches), `make_batch(indices)`
    gives the model's keyword arguments, `score()` the headline (higher is better) and the scores by
    held-out side (`dtx.train.loop.scored`); the report's "dev" is the kept epoch's dev score.
    The loop is dtx.train.loop's `train_phase`, as for every dtx run.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / STATE_FILE).is_file() and not overwrite:
        raise DtxError(f"{out_dir} already exists; choose another output directory or pass --overwrite")
    state = resume_state(out_dir / STATE_FILE, cfg, overwrite, "pass --overwrite to start again")
    device = train_device(device)
    model.to(device)
    bf16 = resolve_bf16(device, cfg.bf16)
    history: list[dict] = state.get("history", [])
    report = {**report, "bf16": bf16, "steps_per_epoch": math.ceil(len(lengths) / cfg.batch_size), "config": asdict(cfg)}

    def step(indices: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = {k: v.to(device) for k, v in make_batch(indices).items()}
        with autocast(device, bf16):
            loss = model(**batch).loss
        return loss, {"loss": float(loss.detach())}

    def save(run: PhaseState, done: bool = False) -> None:
        report.update(history=history, best_epoch=run.stopper.best_epoch, finished=done)
        if history:
            report.update({side: history[run.stopper.best_epoch - 1][side] for side in ("select", "dev") if side in history[0]})
        snapshot = None if done else {**run.snapshot(model), "config": asdict(cfg), "history": history}
        _write(model, tokenizer, out_dir, report, run.best if run.best is not None else cpu_state(model), snapshot)

    phase = Phase("finetune", cfg.epochs, list(model.parameters()), cfg.lr, cfg.weight_decay, named=False)
    run = train_phase(model, phase, cfg, lengths, Hooks(step, score, save), state, history, progress)
    report["epochs_run"] = len(history)
    report["train_seconds"] = round(sum(h["seconds"] for h in history), 1)
    save(run, done=True)
    if run.best is not None:
        model.load_state_dict(run.best)
    return report


def finetune_pair(model_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: FinetuneConfig, overwrite: bool = False, progress: bool = True, device: str | None = None) -> dict:
    """Fine-tune a pair classifier, keeping the epoch with the best held-out accuracy; returns the report."""
    cfg = cfg.for_task("pair")
    check_start(model_dir, out_dir, cfg, overwrite)
    pairs = read_pairs(data)
    labels = _labels(pairs, str(data))
    label2id = {l: i for i, l in enumerate(labels)}
    train, held = held_out(pairs, cfg, data)
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
    encoded = tokenizer([p.question for p in train], [p.passage for p in train], truncation="only_second", max_length=cfg.max_len)
    targets = [label2id[p.label] for p in train]

    def make_batch(indices: list[int]) -> dict:
        rows = [{k: encoded[k][i] for k in encoded.keys()} for i in indices]
        longest = max(len(r["input_ids"]) for r in rows)
        padded = tokenizer.pad(rows, padding="max_length", max_length=padded_length(longest, cfg.max_len), return_tensors="pt")
        return {**padded, "labels": torch.tensor([targets[i] for i in indices])}

    def score() -> tuple[float, dict]:
        return scored(lambda side: evaluate(model, tokenizer, held.sides[side], label2id, cfg.max_len), held.sides, lambda s: s["accuracy"])

    report = {"task": "pair", "data": str(data), "labels": labels, "train_pairs": len(train), "select_pairs": len(held.select), "dev_pairs": len(held.dev)}
    report |= {"dev_majority": majority_baseline(held.dev), "source": str(model_dir)}
    return fit(model, tokenizer, [len(x) for x in encoded["input_ids"]], make_batch, score, cfg, out_dir, report, overwrite, progress, device)


class _HFCoupled(Runner):
    """A Hugging Face QA model behind the Runner interface, so the teacher is scored by dtx.eval's decoding."""

    def __init__(self, model) -> None:
        super().__init__({"coupled": ["start_logits", "end_logits"]})
        self.model = model

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(**{k: torch.from_numpy(v).to(device) for k, v in feeds.items()})
        return [out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()]


def qa_segmenter(tokenizer, cfg: FinetuneConfig) -> PairSegmenter:
    """The windows the teacher is trained on (and its students read, see `dtx decouple`)."""
    return PairSegmenter(tokenizer, *qa_window_lengths(cfg.max_len or DEFAULT_MAX_LEN["qa"]), cfg.doc_stride)


def finetune_qa(model_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: FinetuneConfig, overwrite: bool = False, progress: bool = True, device: str | None = None) -> dict:
    """Fine-tune an extractive QA teacher (SQuAD 2.0 style: [CLS] = no answer), keeping the epoch with the best dev F1."""
    from dtx.data.negatives import hard_negatives, one_window_each
    from dtx.data.qa import qa_features
    from dtx.eval.predict import qa_answers, run_qa
    from dtx.eval.squad import squad_v2

    cfg = cfg.for_task("qa")
    check_start(model_dir, out_dir, cfg, overwrite)
    pairs = read_pairs(data)
    if all(not p.answers for p in pairs):
        raise DtxError(f"{data} has no answers at all; QA fine-tuning needs questions with answer spans (SQuAD 2.0 style)")
    train, held = held_out(pairs, cfg, data)
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    seg = qa_segmenter(tokenizer, cfg)
    features = qa_features(train, seg, str(data))
    negatives = hard_negatives(train, cfg.negatives, cfg.negative_pool, cfg.seed)
    features += one_window_each(qa_features(negatives, seg, str(data)), cfg.seed)
    windows = {side: qa_features(questions, seg, str(data)) for side, questions in held.sides.items()}
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir, attn_implementation="eager")

    def make_batch(indices: list[int]) -> dict:
        rows = [features[i] for i in indices]
        segments = [Segment(f.question.input_ids + f.passage.input_ids, f.question.token_type_ids + f.passage.token_type_ids, []) for f in rows]
        packed = seg.pad(segments, padded_length(max(len(x) for x in segments), cfg.max_len))
        starts = [len(f.question) + f.start if f.start >= 0 else 0 for f in rows]
        ends = [len(f.question) + f.end if f.end >= 0 else 0 for f in rows]
        return {**{k: torch.from_numpy(v) for k, v in packed.as_dict().items()}, "start_positions": torch.tensor(starts), "end_positions": torch.tensor(ends)}

    def squad(side: str) -> dict:
        questions = held.sides[side]
        return squad_v2([p.answers for p in questions], qa_answers(questions, windows[side], run_qa(_HFCoupled(model), seg, windows[side], "coupled")))

    def score() -> tuple[float, dict]:
        return scored(squad, held.sides, lambda s: s["f1"])

    report = {"task": "qa", "data": str(data), "train_questions": len(train), "negative_windows": len(negatives), "train_windows": len(features)}
    report |= {"select_questions": len(held.select), "dev_questions": len(held.dev), "source": str(model_dir)}
    return fit(model, tokenizer, [len(f.question) + len(f.passage) for f in features], make_batch, score, cfg, out_dir, report, overwrite, progress, device)
