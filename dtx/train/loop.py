"""What every dtx training run shares: batches, precision, one schedule per run, early stopping.

Teacher fine-tuning and student distillation differ in their loss, not in how they walk the data.
Both take their batches from `epoch_batches` (a fresh, reproducible order every epoch, windows of
similar length together so padding is small), optimise with one AdamW and one warm-up + linear
decay schedule that spans all epochs of a phase (whose state goes into the resume checkpoint, so a
killed run continues exactly), run under bf16 autocast where the processor computes bf16 natively,
and keep the epoch whose held-out score was best.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dtx.errors import DtxError

BUCKET_BATCHES = 50  # batches per length bucket: enough to sort, few enough that order stays random
PAD_MULTIPLE = 8  # batches are padded to a multiple of this: few distinct shapes, so kernel caches stay small


def padded_length(longest: int, limit: int | None = None) -> int:
    """`longest` rounded up to a multiple of PAD_MULTIPLE, never beyond `limit` (a model's maximum).

    Every distinct batch shape leaves kernels and buffers in oneDNN's caches on the CPU; with
    lengths taken as they come, memory grew by about 1 GB every 2 minutes of MiniLM training.
    """
    rounded = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    return max(longest, min(rounded, limit)) if limit else rounded


def epoch_rng(seed: int, phase: str, epoch: int) -> np.random.Generator:
    """The generator of one (seed, phase, epoch): every epoch of every phase sees its own order."""
    return np.random.default_rng([seed, zlib.crc32(phase.encode()), epoch])


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, phase: str, epoch: int) -> list[list[int]]:
    """Indices of the examples, cut into batches for one epoch.

    The examples are shuffled, cut into buckets of `BUCKET_BATCHES` batches, sorted by length
    inside a bucket and batched, and the batches shuffled again: batches hold windows of similar
    length (each batch is padded only to its own longest), while which examples meet in a batch
    and the order of the batches still change every epoch.
    """
    rng = epoch_rng(seed, phase, epoch)
    order = rng.permutation(len(lengths))
    span = batch_size * BUCKET_BATCHES
    batches: list[list[int]] = []
    for b in range(0, len(order), span):
        bucket = sorted(order[b : b + span].tolist(), key=lambda i: lengths[i])
        batches += [bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 autocast is slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_bf16(device: torch.device, requested: bool | None) -> bool:
    """bf16 autocast on (`None` = where the device has it: CUDA, or a CPU with native bf16)."""
    if requested is not None:
        return requested
    return device.type == "cuda" or cpu_has_bf16()


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `bf16`, else nothing: weights, optimizer and losses stay fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def train_device(requested: str | None = None) -> torch.device:
    """The device to train on: `requested` ("cpu" / "cuda"), or CUDA when present, else the CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise DtxError("--device cuda, but torch sees no CUDA GPU here; drop --device to train on the CPU")
    return torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))


def device_name(device: torch.device) -> str:
    """The card or processor a result was measured on, for the record beside the figure."""
    import platform

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()} CPU x{torch.get_num_threads()} threads (torch {torch.__version__})"


def optimizer_and_schedule(
    params: list[torch.nn.Parameter], lr: float, weight_decay: float, total_steps: int, warmup: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """One AdamW and one schedule for a whole phase: linear warm-up over `warmup` of the steps, then linear decay to 0."""
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return optim, torch.optim.lr_scheduler.LambdaLR(optim, factor)


@dataclass
class EarlyStopping:
    """Best held-out score so far and when to stop: after `patience` epochs without a better one,
    once at least `min_epochs` have run."""

    patience: int
    min_epochs: int = 1
    best: float = -float("inf")
    best_epoch: int = 0
    history: list[float] = field(default_factory=list)

    def update(self, score: float) -> bool:
        """Record an epoch's score; True when it is the best so far (keep these weights)."""
        self.history.append(score)
        if score > self.best:
            self.best, self.best_epoch = score, len(self.history)
            return True
        return False

    @property
    def stop(self) -> bool:
        epochs = len(self.history)
        return epochs >= self.min_epochs and epochs - self.best_epoch >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.history = state["best"], state["best_epoch"], list(state["history"])


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights (the best epoch's, kept while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def rng_state() -> dict:
    """torch's generator states (dropout masks: the CPU's, and the GPUs' when training there), so a resumed epoch draws what the killed one would have."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def mean_terms(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each loss term over an epoch, and over its last tenth: where it ended up, not just its average."""
    if not rows:
        return {}
    last = rows[-max(1, len(rows) // 10) :]
    keys = rows[0].keys()
    return {**{k: sum(r[k] for r in rows) / len(rows) for k in keys}, **{f"{k}_last": sum(r[k] for r in last) / len(last) for k in keys}}



def loss_curve(rows: list[dict[str, float]], key: str = "loss", points: int = 10) -> list[float]:
    """`key` averaged over `points` equal stretches of an epoch: the curve that compares two runs (bf16 vs fp32)."""
    values = [r[key] for r in rows]
    return [float(np.mean(chunk)) for chunk in np.array_split(values, min(points, len(values))) if len(chunk)]


def read_state(path, fix: str) -> dict:
    """A run's training state (torch.save'd dict); a truncated or foreign file is one line ending in `fix`."""
    try:
        return torch.load(path, weights_only=False, map_location="cpu")
    except Exception as e:  # a truncated or foreign file: say so, never a traceback
        raise DtxError(f"{path} is not a readable training state ({type(e).__name__}); {fix}") from None
