"""`dtx distill`: train the decoupled student from its coupled teacher (docs/design.md, "Training").

Student and teacher read the same slot layout: the question padded to lq, then the passage padded
to lp (both to the longest in the batch: batches group windows of similar length). The teacher
runs as `CoupledModel`, whose positions count real tokens only, so on that layout (padding holes
masked) it computes exactly what it computes on the packed pair; every loss term is then an
elementwise comparison over real slots.

The teacher never changes, so its work is done once: `TeacherCache` keeps the states entering its
last layer for every training example, and a step recomputes only that layer (for the hidden
states and attention the loss compares) and the head.

With compression, training has two phases: (1) the compressor/decompressor alone, as an
autoencoder of the layer-N states (nothing else changes); (2) everything jointly. The compressor
starts from the principal components of real layer-N states (`pca_init`, the optimum of a linear
autoencoder). Each phase has one optimizer and one warm-up + decay schedule over all its epochs;
phase 2 is scored on the held-out passages after every epoch, stops when the score stops
improving and publishes its best epoch. The training state (weights, optimizer, schedule, where
in the epoch) is written atomically with the checkpoint every epoch and every `save_every`
seconds; the same command resumes a killed run where it stopped.

With `qat_epochs`, a last phase trains for the INT8 engine: the same loss, with every MatMul the
engine quantizes computed as ONNX Runtime's dynamic INT8 computes it (dtx.train.fake_quant), at a
small rate; it is scored under INT8 too (before it starts: what plain INT8 would give), and the
checkpoint records the scheme, which `dtx build-engine --int8` then builds.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dtx.data.augment import PASSAGE_RATE, RATE, WordNeighbours, perturb
from dtx.data.negatives import draws
from dtx.data.pairs import Pair, read_pairs
from dtx.data.qa import qa_features
from dtx.errors import DtxError
from dtx.model.checkpoint import INT8_TRAINING, Checkpoint, load_checkpoint, save_checkpoint
from dtx.model.decoupled import additive_mask, layer_states
from dtx.model.int8 import Int8Scheme
from dtx.model.segments import PairSegmenter, Segment
from dtx.model.surgery import build_coupled
from dtx.task import Task
from dtx.train.config import DistillConfig
from dtx.train.fake_quant import fake_quantized
from dtx.eval.metrics import pair_metrics
from dtx.train.loop import Hooks, Phase, autocast, cpu_state, epoch_batches, padded_length, resolve_bf16, resume_state, scored, train_device, train_phase
from dtx.train.losses import MASKED, NO_LABEL, LossTerms, distillation_loss, labelled_ce, masked_mse
from dtx.data.splits import HeldOut, held_out

__all__ = ["DistillConfig", "distill", "pca_init", "TeacherCache"]

STATE_FILE = "train_state.pt"


@dataclass
class Example:
    """One training or dev item as both models read it: its two segments and its target.

    QA: `target` = (start, end) tokens of the answer in the passage segment (-1: no answer);
    pair tasks: `target` = (label id,). NO_LABEL throughout: no gold label (an augmented copy).
    """

    question: Segment
    passage: Segment
    target: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.question) + len(self.passage)


class AttentionScores:
    """Captures one layer's unnormalised attention scores QK^T / sqrt(d) (TinyBERT's attention target).

    Hooks the query and key projections' outputs, so nothing is recomputed and the attention
    kernel is free to be any implementation; `scores()` forms (B, heads, S, S) in fp32.
    """

    def __init__(self, layer: nn.Module) -> None:
        attn = layer.attention.self
        self.heads, self.scale = attn.num_attention_heads, attn.attention_head_size**-0.5
        self.q: torch.Tensor | None = None
        self.k: torch.Tensor | None = None
        self._hooks = [
            attn.query.register_forward_hook(lambda m, a, out: setattr(self, "q", out)),
            attn.key.register_forward_hook(lambda m, a, out: setattr(self, "k", out)),
        ]

    def scores(self) -> torch.Tensor:
        b, s, _ = self.q.shape
        q = self.q.float().view(b, s, self.heads, -1).transpose(1, 2)  # (B, heads, S, d)
        k = self.k.float().view(b, s, self.heads, -1).transpose(1, 2)  # (B, heads, S, d)
        return q @ k.transpose(-1, -2) * self.scale  # (B, heads, S, S)

    def probs(self, mask: torch.Tensor) -> torch.Tensor:
        """The softmax probabilities over real keys (the first recipe's target, kept for the ablation)."""
        return torch.softmax(self.scores() + additive_mask(mask, torch.float32), dim=-1)

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


def _tensors(batch) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids))


