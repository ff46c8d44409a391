"""`dtx build-engine`: turn an export directory into an engine directory for one backend.

All three graphs (input, cross, coupled) go through the same transforms, so a decoupled vs
coupled speed-up compares like with like. The engine directory is self-contained (graphs or
plans, tokenizer, a copy of the export manifest, engine.json) and written atomically.
"""

from __future__ import annotations

import platform
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from dtx.atomic import atomic_dir, sha256_file, write_json
from dtx.engines.calibration import graph_feeds, load_batches
from dtx.engines.drift import measure_drift
from dtx.engines.manifest import ENGINE_FILE, EXPORT_COPY, FORMAT_VERSION, KIND, EngineError
from dtx.engines.runner import OrtRunner
from dtx.engines.transforms import fuse_for_ort, matmul_sensitivity, op_counts, quantize_dynamic_int8, quantize_qdq_int8, qdq_zero_points, to_fp16
from dtx.export.check import check_export
from dtx.export.manifest import MANIFEST_FILE, TOKENIZER_DIR, producers, segmenter_for
from dtx.export.parity import FP32_TOLERANCE, compare
from dtx.export.spec import GRAPHS, graph_specs
from dtx.model.samples import random_pairs



@dataclass
class BuildOptions:
    backend: str = "ort"  # ort | trt | torch | aoti
    precision: str = "fp32"  # fp32 | fp16 | int8
    int8_mode: str | None = None  # dynamic (ORT CPU default) | qdq (TensorRT, and ORT for checks)
    calib: str | None = None  # pairs file for INT8 calibration and drift (JSONL / TSV / BIG-bench)
    calib_pairs: int = 256  # pairs used to calibrate
    int8_keep_float: int = 0  # dynamic INT8: also keep this many of each graph's most sensitive MatMuls in float32
    drift_pairs: int = 500  # real pairs on which drift is measured
    threads: int | None = None  # ORT intra-op threads recorded for runners (None = ORT default)
    device: str = "cpu"  # cpu | cuda
    batch: int = 20  # TensorRT profile: passages per query (opt = max)
    seq_q: int | None = None  # question tokens served (TensorRT profile opt, CUDA graph captured at load); None: SERVE_SEQ_Q within the window
    seq_p: int | None = None  # passage tokens served; None: SERVE_SEQ_P within the window
    cuda_graphs: bool = True  # torch backend on CUDA: replay CUDA graphs (bucketed shapes, the served shape captured at load)


SERVE_SEQ_Q, SERVE_SEQ_P = 32, 150  # DESIGN.md's served shape: a 32-token question against 150-token passages


def fit_serve_shape(opts: BuildOptions, decoupling: dict) -> BuildOptions:
    """The served lengths inside the checkpoint's windows: the defaults are cut to them (longer inputs never reach
    the engine: passages are windowed), an explicit longer one is refused - its positions do not exist."""
    q = opts.seq_q if opts.seq_q is not None else min(SERVE_SEQ_Q, decoupling["max_question_len"])
    p = opts.seq_p if opts.seq_p is not None else min(SERVE_SEQ_P, decoupling["max_passage_len"])
    for flag, value, window in (("--seq-q", q, decoupling["max_question_len"]), ("--seq-p", p, decoupling["max_passage_len"])):
        if value > window:
            raise EngineError(f"{flag} {value} is longer than the checkpoint's window ({window} tokens); pass at most {window}")
    return replace(opts, seq_q=q, seq_p=p)


def validate(opts: BuildOptions) -> BuildOptions:
    """Refuse option sets that cannot build, before any work. Calibration data is needed only where a mode
    calibrates: static Q/DQ INT8 (activation ranges) and `--int8-keep-float` (which MatMuls hurt most);
    dynamic INT8 computes its ranges at run time, and fp16/int8 drift falls back to random-token pairs."""
    if opts.calib and not Path(opts.calib).is_file():
        raise EngineError(f"calibration file {opts.calib} does not exist")
    mode = opts.int8_mode or ("qdq" if opts.backend == "trt" else "dynamic")
    real_pairs = "(JSONL/TSV of question/passage pairs, or a BIG-bench task file such as ../shared/data/disfl_qa.task.json.gz)"
    if opts.precision == "int8" and mode == "qdq" and not opts.calib:
        raise EngineError(f"static Q/DQ INT8 calibrates activation ranges on real texts: pass --calib FILE {real_pairs}")
    if opts.precision == "int8" and opts.int8_keep_float and not opts.calib:
        raise EngineError(f"--int8-keep-float measures each MatMul's error on real texts: pass --calib FILE {real_pairs}")
    if opts.precision == "int8" and opts.backend == "trt" and mode != "qdq":
        raise EngineError("TensorRT runs INT8 only from a Q/DQ graph; drop --int8-mode or use --int8-mode qdq")
    if opts.backend in ("torch", "aoti") and opts.precision == "int8":
        raise EngineError(f"the {opts.backend} backend has no int8 path; use --backend ort --int8")
    opts.int8_mode = mode if opts.precision == "int8" else None
    return opts


