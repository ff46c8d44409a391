"""AOTInductor engines: each component exported with torch.export and compiled ahead of time.

PyTorch's own answer to a serialized TensorRT plan: `aoti_compile_and_package` turns an exported
program into a `.pt2` package of generated C++/CUDA kernels that loads without Python tracing or
recompilation. Batch and sequence axes stay dynamic (the example inputs have sizes of at least 2
on every axis: a size-1 example would specialise it). A package is machine code for one device,
so the engine records what it was compiled for (CPU architecture and vector ISA, or GPU name and
compute capability) and is refused elsewhere with a one-line error.

fp16 packages (CUDA only) are compiled from the half-precision modules; graph inputs and outputs
stay float32 at the runner boundary, as for every other backend.

int8 packages (x86 CPUs) are static INT8 by PyTorch's PT2E flow: torchao's `X86InductorQuantizer`
puts quantize/dequantize pairs around every Linear (int8 weights per output channel, uint8
activations with one scale per tensor, calibrated on real pairs), and Inductor, with its weights
frozen, fuses each pair into oneDNN's int8 GEMMs and the float operations around them. Activation
scales fixed at build time are what lets the integer kernels hand int8 to each other; ONNX Runtime's
dynamic INT8 (`--backend ort --int8`) measures every activation's range at run time and spends the
time to do so between every pair of MatMuls (docs/bench.md).
"""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dtx.engines.cpu import vector_isa
from dtx.engines.manifest import EngineError
from dtx.engines.runner import Runner
from dtx.engines.torch_backend import padded, unpadded
from dtx.errors import first_line
from dtx.export.spec import COUPLED, CROSS, INPUT
from dtx.model.checkpoint import load_checkpoint
from dtx.model.samples import random_pairs
from dtx.model.surgery import build_coupled

PRECISIONS = ("fp32", "fp16", "int8")
FLOAT_INPUTS = ("q_hidden", "p_hidden")  # cast to the package's dtype on the way in


def device_signature(device: str) -> dict:
    """What a package compiled here runs on: a package is refused on a machine whose signature differs."""
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}", "torch": torch.__version__}
    return {"device": "cpu", "machine": platform.machine(), "isa": vector_isa(), "torch": torch.__version__}


def check_signature(recorded: dict, engine_dir: Path) -> None:
    """One line when the engine was compiled for another device (or another torch) than this machine's."""
    device = recorded["device"]
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"engine {engine_dir} was compiled for CUDA ({recorded['gpu']}), and this machine has no CUDA GPU; rebuild it here with --device cpu")
    here = device_signature(device)
    different = [k for k in recorded if recorded[k] != here.get(k)]
    if different:
        k = different[0]
        raise EngineError(f"engine {engine_dir} was compiled for {k} {recorded[k]!r}, this machine has {here.get(k)!r}; rebuild it here with `dtx build-engine --backend aoti`")


def check_options(device: str, precision: str) -> None:
    if precision not in PRECISIONS:
        raise EngineError(f"the aoti backend compiles {', '.join(PRECISIONS)}, not {precision}")
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("requested --device cuda, but PyTorch sees no CUDA GPU here; use --device cpu")
    if device == "cpu" and precision == "fp16":
        raise EngineError("an fp16 AOTInductor engine needs --device cuda; on CPU compile fp32")
    if precision == "int8":
        if device != "cpu" or platform.machine() not in X86:
            raise EngineError(f"the aoti backend's INT8 (PT2E, oneDNN) compiles for x86 CPUs, not {device} on {platform.machine()}; use --device cpu on x86, --backend trt --int8 on an NVIDIA GPU, or --backend ort --int8")
        pt2e()


X86 = ("x86_64", "AMD64")
TORCHAO = "torchao==0.18.0"  # the release dtx's INT8 packages were built and tested with (the `int8` extra)


def pt2e():
    """torchao's PT2E entry points (prepare, convert, the x86 quantizer), or a one-line error (its import noise is
    filtered where dtx is imported: dtx.KNOWN_NOISE)."""
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as e:
        raise EngineError(f"the aoti backend's INT8 quantizes with torchao's PT2E flow, and it cannot be imported here ({first_line(e)}); `pip install {TORCHAO}` (or dtx's `int8` extra)") from None
    return prepare_pt2e, convert_pt2e, x86