def make_batch(seg: PairSegmenter, examples: list[Example], qa: bool) -> dict:
    """Padded tensors of a batch; QA targets become slots of the student layout (question padded to lq, then the passage).

    `slots` (QA) marks where an answer distribution may put mass: [CLS] and the real passage tokens.
    """
    q = seg.pad([e.question for e in examples], padded_length(max(len(e.question) for e in examples), seg.max_question_len))
    p = seg.pad([e.passage for e in examples], padded_length(max(len(e.passage) for e in examples), seg.max_passage_len))
    if not qa:
        return {"q": _tensors(q), "p": _tensors(p), "labels": (torch.tensor([e.target[0] for e in examples]),), "slots": None}
    lq = q.input_ids.shape[1]
    slots = torch.cat([torch.zeros(len(examples), lq, dtype=torch.bool), torch.from_numpy(p.attention_mask.astype(bool))], dim=1)
    slots[:, 0] = True
    slot = lambda t: lq + t if t >= 0 else (NO_LABEL if t == NO_LABEL else 0)  # noqa: E731 - no answer is [CLS], slot 0
    start, end = (torch.tensor([slot(e.target[k]) for e in examples]) for k in (0, 1))
    return {"q": _tensors(q), "p": _tensors(p), "labels": (start, end), "slots": slots}


def pair_examples(seg: PairSegmenter, pairs: list[Pair], label2id: dict[str, int]) -> list[Example]:
    """Pair-task examples: the question and the passage's first window."""
    return [Example(seg.question(x.question), seg.passage(x.passage)[0], (label2id[x.label],)) for x in pairs]


def _pair_batch(seg: PairSegmenter, pairs: list[Pair], label2id: dict[str, int]) -> dict:
    return make_batch(seg, pair_examples(seg, pairs, label2id), qa=False)


def _on(b: dict, device: torch.device) -> dict:
    """A batch moved to `device` (a no-op on the CPU)."""
    if device.type == "cpu":
        return b
    move = lambda x: x.to(device, non_blocking=True) if isinstance(x, torch.Tensor) else x  # noqa: E731
    return {k: (tuple(move(t) for t in v) if isinstance(v, tuple) else move(v)) for k, v in b.items()}


def _joined(b: dict) -> tuple[torch.Tensor, ...]:
    """The pair as the teacher reads it in the student's slot layout: question slots, then passage slots."""
    return tuple(torch.cat([q, p], dim=1) for q, p in zip(b["q"], b["p"]))