def _prepare_graph(src: Path, dst: Path, opts: BuildOptions, feeds: list[dict] | None) -> tuple[dict[str, int], list[str]]:
    """Write the ONNX this backend/precision runs; returns its fused/quantized op counts and the MatMuls INT8 left in float."""
    kept: list[str] = []
    if opts.precision == "fp32" and opts.backend == "ort":
        return fuse_for_ort(src, dst), kept
    if opts.precision == "fp32":  # TensorRT takes the export graph as it is (ORT contrib ops would not parse)
        shutil.copy(src, dst)
    elif opts.precision == "fp16":  # unfused: ORT fuses at load where its provider can; TensorRT needs standard ops
        to_fp16(src, dst)
    elif opts.int8_mode == "dynamic":
        fused = dst.with_suffix(".fused.onnx")
        fuse_for_ort(src, fused)
        worst: list[str] = []
        if opts.int8_keep_float:
            cost = matmul_sensitivity(fused, (feeds or [])[:16], dst.parent)
            worst = sorted(cost, key=cost.get, reverse=True)[: opts.int8_keep_float]
        kept = quantize_dynamic_int8(fused, dst, worst)
        fused.unlink()
    else:
        kept = quantize_qdq_int8(src, dst, feeds or [])
    return op_counts(onnx.load(str(dst))), kept


def build_engine(export_dir: str | Path, out_dir: str | Path, opts: BuildOptions, progress: bool = True) -> dict:
    """Build an engine directory from `export_dir`; returns its manifest (engine.json)."""
    opts = validate(opts)
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    export = check_export(export_dir)
    seg = segmenter_for(export_dir, export)
    d = export["decoupling"]
    opts = fit_serve_shape(opts, d)
    specs = graph_specs(d["task"], export["rep_dim"], d["num_labels"])
    outputs = {g: [t.name for t in s.outputs] for g, s in specs.items()}
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / ENGINE_FILE).is_file():
        raise EngineError(f"{out_dir} exists and is not a dtx engine; choose another output directory")
    if opts.backend == "trt":
        from dtx.engines.tensorrt import import_tensorrt

        import_tensorrt()  # fail before any work
    if opts.backend == "torch":
        from dtx.engines.torch_backend import check_device

        check_device(opts.device, opts.precision)
    if opts.backend == "aoti":
        from dtx.engines.aoti import check_options

        check_options(opts.device, opts.precision)
    if opts.backend in ("torch", "aoti"):
        _check_checkpoint(export)

    reference = OrtRunner({g: export_dir / f"{g}.onnx" for g in GRAPHS}, outputs, threads=opts.threads)
    calib_feeds = None
    if opts.precision == "int8" and (opts.int8_mode == "qdq" or opts.int8_keep_float):
        calib_feeds = graph_feeds(load_batches(opts.calib, seg, opts.calib_pairs, seed=1), reference.encode)

    started = time.perf_counter()
    fused: dict[str, dict[str, int]] = {}
    kept_float: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    trt_info: dict = {}
    with atomic_dir(out_dir, overwrite=True) as tmp:
        if opts.backend == "aoti":
            from dtx.engines.aoti import compile_packages, device_signature

            files = compile_packages(Path(export["checkpoint"]["path"]), tmp, opts.device, opts.precision)
        elif opts.backend != "torch":
            for graph in tqdm(GRAPHS, desc=f"build {opts.backend} {opts.precision}", unit="graph", disable=not progress):
                dst = tmp / f"{graph}.onnx"
                fused[graph], kept_float[graph] = _prepare_graph(export_dir / f"{graph}.onnx", dst, opts, calib_feeds[graph] if calib_feeds else None)
                files[graph] = dst.name
                if opts.backend == "trt":
                    from dtx.engines.tensorrt import TIMING_CACHE, ServeShape, build_plan, device_signature

                    shape = ServeShape(opts.batch, opts.seq_q, opts.seq_p, d["max_question_len"], d["max_passage_len"])
                    trt_info = {**build_plan(dst, tmp / f"{graph}.plan", specs[graph], shape, tmp / TIMING_CACHE), **device_signature()}
                    files[graph] = f"{graph}.plan"
        shutil.copytree(export_dir / TOKENIZER_DIR, tmp / TOKENIZER_DIR)
        shutil.copy(export_dir / MANIFEST_FILE, tmp / EXPORT_COPY)
        manifest = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "backend": opts.backend,
            "precision": opts.precision,
            "int8_mode": opts.int8_mode,
            "device": opts.device,
            "threads": opts.threads,
            "serve_shape": {"candidates": opts.batch, "seq_q": opts.seq_q, "seq_p": opts.seq_p},
            "cuda_graphs": opts.cuda_graphs if opts.backend == "torch" and opts.device == "cuda" else None,
            "graphs": files,
            "outputs": outputs,
            "export": {
                "path": str(export_dir.resolve()),
                "export_id": export["export_id"],
                "graphs_sha256": {g: export["files"][f"{g}.onnx"]["sha256"] for g in GRAPHS},
            },
            "checkpoint": export["checkpoint"],
            "decoupling": d,
            "rep_dim": export["rep_dim"],
            "model": export["model"],
            "fused_ops": fused,
            "int8_float_matmuls": kept_float if opts.precision == "int8" else None,
            "tensorrt": trt_info or None,
            "aoti": device_signature(opts.device) if opts.backend == "aoti" else None,
            "producers": producers(),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
            "files": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
        }
        if opts.precision == "int8" and opts.int8_mode == "qdq":
            manifest["qdq_zero_points_nonzero"] = sum(any(v != 0 for v in zp[2]) for g in GRAPHS for zp in qdq_zero_points(onnx.load(str(tmp / f"{g}.onnx"))))
        if opts.backend != "trt":  # check what was built before it is published (TensorRT: on its own machine, `dtx bench`)
            with _built_runner(tmp, files, outputs, opts, export, manifest) as built:
                if opts.precision == "fp32":
                    manifest["parity"] = _fp32_parity(built, reference, seg)
                else:
                    batches, source = _drift_batches(opts, seg)
                    manifest["drift"] = {**measure_drift(built, reference, batches, progress=progress), "source": source}
        manifest["build_seconds"] = round(time.perf_counter() - started, 2)
        write_json(tmp / ENGINE_FILE, manifest)
    return manifest


