"""`dtx distill`: train the decoupled student from its coupled teacher (DESIGN.md section 2).

Student and teacher read the same slot layout: the question padded to lq, then the passage padded
to lp. The teacher runs as `CoupledModel`, whose positions count real tokens only, so on that
layout (padding holes masked) it computes exactly what it computes on the packed pair; every
loss term is then an elementwise comparison over real slots.

With compression, training has two phases: (1) the compressor/decompressor alone, as an
autoencoder of the layer-N states (nothing else changes); (2) everything jointly. The compressor
can instead start from the principal components of real layer-N states (`--pca-init`), the
optimum of a linear autoencoder. A checkpoint with the training state is written atomically at
the end of every epoch and of phase 1; a killed run resumes from the last one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dtx.data.pairs import Pair, read_pairs
from dtx.data.qa import QAFeature, qa_features
from dtx.errors import DtxError
from dtx.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dtx.model.surgery import build_coupled
from dtx.train.finetune import pair_metrics
from dtx.train.losses import MASKED, LossTerms, distillation_loss, masked_mse
from dtx.train.splits import dev_subset, split_by_passage, train_subset

STATE_FILE = "train_state.pt"


@dataclass
class DistillConfig:
    temperature: float = 2.0  # T of the soft targets (teacher and student)
    alpha: float = 0.5  # weight of CE with the labels; 1 - alpha goes to the KL term
    epochs: int = 1  # phase-2 passes over the training pairs
    phase1_epochs: int = 1  # autoencoder passes (only with compression; 0 = phase 2 only)
    pca_init: bool = False  # start the compressor from the principal components of layer-N states
    batch_size: int = 16
    lr: float = 5e-5  # phase 2 (whole student)
    phase1_lr: float = 1e-3  # phase 1 (compressor/decompressor)
    train_limit: int | None = None
    dev_limit: int | None = 1000
    dev_percent: int = 10
    labels_only: bool = False  # ablation: plain fine-tuning of the decoupled model (CE only, no teacher)
    seed: int = 0


class LastLayerAttention:
    """Captures the attention probabilities of one transformer layer (eager attention)."""

    def __init__(self, layer: nn.Module) -> None:
        self.probs: torch.Tensor | None = None
        self._hook = layer.attention.self.register_forward_hook(self._grab)

    def _grab(self, module, args, output) -> None:
        self.probs = output[1]  # (B, heads, S, S)

    def remove(self) -> None:
        self._hook.remove()


def train_device() -> torch.device:
    """CUDA when present (with bf16 autocast in phase 2), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _on(b: dict, device: torch.device) -> dict:
    """A batch moved to `device` (a no-op on the CPU)."""
    if device.type == "cpu":
        return b
    move = lambda x: x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x  # noqa: E731
    return {k: (tuple(move(t) for t in v) if isinstance(v, tuple) else move(v)) for k, v in b.items()}


def _tensors(batch) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids))


def _pair_batch(seg, pairs: list[Pair], label2id: dict[str, int]) -> dict:
    q = seg.pad([seg.question(p.question) for p in pairs])
    p = seg.pad([seg.passage(x.passage)[0] for x in pairs])
    return {"q": _tensors(q), "p": _tensors(p), "labels": (torch.tensor([label2id[x.label] for x in pairs]),), "slots": None}


def _qa_batch(seg, features: list[QAFeature]) -> dict:
    """Start/end targets as slots of the student layout (question padded to lq, then the passage); 0 = no answer.

    `slots` marks where an answer distribution may put mass: [CLS] and the real passage tokens.
    """
    q = seg.pad([f.question for f in features])
    p = seg.pad([f.passage for f in features])
    lq = q.input_ids.shape[1]
    slots = torch.cat([torch.zeros(len(features), lq, dtype=torch.bool), torch.from_numpy(p.attention_mask.astype(bool))], dim=1)
    slots[:, 0] = True
    start = torch.tensor([lq + f.start if f.start >= 0 else 0 for f in features])
    end = torch.tensor([lq + f.end if f.end >= 0 else 0 for f in features])
    return {"q": _tensors(q), "p": _tensors(p), "labels": (start, end), "slots": slots}


def pca_init(model, batches: list[dict]) -> float:
    """Set compressor/decompressor to the top principal components of real layer-N states.

    Returns the share of variance they keep.
    """
    states = []
    with torch.no_grad():
        device = next(model.parameters()).device
        for b in batches:
            b = _on(b, device)
            for side in ("q", "p"):
                h = model.input.encode(*b[side])  # (B, S, hidden)
                states.append(h[b[side][1].bool()].double())
    x = torch.cat(states)  # (tokens, hidden)
    mean = x.mean(0)
    cov = torch.cov((x - mean).T)
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    r = model.config.rep_dim
    v = eigvecs[:, -r:].flip(-1)  # (hidden, r)
    comp, dec = model.input.compressor, model.cross.decompressor
    with torch.no_grad():
        comp.weight.copy_(v.T.float())
        comp.bias.copy_((-(v.T @ mean)).float())
        dec.weight.copy_(v.float())
        dec.bias.copy_(mean.float())
    return float(eigvals[-r:].sum() / eigvals.sum())