class TeacherCache:
    """The teacher's states after its first `start` layers, for every training example, computed once.

    The loss needs the teacher's logits and the hidden states (and last attention) of its layers
    from `start` on, which do not change during training. Stored outright, the attention alone is
    heads x S x S per example (about 1 MB for a 256-token window: 10 GB for Disfl-QA's 9.4k
    windows); one layer's states are S x hidden (160 kB, 1.5 GB), and the layers after `start`
    recomputed from them cost (L - start)/L of a teacher forward: `start` = L - 1 when only the
    last layer is compared, N (the split) for layer-wise supervision. Only real slots are kept, so
    the cache does not depend on how a batch is padded. States are kept in the precision they were
    computed in (bf16 under autocast, else fp32, where the recomputed layers equal the full teacher).
    """

    def __init__(self, teacher_c, seg: PairSegmenter, examples: list[Example], qa: bool, batch_size: int, device: torch.device, bf16: bool, progress: bool = True, start: int | None = None) -> None:
        self.teacher_c = teacher_c
        layers = teacher_c.encoder.layers
        self.start = len(layers) - 1 if start is None else start
        self.states: list[torch.Tensor] = [torch.empty(0)] * len(examples)
        encoder = teacher_c.encoder
        order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
        chunks = [order[i : i + 2 * batch_size] for i in range(0, len(order), 2 * batch_size)]
        with torch.no_grad():
            for indices in tqdm(chunks, desc="teacher cache", unit="batch", disable=not progress):
                ids, mask, types = _joined(_on(make_batch(seg, [examples[i] for i in indices], qa), device))
                with autocast(device, bf16):
                    h = layer_states(encoder.layers[: self.start], encoder.embed(ids, mask, types), mask)[-1]
                h, real = h.cpu(), mask.bool().cpu()  # one transfer per chunk: a sync per example stalls a shared GPU
                for row, i in enumerate(indices):
                    self.states[i] = h[row][real[row]].clone()
        self.nbytes = sum(t.numel() * t.element_size() for t in self.states)

    def outputs(self, indices: list[int], mask: torch.Tensor) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        """The teacher's states after `start`, ..., L layers (each (B, S, hidden)) and its logits, for a batch laid out by `mask` (B, S)."""
        real = mask.bool()
        x = torch.zeros(*mask.shape, self.states[indices[0]].shape[-1], device=mask.device)
        x[real] = torch.cat([self.states[i] for i in indices]).to(mask.device, torch.float32)
        states = layer_states(self.teacher_c.encoder.layers[self.start :], x, mask)
        return states, self.teacher_c.head(states[-1])


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


class DevScorer:
    """The student's held-out score after an epoch, beside the teacher's, computed once (it does not change)."""

    def __init__(self, model, teacher_c, seg: PairSegmenter, dev: list[Pair], qa: bool, label2id: dict[str, int], data: str) -> None:
        from dtx.engines.torch_backend import TorchRunner

        self.runner = TorchRunner.from_student(model, teacher_c, ["start_logits", "end_logits"] if qa else ["logits"])
        self.model, self.seg, self.dev, self.qa, self.label2id = model, seg, dev, qa, label2id
        self.features = qa_features(dev, seg, data) if qa else None
        self.teacher = self._predict("coupled")

    def _predict(self, path: str):
        from dtx.eval.predict import qa_path_answers, run_pair

        self.model.eval()
        if self.qa:
            return qa_path_answers(self.runner, self.seg, self.dev, self.features, path)
        return run_pair(self.runner, self.seg, self.dev, path).argmax(-1)

    def __call__(self) -> dict:
        from dtx.eval.predict import qa_compare

        student = self._predict("decoupled")
        if self.qa:
            return qa_compare(self.dev, student, self.teacher)
        gold = np.array([self.label2id[p.label] for p in self.dev])
        n = len(self.label2id)
        return {"student": pair_metrics(student, gold, n), "teacher": pair_metrics(self.teacher, gold, n), "agreement": float((student == self.teacher).mean())}

    @property
    def metric(self) -> str:
        return "f1" if self.qa else "accuracy"


def _task(ckpt: Checkpoint, pairs: list[Pair], data: str | Path) -> tuple[bool, dict[str, int]]:
    """(is QA, label ids of a pair task), with one-line errors for data of another task."""
    teacher = ckpt.teacher()
    if ckpt.config.task == Task.QA:
        if all(not p.answers for p in pairs):
            raise DtxError(f"{data} has no answers; a QA student is distilled on questions with answer spans (SQuAD 2.0 style)")
        return True, {}
    id2label = {int(k): v for k, v in teacher.config.id2label.items()}
    label2id = {v: k for k, v in id2label.items()}
    unknown = sorted({p.label for p in pairs} - set(label2id))
    if unknown:
        raise DtxError(f"{data} has labels {unknown} the teacher does not know ({sorted(label2id)}); distil on the teacher's task")
    return False, label2id