def quantize_static(module: torch.nn.Module, example: tuple, dynamic: tuple, calib: list[tuple]) -> torch.nn.Module:
    """The module with static INT8 quantize/dequantize pairs, its activation ranges observed on `calib`.

    The quantized module is exported again (with the same dynamic axes) before compiling: PT2E works on
    an exported graph, and AOTInductor compiles an exported program."""
    prepare_pt2e, convert_pt2e, x86 = pt2e()
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(torch.export.export(module, example, dynamic_shapes=dynamic).module(), quantizer)
    for feed in calib:
        prepared(*feed)
    return convert_pt2e(prepared)


def _examples(ckpt, device: torch.device, b: int, lq: int, lp: int, bq: int, seed: int) -> dict[str, tuple]:
    """Inputs per graph for `b` passages of `lp` tokens against `bq` questions of `lq`: the cross graph's are the
    input component's representations of them, the coupled graph's the packed pairs."""
    sample = random_pairs(ckpt.segmenter(), np.random.default_rng(seed), b, lq, lp, bq=bq)
    as_tensors = lambda batch: tuple(torch.from_numpy(a).to(device) for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids))  # noqa: E731
    q, p, c = as_tensors(sample.question), as_tensors(sample.passage), as_tensors(sample.coupled())
    with torch.no_grad():
        q_rep, p_rep = ckpt.model.input(*q), ckpt.model.input(*p)
    return {INPUT: p, CROSS: (q_rep, q[1], p_rep, p[1]), COUPLED: c}


def _dynamic_examples(ckpt, device: torch.device) -> dict[str, tuple]:
    """Examples for the dynamic packages: every axis at least 2 and bq != b, so nothing is specialised to a constant."""
    cfg = ckpt.config
    return _examples(ckpt, device, 3, min(7, cfg.max_question_len), min(11, cfg.max_passage_len), bq=2, seed=1)


def _served_examples(ckpt, device: torch.device, served: tuple[int, int, int]) -> dict[str, tuple]:
    """Examples of exactly the served shape (one question of seq_q tokens against K passages of seq_p) for the graphs
    a query runs: the cross component and the coupled baseline, so both get the same treatment."""
    k, seq_q, seq_p = served
    examples = _examples(ckpt, device, k, seq_q, seq_p, bq=1, seed=2)
    return {CROSS: examples[CROSS], COUPLED: examples[COUPLED]}


def _dynamic_shapes(cfg) -> dict[str, tuple]:
    from torch.export import Dim

    batch, bq, b = Dim("batch", min=1, max=4096), Dim("bq", min=1, max=4096), Dim("b", min=1, max=4096)
    seq = Dim("seq", min=1, max=cfg.max_question_len + cfg.max_passage_len)
    lq, lp = Dim("lq", min=1, max=cfg.max_question_len), Dim("lp", min=1, max=cfg.max_passage_len)
    ids = ({0: batch, 1: seq},) * 3
    return {INPUT: ids, CROSS: ({0: bq, 1: lq}, {0: bq, 1: lq}, {0: b, 1: lp}, {0: b, 1: lp}), COUPLED: ids}


