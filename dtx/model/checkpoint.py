"""The decoupled checkpoint directory (docs/design.md, "Files between commands") and its loader.

    CKPT/decoupled.json      format, dtx version, decoupling settings, sha256 of the weights
    CKPT/model.safetensors   the decoupled model (input.* and cross.*)
    CKPT/teacher/            the coupled teacher as a plain Hugging Face model dir (+ tokenizer)

The teacher travels with the student so the coupled baseline and distillation targets can
always be rebuilt from the checkpoint alone. The loader checks the hash, the settings and every
tensor's name and shape, and turns each problem into one line that says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from dtx.atomic import ArtifactKind, atomic_dir, read_artifact_json, sha256_file, write_json
from dtx.errors import CheckpointError
from dtx.model.config import DecoupleConfig
from dtx.model.decoupled import DecoupledModel
from dtx.model.no_answer import NO_ANSWER, NoAnswer
from dtx.model.segments import PairSegmenter
from dtx.model.surgery import AUTO_CLASSES, build_decoupled, read_source_config

FORMAT_VERSION = 1
META_FILE = "decoupled.json"
WEIGHTS_FILE = "model.safetensors"
TEACHER_DIR = "teacher"
INT8_TRAINING = "int8_training"  # decoupled.json key `dtx distill --qat-epochs` writes: the INT8 scheme the weights were trained for
# what `--overwrite` (and distill, writing over its input) may replace: the training state is distill's
CHECKPOINT = ArtifactKind("checkpoint", META_FILE, (WEIGHTS_FILE, f"{TEACHER_DIR}/*", "train_state.pt"))


def save_checkpoint(
    model: DecoupledModel,
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    overwrite: bool = False,
    extra: dict | None = None,
    extra_files: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write a self-contained checkpoint atomically; returns its path.

    `extra_files` maps file names to writers called inside the temp directory, so state that
    must match the weights (a training state) is published in the same rename.
    """
    from dtx import __version__

    with atomic_dir(out_dir, overwrite=overwrite, kind=CHECKPOINT) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        teacher.save_pretrained(tmp / TEACHER_DIR)
        tokenizer.save_pretrained(tmp / TEACHER_DIR)
        teacher_files = {p.name: sha256_file(p) for p in sorted((tmp / TEACHER_DIR).glob("*.safetensors"))}
        meta = {
            "format_version": FORMAT_VERSION,
            "dtx_version": __version__,
            "decoupling": model.config.to_dict(),
            "teacher_class": type(teacher).__name__,
            "weights_sha256": sha256_file(tmp / WEIGHTS_FILE),
            "teacher_sha256": teacher_files,
            **(extra or {}),
        }
        write_json(tmp / META_FILE, meta)
        for name, writer in (extra_files or {}).items():
            writer(tmp / name)
    return Path(out_dir)


@dataclass(frozen=True)
class CheckpointMeta:
    """decoupled.json, typed: what every later stage needs to know about a checkpoint without loading it."""

    decoupling: DecoupleConfig
    weights_sha256: str  # of model.safetensors: exports and engines record it to refuse a replaced checkpoint
    teacher_sha256: Mapping[str, str]  # teacher weight file -> sha256
    teacher_class: str
    dtx_version: str
    source: str | None  # the model it was decoupled from
    int8_training: Mapping[str, Any] | None  # {"scheme": Int8Scheme.to_dict(), "epochs", "lr"} after QAT, else None
    no_answer: NoAnswer  # QA: the calibrated no-answer thresholds (dtx.eval.no_answer); uncalibrated reads 0
    reports: Mapping[str, Any]  # what made it: the finetune / distill reports, kept as written

    @classmethod
    def from_dict(cls, path: Path, data: dict) -> "CheckpointMeta":
        where = path / META_FILE
        if data.get("format_version") != FORMAT_VERSION or not isinstance(data.get("decoupling"), dict):
            raise CheckpointError(f"{where} has format {data.get('format_version')!r}, this dtx reads {FORMAT_VERSION}; re-create it")
        if not isinstance(data.get("weights_sha256"), str):
            raise CheckpointError(f"{where} records no weights_sha256; re-create the checkpoint")
        known = {"format_version", "dtx_version", "decoupling", "teacher_class", "weights_sha256", "teacher_sha256", "source", INT8_TRAINING, NO_ANSWER}
        return cls(
            decoupling=DecoupleConfig.from_dict(data["decoupling"]),
            weights_sha256=data["weights_sha256"],
            teacher_sha256=dict(data.get("teacher_sha256") or {}),
            teacher_class=str(data.get("teacher_class", "?")),
            dtx_version=str(data.get("dtx_version", "?")),
            source=data.get("source"),
            int8_training=data.get(INT8_TRAINING),
            no_answer=NoAnswer.from_dict(data.get(NO_ANSWER)),
            reports={k: v for k, v in data.items() if k not in known},
        )