def _examples(seg: PairSegmenter, train: list[Pair], qa: bool, label2id: dict[str, int], cfg: DistillConfig, where: str) -> tuple[list[Example], int]:
    """The training examples and how many of them are hard negatives (QA: one window of a BM25 neighbour, no answer)."""
    if not qa:
        return pair_examples(seg, train, label2id), 0
    from dtx.data.negatives import hard_negatives, one_window_each

    own = qa_features(train, seg, where)
    negatives = one_window_each(qa_features(hard_negatives(train, cfg.negatives, cfg.negative_pool, cfg.seed), seg, where), cfg.seed)
    return [Example(f.question, f.passage, (f.start, f.end)) for f in own + negatives], len(negatives)


def varied(e: Example, neighbours: WordNeighbours, rng: np.random.Generator, side: str, rates: tuple[float, float] = (RATE, PASSAGE_RATE)) -> Example:
    """One copy of `e`, the words of `side` swapped for neighbours at `rates` (question, passage), the label dropped:
    a copy trains on the teacher's reading of it only."""
    question = perturb(e.question, neighbours, rng, rates[0]) if side in ("question", "both") else e.question
    passage = perturb(e.passage, neighbours, rng, rates[1]) if side in ("passage", "both") else e.passage
    return Example(question, passage, (NO_LABEL,) * len(e.target))


def augmented(examples: list[Example], neighbours: WordNeighbours, per_example: float, seed: int, side: str = "question") -> list[Example]:
    """`per_example` copies of each example on average (floor, plus one more with probability equal to the fraction), each
    made by `varied`; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return [varied(e, neighbours, rng, side) for e in examples for _ in range(draws(per_example, rng))]


def _neighbours(seg: PairSegmenter, teacher_c: nn.Module, examples: list[Example], side: str) -> WordNeighbours:
    """The teacher's word neighbours for the words of the examples' sides that augmentation varies."""
    tokenizer = seg.tokenizer
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    texts = [e.question for e in examples] if side != "passage" else []
    texts += [e.passage for e in examples] if side != "question" else []
    needed = {i for t in texts for i in t.input_ids}
    return WordNeighbours(vocab, teacher_c.encoder.embeddings.word_embeddings.weight, needed)


def _cache_start(ckpt: Checkpoint, cfg: DistillConfig) -> int | None:
    """The teacher layer the cache starts from: the split for layer-wise supervision, else the last layer (None)."""
    return ckpt.config.split if cfg.cross_layers or cfg.input_layer else None


@dataclass
class _Setup:
    """What a distillation run reads before it trains: the checkpoint's parts on the device, and the data cut into examples."""

    ckpt: Checkpoint
    teacher: nn.Module  # the Hugging Face teacher (saved beside the student)
    teacher_c: nn.Module  # the teacher as CoupledModel, frozen
    seg: PairSegmenter
    qa: bool
    label2id: dict[str, int]
    train: list[Pair]
    held: HeldOut  # the selection split (chooses the epoch) and dev (reported)
    examples: list[Example]
    negatives: int
    augmented: int  # copies of training examples with swapped words and no label, at the end of `examples`
    device: torch.device
    bf16: bool


