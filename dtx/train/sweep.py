"""`dtx sweep`: distil and score a student for every (split, compression), as the paper's tables do.

Each cell is an ordinary `dtx decouple` + `dtx distill` into its own directory under the sweep
directory, so a killed sweep resumes cell by cell (and a cell mid-training from its last epoch).
Next to the accuracy kept, every row carries the cost of DESIGN.md section 5 (per-query FLOPs
against the coupled model, cached bytes per passage), which is the trade-off a user picks from.
Variants add the ablations: `labels-only` (plain fine-tuning of the decoupled model, no
teacher), `phase2-only` (compression trained jointly from the start, no autoencoder phase) and
`no-pca` (the compressor starts random instead of from principal components).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dtx.atomic import write_json
from dtx.cost import EncoderShape, cache_bytes, query_cost
from dtx.errors import ConfigError
from dtx.train.config import DistillConfig
from dtx.train.distill import distill

VARIANTS = ("distill", "labels-only", "phase2-only", "no-pca")
SWEEP_FILE = "sweep.json"


@dataclass
class SweepConfig:
    splits: list[int]
    compress: list[int]
    distill: DistillConfig
    variants: list[str] = field(default_factory=lambda: ["distill"])
    seq_q: int = 32
    seq_p: int = 150
    candidates: int = 20
    dtype: str = "fp16"


def _variant(cfg: DistillConfig, name: str) -> DistillConfig:
    if name == "labels-only":
        return replace(cfg, labels_only=True)
    if name == "phase2-only":
        return replace(cfg, phase1_epochs=0)
    if name == "no-pca":
        return replace(cfg, pca_init=False)
    return cfg


def headline(task: str) -> str:
    """The metric a row is judged by: F1 for QA, accuracy for pair tasks."""
    return "f1" if task == "qa" else "accuracy"


def run_sweep(teacher_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: SweepConfig, progress: bool = True, device: str | None = None) -> dict:
    from dtx.model.decouple import decouple
    from dtx.model.surgery import read_source_config

    bad = [v for v in cfg.variants if v not in VARIANTS]
    if bad:
        raise ConfigError(f"unknown variant {bad[0]!r}; choose from {', '.join(VARIANTS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = read_source_config(Path(teacher_dir))
    layers = source.num_hidden_layers
    for n in cfg.splits:
        if not 0 <= n <= layers:
            raise ConfigError(f"split {n} is outside 0..{layers}; choose --splits between 0 and {layers}")
    for k in cfg.compress:
        if k < 1 or source.hidden_size % k:
            raise ConfigError(f"compression {k} does not divide the hidden size {source.hidden_size}")
    rows = []
    for n in cfg.splits:
        for k in cfg.compress:
            base = out_dir / f"split{n}-k{k}"
            if not (base / "decoupled.json").is_file():
                decouple(teacher_dir, base, n, k)
            for variant in cfg.variants if k > 1 else [v for v in cfg.variants if v not in ("phase2-only", "no-pca")]:
                student = out_dir / f"split{n}-k{k}-{variant}"
                settings = _variant(cfg.distill, variant)
                report = _cached(student, settings) or distill(base, data, settings, student, progress, device)
                rows.append(_row(report, n, layers, k, variant, source, cfg))
                write_json(out_dir / SWEEP_FILE, {"teacher": str(teacher_dir), "data": str(data), "config": asdict(cfg), "rows": rows})
    return {"teacher": str(teacher_dir), "data": str(data), "config": asdict(cfg), "rows": rows}


def _cached(student: Path, settings: DistillConfig) -> dict | None:
    """A finished cell's report (its checkpoint records it), so a re-run skips it."""
    meta = student / "decoupled.json"
    if not meta.is_file():
        return None
    report = json.loads(meta.read_text()).get("distill")
    if report and report.get("config") != asdict(settings):
        raise ConfigError(f"{student} was trained with other settings; use another -o for this sweep")
    return report if report and "final" in report else None


def _row(report: dict, n: int, layers: int, k: int, variant: str, source, cfg: SweepConfig) -> dict:
    final = report["final"]
    task = "qa" if "f1" in final["student"] else "pair"
    metric = headline(task)
    shape = EncoderShape(layers, source.hidden_size, source.intermediate_size, source.hidden_size // k)
    cost = query_cost(shape, n, cfg.seq_q, cfg.seq_p, cfg.candidates, cfg.dtype)
    s, t = final["student"][metric], final["teacher"][metric]
    return {
        "split": n,
        "layers": f"{n}/{layers - n}",
        "compress": k,
        "variant": variant,
        "metric": metric,
        "student": s,
        "teacher": t,
        "kept_percent": 100 * s / t if t else float("nan"),
        "agreement": final["agreement"],
        "flop_speedup": cost.flop_ratio,
        "cache_bytes_per_passage": cache_bytes(cfg.seq_p, shape.rep, cfg.dtype),
        "train_pairs": report.get("train_pairs"),
        "dev_pairs": report.get("dev_pairs"),
        "pca_variance_kept": report.get("pca_variance_kept"),
        "phase1_ae_mse_last": next((h["loss"].get("ae_mse_last") for h in report["history"] if h["phase"] == "phase1"), None),
        "seconds": sum(h["seconds"] for h in report["history"]),
    }


def plot_sweep(report: dict, path: str) -> None:
    """Accuracy kept (left) and per-query FLOP speed-up (right) against the split, one line per compression."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in report["rows"]:
        groups.setdefault((r["compress"], r["variant"]), []).append(r)
    for (k, variant), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["split"])
        label = f"{k}x {variant}" if k > 1 else f"no compression {variant}"
        ax1.plot([r["split"] for r in rows], [r["kept_percent"] for r in rows], marker="o", label=label)
        ax2.plot([r["split"] for r in rows], [r["flop_speedup"] for r in rows], marker="o", label=label)
    metric = report["rows"][0]["metric"] if report["rows"] else "metric"
    ax1.set(xlabel="split N (layers in the input component)", ylabel=f"student {metric} / teacher (%)", title="accuracy kept")
    ax2.set(xlabel="split N", ylabel="coupled / decoupled FLOPs per query", title="compute saved")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
