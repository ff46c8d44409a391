"""PyTorch backend: the checkpoint's own modules, eager, on CPU or CUDA.

The reference every other backend is compared with, and the GPU path where TensorRT is missing:
on CUDA it runs under fp16/bf16 autocast and replays CUDA graphs. A CUDA graph is one fixed
shape, so sequence axes are padded up to a bucket (multiples of `BUCKET` tokens: padding is
masked, so the real slots' outputs are unchanged) and the padded slots cut off again; one capture
per (graph, bucketed shape), static buffers refilled each call. The shape a store serves (K
passages of the store's length, questions of up to `seq_q` tokens) is captured at load, so the
first query does not pay for it.
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
BUCKET = 16  # sequence lengths are padded up to a multiple of this for CUDA graphs


def bucket(n: int, size: int = BUCKET) -> int:
    return -(-n // size) * size


def pad_to(t: torch.Tensor, axis: int, length: int) -> torch.Tensor:
    """Right-pad `t` with zeros along `axis` to `length` (zeros in a mask = padding, ignored by the model)."""
    extra = length - t.shape[axis]
    if extra <= 0:
        return t
    shape = list(t.shape)
    shape[axis] = extra
    return torch.cat([t, t.new_zeros(shape)], dim=axis)


def padded(graph: str, tensors: list[torch.Tensor], lengths: tuple[int, ...]) -> tuple[list[torch.Tensor], tuple]:
    """Inputs right-padded to `lengths` ((question, passage) tokens for the cross graph, (tokens,) for the others),
    and what `unpadded` needs to cut the outputs back. Padding is masked: the real slots' outputs do not change."""
    if graph == "cross":
        q_hidden, q_mask, p_hidden, p_mask = tensors
        lq_to, lp_to = lengths
        info = (q_mask.shape[1], lq_to, p_mask.shape[1], lp_to)
        return [pad_to(q_hidden, 1, lq_to), pad_to(q_mask, 1, lq_to), pad_to(p_hidden, 1, lp_to), pad_to(p_mask, 1, lp_to)], info
    return [pad_to(t, 1, lengths[0]) for t in tensors], (tensors[0].shape[1], lengths[0])


def unpadded(graph: str, outputs: tuple[torch.Tensor, ...], info: tuple) -> tuple[torch.Tensor, ...]:
    """Drop the padded slots again: the outputs of the unpadded call, exactly."""
    if graph == "cross":
        lq, lq_to, lp, lp_to = info
        # slot outputs (QA start/end: (b, lq + lp)) lose the padded question and passage slots; pair logits have no slots
        return tuple(torch.cat([o[:, :lq], o[:, lq_to : lq_to + lp]], dim=1) if o.dim() == 2 and o.shape[1] == lq_to + lp_to else o for o in outputs)
    length, to = info
    return tuple(o[:, :length] if o.dim() >= 2 and o.shape[1] == to else o for o in outputs)


def bucketed(graph: str, tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], tuple]:
    """Inputs padded to bucketed sequence lengths (multiples of BUCKET), and what `unpadded` needs."""
    lengths = (bucket(tensors[1].shape[1]), bucket(tensors[3].shape[1])) if graph == "cross" else (bucket(tensors[0].shape[1]),)
    return padded(graph, tensors, lengths)


def check_device(device: str, precision: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("requested --device cuda, but PyTorch sees no CUDA GPU here; use --device cpu")
    if device == "cpu" and precision == "fp16":
        raise EngineError("fp16 with the torch backend needs --device cuda; on CPU use fp32 (or --backend ort)")
    if precision not in AUTOCAST:
        raise EngineError(f"the torch backend runs {', '.join(AUTOCAST)}, not {precision}")


class TorchRunner(Runner):
    backend = "torch"

    def __init__(
        self,
        ckpt_dir: Path,
        output_names: dict[str, list[str]],
        device: str = "cpu",
        precision: str = "fp32",
        cuda_graphs: bool = True,
        buckets: bool | None = None,
        warm_shape: tuple[int, int, int] | None = None,
    ):
        """`buckets` pads sequence axes to multiples of BUCKET (default: with CUDA graphs); `warm_shape`
        = (K passages, question tokens, passage tokens) captured at load."""
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
        self.rep_dim = ckpt.config.rep_dim
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self.buckets = self.cuda_graphs if buckets is None else buckets
        self._graphs: dict[tuple, tuple] = {}
        if warm_shape is not None and self.cuda_graphs:
            self.warm_up(*warm_shape)

    def warm_up(self, k: int, seq_q: int, seq_p: int) -> None:
        """Capture what one query of the served shape runs: the question's input component and the cross component over K passages."""
        ids = lambda b, n: [torch.ones(b, n, dtype=torch.long, device=self.device)] * 3  # noqa: E731
        self._run_tensors("input", ids(1, seq_q))
        self._run_tensors("input", ids(k, seq_p))
        q = torch.zeros(1, seq_q, self.rep_dim, device=self.device)
        p = torch.zeros(k, seq_p, self.rep_dim, device=self.device)
        ones = lambda b, n: torch.ones(b, n, dtype=torch.long, device=self.device)  # noqa: E731
        self._run_tensors("cross", [q, ones(1, seq_q), p, ones(k, seq_p)])

    @classmethod
    def from_modules(cls, modules: dict[str, torch.nn.Module], output_names: dict[str, list[str]]) -> "TorchRunner":
        """An fp32 runner over modules already in memory, on their device (scoring a student while it trains)."""
        self = cls.__new__(cls)
        Runner.__init__(self, output_names)
        device = next(modules["input"].parameters()).device
        self.device, self.dtype, self.modules, self.cuda_graphs, self.buckets, self._graphs = device, None, modules, False, False, {}
        return self

    @classmethod
    def from_student(cls, model: torch.nn.Module, coupled: torch.nn.Module, heads: list[str]) -> "TorchRunner":
        """`from_modules` over a decoupled student's two components and its coupled teacher, `heads` the
        output names of the cross component and the teacher alike."""
        return cls.from_modules({"input": model.input, "cross": model.cross, "coupled": coupled}, {"cross": heads, "coupled": heads, "input": ["hidden"]})

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

    def _run_tensors(self, graph: str, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        info = None
        if self.buckets:
            tensors, info = bucketed(graph, tensors)
        outputs = self._captured(graph, tensors) if self.cuda_graphs else self._forward(graph, tensors)
        return unpadded(graph, outputs, info) if self.buckets else outputs

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for v in feeds.values()]
        return [o.float().cpu().numpy() for o in self._run_tensors(graph, tensors)]
