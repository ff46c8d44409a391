"""One runner interface over every backend: input component, cross component, coupled baseline.

All runners take and return numpy arrays (the layout of dtx.export.spec), keep their sessions or
engines for their whole life (no per-call setup), and are context managers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dtx.engines.manifest import EngineError
from dtx.errors import first_line
from dtx.model.segments import Batch


class Runner:
    """Base class: subclasses implement `_run(graph, feeds) -> list of outputs`."""

    backend = "?"

    def __init__(self, output_names: dict[str, list[str]]) -> None:
        self.output_names = output_names  # graph -> output names, from the export manifest

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def encode(self, batch: Batch) -> np.ndarray:
        """Input component on one side's segments: (B, S) ids -> (B, S, rep_dim) float32."""
        return self._run("input", batch.as_dict())[0]

    def cross(self, q_hidden: np.ndarray, q_mask: np.ndarray, p_hidden: np.ndarray, p_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Cross component on (question reps, cached passage reps); bq = 1 or b."""
        feeds = {"q_hidden": q_hidden, "q_mask": q_mask, "p_hidden": p_hidden, "p_mask": p_mask}
        return dict(zip(self.output_names["cross"], self._run("cross", feeds)))

    def decoupled(self, question: Batch, passages: Batch) -> dict[str, np.ndarray]:
        """Both components, passages encoded on the fly (a cache skips the second `encode`)."""
        return self.cross(self.encode(question), question.attention_mask, self.encode(passages), passages.attention_mask)

    def coupled(self, pairs: Batch) -> dict[str, np.ndarray]:
        """The coupled baseline on packed pairs."""
        return dict(zip(self.output_names["coupled"], self._run("coupled", pairs.as_dict())))

    def close(self) -> None:
        """Release sessions / device memory."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OrtRunner(Runner):
    """ONNX Runtime sessions for the three graphs, created once, run through IO binding."""

    backend = "ort"

    def __init__(self, graphs: dict[str, Path], output_names: dict[str, list[str]], threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        super().__init__(output_names)
        providers = self.providers(device)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.device = "cuda" if device == "cuda" else "cpu"
        self.threads = threads
        self.sessions = {}
        for graph, path in graphs.items():
            try:
                self.sessions[graph] = ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as e:
                raise EngineError(f"ONNX Runtime cannot load {path}: {first_line(e, 300)}") from None

    @staticmethod
    def providers(device: str) -> list[str]:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise EngineError(f"requested --device cuda, but ONNX Runtime here has only {', '.join(available)}; install onnxruntime-gpu or use --device cpu")
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        session = self.sessions[graph]
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for out in session.get_outputs():
            binding.bind_output(out.name, self.device)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def close(self) -> None:
        self.sessions.clear()
