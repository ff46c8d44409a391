"""The last step of training a QA student: choose its no-answer thresholds and write them into the checkpoint.

`dtx distill` runs it on the weights it publishes; `dtx calibrate CKPT --data D` runs it on a checkpoint
made before (or re-runs it with other settings). The questions are the run's own selection split (the
passages that chose the epoch: neither trained on nor reported), the retriever's pool the selection and
training paragraphs (never dev's), so the dev figures `dtx eval` and `dtx eval-store` report are read at
thresholds chosen elsewhere. The rule and the conditions are dtx.eval.no_answer's.
"""

from __future__ import annotations

from pathlib import Path

from dtx.data.pairs import Pair, read_pairs
from dtx.data.splits import dev_subset, training_split
from dtx.errors import DtxError
from dtx.eval.no_answer import calibrate
from dtx.model.checkpoint import Checkpoint, write_no_answer
from dtx.model.no_answer import RETRIEVED_K, NoAnswer
from dtx.task import Task


def selection_and_pool(pairs: list[Pair], dev_percent: int, select_percent: int, limit: int | None, seed: int, where: str) -> tuple[list[Pair], list[str]]:
    """The selection questions a training run scored (its first `limit`, as it took them) and the distinct
    paragraphs of the selection and training sides, in data order: what BM25 retrieves from."""
    if select_percent == 0:
        raise DtxError(f"{where}: with --select-percent 0 the epoch was chosen on dev itself, and no other held-out questions are left to calibrate on; pass the run's --select-percent (5 by default)")
    train, select, _ = training_split(pairs, dev_percent, where, select_percent)
    pool = list(dict.fromkeys(p.passage for p in select + train))
    return dev_subset(select, limit, seed), pool


def calibrate_checkpoint(ckpt: Checkpoint, data: str | Path, dev_percent: int, select_percent: int, limit: int | None, seed: int, k: int = RETRIEVED_K, out_dir: str | Path | None = None, progress: bool = True, coupled=None) -> NoAnswer:
    """Calibrate `ckpt`'s student and teacher on `data`'s selection split and record it in `out_dir` (default: the checkpoint).

    `coupled` is the teacher's coupled model where the caller holds it already (distill); else it is loaded."""
    import torch

    from dtx.engines.torch_backend import TorchRunner
    from dtx.model.surgery import build_coupled

    if ckpt.config.task != Task.QA:
        raise DtxError(f"{ckpt.path} is a pair classifier: a no-answer threshold is a QA reader's")
    questions, pool = selection_and_pool(read_pairs(data), dev_percent, select_percent, limit, seed, str(data))
    if not any(p.answers for p in questions):
        raise DtxError(f"{data}: its selection split holds no answered question to calibrate on; pass QA data (SQuAD 2.0 style)")
    device = next(ckpt.model.parameters()).device
    coupled = coupled if coupled is not None else build_coupled(ckpt.teacher()).to(device).eval()
    runner = TorchRunner.from_student(ckpt.model, coupled, ["start_logits", "end_logits"])
    was_training = ckpt.model.training
    ckpt.model.eval()
    try:
        with torch.inference_mode():
            no_answer = calibrate(runner, ckpt.segmenter(), questions, pool, str(data), k, progress=progress)
    finally:
        ckpt.model.train(was_training)
    write_no_answer(out_dir or ckpt.path, no_answer)
    return no_answer