def _setup(ckpt_dir: str | Path, data: str | Path, cfg: DistillConfig, device: str | None) -> _Setup:
    ckpt = load_checkpoint(ckpt_dir)
    teacher, seg = ckpt.teacher(), ckpt.segmenter()
    pairs = read_pairs(data)
    qa, label2id = _task(ckpt, pairs, data)
    train, held = held_out(pairs, cfg, data)
    examples, negatives = _examples(seg, train, qa, label2id, cfg, str(data))
    teacher_c = build_coupled(teacher).eval()
    own = examples[: len(examples) - negatives]  # hard negatives are extra inputs already: only a question's own windows are copied
    copies = augmented(own, _neighbours(seg, teacher_c, own, cfg.augment_side), cfg.augment, cfg.seed, cfg.augment_side) if cfg.augment > 0 else []
    where = train_device(device)
    ckpt.model.to(where)
    teacher_c.to(where)
    for p in teacher_c.parameters():
        p.requires_grad_(False)
    return _Setup(ckpt, teacher, teacher_c, seg, qa, label2id, train, held, examples + copies, negatives, len(copies), where, resolve_bf16(where, cfg.bf16))


def distill(ckpt_dir: str | Path, data: str | Path, cfg: DistillConfig, out_dir: str | Path | None = None, progress: bool = True, device: str | None = None, calibrate: bool = True) -> dict:
    """Distil (or, with `labels_only`, plainly fine-tune) the student on `device` (default: CUDA when present); returns the report.

    A QA student is then calibrated (dtx.train.calibrate) unless `calibrate` is False or its epochs were chosen on dev."""
    out_dir = Path(out_dir or ckpt_dir)
    state = _load_state(out_dir, cfg)
    if state.get("finished"):
        return state["report"]
    s = _setup(ckpt_dir, data, cfg, device)
    model, examples = s.ckpt.model, s.examples
    torch.manual_seed(cfg.seed)
    report = state.get("report") or {"config": asdict(cfg), "data": str(data), "history": [], "bf16": s.bf16}
    report["train_pairs"], report["train_examples"] = len(s.train), len(examples)
    report["select_pairs"], report["dev_pairs"] = len(s.held.select), len(s.held.dev)
    report["negative_windows"], report["augmented_examples"] = s.negatives, s.augmented
    if s.ckpt.config.compress > 1 and cfg.pca_init and not state and (cfg.epochs > 0 or cfg.phase1_epochs > 0):  # never over a student that is not trained here
        sample = examples[: max(cfg.batch_size, 2048)]
        batches = [make_batch(s.seg, sample[i : i + cfg.batch_size], s.qa) for i in range(0, len(sample), cfg.batch_size)]
        report["pca_variance_kept"] = pca_init(model, batches)
    cache = None
    if not cfg.labels_only and (cfg.epochs > 0 or cfg.qat_epochs > 0):
        start = time.perf_counter()
        cache = TeacherCache(s.teacher_c, s.seg, examples, s.qa, cfg.batch_size, s.device, s.bf16, progress, _cache_start(s.ckpt, cfg))
        report["teacher_cache"] = {"seconds": round(time.perf_counter() - start, 1), "bytes": cache.nbytes}
    scorers = {side: DevScorer(model, s.teacher_c, s.seg, pairs, s.qa, s.label2id, str(data)) for side, pairs in s.held.sides.items()}
    run = _Run(s.ckpt, model, s.teacher, s.seg, examples, s.qa, cache, cfg, out_dir, report, s.device, s.bf16, progress)
    run.train(state, scorers)
    if calibrate and s.qa and cfg.select_percent:
        from dtx.train.calibrate import calibrate_checkpoint

        no_answer = calibrate_checkpoint(s.ckpt, data, cfg.dev_percent, cfg.select_percent, cfg.dev_limit, cfg.seed, out_dir=out_dir, progress=progress, coupled=s.teacher_c)
        report["no_answer"] = no_answer.to_dict()
    return report


def _grad_norm(term: torch.Tensor, params: list[nn.Parameter]) -> float:
    """L2 norm of d term / d params (0 for a term that is off: a constant with no path to them)."""
    if not term.requires_grad:
        return 0.0
    grads = [g for g in torch.autograd.grad(term, params, retain_graph=True, allow_unused=True) if g is not None]
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads))) if grads else 0.0


