"""`dtx eval MODEL --data ...`: teacher and student side by side, on a checkpoint, export or engine.

QA: SQuAD 2.0 exact match and F1 (HasAns / NoAns apart); pair tasks: accuracy and macro-F1, and
MRR@10 where pairs are grouped by query (re-ranking data). The student is the decoupled path,
the teacher the coupled one of the same artifact, each answering by its own calibrated no-answer
threshold for a given paragraph (dtx.eval.no_answer; 0 where uncalibrated); agreement is how often
they predict the same thing. The dev split is the one training held out (a hash of the passage), so no passage seen in
training is scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dtx.data.pairs import Pair, read_pairs
from dtx.errors import DtxError
from dtx.eval.metrics import positive_index
from dtx.eval.predict import qa_side_by_side, run_pair
from dtx.model.no_answer import PATHS
from dtx.data.splits import SPLITS, dev_subset, split_by_passage
from dtx.task import Task



def open_model(path: str | Path, threads: int | None = None):
    """(runner, segmenter, task, labels, kind, no-answer thresholds) for a checkpoint, export or engine directory."""
    from dtx.artifacts import target_kind
    from dtx.engines import open_engine
    from dtx.export.manifest import read_manifest
    from dtx.export.spec import GRAPHS, graph_specs

    kind = target_kind(str(path))
    if kind == "checkpoint":
        from dtx.engines.torch_backend import TorchRunner
        from dtx.model.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        cfg = ckpt.config
        specs = graph_specs(cfg.task, cfg.rep_dim, cfg.num_labels)
        outputs = {g: [o.name for o in specs[g].outputs] for g in GRAPHS}
        config = ckpt.teacher().config
        labels = [config.id2label[i] for i in sorted(config.id2label)] if cfg.task == Task.PAIR else []
        return TorchRunner(Path(path), outputs), ckpt.segmenter(), cfg.task, labels, kind, ckpt.meta.no_answer
    if kind == "export":
        from dtx.engines.runner import OrtRunner

        manifest = read_manifest(path)
        runner = OrtRunner({g: manifest.path / manifest.graphs[g].file for g in GRAPHS}, manifest.outputs, threads=threads)
    else:
        engine = open_engine(path, threads=threads)
        runner, manifest = engine.runner, engine.export
    if manifest.task == Task.PAIR and not manifest.labels:
        raise DtxError(f"{path} was exported before dtx recorded label names; re-run `dtx export` (and `dtx build-engine`)")
    return runner, manifest.segmenter(), manifest.task, manifest.labels, kind, manifest.checkpoint.no_answer


def select(pairs: list[Pair], split: str, limit: int | None, seed: int = 0) -> list[Pair]:
    if split not in SPLITS:
        raise DtxError(f"--split {split} is not one of {', '.join(SPLITS)}")
    if split == "all":
        return pairs[:limit] if limit else pairs
    train, dev = split_by_passage(pairs)
    chosen = dev_subset(dev, limit, seed) if split == "dev" else train[:limit]
    if not chosen:
        raise DtxError(f"the {split} split of this data is empty (every passage hashes to the other side); pass --split all")
    return chosen


class EvalReport(dict):
    """`evaluate_model`'s report: a JSON-able dict (model, kind, task, teacher, student, agreement, ...) with its table."""

    HEADERS = ("metric", "teacher", "student", "student / teacher")

    def metrics(self) -> list[str]:
        """The task's metrics, in the order the table lists them."""
        return ["exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "no_answer_rate", "HasAns_no_answer_rate"] if self["task"] == Task.QA else ["accuracy", "macro_f1", "mrr@10"]

    def rows(self) -> list[list]:
        """(metric, teacher, student, student / teacher) for each metric the report holds."""
        rows = []
        for k in self.metrics():
            if k in self["teacher"]:
                t, s = self["teacher"][k], self["student"][k]
                rows.append([k, round(t, 4), round(s, 4), f"{100 * s / t:.1f}%" if t else "-"])
        return rows

    @property
    def prediction(self) -> str:
        """What student and teacher agree on: an answer (QA) or a label (pair)."""
        return "answer" if self["task"] == Task.QA else "label"


def evaluate_model(path: str | Path, data: str | Path, split: str = "dev", limit: int | None = 1000, batch_size: int = 32, threads: int | None = None, progress: bool = True) -> EvalReport:
    runner, seg, task, labels, kind, no_answer = open_model(path, threads)
    pairs = select(read_pairs(data), split, limit)
    report = EvalReport(model=str(path), kind=kind, task=task, data=str(data), split=split, examples=len(pairs))
    with runner:
        if task == Task.QA:
            thresholds = {p: no_answer.threshold("paragraph", p) for p in PATHS}
            report.update(_qa(runner, seg, pairs, data, batch_size, progress, thresholds), no_answer_threshold=thresholds)
        else:
            report.update(_pair(runner, seg, pairs, labels, data, batch_size, progress))
    return report


def _qa(runner, seg, pairs: list[Pair], data, batch_size: int, progress: bool, thresholds: dict[str, float]) -> dict:
    from dtx.data.qa import qa_features

    if all(p.label is not None and not p.answers for p in pairs):
        raise DtxError(f"{data} holds labelled pairs, not questions with answers; this model is a QA reader")
    return qa_side_by_side(runner, seg, pairs, qa_features(pairs, seg, str(data)), batch_size, progress, thresholds)


def _pair(runner, seg, pairs: list[Pair], labels: list[str], data, batch_size: int, progress: bool) -> dict:
    from dtx.eval.metrics import pair_metrics

    unknown = sorted({p.label for p in pairs if p.label is not None} - set(labels))
    if unknown or any(p.label is None for p in pairs):
        raise DtxError(f"{data}: pairs need labels from the model's {labels}; found {unknown or 'unlabelled pairs'}")
    gold = np.array([labels.index(p.label) for p in pairs])
    logits = {path: run_pair(runner, seg, pairs, path, batch_size, progress) for path in ("decoupled", "coupled")}
    out = {}
    for who, path in (("student", "decoupled"), ("teacher", "coupled")):
        out[who] = pair_metrics(logits[path].argmax(-1), gold, len(labels))
        if any(p.group for p in pairs):
            out[who]["mrr@10"] = mrr_at_10(pairs, logits[path], labels)
    out["agreement"] = float((logits["decoupled"].argmax(-1) == logits["coupled"].argmax(-1)).mean())
    return out


def mrr_at_10(pairs: list[Pair], logits: np.ndarray, labels: list[str]) -> float:
    """Mean reciprocal rank of the first relevant passage within each query's top 10 (relevant: `positive_index`'s class)."""
    positive = positive_index(labels)
    z = logits - logits.max(-1, keepdims=True)
    logp = z[:, positive] - np.log(np.exp(z).sum(-1))
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.group, []).append(i)
    rr = []
    for rows in groups.values():
        ranked = sorted(rows, key=lambda i: -logp[i])[:10]
        hits = [r for r, i in enumerate(ranked, 1) if pairs[i].label == "1"]
        rr.append(1 / hits[0] if hits else 0.0)
    return float(np.mean(rr))
