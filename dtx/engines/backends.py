"""The backend registry: one object per engine backend, registered by name.

Each backend knows how to check itself (options, availability), load a runner from its engine.json,
and describe itself (what engine.json records, where it runs, what identifies its input component).
Nothing outside this module compares a backend's name: a new backend is one class and one line in
`REGISTRY`.

    backend = get_backend(manifest.backend)
    runner = backend.load(manifest, threads)
"""

from __future__ import annotations

from pathlib import Path

from dtx.engines.manifest import BACKENDS, EngineError, EngineManifest
from dtx.engines.runner import Runner


class Backend:
    """What every backend answers; subclasses set the class attributes and `load`."""

    name = "?"
    default_int8_mode: str | None = "dynamic"  # the INT8 flavour when --int8-mode is not given; None: no INT8 path
    int8_modes: tuple[str, ...] = ("dynamic", "qdq")  # INT8 flavours it can run
    runs_checkpoint = False  # runs the checkpoint itself (torch, aoti), so it must still be the export's
    runs_onnx = True  # compiles the export's ONNX graphs (ort, trt)
    info_key: str | None = None  # engine.json key of what it records about the machine it was built for
    gpu_always = False  # needs a GPU whatever the device says (TensorRT)

    def int8_mode(self, requested: str | None) -> str:
        return requested or self.default_int8_mode or "dynamic"

    def check_options(self, precision: str, int8_mode: str) -> None:
        """Refuse an option set this backend cannot build (before any work)."""
        if precision != "int8":
            return
        if self.default_int8_mode is None:
            raise EngineError(f"the {self.name} backend has no int8 path; use --backend ort --int8")
        if int8_mode not in self.int8_modes:
            raise EngineError(f"the {self.name} backend runs INT8 only as {' or '.join(self.int8_modes)}; drop --int8-mode or use --int8-mode {self.int8_modes[0]}")

    def check_available(self, device: str, precision: str) -> None:
        """Refuse the build when this machine cannot build or run it (a missing library, device, dtype)."""

    def fuses_fp32(self) -> bool:
        """Whether the fp32 graph is fused for ONNX Runtime (True) or kept as exported (contrib ops would not parse)."""
        return False

    def records_cuda_graphs(self, device: str) -> bool:
        return False

    def on_gpu(self, manifest: EngineManifest) -> bool:
        """Whether a worker running this engine wants a GPU."""
        return self.gpu_always or manifest.device == "cuda"

    def input_identity(self, manifest: EngineManifest) -> str:
        """What makes this engine's input component what it is; a store records it to refuse another engine."""
        return manifest.files.get(manifest.graphs["input"], "")

    def compile_checkpoint(self, checkpoint: Path, out_dir: Path, device: str, precision: str, calib: dict | None, served: tuple[int, int, int], progress: bool) -> tuple[dict[str, str], dict]:
        """A backend that runs the checkpoint: (graph -> file it wrote into `out_dir`, what it records about the machine).
        `calib`: per-graph calibration feeds where the precision calibrates (static INT8), else None; `served`: the
        shape served (candidates, seq_q, seq_p)."""
        return {}, {}

    def compile_graph(self, onnx_path: Path, out_dir: Path, spec, shape: tuple, precision: str) -> tuple[str, dict] | None:
        """A backend that compiles the prepared ONNX further (TensorRT plans) for `shape` (candidates, seq_q, seq_p and
        the two windows): (file written, build record); None: the ONNX is what runs."""
        return None

    def load(self, manifest: EngineManifest, threads: int | None) -> Runner:
        raise NotImplementedError


class OrtBackend(Backend):
    name = "ort"

    def fuses_fp32(self) -> bool:
        return True

    def load(self, manifest: EngineManifest, threads: int | None) -> Runner:
        from dtx.engines.runner import OrtRunner

        return OrtRunner(_graphs(manifest), dict(manifest.outputs), threads=threads or manifest.threads, device=manifest.device)