def read_meta(path: str | Path) -> CheckpointMeta:
    """The checkpoint's JSON, typed, with one-line errors for a missing, unreadable or foreign one."""
    return CheckpointMeta.from_dict(Path(path), _meta_json(path))


def _meta_json(path: str | Path) -> dict:
    """decoupled.json as written, with one-line errors for a missing, unreadable or foreign one."""
    fix = f"create one with `dtx decouple MODEL_DIR --split N -o {path}`"
    return read_artifact_json(path, META_FILE, "dtx checkpoint", fix, CheckpointError)


def write_no_answer(path: str | Path, no_answer: NoAnswer) -> None:
    """Record calibrated no-answer thresholds in a checkpoint's decoupled.json (atomically; the weights and
    their hash are untouched, so exports made before stay valid but carry the thresholds they were made with)."""
    write_json(Path(path) / META_FILE, {**_meta_json(path), NO_ANSWER: no_answer.to_dict()})


@dataclass
class Checkpoint:
    """A loaded decoupled checkpoint: the student, its settings, and lazy access to teacher and tokenizer."""

    path: Path
    config: DecoupleConfig
    model: DecoupledModel
    meta: CheckpointMeta

    def teacher(self) -> PreTrainedModel:
        """The coupled teacher (eager attention, eval mode), its weight files checked against the checkpoint's record.

        A replaced or truncated teacher file would otherwise load with a freshly initialised head and
        score as a silently worse model.
        """
        for name, sha in self.meta.teacher_sha256.items():
            path = self.path / TEACHER_DIR / name
            if not path.is_file() or sha256_file(path) != sha:
                raise CheckpointError(f"{path} is missing or differs from the teacher this checkpoint was made with; restore it or re-create the checkpoint")
        return AUTO_CLASSES[self.config.task].from_pretrained(self.path / TEACHER_DIR, attn_implementation="eager").eval()

    def tokenizer(self) -> PreTrainedTokenizerBase:
        return AutoTokenizer.from_pretrained(self.path / TEACHER_DIR)

    def segmenter(self) -> PairSegmenter:
        c = self.config
        return PairSegmenter(self.tokenizer(), c.max_question_len, c.max_passage_len, c.doc_stride)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify a checkpoint: hash, settings vs the teacher config, every tensor name and shape."""
    path = Path(path)
    meta = read_meta(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path} is missing {WEIGHTS_FILE}; re-create the checkpoint with `dtx decouple`")
    if not (path / TEACHER_DIR / "config.json").is_file():
        raise CheckpointError(f"{path} is missing its coupled teacher ({TEACHER_DIR}/config.json); re-create the checkpoint")
    if sha256_file(weights) != meta.weights_sha256:
        raise CheckpointError(f"{weights} is corrupted (sha256 differs from {META_FILE}); restore it or re-create the checkpoint")
    source = read_source_config(path / TEACHER_DIR)
    cfg = meta.decoupling
    cfg.validate(source)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights} cannot be read ({e}); restore it or re-create the checkpoint") from None
    skeleton = _skeleton(source, cfg)
    expected = skeleton.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(f"{weights} does not match its decoupling ({what}); it belongs to another checkpoint")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{weights}: {name} has shape {tuple(tensor.shape)}, the decoupling needs {tuple(expected[name].shape)}"
            )
    skeleton.load_state_dict(state, strict=True, assign=True)
    return Checkpoint(path, cfg, skeleton.eval(), meta)


def _skeleton(source_config, cfg: DecoupleConfig) -> DecoupledModel:
    """A decoupled model of the right shapes (weights are overwritten by the loader)."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.device("cpu"):
            teacher = AUTO_CLASSES[cfg.task].from_config(source_config, attn_implementation="eager")
    finally:
        hf_logging.set_verbosity(verbosity)
    return build_decoupled(teacher, cfg)

