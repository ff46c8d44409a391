"""`dtx decouple`: a local Hugging Face model directory in, a decoupled checkpoint out."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

from dtx.atomic import check_output
from dtx.errors import ConfigError, first_line
from dtx.model.checkpoint import CHECKPOINT, Checkpoint, load_checkpoint, save_checkpoint
from dtx.model.segments import qa_window_lengths
from dtx.model.surgery import build_decoupled, decouple_config_for, load_source, model_task
from dtx.task import Task

FINETUNE_REPORT = "dtx_finetune.json"  # written by `dtx finetune` beside the teacher: its windows and dev curve


def decouple(
    model_dir: str | Path,
    out_dir: str | Path,
    split: int,
    compress: int = 1,
    task: str | None = None,
    num_labels: int | None = None,
    max_question_len: int = 64,
    max_passage_len: int | None = None,
    doc_stride: int | None = None,
    cross_embeddings: bool = True,
    seed: int = 0,
    overwrite: bool = False,
) -> Checkpoint:
    """Split a fine-tuned model at `split` and write a self-contained checkpoint.

    `seed` fixes the fresh parts (a new task head on a bare encoder, the compressor), so the same
    command always writes the same weights. Window lengths left unset follow the windows a
    `dtx finetune` teacher was trained on (its dtx_finetune.json), so the student reads the same.
    """
    check_output(out_dir, CHECKPOINT, overwrite)  # before loading anything: OUT may be refused
    torch.manual_seed(seed)
    teacher = load_source(model_dir, task, num_labels)
    tokenizer = source_tokenizer(model_dir, teacher.config.vocab_size)
    task = model_task(teacher)
    trained = teacher_windows(Path(model_dir))
    if max_passage_len is None and trained:
        max_question_len, max_passage_len = trained["max_question_len"], trained["max_passage_len"]
        doc_stride = trained["doc_stride"] if doc_stride is None else doc_stride
    cfg = decouple_config_for(
        teacher.config,
        split,
        compress,
        task,
        max_question_len=max_question_len,
        max_passage_len=max_passage_len,
        doc_stride=doc_stride,
        cross_embeddings=cross_embeddings,
    )
    model = build_decoupled(teacher, cfg)
    save_checkpoint(model, teacher, tokenizer, out_dir, overwrite=overwrite, extra={"source": str(model_dir)})
    return load_checkpoint(out_dir)


def teacher_windows(model_dir: Path) -> dict | None:
    """The QA windows a `dtx finetune --task qa` teacher was trained on, if it was one."""
    import json

    path = model_dir / FINETUNE_REPORT
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8-sig"))
        if report.get("task") != Task.QA:
            return None
        q, p = qa_window_lengths(int(report["config"]["max_len"]))
        return {"max_question_len": q, "max_passage_len": p, "doc_stride": int(report["config"]["doc_stride"])}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path} is not a readable `dtx finetune` report ({type(e).__name__}: {e}); restore it, or delete it and pass --max-passage-len") from None


def source_tokenizer(model_dir: str | Path, vocab_size: int):
    """The model directory's own tokenizer; one that is missing, or far smaller than the model's vocabulary
    (what transformers builds when the files are absent), is an error rather than a checkpoint that reads nonsense."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"{model_dir} has no usable tokenizer ({first_line(e, 160)}); copy the model's tokenizer files (tokenizer.json, vocab) into it") from None
    if len(tokenizer) < vocab_size // 2:
        raise ConfigError(f"the tokenizer in {model_dir} has {len(tokenizer)} tokens but the model's vocabulary has {vocab_size}; copy the model's own tokenizer files (tokenizer.json, vocab) into it")
    return tokenizer
