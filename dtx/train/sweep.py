"""`dtx sweep`: distil and score a student for every (split, compression), as the paper's tables do.

Each cell is an ordinary `dtx decouple` + `dtx distill` into its own directory under the sweep
directory, so a killed sweep resumes cell by cell (and a cell mid-training from its last epoch).
Next to the accuracy kept, every row carries the cost of docs/design.md, "Cost model" (per-query FLOPs
against the coupled model, cached bytes per passage), which is the trade-off a user picks from.
Variants add the ablations: `labels-only` (plain fine-tuning of the decoupled model, no
teacher), `phase2-only` (compression trained jointly from the start, no autoencoder phase) and
`no-pca` (the compressor starts random instead of from principal components).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from dtx.atomic import write_json
from dtx.cost import EncoderShape, cache_bytes, check_compress, check_split, query_cost
from dtx.report import save_figure
from dtx.errors import ConfigError
from dtx.model.checkpoint import META_FILE, read_meta
from dtx.task import Task
from dtx.train.config import DistillConfig, same_settings
from dtx.train.distill import distill
from dtx.train.loop import device_name, train_device

VARIANTS = ("distill", "labels-only", "phase2-only", "no-pca")
SWEEP_FILE = "sweep.json"


@dataclass
class SweepConfig:
    splits: list[int]
    compress: list[int]
    distill: DistillConfig
    variants: list[str] = field(default_factory=lambda: ["distill"])
    grid: dict[str, list] = field(default_factory=dict)  # distillation settings swept too: {"lr": [1e-4, 2e-4], ...}
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
    return "f1" if task == Task.QA else "accuracy"


@dataclass(frozen=True)
class Cell:
    """One student of the sweep: decoupled at `split` with compression `compress`, trained as `variant` with `settings`."""

    split: int
    compress: int
    variant: str
    base: Path
    settings: tuple[tuple[str, object], ...] = ()

    def config(self, recipe: DistillConfig) -> DistillConfig:
        return replace(_variant(recipe, self.variant), **dict(self.settings))

    @property
    def student(self) -> Path:
        return self.base.parent / (f"{self.base.name}-{self.variant}" + "".join(f"-{k}{v}" for k, v in self.settings))


def grid_settings(grid: dict[str, list]) -> list[tuple[tuple[str, object], ...]]:
    """Every combination of the swept settings (one empty combination when nothing is swept)."""
    names = list(grid)
    return [tuple(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def run_sweep(
    teacher_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: SweepConfig, progress: bool = True, device: str | None = None, jobs: int = 1
) -> dict:
    """Train every cell not yet trained (`jobs` at once, each in its own process) and tabulate them all.

    One small student leaves a GPU mostly idle (a MiniLM step is a few milliseconds of kernels
    behind Python's launch overhead), so on a GPU several cells train side by side; on a CPU the
    cores are divided between them. Cells are independent (own directory, own seed), so a cell's
    result does not depend on what trains beside it.
    """
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
        check_split(n, layers, "--splits")
    for k in cfg.compress:
        check_compress(k, source.hidden_size)
    cells = []
    for n in cfg.splits:
        for k in cfg.compress:
            base = out_dir / f"split{n}-k{k}"
            if not (base / META_FILE).is_file():
                decouple(teacher_dir, base, n, k)
            for variant in cfg.variants if k > 1 else [v for v in cfg.variants if v not in ("phase2-only", "no-pca")]:
                cells += [Cell(n, k, variant, base, settings) for settings in grid_settings(cfg.grid)]
    reports = {c: r for c in cells if (r := _cached(c.student, c.config(cfg.distill)))}
    where = device_name(train_device(device))
    metric = headline(read_meta(cells[0].base).decoupling.task) if cells else "metric"  # one teacher, one task

    def table() -> dict:
        rows = [_row(reports[c], c, layers, source, cfg, metric) for c in cells if c in reports]
        return {"teacher": str(teacher_dir), "data": str(data), "device": where, "config": asdict(cfg), "rows": rows}

    todo = [c for c in cells if c not in reports]
    if jobs <= 1 or len(todo) <= 1:
        for c in todo:
            reports[c] = distill(c.base, data, c.config(cfg.distill), c.student, progress, device)
            write_json(out_dir / SWEEP_FILE, table())
    else:
        _train_in_parallel(todo, data, cfg, device, jobs, reports, lambda: write_json(out_dir / SWEEP_FILE, table()), progress, metric)
    write_json(out_dir / SWEEP_FILE, table())
    return table()


def _start_worker(threads: int) -> None:
    """A spawned worker starts with library defaults: give it its share of threads and keep its log to the cell lines."""
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _train_in_parallel(todo: list[Cell], data, cfg: SweepConfig, device: str | None, jobs: int, reports: dict, publish, progress: bool, metric: str) -> None:
    """Distil `todo` in `jobs` spawned processes (CUDA cannot be shared across a fork), publishing the table as each ends.

    A failed cell stops the cells not yet started and is raised once those running have ended
    (each is resumable, so nothing is lost by letting them finish).
    """
    jobs = min(jobs, len(todo))
    on_gpu = device == "cuda" or (device is None and torch.cuda.is_available())
    threads = 1 if on_gpu else max(1, (os.cpu_count() or 1) // jobs)  # on a GPU a worker's CPU threads only feed it
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(threads,))
    with pool, tqdm(total=len(todo), desc=f"sweep cells ({jobs} at once)", unit="cell", disable=not progress) as bar:
        futures = {pool.submit(distill, c.base, data, c.config(cfg.distill), c.student, False, device): c for c in todo}
        for future in as_completed(futures):
            cell = futures[future]
            try:
                reports[cell] = future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            publish()
            bar.update()
            bar.write(f"{cell.student.name}: dev {metric} {reports[cell]['final']['student'][metric]:.4f}")


def _cached(student: Path, settings: DistillConfig) -> dict | None:
    """A finished cell's report (its checkpoint records it), so a re-run skips it."""
    if not (student / META_FILE).is_file():
        return None
    report = read_meta(student).reports.get("distill")
    if report and not same_settings(report.get("config"), settings):  # the one rule: a setting newer than the cell counts as its default
        raise ConfigError(f"{student} was trained with other settings; use another -o for this sweep")
    return report if report and "final" in report else None


def _row(report: dict, cell: Cell, layers: int, source, cfg: SweepConfig, metric: str) -> dict:
    final = report["final"]
    n, k = cell.split, cell.compress
    shape = EncoderShape(layers, source.hidden_size, source.intermediate_size, source.hidden_size // k)
    cost = query_cost(shape, n, cfg.seq_q, cfg.seq_p, cfg.candidates, cfg.dtype)
    s, t = final["student"][metric], final["teacher"][metric]
    return {
        "split": n,
        "layers": f"{n}/{layers - n}",
        "compress": k,
        "variant": cell.variant,
        "settings": dict(cell.settings),
        "metric": metric,
        "student": s,
        "teacher": t,
        "kept_percent": 100 * s / t if t else float("nan"),
        "agreement": final["agreement"],
        "best_epoch": report.get("best_epoch"),
        "flop_speedup": cost.flop_ratio,
        "cache_bytes_per_passage": cache_bytes(cfg.seq_p, shape.rep, cfg.dtype),
        "train_pairs": report.get("train_pairs"),
        "dev_pairs": report.get("dev_pairs"),
        "pca_variance_kept": report.get("pca_variance_kept"),
        "phase1_ae_mse_last": next((h["loss"].get("ae_mse_last") for h in report["history"] if h["phase"] == "phase1"), None),
        "seconds": sum(h["seconds"] for h in report["history"]),
    }


def row_label(row: dict) -> str:
    """A row's cell in words: compression, variant and swept settings."""
    label = (f"{row['compress']}x" if row["compress"] > 1 else "no compression") + f" {row['variant']}"
    return label + "".join(f" {k}={v}" for k, v in (row.get("settings") or {}).items())


def plot_sweep(report: dict, path: str) -> None:
    """Accuracy kept (left) and per-query FLOP speed-up (right) against the split, one line per cell kind;
    bars when the sweep has a single split (an ablation or a settings sweep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = report["rows"]
    metric = rows[0]["metric"] if rows else "metric"
    splits = sorted({r["split"] for r in rows})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    if len(splits) == 1:
        labels = [row_label(r) for r in rows]
        for ax, key in ((ax1, "kept_percent"), (ax2, "flop_speedup")):
            bars = ax.bar(range(len(rows)), [r[key] for r in rows], color="tab:blue")
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
            ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
        where = f" (split {splits[0]}: {rows[0]['layers']} layers)"
        ax1.set(ylabel=f"student {metric} / teacher (%)", title="accuracy kept" + where)
        ax2.set(ylabel="coupled / decoupled FLOPs per query (x)", title="compute saved" + where)
    else:
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(row_label(r), []).append(r)
        for label, group in sorted(groups.items()):
            group = sorted(group, key=lambda r: r["split"])
            ax1.plot([r["split"] for r in group], [r["kept_percent"] for r in group], marker="o", label=label)
            ax2.plot([r["split"] for r in group], [r["flop_speedup"] for r in group], marker="o", label=label)
        ax1.set(xlabel="split N (layers in the input component)", ylabel=f"student {metric} / teacher (%)", title="accuracy kept")
        ax2.set(xlabel="split N", ylabel="coupled / decoupled FLOPs per query (x)", title="compute saved")
        for ax in (ax1, ax2):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)
