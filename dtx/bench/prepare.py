"""Resolve what `dtx bench` was pointed at into engine directories, building what is missing.

An engine directory is used as is; an export is built into an engine; a checkpoint is exported
first; with no target, `--arch` makes a random-weight model of a known shape and decouples it
(latency does not depend on the weights). Everything built goes into a temp directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dtx.artifacts import target_kind
from dtx.engines.build import BuildOptions, build_engine, validate
from dtx.errors import DtxError
from dtx.model.checkpoint import TEACHER_DIR
from dtx.model.config import DEFAULT_QUESTION_LEN
from dtx.task import Task

BENCH_PARITY_SHAPES = [(2, 8, 16)]  # the bench's own exports check parity on one small shape


@dataclass
class BenchTarget:
    """The engine a bench runs and the FP32 engine its headline is measured against."""

    engine_dir: Path
    baseline_dir: Path | None  # fp32 engine for the headline when precision is not fp32
    source: str  # what was benchmarked, in words


def bench_source(target: str | None) -> str:
    """What the bench runs on: an artifact directory's kind, or "arch" (a random-weight preset, no TARGET)."""
    return "arch" if target is None else target_kind(target)


def source_model(target: str | None, arch: str | None, work: Path) -> Path:
    """A Hugging Face model directory to decouple: a preset built in `work`, or a checkpoint's teacher."""
    from dtx.model.presets import build_preset

    if target is None:
        if arch is None:
            raise DtxError("nothing to benchmark: pass ENGINE_DIR, EXPORT_DIR or CKPT_DIR, or --arch PRESET")
        return build_preset(arch, work / "model", task=Task.QA)
    return Path(target) / TEACHER_DIR


def prepare(
    target: str | None,
    arch: str | None,
    split: int | None,
    compress: int,
    opts: BuildOptions,
    seq_q: int,
    work: Path,
    progress: bool,
    fp32_baseline: bool = True,
) -> BenchTarget:
    """Engine directories for one configuration (building into `work` as needed; the fp32 baseline only with `fp32_baseline`)."""
    from dtx.export.exporter import export_checkpoint
    from dtx.model.decouple import decouple

    kind = bench_source(target)
    validate(opts)
    if kind == "engine":
        return BenchTarget(Path(target), None, f"engine {target}")
    if kind == "export":
        export_dir = Path(target)
    else:
        if kind == "checkpoint" and split is None:
            ckpt_dir = Path(target)
        else:
            model = source_model(target if kind == "checkpoint" else None, arch, work)
            if split is None:
                raise DtxError("--split is needed to decouple a model for the bench")
            ckpt_dir = work / f"ckpt-{split}-{compress}"
            decouple(model, ckpt_dir, split, compress, max_question_len=bench_question_window(seq_q), overwrite=True)
        export_dir = work / f"{ckpt_dir.name}-onnx"
        export_checkpoint(ckpt_dir, export_dir, shapes=BENCH_PARITY_SHAPES, progress=progress, overwrite=True)
    engine_dir = work / f"{export_dir.name}-{opts.backend}-{opts.precision}"
    build_engine(export_dir, engine_dir, opts, progress=progress)
    baseline = None
    if opts.precision != "fp32" and fp32_baseline:
        baseline = work / f"{export_dir.name}-{opts.backend}-fp32"
        fp32 = BuildOptions(opts.backend, "fp32", threads=opts.threads, device=opts.device, batch=opts.batch, seq_q=opts.seq_q, seq_p=opts.seq_p, cuda_graphs=opts.cuda_graphs)
        build_engine(export_dir, baseline, fp32, progress=progress)
    what = {"arch": f"random-weight {arch}", "checkpoint": f"checkpoint {target}", "export": f"export {target}"}[kind]
    return BenchTarget(engine_dir, baseline, what)


def bench_question_window(seq_q: int) -> int:
    """The question window of a model the bench decouples itself: the decoupling default, or longer when asked."""
    return max(DEFAULT_QUESTION_LEN, seq_q)