def _check_checkpoint(export: dict) -> None:
    """The torch and aoti backends run the checkpoint itself: it must still be the one the export was made from."""
    from dtx.model.checkpoint import read_meta

    path = Path(export["checkpoint"]["path"])
    if not path.is_dir():
        raise EngineError(f"the torch and aoti backends run the checkpoint, and {path} is gone; re-export from a checkpoint")
    if read_meta(path).get("weights_sha256") != export["checkpoint"]["weights_sha256"]:
        raise EngineError(f"checkpoint {path} holds other weights than the export was made from; re-export it (`dtx export {path} --overwrite`) first")


def _built_runner(tmp: Path, files: dict[str, str], outputs: dict, opts: BuildOptions, export: dict, manifest: dict):
    """A runner over the engine being built (in its temp directory), for the checks before publishing."""
    if opts.backend == "aoti":
        from dtx.engines.aoti import AotiRunner

        return AotiRunner({g: tmp / f for g, f in files.items()}, outputs, manifest["aoti"], opts.precision, tmp)
    if opts.backend == "torch":
        from dtx.engines.torch_backend import TorchRunner

        return TorchRunner(Path(export["checkpoint"]["path"]), outputs, opts.device, opts.precision, cuda_graphs=opts.cuda_graphs)
    return OrtRunner({g: tmp / files[g] for g in GRAPHS}, outputs, threads=opts.threads, device=opts.device)


def _drift_batches(opts: BuildOptions, seg) -> tuple[list, str]:
    """The pairs fp16/int8 drift is measured on, and what they are: real pairs from --calib when given,
    else random-token pairs of the served shape (a weaker check: it says so in engine.json)."""
    if opts.calib:
        return load_batches(opts.calib, seg, opts.drift_pairs, seed=2), f"{opts.drift_pairs} real pairs from {opts.calib} (at most)"
    rng = np.random.default_rng(2)
    batches = [random_pairs(seg, rng, min(8, opts.drift_pairs - i), opts.seq_q, opts.seq_p) for i in range(0, opts.drift_pairs, 8)]
    return batches, f"{opts.drift_pairs} random-token pairs of {opts.seq_q} + {opts.seq_p} tokens (no --calib given)"


def _fp32_parity(built, reference: OrtRunner, seg) -> dict:
    """FP32 engine vs export on random batches where questions and passages carry different padding."""
    rng = np.random.default_rng(3)
    results = []
    for b, lq, lp in ((1, 12, 40), (6, 24, 64), (6, 20, 33)):
        for bq in sorted({1, b}):
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
