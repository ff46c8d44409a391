"""`dtx build-engine`: turn an export directory into an engine directory for one backend.

All three graphs (input, cross, coupled) go through the same transforms, so a decoupled vs
coupled speed-up compares like with like. The engine directory is self-contained (graphs or
plans, tokenizer, a copy of the export manifest, engine.json) and written atomically.
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from dtx.atomic import atomic_dir, check_output, sha256_file, write_json
from dtx.engines.backends import get_backend, recorded_info
from dtx.engines.calibration import graph_feeds, load_batches
from dtx.engines.cpu import cpu_info, int8_isa
from dtx.engines.drift import measure_drift
from dtx.engines.manifest import ENGINE, ENGINE_FILE, EXPORT_COPY, FORMAT_VERSION, KIND, EngineError, EngineManifest, read_engine_manifest
from dtx.engines.runner import OrtRunner
from dtx.engines.smooth import smooth_model
from dtx.engines.transforms import fuse_for_ort, matmul_sensitivity, op_counts, quantize_dynamic_int8, quantize_qdq_int8, qdq_zero_points, to_fp16
from dtx.export.check import check_export
from dtx.export.manifest import MANIFEST_FILE, TOKENIZER_DIR, ExportManifest, producers
from dtx.export.parity import FP32_TOLERANCE, compare
from dtx.export.spec import GRAPHS, graph_specs
from dtx.model.config import DecoupleConfig
from dtx.model.int8 import Int8Scheme, default_scheme, saturation_warning
from dtx.model.samples import random_pairs



@dataclass
class BuildOptions:
    backend: str = "ort"  # ort | trt | torch | aoti
    precision: str = "fp32"  # fp32 | fp16 | int8
    int8_mode: str | None = None  # dynamic (ORT CPU default) | qdq (TensorRT, and ORT for checks)
    calib: str | None = None  # pairs file for INT8 calibration and drift (JSONL / TSV / BIG-bench)
    calib_pairs: int = 256  # pairs used to calibrate
    int8_keep_float: int = 0  # dynamic INT8: also keep this many of each graph's most sensitive MatMuls in float32
    int8_scheme: str | None = None  # dynamic INT8 scheme (dtx.model.int8); None: the one the checkpoint was trained for, else the default
    int8_smooth: float | None = None  # dynamic INT8: SmoothQuant's alpha (dtx.engines.smooth), scales from --calib pairs; None: no smoothing
    drift_pairs: int = 500  # real pairs on which drift is measured
    threads: int | None = None  # ORT intra-op threads recorded for runners (None = ORT default)
    device: str = "cpu"  # cpu | cuda
    batch: int = 20  # TensorRT profile: passages per query (opt = max)
    seq_q: int | None = None  # question tokens served (TensorRT profile opt, CUDA graph captured at load); None: SERVE_SEQ_Q within the window
    seq_p: int | None = None  # passage tokens served; None: SERVE_SEQ_P within the window
    cuda_graphs: bool = True  # torch backend on CUDA: replay CUDA graphs (bucketed shapes, the served shape captured at load)


SMOOTH_FEEDS = 32  # calibration batches (8 pairs each) whose activation peaks set the smoothing scales
SERVE_SEQ_Q, SERVE_SEQ_P = 32, 150  # the served shape (docs/design.md, "Cost model"): a 32-token question against 150-token passages


def fit_serve_shape(opts: BuildOptions, decoupling: DecoupleConfig) -> BuildOptions:
    """The served lengths inside the checkpoint's windows: the defaults are cut to them (longer inputs never reach
    the engine: passages are windowed), an explicit longer one is refused - its positions do not exist."""
    q = opts.seq_q if opts.seq_q is not None else min(SERVE_SEQ_Q, decoupling.max_question_len)
    p = opts.seq_p if opts.seq_p is not None else min(SERVE_SEQ_P, decoupling.max_passage_len)
    for flag, value, window in (("--seq-q", q, decoupling.max_question_len), ("--seq-p", p, decoupling.max_passage_len)):
        if value > window:
            raise EngineError(f"{flag} {value} is longer than the checkpoint's window ({window} tokens); pass at most {window}")
    return replace(opts, seq_q=q, seq_p=p)


def validate(opts: BuildOptions) -> BuildOptions:
    """Refuse option sets that cannot build, before any work. Calibration data is needed only where a mode
    calibrates: static Q/DQ INT8 (activation ranges) and `--int8-keep-float` (which MatMuls hurt most);
    dynamic INT8 computes its ranges at run time, and fp16/int8 drift falls back to random-token pairs."""
    if opts.calib and not Path(opts.calib).is_file():
        raise EngineError(f"calibration file {opts.calib} does not exist")
    backend = get_backend(opts.backend)
    mode = backend.int8_mode(opts.int8_mode)
    real_pairs = "(JSONL/TSV of question/passage pairs, or a BIG-bench task file such as data/disfl_qa.task.json.gz from scripts/get_data.sh)"
    if opts.precision == "int8" and mode == "qdq" and not opts.calib:
        raise EngineError(f"static Q/DQ INT8 calibrates activation ranges on real texts: pass --calib FILE {real_pairs}")
    if opts.precision == "int8" and opts.int8_keep_float and not opts.calib:
        raise EngineError(f"--int8-keep-float measures each MatMul's error on real texts: pass --calib FILE {real_pairs}")
    dynamic_only = {"--int8-scheme": (opts.int8_scheme, "chooses how dynamic INT8 quantizes"), "--int8-smooth": (opts.int8_smooth, "smooths the activations dynamic INT8 quantizes")}
    for flag, (value, what) in dynamic_only.items():
        if value is not None and (opts.precision != "int8" or mode != "dynamic"):
            raise EngineError(f"{flag} {what}; pass it with --int8 (dynamic mode) only")
    if opts.int8_smooth is not None:
        if not 0 <= opts.int8_smooth <= 1:
            raise EngineError(f"--int8-smooth is SmoothQuant's alpha, between 0 and 1 (0.5 is its usual value); got {opts.int8_smooth}")
        if not opts.calib:
            raise EngineError(f"--int8-smooth takes its scales from each activation's peaks on real texts: pass --calib FILE {real_pairs}")
    backend.check_options(opts.precision, mode)  # TensorRT and aoti: Q/DQ INT8 only; torch: no INT8 path
    if opts.int8_scheme is not None:
        Int8Scheme.parse(opts.int8_scheme)
    opts.int8_mode = mode if opts.precision == "int8" else None
    return opts


def _prepare_graph(src: Path, dst: Path, opts: BuildOptions, feeds: list[dict] | None, scheme: Int8Scheme | None) -> tuple[dict[str, int], list[str], dict | None]:
    """Write the ONNX this backend/precision runs; returns its fused/quantized op counts, the MatMuls INT8 left in
    float, and what smoothing did (--int8-smooth; else None)."""
    kept: list[str] = []
    smoothing = None
    if opts.precision == "fp32" and get_backend(opts.backend).fuses_fp32():
        return fuse_for_ort(src, dst), kept, smoothing
    if opts.precision == "fp32":  # TensorRT takes the export graph as it is (ORT contrib ops would not parse)
        shutil.copy(src, dst)
    elif opts.precision == "fp16":  # unfused: ORT fuses at load where its provider can; TensorRT needs standard ops
        to_fp16(src, dst)
    elif opts.int8_mode == "dynamic":
        fused = dst.with_suffix(".fused.onnx")
        fuse_for_ort(src, fused)
        worst: list[str] = []
        if opts.int8_keep_float:
            cost = matmul_sensitivity(fused, (feeds or [])[:16], dst.parent, scheme)
            worst = sorted(cost, key=cost.get, reverse=True)[: opts.int8_keep_float]
        if opts.int8_smooth is not None:
            model, smoothing = smooth_model(onnx.load(str(fused)), (feeds or [])[:SMOOTH_FEEDS], opts.int8_smooth, worst)
            onnx.save(model, str(fused))
        kept = quantize_dynamic_int8(fused, dst, worst, scheme)
        fused.unlink()
    else:
        kept = quantize_qdq_int8(src, dst, feeds or [])
    return op_counts(onnx.load(str(dst))), kept, smoothing


@dataclass(frozen=True)
class BuildPlan:
    """What `prepare` settled before anything is written: checked options, the export, and the reference."""

    export: ExportManifest
    out_dir: Path
    opts: BuildOptions  # validated, served shape fitted to the windows
    segmenter: object
    reference: OrtRunner  # the export's own fp32 graphs: what every engine is verified against
    calib_feeds: dict | None  # per-graph feeds for Q/DQ calibration or --int8-keep-float
    scheme: Int8Scheme | None  # dynamic INT8 only: how its MatMuls are quantized
    scheme_from: str | None  # why that scheme: "--int8-scheme", "checkpoint" (trained for it) or "default"


@dataclass
class Compiled:
    """What `compile_engine` wrote into the engine directory, and what it learned doing it."""

    graphs: dict[str, str] = field(default_factory=dict)  # graph -> file (ONNX, plan or package); empty for torch
    fused_ops: dict[str, dict[str, int]] = field(default_factory=dict)
    kept_float: dict[str, list[str]] = field(default_factory=dict)
    smoothing: dict[str, dict | None] = field(default_factory=dict)
    backend_info: dict = field(default_factory=dict)


def build_engine(export_dir: str | Path, out_dir: str | Path, opts: BuildOptions, progress: bool = True) -> EngineManifest:
    """prepare -> compile (per backend) -> verify (one check for every backend), then publish atomically.

    The engine is verified through `load_engine` on its temp directory - the loader users get - and
    its verification is part of engine.json: nothing unverified is ever published.
    """
    from dtx.engines import load_engine

    plan = prepare(export_dir, out_dir, opts)
    started = time.perf_counter()
    with atomic_dir(plan.out_dir, overwrite=True, kind=ENGINE) as tmp:
        compiled = compile_engine(plan, tmp, progress)
        shutil.copytree(plan.export.path / TOKENIZER_DIR, tmp / TOKENIZER_DIR)
        shutil.copy(plan.export.path / MANIFEST_FILE, tmp / EXPORT_COPY)
        manifest = _engine_json(plan, compiled, tmp)
        write_json(tmp / ENGINE_FILE, manifest)
        with load_engine(tmp, threads=plan.opts.threads, verify=False, warn=False) as built:  # its files were hashed just above; the plan warned
            manifest["verification"] = verify(plan, built, progress)
        manifest["build_seconds"] = round(time.perf_counter() - started, 2)
        write_json(tmp / ENGINE_FILE, manifest)
    return read_engine_manifest(plan.out_dir)


def prepare(export_dir: str | Path, out_dir: str | Path, opts: BuildOptions) -> BuildPlan:
    """Every check that can refuse the build, before any work: options, the export (re-validated), the output
    directory, the backend's availability, the checkpoint the torch/aoti backends run; then the reference."""
    opts = validate(opts)
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    check_output(out_dir, ENGINE, overwrite=True)  # a rebuild replaces dtx's own engine, never anything else
    export = check_export(export_dir)
    opts = fit_serve_shape(opts, export.decoupling)
    backend = get_backend(opts.backend)
    backend.check_available(opts.device, opts.precision)
    if backend.runs_checkpoint:
        _check_checkpoint(export)
    seg = export.segmenter()
    reference = OrtRunner({g: export_dir / export.graphs[g].file for g in GRAPHS}, export.outputs, threads=opts.threads)
    scheme, scheme_from = int8_scheme(opts, export)
    if scheme and (warning := saturation_warning(scheme, int8_isa(), f"this build (scheme from {scheme_from})")):
        print(warning, file=sys.stderr)
    if scheme_from == "checkpoint" and opts.int8_smooth is not None:
        raise EngineError(f"{export.checkpoint.path} was trained for INT8 as it is (distill --qat-epochs); --int8-smooth would build other arithmetic than it learned: drop --int8-smooth")
    calib_feeds = None
    if opts.precision == "int8" and (opts.int8_mode == "qdq" or opts.int8_keep_float or opts.int8_smooth is not None):
        calib_feeds = graph_feeds(load_batches(opts.calib, seg, opts.calib_pairs, seed=1), reference.encode)
    return BuildPlan(export, out_dir, opts, seg, reference, calib_feeds, scheme, scheme_from)


