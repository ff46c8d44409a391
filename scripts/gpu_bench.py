"""The bench steps of scripts/gpu_check.sh: each split decoupled and exported once, reused by every step.

`dtx bench --arch` rebuilds the model, its export and its engines in a temp directory on every
call (on the H200 that was ~25 s of ONNX export per split per configuration). Here the random-weight
model, each split's checkpoint and export, and each engine live in --work and are built only when
missing, so the torch (CUDA graphs, eager), AOTInductor and INT8 steps share them and a rerun on a
warm machine skips straight to timing. Rows are `dtx.bench.run.measure`'s, as `dtx bench --json`
writes them; the report is rewritten after each split, with "complete": false until the last, so a
step cut short by its timeout still returns the splits it finished.

    python3 scripts/gpu_bench.py --work /tmp/w --arch bert-base --splits 5,9 --device cuda \\
        --precision fp16 --mode graphs --json OUT/bench-torch-graphs.json

Modes: graphs (torch backend, CUDA graphs), eager (the same torch engine without graphs), aoti
(AOTInductor packages), int8 (the torch engine with every encoder-layer Linear replaced by a W8A8
dynamic int8 Linear on torch._int_mm: per-token activation scales, per-channel weight scales; the
heads and the compressor stay float, as in dtx's ORT int8).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # dtx runs from the tree: it is not installed on the GPU machine

# The rehearsal's model: BERT-shaped, 12 layers (so --splits 5,9 mean what they mean on bert-base), tiny widths.
REHEARSAL_ARCH = "bert-rehearsal"
REHEARSAL_SHAPE = dict(kind="bert", hidden_size=32, num_hidden_layers=12, num_attention_heads=4, intermediate_size=64)
DRIFT_PAIRS = 64  # as `dtx bench`'s own fp16/int8 builds
MODES = ("graphs", "eager", "aoti", "int8")


def log(msg: str) -> None:
    print(f"[gpu_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def register_rehearsal_arch() -> None:
    from dtx.model.presets import PRESETS

    PRESETS.setdefault(REHEARSAL_ARCH, REHEARSAL_SHAPE)


def ensure_exports(work: Path, arch: str, splits: list[int], seq_q: int) -> dict[int, Path]:
    """split -> export directory, each built once: the model, then per split decouple + ONNX export (small parity shape)."""
    from dtx.bench.prepare import BENCH_PARITY_SHAPES, bench_question_window
    from dtx.export.exporter import export_checkpoint
    from dtx.export.manifest import MANIFEST_FILE
    from dtx.model.decouple import decouple
    from dtx.model.presets import build_preset

    register_rehearsal_arch()
    work.mkdir(parents=True, exist_ok=True)
    model = work / f"{arch}-model"
    if not (model / "config.json").is_file() or not (model / ".complete").is_file():
        t = time.perf_counter()
        tmp = work / f"{arch}-model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(model, ignore_errors=True)
        build_preset(arch, tmp, task="qa")
        (tmp / ".complete").write_text("")
        tmp.rename(model)
        log(f"random-weight {arch} built in {time.perf_counter() - t:.1f} s")
    exports = {}
    for split in splits:
        ckpt, export = work / f"{arch}-ckpt-{split}", work / f"{arch}-ckpt-{split}-onnx"
        if not (export / MANIFEST_FILE).is_file():
            t = time.perf_counter()
            decouple(model, ckpt, split, 1, max_question_len=bench_question_window(seq_q), overwrite=True)
            export_checkpoint(ckpt, export, shapes=BENCH_PARITY_SHAPES, progress=False, overwrite=True)
            log(f"split {split}: decoupled and exported in {time.perf_counter() - t:.1f} s")
        else:
            log(f"split {split}: export reused ({export})")
        exports[split] = export
    return exports


def ensure_engine(export: Path, backend: str, precision: str, args) -> Path:
    """The engine of (export, backend, precision) in --work, built (and verified: parity or drift) only when missing."""
    from dtx.engines.build import BuildOptions, build_engine
    from dtx.engines.manifest import ENGINE_FILE

    engine = export.parent / f"{export.name}-{backend}-{precision}-{args.device}"
    if (engine / ENGINE_FILE).is_file():
        log(f"engine reused: {engine.name}")
        return engine
    t = time.perf_counter()
    opts = BuildOptions(backend, precision, drift_pairs=args.drift_pairs, device=args.device, batch=args.candidates, seq_q=args.seq_q, seq_p=args.seq_p, cuda_graphs=True)
    build_engine(export, engine, opts, progress=False)
    log(f"engine built: {engine.name} in {time.perf_counter() - t:.1f} s")
    return engine


def verification_summary(v: dict) -> dict:
    """engine.json's verification without its per-shape list: parity's worst error, or drift per path."""
    return {k: val for k, val in v.items() if k != "results"}


# ---------------------------------------------------------------- INT8 (W8A8 dynamic, torch._int_mm)


def int8_linear_class():
    import torch

    class Int8DynamicLinear(torch.nn.Module):
        """y = (q(x) @ q(W)^T) * s_x * s_w + b: int8 x int8 -> int32 on torch._int_mm (cuBLASLt on CUDA).
        Activations are quantized per token at run time (symmetric, amax / 127), weights per output channel."""

        MIN_ROWS = 17  # torch._int_mm on CUDA needs more than 16 rows: fewer are zero-padded

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            w = linear.weight.detach().float()
            scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127
            self.register_buffer("w_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous())
            self.register_buffer("w_scale", scale)
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = x.shape
            x2 = x.reshape(-1, shape[-1]).float()
            rows = x2.shape[0]
            if rows < self.MIN_ROWS:
                x2 = torch.cat([x2, x2.new_zeros(self.MIN_ROWS - rows, x2.shape[1])])
            s = x2.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
            q = torch.round(x2 / s).clamp(-127, 127).to(torch.int8)
            y = torch._int_mm(q, self.w_int8.t()).float() * s * self.w_scale
            if self.bias is not None:
                y = y + self.bias
            out_dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
            return y[:rows].to(out_dtype).reshape(*shape[:-1], -1)

    return Int8DynamicLinear


def quantize_encoder_layers(module) -> int:
    """Replace every nn.Linear inside an encoder layer (attention and feed-forward) by Int8DynamicLinear; returns how many."""
    import torch

    cls = int8_linear_class()
    in_layer = re.compile(r"(^|\.)layers?\.\d+\.")  # encoder.layers.3.attention.self.query, layers.0.output.dense
    targets = [(name, m) for name, m in module.named_modules() if isinstance(m, torch.nn.Linear) and in_layer.search(name)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, cls(linear).to(linear.weight.device))
    return len(targets)


def int8_drift(runner, export: Path, args) -> dict:
    """Drift of the int8 runner from the fp32 export (ONNX Runtime, CPU), on random-token pairs of the served shape."""
    import numpy as np

    from dtx.engines.drift import measure_drift
    from dtx.engines.runner import OrtRunner
    from dtx.export.manifest import read_manifest
    from dtx.export.spec import GRAPHS
    from dtx.model.samples import random_pairs

    m = read_manifest(export)
    reference = OrtRunner({g: export / m.graphs[g].file for g in GRAPHS}, m.outputs)
    seg, rng = m.segmenter(), np.random.default_rng(2)
    batches = [random_pairs(seg, rng, min(8, args.drift_pairs - i), args.seq_q, args.seq_p) for i in range(0, args.drift_pairs, 8)]
    out = measure_drift(runner, reference, batches, progress=False)
    return {"kind": "drift", **out, "source": f"{args.drift_pairs} random-token pairs of {args.seq_q} + {args.seq_p} tokens"}


# ---------------------------------------------------------------- one step


def load_runner(export: Path, args):
    """(engine handle, engine manifest summary) for this mode: every torch mode shares the one torch engine of its precision."""
    from dtx.engines import Engine, open_engine
    from dtx.engines.manifest import read_engine_manifest
    from dtx.engines.torch_backend import TorchRunner

    engine = ensure_engine(export, "aoti" if args.mode == "aoti" else "torch", args.precision, args)
    manifest = read_engine_manifest(engine)
    info = {"engine": engine.name, "verification": verification_summary(manifest.verification), "build_seconds": manifest.reports.get("build_seconds")}
    if args.mode in ("graphs", "aoti"):
        return open_engine(engine), info
    graphs = args.mode == "int8" and args.device == "cuda"  # int8 is timed with CUDA graphs, as fp16 is in step 1
    s = manifest.served
    runner = TorchRunner(manifest.checkpoint.path, dict(manifest.outputs), args.device, args.precision, cuda_graphs=graphs)
    if args.mode == "int8":
        import torch

        n = sum(quantize_encoder_layers(m) for m in runner.modules.values())
        runner._graphs.clear()
        info["int8"] = {"linears_quantized": n, "scheme": "W8A8 dynamic: per-token activations, per-channel weights, torch._int_mm", "torch_int_mm": hasattr(torch, "_int_mm")}
        info["verification"] = int8_drift(runner, export, args)
        if graphs:
            runner.warm_up(s.candidates, s.seq_q, s.seq_p)
    return Engine(manifest, runner=runner), info


def run_step(args) -> dict:
    from dtx.bench.run import BenchConfig, machine, measure
    from dtx.engines import load_engine
    from dtx.export.manifest import producers

    started = time.perf_counter()
    exports = ensure_exports(args.work, args.arch, args.splits, args.seq_q)
    backend = "aoti" if args.mode == "aoti" else "torch"
    cfg = BenchConfig(
        target=None, arch=args.arch, splits=args.splits, candidates=[args.candidates], seq_q=args.seq_q, seq_p=args.seq_p, backend=backend,
        precision=args.precision, runs=args.runs, warmup=args.warmup, device=args.device, cuda_graphs=args.mode in ("graphs", "int8"), fp32_baseline=args.fp32_baseline,
    )  # fmt: skip
    report = {
        "config": asdict(cfg), "mode": args.mode, "precision": "int8" if args.mode == "int8" else args.precision, "rows": [], "complete": False,
        "interrupted": False, "machine": machine(cfg), "producers": producers(), "source": f"random-weight {args.arch}", "rehearsal": args.arch == REHEARSAL_ARCH,
    }  # fmt: skip
    if args.mode == "int8":
        import importlib.util

        report["torchao_importable"] = importlib.util.find_spec("torchao") is not None
    write(args.json, report)
    for split in args.splits:
        t = time.perf_counter()
        runner, info = load_runner(exports[split], args)
        baseline = None
        if args.fp32_baseline:  # the torch fp32 engine (in an fp32 rehearsal: the same engine, which proves the path)
            baseline = load_engine(ensure_engine(exports[split], "torch", "fp32", args))
        try:
            row = measure(cfg, runner, baseline, args.candidates, progress=False)
        finally:
            runner.close()
            if baseline is not None:
                baseline.close()
        row["precision"] = report["precision"]
        row["engine"] = info
        row["split_seconds"] = round(time.perf_counter() - t, 2)
        report["rows"].append(row)
        log(f"{args.mode} {report['precision']} {row['layers']}: decoupled {row['decoupled']['p50_ms']:.3f} ms, coupled {row['coupled']['p50_ms']:.3f} ms, {row['speedup']:.2f}x ({row['split_seconds']:.1f} s)")
        report["seconds"] = round(time.perf_counter() - started, 2)
        write(args.json, report)
    report["complete"] = True
    report["seconds"] = round(time.perf_counter() - started, 2)
    write(args.json, report)
    return report


def write(path: Path, report: dict) -> None:
    """Atomically (a timeout may kill the step mid-write; the file is then the previous split's report)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="Where the model, exports and engines are kept between steps.")
    ap.add_argument("--arch", default="bert-base", help=f"A dtx preset, or {REHEARSAL_ARCH} (12 tiny layers, for the CPU rehearsal).")
    ap.add_argument("--splits", default="5,9", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--candidates", "-K", type=int, default=20)
    ap.add_argument("--seq-q", type=int, default=32)
    ap.add_argument("--seq-p", type=int, default=150)
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp16", choices=["fp32", "fp16"], help="Float precision of the engine (int8 mode: the precision around the int8 GEMMs).")
    ap.add_argument("--mode", required=True, choices=MODES)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--drift-pairs", type=int, default=DRIFT_PAIRS, help="Random-token pairs on which fp16/int8 drift from the fp32 export is measured.")
    ap.add_argument("--fp32-baseline", action="store_true", help="Also time the coupled model in fp32 (the torch fp32 engine).")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu_bench: --device cuda, but torch sees no CUDA GPU")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    run_step(args)


if __name__ == "__main__":
    main()
