"""What every dtx training run shares: batches, precision, one schedule per run, early stopping.

Teacher fine-tuning and student distillation differ in their loss, not in how they walk the data.
Both take their batches from `epoch_batches` (a fresh, reproducible order every epoch, windows of
similar length together so padding is small), optimise with one AdamW and one warm-up + linear
decay schedule that spans all epochs of a phase (whose state goes into the resume checkpoint, so a
killed run continues exactly), run under bf16 autocast where the processor computes bf16 natively,
and keep the epoch whose held-out score was best.

`train_phase` is that loop, written once: a run gives it a `Phase` (what to train, how fast, for how
many epochs) and `Hooks` (a batch's loss, the held-out score, how to save), and `resume_state` is
the one rule for picking up a killed run.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dtx.errors import DtxError
from dtx.train.config import same_settings

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


def resume_state(path: Path, cfg, overwrite: bool, fix: str) -> dict:
    """The training state of the run saved at `path` when it was run with `cfg`'s settings ({} for a fresh start).

    The one rule of every dtx run (`same_settings`: a setting newer than the run counts as its default); a run
    with other settings is refused in one line ending in `fix`, or, with `overwrite`, started again.
    """
    if not path.is_file():
        return {}
    state = read_state(path, fix)
    if same_settings(state.get("config"), cfg):
        return state
    if overwrite:
        return {}
    raise DtxError(f"{path.parent} holds a run with other settings; pass the same settings to resume it, or {fix}")


@dataclass
class Phase:
    """One phase of a run: its name (which picks its batch orders and labels its progress), epochs, parameters and rates."""

    name: str
    epochs: int
    params: list[torch.nn.Parameter]
    lr: float  # peak of the phase's warm-up + linear decay
    weight_decay: float
    scored: bool = True  # scored after every epoch: stops early and keeps its best epoch
    named: bool = True  # each history entry says which phase it belongs to (a run of several phases)


@dataclass
class Hooks:
    """What a run plugs into `train_phase`."""

    step: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]]  # a batch's loss, and its terms as floats for the record
    # after an epoch, in eval mode: the headline early stopping reads (higher is better) and the scores each epoch's
    # record keeps, by split ({"select": ..., "dev": ...}: the headline is the selection split's)
    score: Callable[[], tuple[float, dict[str, dict]]]
    save: Callable[["PhaseState"], None]  # persist the run: the training state (`PhaseState.snapshot`) and the best weights so far
    epoch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # held around each epoch's steps


def scored(score: Callable[[str], dict], sides: Iterable[str], headline: Callable[[dict], float]) -> tuple[float, dict[str, dict]]:
    """An epoch's scores on each held-out side (`HeldOut.sides`), and the headline of the first: the side epochs are chosen on."""
    scores = {side: score(side) for side in sides}
    return headline(next(iter(scores.values()))), scores


@dataclass
class PhaseState:
    """Where a phase stands: its optimizer, schedule and early stopping, and how far into which epoch (what a resume restores)."""

    optim: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    stopper: EarlyStopping
    epoch: int = 0
    position: int = 0  # batches of this epoch done
    seconds: float = 0.0  # training time of this epoch so far
    rows: list[dict[str, float]] = field(default_factory=list)  # this epoch's loss terms, one row a step
    best: dict[str, torch.Tensor] | None = None  # the best epoch's weights (CPU)

    def snapshot(self, model: torch.nn.Module) -> dict:
        """The training state to save: with it, a killed run continues exactly (weights, optimizer, schedule, random draws)."""
        return {
            "model": cpu_state(model), "optimizer": self.optim.state_dict(), "scheduler": self.sched.state_dict(),
            "stopper": self.stopper.state_dict(), "rng": rng_state(), "epoch": self.epoch, "position": self.position,
            "seconds": self.seconds, "rows": self.rows, "best": self.best,
        }  # fmt: skip

    def restore(self, model: torch.nn.Module, state: dict) -> None:
        model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.stopper.load_state_dict(state["stopper"])
        set_rng_state(state["rng"])
        self.epoch, self.position, self.seconds, self.rows, self.best = state["epoch"], state["position"], state["seconds"], state["rows"], state["best"]


def train_phase(model: torch.nn.Module, phase: Phase, cfg, lengths: Sequence[int], hooks: Hooks, state: dict, history: list[dict], progress: bool = True) -> PhaseState:
    """Train one phase from its start or from `state` (a `PhaseState.snapshot`): every epoch in its own batch order, one
    schedule over all of them; a scored phase is scored after each epoch, keeps its best weights and stops early.

    `cfg` is the run's config (batch_size, seed, warmup, patience, min_epochs, save_every, clip_norm). Each epoch
    appends its record to `history`; the run is saved after every epoch and every `save_every` seconds.
    """
    steps = phase.epochs * -(-len(lengths) // cfg.batch_size)
    optim, sched = optimizer_and_schedule(phase.params, phase.lr, phase.weight_decay, max(1, steps), cfg.warmup)
    run = PhaseState(optim, sched, EarlyStopping(cfg.patience, cfg.min_epochs))
    if state:
        run.restore(model, state)
    while run.epoch < phase.epochs and not (phase.scored and run.stopper.stop):
        _train_epoch(model, phase, cfg, lengths, hooks, run, progress)
        model.eval()
        entry = {"phase": phase.name} if phase.named else {}
        entry |= {"epoch": run.epoch + 1, "seconds": round(run.seconds, 1), "loss": mean_terms(run.rows),
                  "loss_curve": loss_curve(run.rows, next(iter(run.rows[0]))), "lr_end": sched.get_last_lr()[0]}  # fmt: skip
        if phase.scored:
            headline, scores = hooks.score()
            entry |= scores
            if run.stopper.update(headline):
                run.best = cpu_state(model)
        history.append(entry)
        run.epoch, run.position, run.seconds, run.rows = run.epoch + 1, 0, 0.0, []
        hooks.save(run)
    return run


def _train_epoch(model: torch.nn.Module, phase: Phase, cfg, lengths: Sequence[int], hooks: Hooks, run: PhaseState, progress: bool) -> None:
    """The rest of `run`'s epoch from `run.position`: loss, backward, clipped step, saving every `save_every` seconds."""
    batches = epoch_batches(lengths, cfg.batch_size, cfg.seed, phase.name, run.epoch)
    model.train()
    desc = f"{phase.name} epoch {run.epoch + 1}/{phase.epochs}"
    bar = tqdm(enumerate(batches[run.position :], start=run.position), total=len(batches), initial=run.position, desc=desc, unit="step", disable=not progress)
    with hooks.epoch():
        started = last_save = time.perf_counter()
        for i, indices in bar:
            loss, items = hooks.step(indices)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(phase.params, cfg.clip_norm)
            run.optim.step()
            run.sched.step()
            run.optim.zero_grad(set_to_none=True)
            run.rows.append(items)
            run.position = i + 1
            bar.set_postfix({**{k: f"{v:.3f}" for k, v in items.items() if v}, "lr": f"{run.sched.get_last_lr()[0]:.2e}"})
            if time.perf_counter() - last_save > cfg.save_every and run.position < len(batches):
                run.seconds += time.perf_counter() - started
                hooks.save(run)
                started = last_save = time.perf_counter()
    run.seconds += time.perf_counter() - started