def gradient_shares(ckpt_dir: str | Path, data: str | Path, cfg: DistillConfig, batches: int = 8, device: str | None = None) -> dict:
    """Each loss term's share of the gradient, on `batches` training batches, for the student as the checkpoint holds it.

    Why: a term whose squared differences are tiny (attention probabilities) can sit in the loss and
    move nothing. For each batch, every weighted term's gradient over the student's parameters is
    taken on its own (L2 norm); a term's share is its norm over the sum of all terms' norms,
    averaged over the batches. Nothing is trained or written.
    """
    s = _setup(ckpt_dir, data, cfg, device)
    order = epoch_batches([len(e) for e in s.examples], cfg.batch_size, cfg.seed, "shares", 0)[:batches]
    used = sorted({i for b in order for i in b})
    local = {i: n for n, i in enumerate(used)}
    examples = [s.examples[i] for i in used]
    cache = TeacherCache(s.teacher_c, s.seg, examples, s.qa, cfg.batch_size, s.device, s.bf16, False, _cache_start(s.ckpt, cfg))
    model = s.ckpt.model.train()
    run = _Run(s.ckpt, model, s.teacher, s.seg, examples, s.qa, cache, cfg, Path("."), {}, s.device, s.bf16, False)
    params = [p for p in model.parameters() if p.requires_grad]
    norms: dict[str, list[float]] = {}
    values: list[dict[str, float]] = []
    attn = run._hooks("phase2")
    try:
        for indices in order:
            indices = [local[i] for i in indices]
            b = _on(make_batch(s.seg, [examples[i] for i in indices], s.qa), s.device)
            terms = run._phase2_terms(b, indices, attn)
            for name, term in terms.weighted(cfg.alpha, cfg.hidden_weight, cfg.attention_weight).items():
                norms.setdefault(name, []).append(_grad_norm(term, params))
            values.append(terms.items())
    finally:
        for hook in attn:
            hook.remove()
    totals = [sum(n[k] for n in norms.values()) for k in range(len(order))]
    return {
        "batches": len(order),
        "terms": {
            name: {
                "value": float(np.mean([v[name] for v in values])),
                "grad_norm": float(np.mean(series)),
                "share": float(np.mean([x / t if t else 0.0 for x, t in zip(series, totals)])),
            }
            for name, series in norms.items()
        },
    }