def int8_scheme(opts: BuildOptions, export: ExportManifest) -> tuple[Int8Scheme | None, str | None]:
    """The dynamic INT8 scheme and why: --int8-scheme, else the scheme a QAT checkpoint was trained for (what its
    weights were optimised under, so nothing needs keeping in float), else the default for this CPU's integer ISA."""
    if opts.precision != "int8" or opts.int8_mode != "dynamic":
        return None, None
    if opts.int8_scheme is not None:
        return Int8Scheme.parse(opts.int8_scheme), "--int8-scheme"
    trained = export.checkpoint.int8_training
    if trained:
        return Int8Scheme.parse(trained["scheme"]["name"]), "checkpoint"
    return default_scheme(int8_isa()), "default"


def compile_engine(plan: BuildPlan, tmp: Path, progress: bool) -> Compiled:
    """The backend's own step: ONNX transforms (ORT), plans (TensorRT), packages (AOTInductor); the torch
    backend runs the checkpoint and compiles nothing here."""
    opts, export, out = plan.opts, plan.export, Compiled()
    backend = get_backend(opts.backend)
    if not backend.runs_onnx:  # torch runs the checkpoint as it is; aoti compiles it into packages
        out.graphs, out.backend_info = backend.compile_checkpoint(export.checkpoint.path, tmp, opts.device, opts.precision, plan.calib_feeds, (opts.batch, opts.seq_q, opts.seq_p), progress)
        return out
    specs = graph_specs(export.task, export.rep_dim, export.decoupling.num_labels)
    for graph in tqdm(GRAPHS, desc=f"build {opts.backend} {opts.precision}", unit="graph", disable=not progress):
        dst = tmp / f"{graph}.onnx"
        out.fused_ops[graph], out.kept_float[graph], out.smoothing[graph] = _prepare_graph(export.path / export.graphs[graph].file, dst, opts, plan.calib_feeds[graph] if plan.calib_feeds else None, plan.scheme)
        out.graphs[graph] = dst.name
        d = export.decoupling
        further = backend.compile_graph(dst, tmp, specs[graph], (opts.batch, opts.seq_q, opts.seq_p, d.max_question_len, d.max_passage_len), opts.precision)
        if further is not None:  # TensorRT: a plan per graph, built for the served shape
            out.graphs[graph], out.backend_info = further
    return out