class TrtBackend(Backend):
    name = "trt"
    default_int8_mode = "qdq"
    int8_modes = ("qdq",)
    info_key = "tensorrt"
    gpu_always = True

    def check_available(self, device: str, precision: str) -> None:
        from dtx.engines.tensorrt import import_tensorrt

        import_tensorrt()

    def compile_graph(self, onnx_path: Path, out_dir: Path, spec, shape, precision: str) -> tuple[str, dict]:
        from dtx.engines.tensorrt import TIMING_CACHE, ServeShape, build_plan, device_signature

        plan = out_dir / f"{onnx_path.stem}.plan"
        return plan.name, {**build_plan(onnx_path, plan, spec, ServeShape(*shape), out_dir / TIMING_CACHE, precision), **device_signature()}

    def load(self, manifest: EngineManifest, threads: int | None) -> Runner:
        from dtx.engines.tensorrt import TrtRunner

        return TrtRunner(_graphs(manifest), dict(manifest.outputs), dict(manifest.backend_info))


class TorchBackend(Backend):
    name = "torch"
    default_int8_mode = None
    runs_checkpoint = True
    runs_onnx = False

    def check_available(self, device: str, precision: str) -> None:
        from dtx.engines.torch_backend import check_device

        check_device(device, precision)

    def records_cuda_graphs(self, device: str) -> bool:
        return device == "cuda"

    def input_identity(self, manifest: EngineManifest) -> str:
        return manifest.checkpoint.weights_sha256  # it runs the checkpoint: its weights are its input component

    def load(self, manifest: EngineManifest, threads: int | None) -> Runner:
        from dtx.engines.torch_backend import TorchRunner

        s = manifest.served
        warm = (s.candidates, s.seq_q, s.seq_p) if s else None
        return TorchRunner(manifest.checkpoint.path, dict(manifest.outputs), manifest.device, manifest.precision, cuda_graphs=manifest.cuda_graphs is not False, warm_shape=warm)


class AotiBackend(Backend):
    name = "aoti"
    default_int8_mode = "qdq"  # PT2E static INT8: calibrated quantize/dequantize pairs, fused by Inductor
    int8_modes = ("qdq",)
    runs_checkpoint = True
    runs_onnx = False
    info_key = "aoti"

    def check_available(self, device: str, precision: str) -> None:
        from dtx.engines.aoti import check_options

        check_options(device, precision)

    def compile_checkpoint(self, checkpoint: Path, out_dir: Path, device: str, precision: str, calib: dict | None, served: tuple[int, int, int], progress: bool) -> tuple[dict[str, str], dict]:
        from dtx.engines.aoti import compile_packages, device_signature

        return compile_packages(checkpoint, out_dir, device, precision, calib, served, progress), device_signature(device)

    def load(self, manifest: EngineManifest, threads: int | None) -> Runner:
        from dtx.engines.aoti import AotiRunner

        s = manifest.served
        return AotiRunner(_graphs(manifest), dict(manifest.outputs), dict(manifest.backend_info), manifest.precision, manifest.path, (s.candidates, s.seq_q, s.seq_p) if s else None)


def _graphs(manifest: EngineManifest) -> dict:
    return {g: manifest.graph_path(g) for g in manifest.graphs}


REGISTRY: dict[str, Backend] = {b.name: b for b in (OrtBackend(), TrtBackend(), TorchBackend(), AotiBackend())}
assert tuple(REGISTRY) == BACKENDS, "engine.json's backend names and the registry must agree"


def recorded_info(backend: Backend, info: dict) -> dict:
    """engine.json's per-backend build records: this backend's under its key, None under the others'."""
    return {key: info if key == backend.info_key else None for key in INFO_KEYS}


INFO_KEYS = tuple(b.info_key for b in REGISTRY.values() if b.info_key)  # "tensorrt", "aoti": engine.json's order


def get_backend(name: str) -> Backend:
    """The backend registered as `name`, or a one-line error naming those there are."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise EngineError(f"unknown backend {name!r}; this dtx runs {', '.join(REGISTRY)}") from None