def compile_packages(ckpt_dir: Path, out_dir: Path, device: str, precision: str, calib: dict[str, list[dict]] | None = None, served: tuple[int, int, int] | None = None, progress: bool = False) -> dict[str, str]:
    """Export and compile the three components of a checkpoint into `out_dir/<graph>.pt2`; returns graph -> file.

    Every package takes any batch and length. On CPU the graphs a query runs (cross, coupled) also get a second
    package compiled for exactly the `served` shape (candidates, seq_q, seq_p), under "<graph>.served": a kernel
    for known sizes runs faster (measured: docs/bench.md), and shorter inputs are padded up to it.
    int8 needs `calib`: per graph, the feeds (dtx.engines.calibration.graph_feeds) its activation ranges are observed on."""
    import torch._inductor

    check_options(device, precision)
    if precision == "int8" and not calib:
        raise EngineError("static INT8 calibrates activation ranges on real texts: pass --calib FILE")
    ckpt = load_checkpoint(ckpt_dir)
    dev = torch.device(device)
    modules = {INPUT: ckpt.model.input, CROSS: ckpt.model.cross, COUPLED: build_coupled(ckpt.teacher())}
    for m in modules.values():
        m.eval().to(dev)
    examples = _dynamic_examples(ckpt, dev)
    fixed = _served_examples(ckpt, dev, served) if served and device == "cpu" else {}
    if precision == "fp16":
        examples[CROSS] = tuple(t.half() if t.is_floating_point() else t for t in examples[CROSS])
        for m in modules.values():
            m.half()
    dynamic = _dynamic_shapes(ckpt.config)
    # frozen weights let Inductor prepack them for oneDNN (and fold int8 weights' quantization away); CPU only
    options = {"freezing": device == "cpu"}
    files = {}
    for graph, module in tqdm(modules.items(), desc=f"build aoti {precision}", unit="graph", disable=not progress):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning)  # Inductor's int8 lowering, about itself
            if precision == "int8":
                feeds = [tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in feed.values()) for feed in calib[graph]]
                module = quantize_static(module, examples[graph], dynamic[graph], feeds)
            shapes = {graph: (examples[graph], dynamic[graph])}
            if graph in fixed:
                shapes[graph + SERVED] = (fixed[graph], None)
            for name, (example, dims) in shapes.items():
                program = torch.export.export(module, example, dynamic_shapes=dims)
                path = out_dir / f"{name}.pt2"
                torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs=options)
                files[name] = path.name
    return files


SERVED = ".served"  # suffix of a graph's package compiled for the engine's served shape


def served_lengths(graph: str, tensors: list[torch.Tensor], served: tuple[int, int, int]) -> tuple[int, ...] | None:
    """The lengths to pad `tensors` to for `graph`'s served-shape package (candidates, seq_q, seq_p), or None when they
    do not fit it: another batch (the cross package reads one question against K passages), or longer inputs."""
    k, seq_q, seq_p = served
    if graph == CROSS:
        q_mask, p_mask = tensors[1], tensors[3]
        fits = q_mask.shape[0] == 1 and p_mask.shape[0] == k and q_mask.shape[1] <= seq_q and p_mask.shape[1] <= seq_p
        return (seq_q, seq_p) if fits else None
    ids = tensors[0]
    return (seq_q + seq_p,) if ids.shape[0] == k and ids.shape[1] <= seq_q + seq_p else None


class AotiRunner(Runner):
    """The compiled packages, loaded once; numpy in, float32 numpy out. A call that fits the served shape runs the
    package compiled for it (padded up to it, the padded slots cut off again), any other the dynamic one."""

    backend = "aoti"

    def __init__(self, graphs: dict[str, Path], output_names: dict[str, list[str]], signature: dict, precision: str, engine_dir: Path, served: tuple[int, int, int] | None = None) -> None:
        import torch._inductor

        check_signature(signature, engine_dir)
        super().__init__(output_names)
        self.device = torch.device(signature["device"])
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.served = served
        self.packages = {}
        for graph, path in graphs.items():
            try:
                self.packages[graph] = torch._inductor.aoti_load_package(str(path))
            except Exception as e:  # a truncated or foreign package: one line, not a C++ traceback
                raise EngineError(f"cannot load {path} ({type(e).__name__}: {first_line(e) if str(e).strip() else ''}); rebuild the engine") from None

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        tensors = []
        for name, value in feeds.items():
            t = torch.from_numpy(np.ascontiguousarray(value)).to(self.device)
            tensors.append(t.to(self.dtype) if name in FLOAT_INPUTS else t)
        lengths = served_lengths(graph, tensors, self.served) if self.served and graph + SERVED in self.packages else None
        with torch.inference_mode():
            if lengths is None:
                out = self.packages[graph](*tensors)
            else:
                tensors, info = padded(graph, tensors, lengths)
                out = self.packages[graph + SERVED](*tensors)
        out = out if isinstance(out, (tuple, list)) else (out,)
        if lengths is not None:
            out = unpadded(graph, tuple(out), info)
        return [o.float().cpu().numpy() for o in out]

    def close(self) -> None:
        self.packages.clear()