def verify(plan: BuildPlan, built, progress: bool = True) -> dict:
    """The one check of a built engine, written against the runner interface so every backend gets it:
    fp32 must match the export within FP32_TOLERANCE (else nothing is published); fp16/int8 report their
    drift from it and how often the prediction stays the same."""
    if plan.opts.precision == "fp32":
        return {"kind": "parity", **_fp32_parity(built, plan.reference, plan.segmenter, plan.opts)}
    batches, source = _drift_batches(plan.opts, plan.segmenter)
    batches.append(_served_batch(plan.opts, plan.segmenter, np.random.default_rng(4)))
    return {"kind": "drift", **measure_drift(built, plan.reference, batches, progress=progress), "source": f"{source}, and one query of the served shape"}


def _served_batch(opts: BuildOptions, seg, rng: np.random.Generator):
    """One query of the served shape (a question against `batch` passages): a backend may run it another way
    (AOTInductor's package for that shape), so the check covers it too."""
    return random_pairs(seg, rng, opts.batch, opts.seq_q, opts.seq_p, bq=1)


def _engine_json(plan: BuildPlan, compiled: Compiled, tmp: Path) -> dict:
    """engine.json as written (EngineManifest is how it is read back)."""
    opts, export = plan.opts, plan.export
    backend = get_backend(opts.backend)
    manifest = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "backend": opts.backend,
        "precision": opts.precision,
        "int8_mode": opts.int8_mode,
        "device": opts.device,
        "threads": opts.threads,
        "serve_shape": {"candidates": opts.batch, "seq_q": opts.seq_q, "seq_p": opts.seq_p},
        "cuda_graphs": opts.cuda_graphs if backend.records_cuda_graphs(opts.device) else None,
        "graphs": compiled.graphs,
        "outputs": export.outputs,
        "export": {"path": str(export.path.resolve()), "export_id": export.export_id, "graphs_sha256": {g: export.graph_sha256(g) for g in GRAPHS}},
        "fused_ops": compiled.fused_ops,
        "int8_float_matmuls": compiled.kept_float if opts.precision == "int8" else None,
        "int8_scheme": {**plan.scheme.to_dict(), "from": plan.scheme_from} if plan.scheme else None,
        "int8_smooth": compiled.smoothing if opts.int8_smooth is not None else None,
        "trained_for_int8": export.checkpoint.int8_training,
        **recorded_info(backend, compiled.backend_info),  # "tensorrt", "aoti": the machine the build is for
        "producers": producers(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpu": cpu_info()},
        "files": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
    }
    if opts.precision == "int8" and opts.int8_mode == "qdq" and backend.runs_onnx:  # aoti's Q/DQ pairs live in its packages
        manifest["qdq_zero_points_nonzero"] = sum(any(v != 0 for v in zp[2]) for g in GRAPHS for zp in qdq_zero_points(onnx.load(str(tmp / f"{g}.onnx"))))
    return manifest