class _Run:
    """One distillation run: its phases, their optimizers and schedules, saving and resuming."""

    def __init__(self, ckpt, model, teacher, seg, examples, qa, cache, cfg: DistillConfig, out_dir: Path, report: dict, device, bf16: bool, progress: bool) -> None:
        self.ckpt, self.model, self.teacher, self.seg, self.examples, self.qa, self.cache = ckpt, model, teacher, seg, examples, qa, cache
        self.cfg, self.out_dir, self.report, self.device, self.bf16, self.progress = cfg, out_dir, report, device, bf16, progress
        compressing = ckpt.config.compress > 1
        self.phases = ([("phase1", cfg.phase1_epochs)] if compressing and not cfg.labels_only and cfg.phase1_epochs > 0 else []) + [("phase2", cfg.epochs)]
        self.phases += [("qat", cfg.qat_epochs)] if cfg.qat_epochs > 0 else []
        self.scheme = Int8Scheme.parse(cfg.qat_scheme) if cfg.qat_epochs > 0 else None
        self.lengths = [len(e) for e in examples]
        self._attn: list[AttentionScores] = []  # the attention captures of the epoch being trained

    def _params(self, phase: str) -> list[nn.Parameter]:
        if phase == "phase1":
            return list(self.model.input.compressor.parameters()) + list(self.model.cross.decompressor.parameters())
        return list(self.model.parameters())

    def train(self, state: dict, scorers: dict[str, DevScorer]) -> None:
        """Every phase in turn, each scored after its epochs by `scorers` (by held-out side, the choosing one first)."""
        for index, (phase, epochs) in enumerate(self.phases):
            if state and index < state["phase"]:
                continue
            resume = state if state and index == state["phase"] else {}
            with fake_quantized(self.model, self.scheme) if phase == "qat" else contextlib.nullcontext():
                self._phase(index, phase, epochs, resume, scorers)
            state = {}
        if self.scheme is not None:
            self.report["final"] = scorers["dev"]()  # the published (QAT) weights in float; report["qat"] has them as the INT8 engine runs them
        self._save(None, None)

    def _phase(self, index: int, phase: str, epochs: int, state: dict, scorers: dict[str, DevScorer]) -> None:
        """One phase from its start or from `state`, by dtx.train.loop's `train_phase`. Phase 2 and QAT are scored after
        every epoch and publish their best on the selection split; QAT (run with the engine's INT8 arithmetic swapped in)
        is scored as the INT8 engine would run it."""
        cfg, scorer = self.cfg, scorers["dev"]
        if not state and phase == "qat":  # the phase-2 student under INT8, before any QAT: what plain dynamic INT8 would score
            self.report["qat"] = {"scheme": self.scheme.to_dict(), "epochs": epochs, "lr": cfg.qat_lr, "before": scorer()}
        lr, decay = {"phase1": (cfg.phase1_lr, cfg.phase1_weight_decay), "phase2": (cfg.lr, cfg.weight_decay), "qat": (cfg.qat_lr, cfg.weight_decay)}[phase]
        spec = Phase(phase, epochs, self._params(phase), lr, decay, scored=phase in ("phase2", "qat"))

        def score() -> tuple[float, dict]:
            return scored(lambda side: scorers[side](), scorers, lambda s: s["student"][scorer.metric])

        hooks = Hooks(
            step=lambda indices: self._step(phase, indices, self._attn),
            score=score,
            save=lambda run: self._save({"phase": index, **run.snapshot(self.model)}, run.best),
            epoch=lambda: self._attention(phase),
        )
        run = train_phase(self.model, spec, cfg, self.lengths, hooks, state, self.report["history"], self.progress)
        kept = next((h for h in self.report["history"] if h["phase"] == phase and h["epoch"] == run.stopper.best_epoch), {})
        best_dev = kept.get("dev")
        if run.best is not None:
            self.model.load_state_dict(run.best)
        if phase == "phase2" and run.best is not None:
            self.report["best_epoch"], self.report["final"] = run.stopper.best_epoch, best_dev
            self.report |= {"select": kept["select"]} if "select" in kept else {}
        elif phase == "phase2":
            self.report["final"] = scorer()
        if phase == "qat":
            self.report["qat"] |= {"best_epoch": run.stopper.best_epoch, "after": best_dev}

    @contextlib.contextmanager
    def _attention(self, phase: str):
        """The attention captures of `phase` (`_hooks`) in place for one epoch's steps, removed after it."""
        self._attn = self._hooks(phase)
        try:
            yield
        finally:
            for hook in self._attn:
                hook.remove()
            self._attn = []

    def _hooks(self, phase: str) -> list[AttentionScores]:
        """(student, teacher) last-layer attention captures for phase 2 and QAT with a teacher; none otherwise."""
        if phase == "phase1" or self.cache is None or not len(self.model.cross.layers):
            return []
        return [AttentionScores(self.model.cross.layers[-1]), AttentionScores(self.cache.teacher_c.encoder.layers[-1])]

    def _step(self, phase: str, indices: list[int], attn: list[AttentionScores]) -> tuple[torch.Tensor, dict[str, float]]:
        """A batch's loss in `phase` and its terms (floats, for the record); the loop takes the step."""
        b = _on(make_batch(self.seg, [self.examples[i] for i in indices], self.qa), self.device)
        if phase == "phase1":
            with torch.no_grad(), autocast(self.device, self.bf16):
                hs = [self.model.input.encode(*b[s]) for s in ("q", "p")]
            codec = lambda h: self.model.cross.decompressor(self.model.input.compressor(h.float()))  # noqa: E731
            loss = sum(masked_mse(codec(h), h.float(), b[s][1]) for h, s in zip(hs, ("q", "p"))) / 2
            items = {"ae_mse": float(loss.detach())}
        else:
            terms = self._phase2_terms(b, indices, attn)
            loss, items = terms.total, terms.items()
        return loss, items

    def _phase2_terms(self, b: dict, indices: list[int], attn: list[AttentionScores]) -> LossTerms:
        model, cfg = self.model, self.cfg
        with autocast(self.device, self.bf16):
            q_rep, p_rep = model.input(*b["q"]), model.input(*b["p"])
            states, mask = model.cross.states(q_rep, b["q"][1], p_rep, b["p"][1])
            logits = model.cross.head(states[-1])
        logits, states = tuple(x.float() for x in logits), [x.float() for x in states]  # the loss in fp32, whatever the forward ran in
        if self.cache is None:
            masked = [x.masked_fill(~b["slots"], MASKED) if b["slots"] is not None else x for x in logits]
            ce = torch.stack([labelled_ce(x, y) for x, y in zip(masked, b["labels"])]).mean()
            zero = ce.new_zeros(())
            return LossTerms(ce, ce, zero, zero, zero, zero, zero)
        with torch.no_grad():
            teacher, tlogits = self.cache.outputs(indices, mask)
        attention = None
        if attn:
            attention = (attn[0].scores(), attn[1].scores()) if cfg.attention_target == "scores" else (attn[0].probs(mask), attn[1].probs(mask))
        # Aligned from the top: the student's state after N + j layers against the teacher's. The cache gives
        # the teacher's states from layer N (layer-wise terms on: every state pairs up) or from L - 1 (the last only).
        n = min(len(states), len(teacher))
        pairs, whole = list(zip(states[-n:], teacher[-n:])), n == len(states) > 1
        return distillation_loss(
            logits, tlogits, b["labels"], b["slots"], pairs[-1] if len(states) > 1 else None, attention, mask, cfg.temperature, cfg.alpha,
            cfg.hidden_weight, cfg.attention_weight, pairs[1:-1] if cfg.cross_layers and whole else [], pairs[0] if cfg.input_layer and whole else None,
        )  # fmt: skip

    def _save(self, state: dict | None, best: dict | None) -> None:
        """Publish the checkpoint (the best phase-2 weights so far, else the current ones) with the training state; `None` = finished."""
        cfg = asdict(self.cfg)
        payload = {"config": cfg, "finished": True, "report": self.report} if state is None else {**state, "config": cfg, "report": self.report}
        trained = {INT8_TRAINING: {"scheme": self.scheme.to_dict(), "epochs": self.cfg.qat_epochs, "lr": self.cfg.qat_lr}} if state is None and self.scheme else {}
        current = cpu_state(self.model) if best is not None else None
        if best is not None:
            self.model.load_state_dict(best)
        try:
            save_checkpoint(
                self.model,
                self.teacher,
                self.seg.tokenizer,
                self.out_dir,
                overwrite=True,
                extra={"source": self.ckpt.meta.source, "distill": self.report, **trained},
                extra_files={STATE_FILE: lambda path: torch.save(payload, path)},
            )
        finally:
            if current is not None:
                self.model.load_state_dict(current)


def _load_state(out_dir: Path, cfg: DistillConfig) -> dict:
    """The run in OUT to resume or return (`resume_state`, the one rule; a distillation never starts over a run with other settings)."""
    return resume_state(out_dir / STATE_FILE, cfg, False, "pass another -o to start again")