def evaluate(model, teacher_c, batches: list[dict], n_labels: int) -> dict:
    """Student and teacher accuracy / macro-F1 on the same pairs, and their agreement."""
    preds, tpreds, gold = [], [], []
    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        for b in batches:
            b = _on(b, device)
            (logits,) = model(*b["q"], *b["p"])
            (tlogits,) = teacher_c(*_joined(b))
            preds += logits.argmax(-1).tolist()
            tpreds += tlogits.argmax(-1).tolist()
            gold += b["labels"][0].tolist()
    s, t, g = np.array(preds), np.array(tpreds), np.array(gold)
    return {"student": pair_metrics(s, g, n_labels), "teacher": pair_metrics(t, g, n_labels), "agreement": float((s == t).mean())}


def evaluate_qa(model, teacher_c, seg, pairs: list[Pair], features: list[QAFeature]) -> dict:
    """SQuAD 2.0 EM / F1 of student and teacher on held-out questions, decoded as `dtx eval` decodes."""
    from dtx.engines.torch_backend import TorchRunner
    from dtx.eval.predict import qa_side_by_side

    names = ["start_logits", "end_logits"]
    runner = TorchRunner.from_modules({"input": model.input, "cross": model.cross, "coupled": teacher_c}, {"cross": names, "coupled": names, "input": ["hidden"]})
    model.eval()
    return qa_side_by_side(runner, seg, pairs, features)


def _joined(b: dict) -> tuple[torch.Tensor, ...]:
    """The pair as the teacher reads it in the student's slot layout: question slots, then passage slots."""
    return tuple(torch.cat([q, p], dim=1) for q, p in zip(b["q"], b["p"]))


