"""PyTorch backend: the checkpoint's own modules, eager, on CPU or CUDA.

The reference every other backend is compared with, and the GPU path where TensorRT is missing:
on CUDA it runs under fp16/bf16 autocast and, for shapes seen before, replays CUDA graphs
(one capture per (graph, input shapes), static buffers refilled each call).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dtx.engines.manifest import EngineError
from dtx.engines.runner import Runner
from dtx.model.checkpoint import load_checkpoint
from dtx.model.surgery import build_coupled

AUTOCAST = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_device(device: str, precision: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("requested --device cuda, but PyTorch sees no CUDA GPU here; use --device cpu")
    if device == "cpu" and precision == "fp16":
        raise EngineError("fp16 with the torch backend needs --device cuda; on CPU use fp32 (or --backend ort)")
    if precision not in AUTOCAST:
        raise EngineError(f"the torch backend runs {', '.join(AUTOCAST)}, not {precision}")


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, ckpt_dir: Path, output_names: dict[str, list[str]], device: str = "cpu", precision: str = "fp32", cuda_graphs: bool = True):
        check_device(device, precision)
        super().__init__(output_names)
        ckpt = load_checkpoint(ckpt_dir)
        self.device = torch.device(device)
        self.dtype = AUTOCAST[precision]
        self.modules = {
            "input": ckpt.model.input.to(self.device),
            "cross": ckpt.model.cross.to(self.device),
            "coupled": build_coupled(ckpt.teacher()).to(self.device),
        }
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[tuple, tuple] = {}

    @classmethod
    def from_modules(cls, modules: dict[str, torch.nn.Module], output_names: dict[str, list[str]]) -> "TorchRunner":
        """An fp32 runner over modules already in memory, on their device (scoring a student while it trains)."""
        self = cls.__new__(cls)
        Runner.__init__(self, output_names)
        device = next(modules["input"].parameters()).device
        self.device, self.dtype, self.modules, self.cuda_graphs, self._graphs = device, None, modules, False, {}
        return self

    def _forward(self, graph: str, tensors: list[torch.Tensor]):
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            out = self.modules[graph](*tensors)
        return out if isinstance(out, tuple) else (out,)

    def _captured(self, graph: str, tensors: list[torch.Tensor]):
        key = (graph, *(tuple(t.shape) for t in tensors))
        if key not in self._graphs:
            static = [t.clone() for t in tensors]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up outside the capture, as CUDA graphs require
                    self._forward(graph, static)
            torch.cuda.current_stream().wait_stream(side)
            cuda_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(cuda_graph):
                outputs = self._forward(graph, static)
            self._graphs[key] = (cuda_graph, static, outputs)
        cuda_graph, static, outputs = self._graphs[key]
        for dst, src in zip(static, tensors):
            dst.copy_(src)
        cuda_graph.replay()
        return outputs

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for v in feeds.values()]
        outputs = self._captured(graph, tensors) if self.cuda_graphs else self._forward(graph, tensors)
        return [o.float().cpu().numpy() for o in outputs]