def _check_checkpoint(export: ExportManifest) -> None:
    """The torch and aoti backends run the checkpoint itself: it must still be the one the export was made from."""
    from dtx.model.checkpoint import read_meta

    path = export.checkpoint.path
    if not path.is_dir():
        raise EngineError(f"the torch and aoti backends run the checkpoint, and {path} is gone; re-export from a checkpoint")
    if read_meta(path).weights_sha256 != export.checkpoint.weights_sha256:
        raise EngineError(f"checkpoint {path} holds other weights than the export was made from; re-export it (`dtx export {path} --overwrite`) first")


def _drift_batches(opts: BuildOptions, seg) -> tuple[list, str]:
    """The pairs fp16/int8 drift is measured on, and what they are: real pairs from --calib when given,
    else random-token pairs of the served shape (a weaker check: it says so in engine.json)."""
    if opts.calib:
        return load_batches(opts.calib, seg, opts.drift_pairs, seed=2), f"{opts.drift_pairs} real pairs from {opts.calib} (at most)"
    rng = np.random.default_rng(2)
    batches = [random_pairs(seg, rng, min(8, opts.drift_pairs - i), opts.seq_q, opts.seq_p) for i in range(0, opts.drift_pairs, 8)]
    return batches, f"{opts.drift_pairs} random-token pairs of {opts.seq_q} + {opts.seq_p} tokens (no --calib given)"