def distill(ckpt_dir: str | Path, data: str | Path, cfg: DistillConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Distil (or, with `labels_only`, plainly fine-tune) the student; returns the report."""
    ckpt = load_checkpoint(ckpt_dir)
    out_dir = Path(out_dir or ckpt_dir)
    teacher = ckpt.teacher()
    seg = ckpt.segmenter()
    pairs = read_pairs(data)
    train, dev = split_by_passage(pairs, cfg.dev_percent)
    train = train_subset(train, cfg.train_limit, cfg.seed)
    dev = dev_subset(dev, cfg.dev_limit, cfg.seed)
    device = train_device()
    model, teacher_c = ckpt.model.to(device), build_coupled(teacher).eval().to(device)
    for p in teacher_c.parameters():
        p.requires_grad_(False)
    chunks = lambda rows: [rows[i : i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]  # noqa: E731
    if ckpt.config.task == "qa":
        if all(not p.answers for p in pairs):
            raise DtxError(f"{data} has no answers; a QA student is distilled on questions with answer spans (SQuAD 2.0 style)")
        features = qa_features(train, seg, str(data))
        features = [features[i] for i in np.random.default_rng(cfg.seed).permutation(len(features))]
        dev_features = qa_features(dev, seg, str(data))
        train_batches = [_qa_batch(seg, rows) for rows in chunks(features)]
        scorer = lambda: evaluate_qa(model, teacher_c, seg, dev, dev_features)  # noqa: E731
    else:
        id2label = {int(k): v for k, v in teacher.config.id2label.items()}
        label2id = {v: k for k, v in id2label.items()}
        unknown = sorted({p.label for p in pairs} - set(label2id))
        if unknown:
            raise DtxError(f"{data} has labels {unknown} the teacher does not know ({sorted(label2id)}); distil on the teacher's task")
        train_batches = [_pair_batch(seg, rows, label2id) for rows in chunks(train)]
        dev_batches = [_pair_batch(seg, rows, label2id) for rows in chunks(dev)]
        scorer = lambda: evaluate(model, teacher_c, dev_batches, len(label2id))  # noqa: E731

    state = _load_state(out_dir, cfg)
    torch.manual_seed(cfg.seed)
    report = state.get("report", {"config": asdict(cfg), "data": str(data), "history": []})
    compressing = ckpt.config.compress > 1
    if compressing and cfg.pca_init and not state:
        report["pca_variance_kept"] = pca_init(model, train_batches[: max(1, 2048 // cfg.batch_size)])
    if state:
        model.load_state_dict(state["model"])
    phases = ([("phase1", e) for e in range(cfg.phase1_epochs)] if compressing and not cfg.labels_only else []) + [("phase2", e) for e in range(cfg.epochs)]
    done = state.get("done", 0)
    for index, (phase, epoch) in enumerate(phases):
        if index < done:
            continue
        start = time.perf_counter()
        terms = _run_phase(phase, model, teacher_c, train_batches, cfg, progress, f"{phase} epoch {epoch + 1}")
        entry = {"phase": phase, "epoch": epoch + 1, "seconds": round(time.perf_counter() - start, 1), "loss": terms}
        if phase == "phase2":
            entry["dev"] = scorer()
        report["history"].append(entry)
        _save(ckpt, model, teacher, out_dir, {"done": index + 1, "report": report, "config": asdict(cfg)})
    report["final"] = scorer()
    report["train_pairs"], report["dev_pairs"] = len(train), len(dev)
    _save(ckpt, model, teacher, out_dir, {"done": len(phases), "report": report, "config": asdict(cfg)})
    return report


def _run_phase(phase: str, model, teacher_c, batches: list[dict], cfg: DistillConfig, progress: bool, desc: str) -> dict[str, float]:
    codec = list(model.input.compressor.parameters()) + list(model.cross.decompressor.parameters())
    params = codec if phase == "phase1" else [p for p in model.parameters()]
    optim = torch.optim.AdamW(params, lr=cfg.phase1_lr if phase == "phase1" else cfg.lr, weight_decay=0.0 if phase == "phase1" else 0.01)
    steps = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: max(0.0, 1 - s / steps))
    model.train()
    student_attn = LastLayerAttention(model.cross.layers[-1]) if len(model.cross.layers) else None
    teacher_attn = LastLayerAttention(teacher_c.encoder.layers[-1])
    sums: dict[str, float] = {}
    tail: list[dict[str, float]] = []
    device = next(model.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and phase == "phase2")
    order = np.random.default_rng(cfg.seed + len(phase)).permutation(steps)
    bar = tqdm(order, desc=desc, unit="batch", disable=not progress)
    try:
        for i in bar:
            b = _on(batches[i], device)
            if phase == "phase1":
                with torch.no_grad():
                    hs = [model.input.encode(*b[s]) for s in ("q", "p")]
                loss = sum(masked_mse(model.cross.decompressor(model.input.compressor(h)), h, b[s][1]) for h, s in zip(hs, ("q", "p"))) / 2
                items = {"ae_mse": float(loss.detach())}
            else:
                with autocast:
                    terms = _phase2_terms(model, teacher_c, b, cfg, student_attn, teacher_attn)
                loss, items = terms.total, terms.items()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            for k, v in items.items():
                sums[k] = sums.get(k, 0.0) + v
            tail.append(items)
            bar.set_postfix({k: f"{v:.3f}" for k, v in items.items() if k != "attention" or v})
    finally:
        teacher_attn.remove()
        if student_attn:
            student_attn.remove()
    model.eval()
    # the epoch's mean, and the mean of its last tenth: where the term ended up, not just its average
    last = tail[-max(1, steps // 10) :]
    return {**{k: v / max(steps, 1) for k, v in sums.items()}, **{f"{k}_last": sum(t[k] for t in last) / len(last) for k in sums}}


def _phase2_terms(model, teacher_c, b: dict, cfg: DistillConfig, student_attn, teacher_attn) -> LossTerms:
    q_rep, p_rep = model.input(*b["q"]), model.input(*b["p"])
    h, mask = model.cross.hidden(q_rep, b["q"][1], p_rep, b["p"][1])
    logits = model.cross.head(h)
    if cfg.labels_only:
        masked = [x.masked_fill(~b["slots"], MASKED) if b["slots"] is not None else x for x in logits]
        ce = torch.stack([nn.functional.cross_entropy(x, y) for x, y in zip(masked, b["labels"])]).mean()
        zero = ce.new_zeros(())
        return LossTerms(ce, ce, zero, zero, zero)
    with torch.no_grad():
        joined = _joined(b)
        th = teacher_c.encoder.encode(*joined)
        tlogits = teacher_c.head(th)
    attention = None
    if student_attn is not None and student_attn.probs is not None:
        attention = (student_attn.probs, teacher_attn.probs)
    return distillation_loss(logits, tlogits, b["labels"], b["slots"], (h, th), attention, mask, cfg.temperature, cfg.alpha)


def _load_state(out_dir: Path, cfg: DistillConfig) -> dict:
    path = out_dir / STATE_FILE
    if not path.is_file():
        return {}
    state = torch.load(path, weights_only=False)
    if state.get("config") != asdict(cfg):
        raise DtxError(f"{out_dir} holds a run with other settings; pass another -o or the same settings to resume")
    return state


def _save(ckpt: Checkpoint, model, teacher, out_dir: Path, state: dict) -> None:
    payload = {**state, "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    save_checkpoint(
        model,
        teacher,
        ckpt.tokenizer(),
        out_dir,
        overwrite=True,
        extra={"source": ckpt.meta.get("source"), "distill": state["report"]},
        extra_files={STATE_FILE: lambda path: torch.save(payload, path)},
    )