def _fp32_parity(built, reference: OrtRunner, seg, opts: BuildOptions) -> dict:
    """FP32 engine vs export on random batches where questions and passages carry different padding, and on one
    query of the served shape."""
    rng = np.random.default_rng(3)
    results = []
    ragged = [(b, bq, lq, lp) for b, lq, lp in ((1, 12, 40), (6, 24, 64), (6, 20, 33)) for bq in sorted({1, b})]
    for b, bq, lq, lp in ragged + [(opts.batch, 1, opts.seq_q, opts.seq_p)]:
        pb = random_pairs(seg, rng, b, lq, lp, bq=bq)
        shape = f"b={b} bq={bq} lq={lq} lp={lp}"
        got, ref = built.decoupled(pb.question, pb.passage), reference.decoupled(pb.question, pb.passage)
        results += [compare("decoupled", shape, k, got[k], ref[k], FP32_TOLERANCE) for k in ref]
        c = pb.coupled()
        got, ref = built.coupled(c), reference.coupled(c)
        results += [compare("coupled", shape, k, got[k], ref[k], FP32_TOLERANCE, real=c.attention_mask) for k in ref]
    failed = [r for r in results if not r.passed]
    if failed:
        worst = max(failed, key=lambda r: r.max_abs)
        raise EngineError(f"fp32 engine differs from the export: {worst.check} {worst.output} at {worst.shape}, max-abs {worst.max_abs:.3g}; nothing was written")
    return {"tolerance_max_abs": FP32_TOLERANCE, "worst_max_abs": max(r.max_abs for r in results), "results": [r.to_dict() for r in results]}
